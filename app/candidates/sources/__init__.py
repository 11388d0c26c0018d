"""Candidate sources, registered by name. A new source must be added to SOURCES."""

from __future__ import annotations

from app.candidates.sources.cf_ann import CfAnn
from app.candidates.sources.content_ann import ContentAnn
from app.candidates.sources.ease import Ease
from app.candidates.sources.exploration import Exploration
from app.candidates.sources.fresh import Fresh
from app.candidates.sources.item_knn import ItemKnn
from app.candidates.sources.item_to_item import ItemToItem
from app.candidates.sources.popular import Popular

SOURCES = {
    source.name: source
    for source in (CfAnn, ContentAnn, ItemToItem, ItemKnn, Ease, Fresh, Popular, Exploration)
}

__all__ = [
    "SOURCES",
    "CfAnn",
    "ContentAnn",
    "Ease",
    "Exploration",
    "Fresh",
    "ItemKnn",
    "ItemToItem",
    "Popular",
]
