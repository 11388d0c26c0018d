"""Items whose text resembles what the user liked: ANN on the user's content profile."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from app.candidates.ann import ProfileSearch
from app.candidates.base import SourceConfig
from app.domain import UserState


class ContentAnnConfig(SourceConfig):
    limit: int = Field(300, ge=0, le=5000, description="Most items from the content search.")


class ContentAnn(ProfileSearch):
    name = "content_ann"
    missing = "no content profile for this user"

    def vector(self, user: UserState) -> np.ndarray | None:
        return user.content_vector
