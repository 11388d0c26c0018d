from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from app.domain import (
    ItemFilter,
    Pick,
    Ranked,
    RecommendationRequest,
    SourceHit,
    UserState,
)
from app.items import ItemCatalog
from app.reranking import RerankConfig, Reranker
from app.reranking.reranker import normalised
from app.reranking.rules import RULES
from app.reranking.rules.exploration import weighted_draw
from app.reranking.slate import RerankContext, Slate

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
AT_DAY = AT.timestamp() / 86_400.0


# --- fixtures -------------------------------------------------------------------------------------


def make_catalog(
    n: int,
    *,
    genres: list[list[str]] | None = None,
    series: list[int] | None = None,
    series_names: list[str] | None = None,
    released_day: list[float] | None = None,
    popularity_pct: list[float] | None = None,
    content: np.ndarray | None = None,
    dim: int = 8,
    seed: int = 0,
) -> ItemCatalog:
    """A synthetic catalog: items without series, released long ago, unpopular unless told."""
    rng = np.random.default_rng(seed)
    genres = genres if genres is not None else [["drama"] for _ in range(n)]
    genre_names = sorted({g for gs in genres for g in gs})
    column = {g: i for i, g in enumerate(genre_names)}
    genre_matrix = np.zeros((n, len(genre_names)), dtype=bool)
    for row, gs in enumerate(genres):
        genre_matrix[row, [column[g] for g in gs]] = True
    codes = np.asarray(series if series is not None else [-1] * n, dtype=np.int32)
    names = series_names or [f"series {c}" for c in range(int(codes.max(initial=-1)) + 1)]
    if content is None:
        content = rng.normal(size=(n, dim))
        content /= np.linalg.norm(content, axis=1, keepdims=True)
    ids = np.asarray([f"item-{i}" for i in range(n)], dtype=object)
    return ItemCatalog(
        ids=ids,
        index=pd.Index(ids),
        titles=ids.copy(),
        descriptions=ids.copy(),
        genres=genres,
        genre_names=genre_names,
        genre_matrix=genre_matrix,
        series=codes,
        series_names=names,
        series_position=np.where(codes >= 0, 1.0, np.nan),
        released_day=np.asarray(
            released_day if released_day is not None else [AT_DAY - 1000.0] * n, dtype=np.float64
        ),
        first_seen_day=np.full(n, AT_DAY - 1000.0),
        n_users=np.ones(n),
        mean_rating=np.full(n, 3.5),
        popularity=np.ones(n),
        popularity_pct=np.asarray(
            popularity_pct if popularity_pct is not None else [0.5] * n, dtype=np.float64
        ),
        in_cf=np.ones(n, dtype=bool),
        content=np.ascontiguousarray(content, dtype=np.float32),
        cf=np.zeros((n, 4), dtype=np.float32),
    )


def make_ranked(items: list[int], scores: list[float] | None = None) -> Ranked:
    values = np.asarray(
        scores if scores is not None else np.linspace(10.0, 1.0, max(len(items), 1))[: len(items)],
        dtype=np.float64,
    )
    return Ranked(
        items=np.asarray(items, dtype=np.int64),
        hits=[[SourceHit("cf", rank + 1, float(values[rank]))] for rank in range(len(items))],
        scores=values,
        ranker_scores=values.copy(),
        contributions=[{"cf_score": float(v)} for v in values],
    )


def make_request(
    count: int = 30, user_id: str = "u1", at: datetime = AT, exclude_ids: tuple[str, ...] = ()
) -> RecommendationRequest:
    return RecommendationRequest(
        user_id=user_id, count=count, at=at, filter=ItemFilter(exclude_ids=exclude_ids)
    )


def make_user(
    consumed: set[int] | None = None, dismissed: set[int] | None = None, user_id: str = "u1"
) -> UserState:
    return UserState(
        user_id=user_id,
        known=True,
        cf_vector=None,
        content_vector=None,
        recent_items=[],
        consumed=consumed or set(),
        dismissed=dismissed or set(),
    )


def only(*rules: str, **sections: object) -> RerankConfig:
    return RerankConfig.model_validate({"rules": list(rules), **sections})


