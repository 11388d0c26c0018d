"""What the user's whole history predicts: EASE item-item regression weights (from the build)
summed over everything the user endorsed. Covers the items with the widest audiences; the tail
is left to the ANN and exploration sources."""

from __future__ import annotations

from pydantic import Field

from app.candidates.related import RelatedConfig, RelatedToHistory


class EaseConfig(RelatedConfig):
    limit: int = Field(800, ge=0, le=5000, description="Most items offered.")


class Ease(RelatedToHistory):
    name = "ease"
    table = "ease"
