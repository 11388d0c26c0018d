"""What users like this user engaged with: ANN on the user's CF vector."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from app.candidates.ann import ProfileSearch
from app.candidates.base import SourceConfig
from app.domain import UserState


class CfAnnConfig(SourceConfig):
    limit: int = Field(500, ge=0, le=5000, description="Most items from the CF search.")


class CfAnn(ProfileSearch):
    name = "cf_ann"
    missing = "no CF vector for this user"

    def vector(self, user: UserState) -> np.ndarray | None:
        return user.cf_vector
