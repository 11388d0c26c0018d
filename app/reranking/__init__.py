"""Stage 3, re-ranking: business rules, diversity and exploration over the ranked list."""

from app.reranking.config import RerankConfig
from app.reranking.reranker import Reranker

__all__ = ["RerankConfig", "Reranker"]
