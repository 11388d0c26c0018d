"""The Query type: recommendations, similar items, items and users."""

from __future__ import annotations

import datetime as dt
import unicodedata
from functools import partial
from itertools import chain

import strawberry

from app import domain
from app.engine import MAX_COUNT, now
from app.errors import BadRequest
from schema.context import Context
from schema.errors import graphql_error
from schema.types import (
    Item,
    ItemFilter,
    ItemViews,
    Recommendation,
    RecommendationContext,
    RecommendationList,
    ScoredItem,
    StageReport,
    User,
)

MAX_ID_LENGTH = 256
MAX_LABEL_LENGTH = 64
MAX_FILTER_IDS = 1000
MAX_GENRES = 50


_error = graphql_error


def _clean_id(value: str, what: str) -> str:
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH:
        raise BadRequest(f"{what} must be 1 to {MAX_ID_LENGTH} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise BadRequest(f"{what} contains control or formatting characters")
    return text


def _label(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if len(value) > MAX_LABEL_LENGTH:
        raise BadRequest(f"{what} must be at most {MAX_LABEL_LENGTH} characters")
    return _clean_id(value, what) if value else None


def _moment(context: RecommendationContext | None) -> dt.datetime:
    at = context.at if context and context.at else now()
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _filter(value: ItemFilter | None) -> domain.ItemFilter:
    if value is None:
        return domain.ItemFilter()
    genres = tuple(value.genres or ())
    exclude = tuple(_clean_id(i, "excludeIds entry") for i in (value.exclude_ids or ()))
    if len(genres) > MAX_GENRES:
        raise BadRequest(f"filter.genres takes at most {MAX_GENRES} genres")
    if len(exclude) > MAX_FILTER_IDS:
        raise BadRequest(f"filter.excludeIds takes at most {MAX_FILTER_IDS} ids")
    for genre in genres:
        _clean_id(genre, "genre")
    return domain.ItemFilter(genres, exclude, value.released_after)


def _wants_explain(info: strawberry.Info[Context, None]) -> bool:
    """Whether the query selects items { explain { contributions } } (the costly part)."""

    def walk(selections: list, depth: int) -> bool:  # type: ignore[type-arg]
        for sel in selections:
            name = getattr(sel, "name", "")
            if name == "contributions":
                return True
            if walk(getattr(sel, "selections", []) or [], depth + 1):
                return True
        return False

    return walk(info.selected_fields, 0)


@strawberry.type
class Query:
    @strawberry.field(description="Recommendations for a user: candidates -> ranking -> reranking.")
    async def recommendations(
        self,
        info: strawberry.Info[Context, None],
        user_id: strawberry.ID,
        count: int = 30,
        context: RecommendationContext | None = None,
        filter: ItemFilter | None = None,
    ) -> RecommendationList:
        engine = info.context.engine
        try:
            if not 1 <= count <= MAX_COUNT:
                raise BadRequest(f"count must be between 1 and {MAX_COUNT}, got {count}")
            request = domain.RecommendationRequest(
                user_id=_clean_id(user_id, "userId"),
                count=count,
                at=_moment(context),
                device=_label(context.device, "context.device") if context else None,
                session_id=_label(context.session_id, "context.sessionId") if context else None,
                filter=_filter(filter),
                explain=_wants_explain(info),
                request_id=info.context.request_id,
            )
            loaded = info.context.loaded  # ids and metadata from the catalog that ranked
            result = await engine.recommend(request, loaded, info.context.client_gone)
            info.context.degraded = info.context.degraded or result.degraded
        except Exception as exc:
            raise _error(exc) from None
        runtime = loaded.runtime

        def view(index: int) -> domain.ItemView:
            return engine.item_view(runtime, index)

        # the answer's items and their anchors, each view built once, when a field needs it
        views = ItemViews(
            chain(
                (p.item for p in result.picks),
                (h.anchor for p in result.picks for h in p.hits if h.anchor is not None),
            ),
            view,
        )
        return RecommendationList(
            items=[
                Recommendation(
                    item=Item.deferred(
                        engine.item_id(runtime, p.item), partial(views.__getitem__, p.item)
                    ),
                    score=round(p.score, 6),
                    position=n,
                    _pick=p,
                    _views=views,
                )
                for n, p in enumerate(result.picks, 1)
            ],
            degraded=result.degraded,
            stages=[StageReport.from_domain(s) for s in result.stages],
            request_id=strawberry.ID(result.request_id),
            model_version=result.model_version,
        )

    @strawberry.field(description="Content and CF neighbours of an item (never the item itself).")
    async def similar_items(
        self, info: strawberry.Info[Context, None], item_id: strawberry.ID, count: int = 10
    ) -> list[ScoredItem]:
        try:
            found = await info.context.engine.similar_items(
                _clean_id(item_id, "itemId"), count, info.context.loaded
            )
        except Exception as exc:
            raise _error(exc) from None
        return [ScoredItem.from_domain(s) for s in found]

    @strawberry.field(description="One item by id, or null.")
    def item(self, info: strawberry.Info[Context, None], id: strawberry.ID) -> Item | None:
        try:
            view = info.context.engine.item(_clean_id(id, "id"), info.context.loaded)
        except Exception as exc:
            raise _error(exc) from None
        return Item.from_domain(view) if view else None

    @strawberry.field(description="One user with recent history, or null when unknown.")
    async def user(self, info: strawberry.Info[Context, None], id: strawberry.ID) -> User | None:
        try:
            view = await info.context.engine.user(_clean_id(id, "id"), loaded=info.context.loaded)
        except Exception as exc:
            raise _error(exc) from None
        return User.from_domain(view) if view else None
