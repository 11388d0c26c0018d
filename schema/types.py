"""GraphQL types, each built from a domain object (`from_domain`), never from storage rows."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import strawberry

from app import domain
from schema.explain import summary

if TYPE_CHECKING:
    from schema.context import Context


@strawberry.enum(description="How a stage or candidate source ended.")
class StageStatus(enum.Enum):
    OK = "OK"
    TIMEOUT = "TIMEOUT"
    ERROR = "ERROR"
    SKIPPED = "SKIPPED"


@strawberry.type(description="A catalog item.")
class Item:
    """Its id at once; the rest from its view, or from `build`'s when a field needs it (a
    recommendations query asking only ids reads no titles, descriptions or genres)."""

    id: strawberry.ID
    _source: strawberry.Private[domain.ItemView | Callable[[], domain.ItemView]]

    @classmethod
    def from_domain(cls, view: domain.ItemView) -> Item:
        return cls(id=strawberry.ID(view.item_id), _source=view)

    @classmethod
    def deferred(cls, item_id: str, build: Callable[[], domain.ItemView]) -> Item:
        """The item `item_id`, whose view `build` gives (each time a field other than id is
        asked: `build` keeps what it made, as `ItemViews` does)."""
        return cls(id=strawberry.ID(item_id), _source=build)

    def view(self) -> domain.ItemView:
        source = self._source
        return source if isinstance(source, domain.ItemView) else source()

    @strawberry.field
    def title(self) -> str:
        return self.view().title

    @strawberry.field
    def description(self) -> str:
        return self.view().description

    @strawberry.field
    def genres(self) -> list[str]:
        return self.view().genres

    @strawberry.field
    def series(self) -> str | None:
        return self.view().series

    @strawberry.field
    def series_position(self) -> int | None:
        return self.view().series_position

    @strawberry.field
    def released(self) -> dt.date | None:
        return self.view().released

    @strawberry.field(
        description="Percentile of time-decayed popularity in the catalog, 0 (tail) to 1 (top)."
    )
    def popularity(self) -> float:
        return round(self.view().popularity, 4)

    @strawberry.field
    def mean_rating(self) -> float | None:
        return self.view().mean_rating


@strawberry.type(description="A user as the engine knows them.")
class User:
    id: strawberry.ID
    event_count: int
    top_genres: list[GenreShare]
    recent_items: list[Item] = strawberry.field(description="Most recent items, newest first.")

    @classmethod
    def from_domain(cls, view: domain.UserView) -> User:
        return cls(
            id=strawberry.ID(view.user_id),
            event_count=view.n_events,
            top_genres=[GenreShare(genre=g, share=s) for g, s in view.top_genres.items()],
            recent_items=[Item.from_domain(i) for i in view.recent],
        )


@strawberry.type
class GenreShare:
    genre: str
    share: float


@strawberry.type(description="A candidate source that found the item, and its rank there.")
class SourceHit:
    source: str
    rank: int
    anchor_item: Item | None = strawberry.field(
        description="The item this one was found from: 'because you watched ...'."
    )


@strawberry.type
class FeatureContribution:
    feature: str
    value: float = strawberry.field(description="Approximate SHAP value: push on the ranker score.")


@strawberry.type
class RuleEffect:
    rule: str
    effect: str


@strawberry.type(description="Why an item was picked.")
class Explanation:
    summary: str
    sources: list[SourceHit]
    ranker_score: float | None
    contributions: list[FeatureContribution]
    rules: list[RuleEffect]


class ItemViews(Mapping[int, domain.ItemView]):
    """Views of the items at `indexes` (catalog positions), each built on first use: one
    answer's items and anchors are built only when a field or an explanation needs them, and
    once each."""

    def __init__(self, indexes: Iterable[int], build: Callable[[int], domain.ItemView]) -> None:
        self._indexes = frozenset(indexes)
        self._build = build
        self._built: dict[int, domain.ItemView] = {}

    def __getitem__(self, index: int) -> domain.ItemView:
        view = self._built.get(index)
        if view is None:
            if index not in self._indexes:
                raise KeyError(index)
            view = self._built[index] = self._build(index)
        return view

    def __contains__(self, index: object) -> bool:
        return index in self._indexes

    def __iter__(self) -> Iterator[int]:
        return iter(self._indexes)

    def __len__(self) -> int:
        return len(self._indexes)


@strawberry.type
class Recommendation:
    item: Item
    score: float
    position: int
    _pick: strawberry.Private[domain.Pick]
    _views: strawberry.Private[Mapping[int, domain.ItemView]]  # the answer's items and anchors

    @strawberry.field(
        description="Why this item was picked. Feature contributions are computed only when asked."
    )
    def explain(self, info: strawberry.Info[Context, None]) -> Explanation:
        pick = self._pick
        return Explanation(
            summary=summary(pick, self.item.view(), self._views),
            sources=[
                SourceHit(
                    source=h.source,
                    rank=h.rank,
                    anchor_item=Item.from_domain(self._views[h.anchor])
                    if h.anchor is not None and h.anchor in self._views
                    else None,
                )
                for h in pick.hits
            ],
            ranker_score=pick.ranker_score,
            contributions=[
                FeatureContribution(feature=k, value=v) for k, v in pick.contributions.items()
            ],
            rules=[RuleEffect(rule=r.rule, effect=r.effect) for r in pick.rules],
        )


@strawberry.type
class StageReport:
    name: str
    ms: float
    status: StageStatus
    in_count: int
    out_count: int
    detail: str

    @classmethod
    def from_domain(cls, report: domain.StageReport) -> StageReport:
        return cls(
            name=report.name,
            ms=round(report.ms, 3),
            status=StageStatus(report.status.value),
            in_count=report.in_count,
            out_count=report.out_count,
            detail=report.detail,
        )


@strawberry.type
class RecommendationList:
    items: list[Recommendation]
    degraded: bool
    stages: list[StageReport]
    request_id: strawberry.ID
    model_version: str


@strawberry.type
class ScoredItem:
    item: Item
    score: float

    @classmethod
    def from_domain(cls, view: domain.ScoredItemView) -> ScoredItem:
        return cls(item=Item.from_domain(view.item), score=view.score)


@strawberry.input(description="The moment and place of the request.")
class RecommendationContext:
    at: dt.datetime | None = strawberry.field(
        default=None, description="Moment of the request (default now); naive means UTC."
    )
    device: str | None = None
    session_id: str | None = None


@strawberry.input(description="Restrictions pushed down into the candidate searches.")
class ItemFilter:
    genres: list[str] | None = None
    exclude_ids: list[strawberry.ID] | None = None
    released_after: dt.date | None = None