def run(
    config: RerankConfig,
    catalog: ItemCatalog,
    ranked: Ranked,
    request: RecommendationRequest | None = None,
    user: UserState | None = None,
) -> list[Pick]:
    return Reranker(config, catalog).rerank(request or make_request(), user or make_user(), ranked)


def effects(pick: Pick, rule: str) -> list[str]:
    return [e.effect for e in pick.rules if e.rule == rule]


# --- the stage ------------------------------------------------------------------------------------


async def test_call_returns_picks_with_upstream_explanations():
    catalog = make_catalog(5)
    ranked = make_ranked([3, 1, 4, 0, 2], [7.0, 5.0, 3.0, 1.0, -1.0])
    picks = await Reranker(only(), catalog)(make_request(count=3), make_user(), ranked)
    assert [p.item for p in picks] == [3, 1, 4]
    assert [p.score for p in picks] == pytest.approx([1.0, 0.75, 0.5])
    assert picks[1].hits == [SourceHit("cf", 2, 5.0)]
    assert picks[1].ranker_score == 5.0
    assert picks[1].contributions == {"cf_score": 5.0}
    assert all(p.rules == [] for p in picks)


async def test_call_without_ranker_scores_or_contributions():
    ranked = replace(make_ranked([0, 1]), ranker_scores=None, contributions=None)
    picks = await Reranker(RerankConfig(), make_catalog(2))(make_request(), make_user(), ranked)
    assert [(p.ranker_score, p.contributions) for p in picks] == [(None, {}), (None, {})]


def test_empty_ranked_and_zero_count_give_nothing():
    catalog = make_catalog(3)
    reranker = Reranker(RerankConfig(), catalog)
    assert reranker.rerank(make_request(), make_user(), make_ranked([])) == []
    assert reranker.rerank(make_request(count=0), make_user(), make_ranked([0, 1, 2])) == []
    assert reranker.minimal(make_request(), make_user(), make_ranked([])) == []


