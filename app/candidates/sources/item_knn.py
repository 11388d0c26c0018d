"""People who liked what you liked also liked: item neighbours (shrunk cosine similarity of
audiences, from the build) of everything the user endorsed, weighted by how much."""

from __future__ import annotations

from pydantic import Field

from app.candidates.related import RelatedConfig, RelatedToHistory


class ItemKnnConfig(RelatedConfig):
    limit: int = Field(300, ge=0, le=5000, description="Most items offered.")


class ItemKnn(RelatedToHistory):
    name = "item_knn"
    table = "item_knn"
