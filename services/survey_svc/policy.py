"""Per dealer group rules: when an answer is a low score, how long invitations live, complaint SLAs by severity
(the seeds give none, DOMAIN §6.5 / §17.2: these are the defaults), the goodwill limit (R-PERM-04: ¥10,000) and the
integrity checks. Stored as one validated document per group; unset keys take the defaults."""

from __future__ import annotations

import uuid
from decimal import Decimal

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from survey_svc.models import SurveyPolicy
from survey_svc.surveys.answers import Scored

#: Words that make a free-text comment negative (a low score even when the ratings are fine).
NEGATIVE_WORDS = ["不满意", "很差", "太差", "差劲", "失望", "投诉", "态度差", "态度不好", "太慢", "不专业", "欺骗",
                  "乱收费", "坑", "退车", "曝光", "再也不来"]


class Sla(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_response_hours: float = Field(strict=True, gt=0, le=24 * 30)
    resolution_hours: float = Field(strict=True, gt=0, le=24 * 180)

    @model_validator(mode="after")
    def _ordered(self) -> Sla:
        if self.first_response_hours > self.resolution_hours:
            raise ValueError("first_response_hours: cannot be longer than resolution_hours")
        return self


def _sla(first: float, resolution: float) -> Sla:
    return Sla(first_response_hours=first, resolution_hours=resolution)


class ComplaintSlas(BaseModel):
    """Per severity; a severity left out keeps its default (a partial change never loosens the others)."""

    model_config = ConfigDict(extra="forbid")
    low: Sla = Field(default_factory=lambda: _sla(24, 24 * 7))
    medium: Sla = Field(default_factory=lambda: _sla(8, 24 * 5))
    high: Sla = Field(default_factory=lambda: _sla(4, 24 * 3))
    critical: Sla = Field(default_factory=lambda: _sla(1, 24))


SEVERITIES = tuple(ComplaintSlas.model_fields)


class PolicyRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: A response is low when its satisfaction index is at or below this…
    low_index: float = Field(strict=True, default=60, ge=0, le=100)
    #: …or any scored item is at or below this (DOMAIN §9.4: ≤ 50 on any item, or 否 on Q6)…
    low_item: float = Field(strict=True, default=50, ge=0, le=100)
    #: …or the NPS answer is at or below this (detractors: 0–6)…
    low_nps: int = Field(strict=True, default=6, ge=0, le=10)
    #: …or a comment contains one of these.
    negative_words: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)]] = \
        Field(default_factory=lambda: list(NEGATIVE_WORDS), max_length=200)

    invitation_days: int = Field(strict=True, default=14, ge=1, le=90, description="An answer link lives this long.")
    reminder_days: int = Field(strict=True, default=3, ge=1, le=30,
                               description="One reminder this long after an unanswered "
                               "invitation (never after it expires).")

    complaint_sla: ComplaintSlas = Field(default_factory=ComplaintSlas,
                                         description="Per severity: first response and resolution time from intake.")
    #: Goodwill above this (yuan) needs a manager's approval and makes the case major (R-PERM-03/04).
    goodwill_limit: Decimal = Field(default=Decimal(10_000), ge=0, le=10_000_000)

    #: One phone number answering for more than this many customers in ``integrity_days`` is flagged…
    shared_phone_max: int = Field(strict=True, default=2, ge=1, le=100)
    #: …and one device answering for more than this many customers.
    same_device_max: int = Field(strict=True, default=2, ge=1, le=100)
    integrity_days: int = Field(strict=True, default=30, ge=1, le=365)
    #: A contact phone changed less than this many hours before the invitation is flagged.
    contact_change_hours: int = Field(strict=True, default=72, ge=0, le=24 * 30)

    def sla(self, severity: str) -> Sla:
        return getattr(self.complaint_sla, severity) if severity in SEVERITIES else self.complaint_sla.low

    def low_reasons(self, scored: Scored) -> list[str]:
        """Why a response is a low score (empty: it is not)."""
        reasons = []
        if scored.satisfaction_index is not None and scored.satisfaction_index <= self.low_index:
            reasons.append(f"index: {scored.satisfaction_index:g}")
        reasons += [f"{qid}: {s:g}" for qid, s in scored.item_scores.items() if s <= self.low_item]
        if scored.nps_score is not None and scored.nps_score <= self.low_nps:
            reasons.append(f"nps: {scored.nps_score}")
        if scored.comment and any(word in scored.comment for word in self.negative_words):
            reasons.append("comment")
        return reasons


class PolicyWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: PolicyRules


class PolicyRead(BaseModel):
    rules: PolicyRules
    version: int


async def rules_for(session: AsyncSession, tenant_id: uuid.UUID) -> PolicyRules:
    row = await session.get(SurveyPolicy, tenant_id)
    if row is None:
        return PolicyRules()
    rules = dict(row.rules)
    if isinstance(rules.get("complaint_sla"), dict):  # written before the severities were fixed: theirs only
        rules["complaint_sla"] = {k: v for k, v in rules["complaint_sla"].items() if k in SEVERITIES}
    return PolicyRules.model_validate(rules)
