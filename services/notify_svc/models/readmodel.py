"""notify_svc's own copies of customer_svc data (fed by its events; never read across schemas).

Phones, openids and WeCom userids are resolved here at send time, so commands on the bus carry ids, not numbers.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from notify_svc.models import Base
from shared.db.base import utcnow
from shared.db.readmodels import StaffViewColumns, StoreViewColumns


class StoreView(StoreViewColumns, Base):
    pass


class StaffView(StaffViewColumns, Base):
    phone: Mapped[str | None] = mapped_column(sa.String(20))
    #: Also the staff member's WeCom userid: the dealer groups' WeCom directories use the employee number as the
    #: userid, so work notices by WeCom go to it.
    employee_no: Mapped[str | None] = mapped_column(sa.String(40))


class CustomerView(Base):
    __tablename__ = "customer"
    __table_args__ = (sa.Index("ix_customer_phone", "phone"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    store_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    phone: Mapped[str | None] = mapped_column(sa.String(20), comment="E.164")
    wechat_openid: Mapped[str | None] = mapped_column(sa.String(64))
    birthday: Mapped[date | None] = mapped_column(comment="Bulk greetings select by it (DOMAIN §12.6)")
    #: ``"sms:marketing" -> granted``; a missing entry means no consent for marketing (service is implied by
    #: the purchase contract, PIPL Art. 13) unless withdrawn.
    consents: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: When each consent key last changed at its source (ISO time): events arrive out of order (concurrent
    #: deliveries, retries), and an older one must never re-grant what a newer one withdrew.
    consent_at: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: The time of the customer snapshot the other fields come from (older snapshots are ignored).
    snapshot_at: Mapped[datetime | None]
    do_not_call: Mapped[bool] = mapped_column(default=False)
    #: ``active``, ``lost`` or ``merged`` (messages to a merged record go to ``merged_into``).
    status: Mapped[str] = mapped_column(sa.String(10), default="active")
    merged_into: Mapped[uuid.UUID | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiKeyView(Base):
    """An integration key as notify_svc last heard of it (``customer.api_key.changed.v1``): a token stays valid for
    its 15 minutes after the key was revoked or narrowed, so the webhook API and fan-out check the key's latest
    state here rather than trusting the token's claims. No row: the key has not changed since it was created, and
    its token is believed (the first endpoint it saves writes the token's claims here, ``changed_at`` null)."""

    __tablename__ = "api_key"
    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    scopes: Mapped[list[str]]
    store_ids: Mapped[list[str]] = mapped_column(comment="The key's stores (a key always lists its stores)")
    revoked: Mapped[bool] = mapped_column(default=False)
    #: The time of the event the state comes from (an older event is ignored); null when it comes from the key's
    #: own token, which any event supersedes.
    changed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
