"""Complaint cases (DOMAIN §10, §4.11): one ``Complaint`` from intake to closure, and its log of entries."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from survey_svc.models import Base
from shared.db.base import JSONType, TenantScopedMixin, utcnow
from shared.ids import new_id


class Complaint(TenantScopedMixin, Base):
    __tablename__ = "complaint"
    __table_args__ = (
        sa.UniqueConstraint("store_id", "number"),
        sa.UniqueConstraint("tenant_id", "idempotency_key"),
        #: One complaint per survey response (a low score turned into a case).
        sa.UniqueConstraint("tenant_id", "response_id"),
        sa.Index("ix_complaint_store_status", "tenant_id", "store_id", "status", "opened_at"),
        sa.Index("ix_complaint_customer", "tenant_id", "customer_id"),
        sa.Index("ix_complaint_escalate", "escalate_at", postgresql_where=sa.text("escalate_at IS NOT NULL"),
                 sqlite_where=sa.text("escalate_at IS NOT NULL")),
    )
    number: Mapped[str] = mapped_column(sa.String(30), comment="C<yyyymm>-<seq>, unique per store")
    #: Hash of the caller and their Idempotency-Key: a retry after the key's lease still finds the first case.
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200))
    customer_id: Mapped[uuid.UUID | None]
    vehicle_id: Mapped[uuid.UUID | None]
    #: For cases whose complainant is not (yet) a customer record: name and phone as given (masked by role).
    complainant_name: Mapped[str | None] = mapped_column(sa.String(100))
    complainant_phone: Mapped[str | None] = mapped_column(sa.String(20))
    channel: Mapped[str] = mapped_column(sa.String(20))
    kind: Mapped[str] = mapped_column(sa.String(10), default="complaint", comment="grumble | complaint | major")
    category: Mapped[str] = mapped_column(sa.String(10), comment="sales | parts | service | major")
    problems: Mapped[list[str]] = mapped_column(default=list, comment="repair_quality, attitude, waiting, price…")
    subtype: Mapped[str | None] = mapped_column(sa.String(60))
    nature: Mapped[str] = mapped_column(sa.String(20), default="ordinary")
    severity: Mapped[str] = mapped_column(sa.String(10))
    safety: Mapped[bool] = mapped_column(default=False, comment="injury or safety risk involved")
    status: Mapped[str] = mapped_column(sa.String(12), default="ongoing")
    description: Mapped[str] = mapped_column(sa.Text())
    demands: Mapped[str | None] = mapped_column(sa.Text(), comment="what the customer asks for (抱怨要求)")
    #: Compensation the customer asks for (yuan), if any: above the goodwill limit the case is major.
    demanded_amount: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    oem_case_no: Mapped[str | None] = mapped_column(sa.String(40), comment="CAC case number")
    #: The survey response or visit the case came from / is about.
    response_id: Mapped[uuid.UUID | None]
    about_type: Mapped[str | None] = mapped_column(sa.String(10))
    about_id: Mapped[uuid.UUID | None]
    #: First-contact owner (首问负责制): whoever took it in, until an explicit, logged transfer.
    owner_id: Mapped[uuid.UUID | None]
    opened_by: Mapped[uuid.UUID | None]
    opened_at: Mapped[datetime]
    first_response_due: Mapped[datetime]
    resolution_due: Mapped[datetime]
    first_responded_at: Mapped[datetime | None]
    #: Promised reply time told to the customer (告知客户反馈时间), if any.
    promised_reply_at: Mapped[datetime | None]
    escalation_level: Mapped[int] = mapped_column(default=0)
    escalated_at: Mapped[datetime | None]
    #: When the SLA watch looks at this case next; None when closed, on hold or at the top of the chain.
    escalate_at: Mapped[datetime | None]
    #: A resolved case must be closed (feedback, sign-off) by then, or it escalates: the resolution deadline, at
    #: least ``CLOSING_WINDOW`` after the resolution (complaints/sla.py). None until resolved.
    closing_due: Mapped[datetime | None]
    #: Remedy packages offered (方案一/二/三, DOMAIN §10.5): ``{"label", "description", "goodwill_amount"}``.
    remedies: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    chosen_remedy: Mapped[str | None] = mapped_column(sa.String(500))
    #: Goodwill (yuan) requested, approved, or paid at resolution.
    goodwill_amount: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), default=0)
    #: ``none``, ``pending`` (above the limit: waits for a manager), ``approved``, ``rejected``.
    goodwill_status: Mapped[str] = mapped_column(sa.String(10), default="none")
    goodwill_requested_by: Mapped[uuid.UUID | None]
    goodwill_decided_by: Mapped[uuid.UUID | None]
    resolved_at: Mapped[datetime | None]
    investigation: Mapped[str | None] = mapped_column(sa.Text(), comment="调查结果")
    root_cause: Mapped[str | None] = mapped_column(sa.Text())
    action_taken: Mapped[str | None] = mapped_column(sa.Text(), comment="改进措施")
    staff_verdict: Mapped[str | None] = mapped_column(sa.Text(), comment="对被投诉者的意见")
    feedback_result: Mapped[str | None] = mapped_column(sa.String(20))
    feedback_speed: Mapped[str | None] = mapped_column(sa.String(20))
    signed_off_by: Mapped[uuid.UUID | None]
    closed_at: Mapped[datetime | None]
    #: Status before a hold, restored when the case resumes.
    held_from: Mapped[str | None] = mapped_column(sa.String(12))
    #: While on hold: since when, and when the SLA watch would have looked next (the hold pauses the clock).
    held_at: Mapped[datetime | None]
    held_watch_at: Mapped[datetime | None]
    #: Time spent on hold by the ended holds: every deadline is ``opened_at + SLA + held_seconds``, so raising
    #: the severity later keeps the paused time.
    held_seconds: Mapped[int] = mapped_column(default=0, server_default=sa.text("0"))
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ComplaintEntry(Base):
    """The case log (情况跟踪): notes, contacts, transfers, status changes, escalations, goodwill decisions."""

    __tablename__ = "complaint_entry"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    complaint_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("complaint.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(sa.String(12))
    author_id: Mapped[uuid.UUID | None]
    body: Mapped[str | None] = mapped_column(sa.Text())
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CaseCounter(Base):
    """Per store and month, the last case number given (numbers are gap-free and readable on the phone)."""

    __tablename__ = "case_counter"
    store_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(sa.String(6), primary_key=True)
    value: Mapped[int] = mapped_column(default=0)