def test_scores_are_normalised_within_the_request():
    np.testing.assert_allclose(normalised(np.array([-3.0, 1.0, 5.0])), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(normalised(np.array([2.5, 2.5])), [1.0, 1.0])
    np.testing.assert_allclose(normalised(np.array([np.nan, 4.0, 2.0])), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(normalised(np.array([np.inf, 1.0, -np.inf])), [1.0, 1.0, 0.0])
    assert normalised(np.zeros(0)).shape == (0,)


def test_requested_exclusions_are_rechecked():
    catalog = make_catalog(4)
    picks = run(only(), catalog, make_ranked([0, 1, 2, 3]), make_request(exclude_ids=("item-1",)))
    assert [p.item for p in picks] == [0, 2, 3]


# --- rules, known answers -------------------------------------------------------------------------


def test_exclude_consumed_drops_unless_disabled():
    catalog = make_catalog(4)
    user = make_user(consumed={0, 2})
    ranked = make_ranked([0, 1, 2, 3])
    assert [p.item for p in run(only("exclude_consumed"), catalog, ranked, user=user)] == [1, 3]
    off = only("exclude_consumed", exclude_consumed={"enabled": False})
    assert [p.item for p in run(off, catalog, ranked, user=user)] == [0, 1, 2, 3]


def test_dismissed_dropped_by_default():
    picks = run(
        only("dismissed"), make_catalog(4), make_ranked([0, 1, 2, 3]), user=make_user(dismissed={1})
    )
    assert [p.item for p in picks] == [0, 2, 3]


def test_dismissed_demoted_in_demote_mode():
    config = only("dismissed", dismissed={"mode": "demote", "demote_factor": 0.5})
    ranked = make_ranked([0, 1, 2, 3], [4.0, 3.0, 2.0, 0.0])  # normalised 1, .75, .5, 0
    picks = run(config, make_catalog(4), ranked, user=make_user(dismissed={0}))
    assert [p.item for p in picks] == [1, 0, 2, 3]
    assert picks[1].score == pytest.approx(0.5)
    assert effects(picks[1], "dismissed") == ["demoted x0.50: dismissed before"]
    assert picks[0].rules == []


def test_series_dedup_keeps_the_best_ranked_episode():
    catalog = make_catalog(6, series=[0, 0, 0, -1, -1, 1], series_names=["toy story", "up"])
    ranked = make_ranked([3, 1, 0, 4, 2, 5])
    picks = run(only("series_dedup"), catalog, ranked)
    assert [p.item for p in picks] == [3, 1, 4, 5]
    assert effects(picks[1], "series_dedup") == [
        "kept as best of series 'toy story' (dropped 2 others)"
    ]
    assert picks[3].rules == []  # alone in its series: nothing decided


def test_series_dedup_after_exclusion_keeps_the_next_episode():
    catalog = make_catalog(3, series=[0, 0, 0], series_names=["toy story"])
    picks = run(RerankConfig(), catalog, make_ranked([0, 1, 2]), user=make_user(consumed={0}))
    assert [p.item for p in picks] == [1]
    assert effects(picks[0], "series_dedup") == [
        "kept as best of series 'toy story' (dropped 1 other)"
    ]


def test_recent_release_overtakes_a_slightly_better_old_one():
    released = [AT_DAY - 400, AT_DAY - 10, AT_DAY - 900]
    catalog = make_catalog(3, released_day=released)
    ranked = make_ranked([0, 1, 2], [10.0, 9.9, 0.0])
    picks = run(only("new_releases"), catalog, ranked)
    assert [p.item for p in picks] == [1, 0, 2]
    factor = 1 + 0.3 * 0.5 ** (10 / 30)
    assert picks[0].score == pytest.approx(0.99 * factor)
    assert effects(picks[0], "new_releases") == [f"boosted x{factor:.2f}: released 10 days ago"]
    assert picks[1].rules == [] and picks[2].rules == []


def test_no_boost_for_future_unknown_or_too_old_releases():
    released = [AT_DAY + 5, np.nan, AT_DAY - 181, AT_DAY - 0.5]
    catalog = make_catalog(4, released_day=released)
    ranked = make_ranked([0, 1, 2, 3], [4.0, 3.0, 2.0, 1.0])
    picks = run(only("new_releases"), catalog, ranked)
    boosted = {p.item: effects(p, "new_releases") for p in picks}
    assert boosted == {0: [], 1: [], 2: [], 3: ["boosted x1.30: released today"]}
    assert picks[-1].score == pytest.approx(0.0)  # the lowest score stays 0 under any boost


def test_genre_cap_holds_in_every_window():
    others = ["comedy", "action", "horror"]
    genres = [["drama"]] * 30 + [[others[i % 3]] for i in range(30)]
    catalog = make_catalog(60, genres=genres)
    config = only("diversity", diversity={"mode": "genre_cap", "max_per_genre": 2, "window": 5})
    picks = run(config, catalog, make_ranked(list(range(60))))
    assert len(picks) == 30
    shown = [set(genres[p.item]) for p in picks]
    for start in range(len(shown) - 4):
        window = shown[start : start + 5]
        for genre in ["drama", *others]:
            assert sum(genre in gs for gs in window) <= 2
    assert [p.item for p in picks[:2]] == [0, 1]  # the best two still lead
    assert effects(picks[2], "diversity") == ["moved from 31 to 3 for diversity"]


def test_genre_cap_fills_every_slot_when_it_cannot_hold():
    catalog = make_catalog(10, genres=[["drama"]] * 10)
    config = only("diversity", diversity={"mode": "genre_cap", "max_per_genre": 1, "window": 3})
    picks = run(config, catalog, make_ranked(list(range(10))), make_request(count=5))
    assert [p.item for p in picks] == [0, 1, 2, 3, 4]


def test_mmr_spreads_identical_duplicates():
    content = np.eye(20)
    content[1] = content[0]  # the same title twice
    catalog = make_catalog(20, content=content)
    scores = [1.0, 0.99, *np.linspace(0.9, 0.6, 10), *np.linspace(0.1, 0.0, 8)]
    picks = run(only("diversity"), catalog, make_ranked(list(range(20)), scores))
    order = [p.item for p in picks]
    # The copy (0.99) only beats a distinct item once lambda * 0.99 - (1 - lambda) > lambda * s,
    # i.e. s < 0.74: five distinct items go ahead of it.
    assert order[:8] == [0, 2, 3, 4, 5, 6, 1, 7]
    assert effects(picks[6], "diversity") == ["moved from 2 to 7 for diversity"]
    # Each distinct item taken ahead of the copy was placed by diversity, so it says so.
    for slot in range(1, 6):
        assert effects(picks[slot], "diversity") == [
            f"moved from {slot + 2} to {slot + 1} for diversity"
        ]
    assert picks[0].rules == [] and picks[7].rules == []


def test_mmr_with_lambda_one_keeps_the_score_order():
    catalog = make_catalog(20, seed=3)
    picks = run(
        only("diversity", diversity={"mmr_lambda": 1.0}), catalog, make_ranked(list(range(20)))
    )
    assert [p.item for p in picks] == list(range(20))
    assert all(p.rules == [] for p in picks)


def exploration_catalog(seed: int = 0) -> ItemCatalog:
    """Top 40 ranked items are all popular; deeper ones span every percentile."""
    rng = np.random.default_rng(seed)
    popularity = np.concatenate([np.full(40, 0.95), rng.uniform(0.0, 1.0, 60)])
    return make_catalog(100, popularity_pct=popularity.tolist(), seed=seed)


def test_exploration_takes_its_share_so_popular_items_cannot_take_every_slot():
    catalog = exploration_catalog()
    reranker = Reranker(RerankConfig(), catalog)
    ranked = make_ranked(list(range(100)))
    shown = unpopular = 0
    for user in range(40):
        for day in range(5):
            request = make_request(user_id=f"u{user}", at=AT + timedelta(days=day))
            picks = reranker.rerank(request, make_user(user_id=f"u{user}"), ranked)
            low = [p for p in picks if catalog.popularity_pct[p.item] < 0.8]
            assert len(picks) == 30 and len(low) >= 3
            assert not effects(picks[0], "exploration")
            shown += len(picks)
            unpopular += len(low)
    assert unpopular / shown >= 0.1


def test_exploration_slots_are_spread_and_explained():
    catalog = exploration_catalog()
    picks = run(only("exploration"), catalog, make_ranked(list(range(100))))
    explored = [i for i, p in enumerate(picks) if effects(p, "exploration")]
    assert explored == [7, 15, 22]
    for i in explored:
        pct = catalog.popularity_pct[picks[i].item]
        assert pct < 0.8 and picks[i].item >= 30
        (text,) = effects(picks[i], "exploration")
        assert text.startswith(f"exploration slot: popularity percentile {pct:.2f} (from position")
    organic = [p.item for i, p in enumerate(picks) if i not in explored]
    assert organic == list(range(27))


def test_exploration_is_deterministic_per_user_and_date():
    catalog = exploration_catalog()
    reranker = Reranker(only("exploration"), catalog)
    ranked = make_ranked(list(range(100)))

    def explored(user_id: str, at: datetime) -> list[int]:
        picks = reranker.rerank(make_request(user_id=user_id, at=at), make_user(), ranked)
        return [p.item for p in picks if effects(p, "exploration")]

    morning = explored("u1", AT.replace(hour=1))
    assert explored("u1", AT.replace(hour=23)) == morning
    assert len({tuple(explored("u1", AT + timedelta(days=d))) for d in range(10)}) > 1
    assert len({tuple(explored(f"u{u}", AT)) for u in range(10)}) > 1
    other_seed = Reranker(only("exploration", seed=1), catalog)
    assert (
        len(
            {
                tuple(
                    p.item
                    for p in other_seed.rerank(
                        make_request(at=AT + timedelta(days=d)), make_user(), ranked
                    )
                )
                for d in range(5)
            }
        )
        > 1
    )


def test_exploration_skips_when_nothing_deeper_is_unpopular():
    catalog = make_catalog(50, popularity_pct=[0.99] * 50)
    picks = run(only("exploration"), catalog, make_ranked(list(range(50))))
    assert [p.item for p in picks] == list(range(30))


def test_weighted_draw_follows_the_weights():
    rng = np.random.default_rng(0)
    weight = np.array([0.0, 1.0, 3.0])
    firsts = [int(weighted_draw(weight, 1, rng)[0]) for _ in range(4000)]
    assert firsts.count(0) == 0
    assert firsts.count(2) / len(firsts) == pytest.approx(0.75, abs=0.03)
    assert sorted(weighted_draw(weight, 5, rng).tolist()) == [0, 1, 2]


def test_default_pipeline_explains_each_rule_it_applied():
    genres = [["drama"], ["comedy"]] * 50
    released = [AT_DAY - 1000.0] * 100
    released[5] = AT_DAY - 3
    popularity = [0.95] * 40 + [0.1] * 60
    series = [-1] * 100
    series[2] = series[3] = 0
    catalog = make_catalog(
        100,
        genres=genres,
        released_day=released,
        popularity_pct=popularity,
        series=series,
        series_names=["toy story"],
    )
    picks = run(
        RerankConfig(), catalog, make_ranked(list(range(100))), user=make_user(consumed={0})
    )
    assert len(picks) == 30 and {p.item for p in picks}.isdisjoint({0, 3})
    used = {e.rule for p in picks for e in p.rules}
    assert {"series_dedup", "new_releases", "exploration"} <= used
    assert used <= set(RULES)


# --- minimal --------------------------------------------------------------------------------------


def test_minimal_applies_only_the_must_haves():
    released = [AT_DAY - 1000.0] * 8
    released[6] = AT_DAY - 1  # a boost would lift it; minimal must not
    catalog = make_catalog(8, series=[-1, 0, 0, -1, -1, -1, -1, -1], released_day=released)
    config = RerankConfig(dismissed={"mode": "demote"})  # type: ignore[arg-type]
    request = make_request(count=4, exclude_ids=("item-3",))
    user = make_user(consumed={0}, dismissed={4})
    picks = Reranker(config, catalog).minimal(request, user, make_ranked(list(range(8))))
    assert [p.item for p in picks] == [1, 5, 6, 7]
    assert effects(picks[0], "series_dedup") == [
        "kept as best of series 'series 0' (dropped 1 other)"
    ]
    scores = [p.score for p in picks]
    assert scores == sorted(scores, reverse=True)
    assert {e.rule for p in picks for e in p.rules} == {"series_dedup"}


def test_minimal_respects_rules_turned_off():
    catalog = make_catalog(4)
    config = RerankConfig(exclude_consumed={"enabled": False})  # type: ignore[arg-type]
    picks = Reranker(config, catalog).minimal(
        make_request(), make_user(consumed={1}), make_ranked([0, 1, 2, 3])
    )
    assert [p.item for p in picks] == [0, 1, 2, 3]


# --- config ---------------------------------------------------------------------------------------


def test_config_defaults():
    config = RerankConfig()
    assert config.rules == [
        "exclude_consumed",
        "dismissed",
        "series_dedup",
        "new_releases",
        "diversity",
        "exploration",
    ]
    assert config.seed == 0
    assert (config.dismissed.mode, config.diversity.mode, config.diversity.mmr_lambda) == (
        "drop",
        "mmr",
        0.8,
    )
    assert (config.new_releases.boost, config.new_releases.half_life_days) == (0.3, 30.0)
    assert config.new_releases.max_age_days == 180.0
    assert (config.exploration.share, config.exploration.popularity_threshold) == (0.1, 0.8)


@pytest.mark.parametrize(
    "rules",
    [
        ["exclude_consumed", "no_such_rule"],
        ["diversity", "diversity"],
        ["exploration", "diversity"],
        ["diversity", "new_releases"],
        ["exploration", "dismissed"],
    ],
)
def test_config_rejects_unknown_repeated_or_misordered_rules(rules):
    with pytest.raises(ValidationError):
        RerankConfig(rules=rules)


def test_filters_may_run_anywhere():
    RerankConfig(rules=["diversity", "exploration", "series_dedup", "exclude_consumed"])


def test_config_rejects_unknown_fields():
    with pytest.raises(ValidationError):
        RerankConfig.model_validate({"diversity": {"mode": "mmr", "lamda": 0.5}})


def test_every_config_field_is_documented():
    def undocumented(model: type[BaseModel]) -> list[str]:
        return [name for name, f in model.model_fields.items() if not f.description]

    assert undocumented(RerankConfig) == []
    for rule in RULES.values():
        assert undocumented(rule.config_type) == [], rule.name


# --- contract: every registered rule --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_has_a_config_section_of_its_type(name):
    assert isinstance(RerankConfig().section(name), RULES[name].config_type)
    assert RULES[name].name == name


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_accepts_an_empty_slate(name):
    rule = RULES[name](RULES[name].config_type(), make_catalog(3))
    context = RerankContext.of(make_request(), make_user(consumed={0}, dismissed={1}))
    assert len(rule.apply(Slate.empty(), context)) == 0


@pytest.mark.parametrize("name", sorted(RULES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_rule_only_keeps_or_moves_its_input(name, data):
    n = data.draw(st.integers(1, 60), label="catalog size")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    catalog = make_catalog(
        n,
        genres=[[g] for g in rng.choice(["a", "b", "c"], n)],
        series=rng.integers(-1, 4, n).tolist(),
        released_day=(AT_DAY - rng.uniform(-30, 400, n)).tolist(),
        popularity_pct=rng.uniform(0, 1, n).tolist(),
        seed=seed,
    )
    size = data.draw(st.integers(0, n), label="slate size")
    items = rng.permutation(n)[:size].astype(np.int64)
    scores = np.sort(rng.uniform(0, 1, size))[::-1]
    slate = Slate(np.arange(size, dtype=np.int64) + 100, items, scores)
    count = data.draw(st.integers(0, 40), label="count")
    user = make_user(
        consumed=set(rng.choice(n, n // 4).tolist()), dismissed={int(items[0])} if size else set()
    )
    rule = RULES[name](RULES[name].config_type(), catalog)
    out = rule.apply(slate, RerankContext.of(make_request(count=count), user))
    assert len(set(out.rows.tolist())) == len(out)
    assert set(out.rows.tolist()) <= set(slate.rows.tolist())
    assert (
        dict(zip(out.rows.tolist(), out.items.tolist(), strict=True)).items()
        <= dict(zip(slate.rows.tolist(), slate.items.tolist(), strict=True)).items()
    )
    assert {e.rule for es in out.effects.values() for e in es} <= {name}


# --- properties of the whole stage ----------------------------------------------------------------


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 50))
    series = draw(st.lists(st.integers(-1, 5), min_size=n, max_size=n))
    genres = draw(
        st.lists(
            st.lists(st.sampled_from(["drama", "comedy", "action"]), unique=True, max_size=2),
            min_size=n,
            max_size=n,
        )
    )
    popularity = draw(st.lists(st.floats(0.0, 0.999), min_size=n, max_size=n))
    age = draw(st.lists(st.one_of(st.none(), st.floats(-60, 400)), min_size=n, max_size=n))
    catalog = make_catalog(
        n,
        genres=genres,
        series=series,
        popularity_pct=popularity,
        released_day=[np.nan if a is None else AT_DAY - a for a in age],
        seed=draw(st.integers(0, 1000)),
    )
    items = draw(st.permutations(range(n)))[: draw(st.integers(0, n))]
    scores = sorted(
        draw(
            st.lists(
                st.floats(-1e6, 1e6) | st.sampled_from([0.0, 1.0]),
                min_size=len(items),
                max_size=len(items),
            )
        ),
        reverse=True,
    )
    ids = st.integers(0, n - 1)
    user = make_user(consumed=draw(st.sets(ids)), dismissed=draw(st.sets(ids)))
    exclude = (*(f"item-{i}" for i in draw(st.sets(ids, max_size=5))), "not-an-item")
    request = make_request(
        count=draw(st.integers(0, 40)),
        user_id=draw(st.sampled_from(["u1", "u2", "u3"])),
        at=AT + timedelta(days=draw(st.integers(0, 3))),
        exclude_ids=exclude,
    )
    config = RerankConfig.model_validate(
        {
            "seed": draw(st.integers(0, 3)),
            "dismissed": {"mode": draw(st.sampled_from(["drop", "demote"]))},
            "diversity": {
                "mode": draw(st.sampled_from(["mmr", "genre_cap"])),
                "max_per_genre": draw(st.integers(1, 3)),
                "window": draw(st.integers(1, 6)),
            },
            "exploration": {"share": draw(st.sampled_from([0.0, 0.1, 0.5]))},
        }
    )
    return catalog, make_ranked(list(items), scores), user, request, config


def eligible(catalog, ranked, user, request, config) -> int:
    excluded = {int(i) for i in catalog.indices_of(request.filter.exclude_ids) if i >= 0}
    excluded |= user.consumed
    if config.dismissed.mode == "drop":
        excluded |= user.dismissed
    left = [int(i) for i in ranked.items if int(i) not in excluded]
    series = [int(catalog.series[i]) for i in left]
    return sum(s < 0 for s in series) + len({s for s in series if s >= 0})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_stage_properties(scenario):
    catalog, ranked, user, request, config = scenario
    reranker = Reranker(config, catalog)
    for path, picks in [
        ("full", reranker.rerank(request, user, ranked)),
        ("minimal", reranker.minimal(request, user, ranked)),
    ]:
        items = [p.item for p in picks]
        assert len(items) == len(set(items)), path
        assert not set(items) & user.consumed, path
        if config.dismissed.mode == "drop" or path == "minimal":
            assert not set(items) & user.dismissed, path
        assert not set(items) & {int(i) for i in catalog.indices_of(request.filter.exclude_ids)}
        series = [int(catalog.series[i]) for i in items if catalog.series[i] >= 0]
        assert len(series) == len(set(series)), path
        expected_config = (
            config
            if path == "full"
            else config.model_copy(
                update={"dismissed": config.dismissed.model_copy(update={"mode": "drop"})}
            )
        )
        assert len(picks) == min(
            request.count, eligible(catalog, ranked, user, request, expected_config)
        )
        assert all(e.rule in RULES for p in picks for e in p.rules), path
        assert all(np.isfinite(p.score) and p.score >= 0 for p in picks), path


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_order_follows_score_unless_diversity_or_exploration_moved_it(scenario):
    catalog, ranked, user, request, config = scenario
    scoring_only = config.model_copy(
        update={"rules": ["exclude_consumed", "dismissed", "series_dedup", "new_releases"]}
    )
    scores = [p.score for p in Reranker(scoring_only, catalog).rerank(request, user, ranked)]
    assert scores == sorted(scores, reverse=True)


def mmr_by_definition(scores: np.ndarray, vectors: np.ndarray, picks: int, weight: float):
    """Each slot: the available entry maximising weight * score - (1 - weight) * its largest
    similarity to the entries chosen so far (the first such entry on a tie)."""
    similarity = (vectors @ vectors.T).astype(np.float64)
    chosen: list[int] = []
    for _ in range(picks):
        best, best_gain = -1, -np.inf
        for i in range(len(scores)):
            if i in chosen:
                continue
            crowding = max((similarity[i, j] for j in chosen), default=0.0)
            gain = weight * float(scores[i]) - (1.0 - weight) * crowding
            if best < 0 or gain > best_gain:
                best, best_gain = i, gain
        chosen.append(best)
    return chosen


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.0, 0.3, 0.8, 1.0]),
    st.booleans(),
)
def test_mmr_steps_follow_the_definition(n: int, seed: int, weight: float, coarse: bool) -> None:
    from app.reranking.rules.diversity import mmr_steps

    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    vectors = rng.normal(size=(n, 5)).astype(np.float32)
    if coarse:  # ties in both scores and similarities
        scores = np.round(scores, 1)
        vectors = np.round(vectors)
    picks = int(rng.integers(1, n + 1))
    assert mmr_steps(scores, vectors, picks, weight).tolist() == mmr_by_definition(
        scores, vectors, picks, weight
    )
