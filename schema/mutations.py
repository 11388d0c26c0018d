"""The Mutation type: events in, items in, model versions switched. Each needs an X-API-Key."""

from __future__ import annotations

import datetime as dt
import enum

import strawberry

from app.access import authorize
from app.realtime.records import EventDraft, ItemDraft
from schema.admission import charge
from schema.context import Context
from schema.errors import graphql_error
from schema.types import Item


@strawberry.enum(description="What the user did with the item.")
class EventType(enum.Enum):
    VIEW = "view"
    CLICK = "click"
    RATING = "rating"
    PURCHASE = "purchase"
    DISMISS = "dismiss"


@strawberry.input(description="One thing a user did with an item.")
class EventInput:
    user_id: strawberry.ID
    item_id: strawberry.ID = strawberry.field(description="An item of the catalog (or upserted).")
    event: EventType
    value: float | None = strawberry.field(
        default=None, description="The rating, on the catalog's scale; ignored for other events."
    )
    at: dt.datetime | None = strawberry.field(
        default=None, description="When it happened (default: when received); naive means UTC."
    )
    device: str | None = None
    session_id: str | None = None


@strawberry.type(description="An event that was not stored, and why.")
class RejectedEvent:
    index: int = strawberry.field(description="Position of the event in the call's list.")
    code: str
    reason: str


@strawberry.type(description="What became of a recordEvents call.")
class RecordEventsResult:
    accepted: int = strawberry.field(
        description="Events stored durably and already applied to the user's recommendations."
    )
    rejected: list[RejectedEvent]


@strawberry.input(description="An item to add, or new text and metadata for an existing one.")
class ItemInput:
    item_id: strawberry.ID
    title: str
    description: str | None = None
    genres: list[str] | None = None
    series: str | None = None
    released: dt.date | None = None


@strawberry.type(description="What became of an upsertItems call.")
class UpsertItemsResult:
    inserted: list[strawberry.ID]
    updated: list[strawberry.ID] = strawberry.field(
        description="Existing items whose text or metadata changed (unchanged ones are neither)."
    )
    items: list[Item] = strawberry.field(description="The call's items as they are now served.")


@strawberry.type(description="The serving model version after a reload.")
class ReloadModelsResult:
    model_version: str
    previous_version: str
    switched: bool = strawberry.field(description="False when CURRENT was already serving.")
    replayed_events: int = strawberry.field(
        description="Live events replayed into the real-time state for the new version."
    )
    ms: float


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Record what users did. Answers once the accepted events are durable; the "
        "next request already reflects them. Needs the API key (X-API-Key)."
    )
    async def record_events(
        self, info: strawberry.Info[Context, None], events: list[EventInput]
    ) -> RecordEventsResult:
        engine = info.context.engine
        try:
            authorize(engine.settings, info.context.api_key, admin=False)
        except Exception as exc:
            raise graphql_error(exc) from None
        await charge(info.context, "events", len(events))  # nothing is written when refused
        try:
            drafts = [
                EventDraft(
                    user_id=str(e.user_id),
                    item_id=str(e.item_id),
                    event=e.event.value,
                    value=e.value,
                    at=e.at,
                    device=e.device,
                    session_id=e.session_id,
                )
                for e in events
            ]
            result = await engine.record_events(drafts)
        except Exception as exc:
            raise graphql_error(exc) from None
        return RecordEventsResult(
            accepted=result.accepted,
            rejected=[
                RejectedEvent(index=r.index, code=r.code, reason=r.reason) for r in result.rejected
            ],
        )

    @strawberry.mutation(
        description="Add items or change their text and metadata: embedded at once, served from "
        "the next request (similarItems, fresh releases, every source). Needs the admin key."
    )
    async def upsert_items(
        self, info: strawberry.Info[Context, None], items: list[ItemInput]
    ) -> UpsertItemsResult:
        engine = info.context.engine
        try:
            authorize(engine.settings, info.context.api_key, admin=True)
            drafts = [
                ItemDraft(
                    item_id=str(i.item_id),
                    title=i.title,
                    description=i.description,
                    genres=tuple(i.genres or ()),
                    series=i.series,
                    released=i.released,
                )
                for i in items
            ]
            result = await engine.upsert_items(drafts)
        except Exception as exc:
            raise graphql_error(exc) from None
        views = [engine.item(i) for i in dict.fromkeys(d.item_id for d in drafts)]
        return UpsertItemsResult(
            inserted=[strawberry.ID(i) for i in result.inserted],
            updated=[strawberry.ID(i) for i in result.updated],
            items=[Item.from_domain(v) for v in views if v is not None],
        )

    @strawberry.mutation(
        description="Switch to the newest built version (CURRENT) without a restart; a version "
        "that fails to load leaves the old one serving (RELOAD_FAILED). Needs the admin key."
    )
    async def reload_models(self, info: strawberry.Info[Context, None]) -> ReloadModelsResult:
        engine = info.context.engine
        try:
            authorize(engine.settings, info.context.api_key, admin=True)
            result = await engine.reload()
        except Exception as exc:
            raise graphql_error(exc) from None
        return ReloadModelsResult(
            model_version=result.model_version,
            previous_version=result.previous_version,
            switched=result.switched,
            replayed_events=result.replayed_events,
            ms=result.ms,
        )
