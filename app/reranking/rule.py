"""What every re-ranking rule is: a name, a phase, a typed config, and `apply(slate, context)`."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from app.items import ItemCatalog
from app.reranking.slate import RerankContext, Slate


class Phase(enum.IntEnum):
    """When a rule may run. Filters run anywhere; the others must come in this order.

    A rule that changes scores re-sorts by score, which would undo a selection or placement made
    before it; a selection (diversity) would in turn undo placed exploration slots.
    """

    FILTER = 0  # drops entries, keeps the order of the rest
    SCORE = 1  # changes scores and re-sorts by them
    SELECT = 2  # chooses the order of the shown slots
    PLACE = 3  # puts chosen entries into given slots


class RuleConfig(BaseModel):
    """Settings shared by every rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Run this rule when it is listed in `rules`.")


ConfigT = TypeVar("ConfigT", bound=RuleConfig)


class Rule(ABC, Generic[ConfigT]):
    """A re-ranking rule. Subclasses set `name`, `phase` and `config_type` and implement `apply`.

    `apply` returns a slate made only of entries of the one it was given (never new ones), may
    record `RuleEffect`s for entries it changed or decided on, and must accept an empty slate.
    """

    name: ClassVar[str]
    phase: ClassVar[Phase]
    config_type: ClassVar[type[RuleConfig]]

    def __init__(self, config: ConfigT, items: ItemCatalog) -> None:
        self.config = config
        self.items = items

    @abstractmethod
    def apply(self, slate: Slate, context: RerankContext) -> Slate: ...
