"""Survey templates (versioned), invitations (one token link each) and responses (one per invitation)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from survey_svc.models import Base
from shared.db.base import utcnow
from shared.ids import new_id


class SurveyTemplate(Base):
    """One version of a survey. Versions never change once written: answers keep the version they answered."""

    __tablename__ = "template"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "key", "version"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    key: Mapped[str] = mapped_column(sa.String(60))
    version: Mapped[int]
    name: Mapped[str] = mapped_column(sa.String(200))
    #: A validated :class:`survey_svc.surveys.schemas.SurveyDefinition` (intro, questions, thank-you text).
    definition: Mapped[dict[str, Any]]
    change_note: Mapped[str | None] = mapped_column(sa.String(500))
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Set when a newer version replaced it (or the survey was withdrawn); open invitations keep answering it.
    retired_at: Mapped[datetime | None]


class Invitation(Base):
    """An invitation to answer one survey about one visit or delivery, with an unguessable expiring link."""

    __tablename__ = "invitation"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "idempotency_key"),
        sa.Index("ix_invitation_remind", "remind_at", postgresql_where=sa.text("remind_at IS NOT NULL"),
                 sqlite_where=sa.text("remind_at IS NOT NULL")),
        sa.Index("ix_invitation_about", "tenant_id", "about_type", "about_id"),
        # One rating per survey and subject (a repair order is rated once): concurrent creations meet here.
        sa.Index("uq_invitation_live_subject", "tenant_id", "survey_key", "about_type", "about_id", unique=True,
                 postgresql_where=sa.text("status IN ('open', 'answered')"),
                 sqlite_where=sa.text("status IN ('open', 'answered')")),
        sa.Index("ix_invitation_store_time", "tenant_id", "store_id", "created_at"),
        sa.Index("ix_invitation_customer", "tenant_id", "customer_id"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID]
    store_id: Mapped[uuid.UUID]
    idempotency_key: Mapped[str] = mapped_column(sa.String(200))
    #: SHA-256 of the link's token (the token itself is derived from the id with the service's key, never stored).
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    template_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("template.id"))
    survey_key: Mapped[str] = mapped_column(sa.String(60))
    survey_version: Mapped[int]
    customer_id: Mapped[uuid.UUID]
    vehicle_id: Mapped[uuid.UUID | None]
    about_type: Mapped[str] = mapped_column(sa.String(10))
    about_id: Mapped[uuid.UUID]
    staff_id: Mapped[uuid.UUID | None]
    #: ``playbook`` (followup_svc), ``staff`` (invited by hand), ``phone`` (answered in a callback).
    source: Mapped[str] = mapped_column(sa.String(10), default="playbook")
    channels: Mapped[list[str]] = mapped_column(default=list)
    #: ``open`` → ``answered``; or ``expired`` / ``cancelled``.
    status: Mapped[str] = mapped_column(sa.String(10), default="open")
    #: Integrity findings at invitation time (e.g. the contact phone changed just before it).
    flags: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    #: When the one reminder is due; cleared once sent, answered, expired or cancelled.
    remind_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    opened_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None]


class Response(Base):
    """The one response to an invitation: raw answers as given (scales are mapped in scoring and reports, DOMAIN
    §17.1), the scores derived from them, and integrity flags."""

    __tablename__ = "response"
    __table_args__ = (
        sa.Index("ix_response_report", "tenant_id", "store_id", "answered_at"),
        sa.Index("ix_response_review", "tenant_id", "review_status",
                 postgresql_where=sa.text("review_status = 'pending'"),
                 sqlite_where=sa.text("review_status = 'pending'")),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID]
    store_id: Mapped[uuid.UUID]
    invitation_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("invitation.id"), unique=True)
    template_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("template.id"))
    survey_key: Mapped[str] = mapped_column(sa.String(60))
    survey_version: Mapped[int]
    customer_id: Mapped[uuid.UUID]
    vehicle_id: Mapped[uuid.UUID | None]
    about_type: Mapped[str] = mapped_column(sa.String(10))
    about_id: Mapped[uuid.UUID]
    staff_id: Mapped[uuid.UUID | None]
    channel: Mapped[str] = mapped_column(sa.String(6), comment="web | phone")
    recorded_by: Mapped[uuid.UUID | None] = mapped_column(comment="staff member who took a phone answer")
    answers: Mapped[dict[str, Any]]
    #: Per scored question, its 0–100 score.
    item_scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    satisfaction_index: Mapped[float | None]
    #: The first rating question's score (overall satisfaction): "very dissatisfied" counts are over it.
    overall_score: Mapped[float | None]
    nps_score: Mapped[int | None]
    nps_class: Mapped[str | None] = mapped_column(sa.String(10))
    low_score: Mapped[bool] = mapped_column(default=False)
    low_reasons: Mapped[list[str]] = mapped_column(default=list)
    comment: Mapped[str | None] = mapped_column(sa.Text())
    #: Integrity findings: ``shared_phone``, ``same_device``, ``contact_changed``, ``recorded_by_rated_staff``;
    #: non-empty → review pending.
    flags: Mapped[list[str]] = mapped_column(default=list)
    #: ``none``, ``pending`` (flagged), ``accepted`` or ``rejected`` (not counted in reports).
    review_status: Mapped[str] = mapped_column(sa.String(10), default="none")
    reviewed_by: Mapped[uuid.UUID | None]
    reviewed_at: Mapped[datetime | None]
    review_note: Mapped[str | None] = mapped_column(sa.String(500))
    #: Salted hash of the answering device (IP and browser), to spot one device answering for many customers.
    device_hash: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    answered_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def valid(self) -> bool:
        """Counted in reports: not rejected by a reviewer (flagged answers count once accepted)."""
        return self.review_status in ("none", "accepted")
