"""Per dealer group settings of surveys and complaints: thresholds, SLAs, goodwill limit, integrity checks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Mapped, mapped_column

from survey_svc.models import Base
from shared.db.base import utcnow


class SurveyPolicy(Base):
    """One row per tenant; ``rules`` is a validated :class:`survey_svc.policy.PolicyRules` document (defaults
    apply to keys not set)."""

    __tablename__ = "policy"
    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(default=1)
    updated_by: Mapped[uuid.UUID | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
