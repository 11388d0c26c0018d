"""What the real-time mutations take and give back, as domain objects.

`EventDraft` and `ItemDraft` are what a client sent, not yet checked; `LiveEvent` is an event
that passed intake and, once it has a sequence number, is durable in the live events table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class EventDraft:
    user_id: str
    item_id: str
    event: str  # one of app.events.EVENT_TYPES
    value: float | None = None
    at: datetime | None = None  # None: when the server receives it
    device: str | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class LiveEvent:
    """An accepted event: validated, weighed, stamped; `seq` orders the live log (-1: unwritten)."""

    user_id: str
    item_id: str
    event: str
    value: float | None
    weight: float  # endorsement weight (app.events), fixed at intake so replays agree
    at_ms: int  # when it happened, unix milliseconds
    received_ms: int  # when the server accepted it
    device: str | None = None
    session_id: str | None = None
    seq: int = -1


@dataclass(frozen=True)
class Rejection:
    index: int  # position in the call's list
    code: str
    reason: str


@dataclass
class RecordedEvents:
    accepted: int
    rejected: list[Rejection] = field(default_factory=list)
    last_seq: int | None = None  # sequence number of the call's last durable event


@dataclass(frozen=True)
class ItemDraft:
    item_id: str
    title: str
    description: str | None = None
    genres: tuple[str, ...] = ()
    series: str | None = None
    released: date | None = None


@dataclass
class UpsertedItems:
    inserted: list[str]
    updated: list[str]


@dataclass(frozen=True)
class Reloaded:
    model_version: str
    previous_version: str
    switched: bool
    replayed_events: int
    ms: float
