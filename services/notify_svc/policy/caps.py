"""Frequency caps and the group-wide contact budget, counted per person (``recipient_key``) across all stores.

A send counts from the moment it is handed to a provider (``sent_at``), like Aliyun's per-number flow control,
which counts at submission whatever the receipt says. The dispatcher holds a transaction-scoped advisory lock
per recipient while it decides, so two workers never both take the last unit of one person's budget.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.models import Message
from notify_svc.policy.config import PolicyConfig
from shared.calendar import StoreCalendar

WEEK = timedelta(days=7)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Send:
    at: datetime
    purpose: str
    template_key: str


@dataclass
class SendHistory:
    """Recent sends of the recipients in one batch (7 days), plus the sends decided in the batch itself."""

    by_key: dict[str, list[Send]] = field(default_factory=lambda: defaultdict(list))

    def add(self, key: str, send: Send) -> None:
        self.by_key[key].append(send)

    def check(self, key: str, now: datetime, policy: PolicyConfig, quiet: StoreCalendar, purpose: str,
              template_key: str) -> tuple[str, datetime] | None:
        """``(reason, retry at)`` when a cap or budget says "not now", else None."""
        sends = self.by_key.get(key, ())
        week_ago, day_ago = now - WEEK, now - DAY
        same_purpose = sorted(s.at for s in sends if s.purpose == purpose and s.at > week_ago)
        budget = policy.weekly_budget(purpose)
        if budget <= 0:  # a budget of 0 means none of this purpose at all for now: re-checked in a week
            return "contact_budget", now + WEEK
        if len(same_purpose) >= budget:
            return "contact_budget", same_purpose[len(same_purpose) - budget] + WEEK
        same_template = sorted(s.at for s in sends if s.template_key == template_key and s.at > day_ago)
        if len(same_template) >= policy.template_daily_cap:
            return "template_cap", same_template[len(same_template) - policy.template_daily_cap] + DAY
        local_day = quiet.local(now).date()
        today = [s for s in sends if quiet.local(s.at).date() == local_day]
        if len(today) >= policy.daily_cap:
            return "daily_cap", quiet.next_message_time(quiet.at_local(local_day + DAY, quiet.quiet_end))
        return None


async def load_history(session: AsyncSession, tenant_keys: Iterable[tuple[uuid.UUID, str]],
                       now: datetime) -> SendHistory:
    history = SendHistory()
    pairs = list(set(tenant_keys))
    if not pairs:
        return history
    keys = [k for _, k in pairs]
    columns = (Message.recipient_key, Message.sent_at, Message.purpose, Message.template_key)
    if session.bind.dialect.name == "postgresql":
        # Joined to the (tenant, key) pairs: one index probe per person on ix_message_recipient. With the keys as an
        # IN list, Postgres may read every send of the group's week and filter by key (its estimate for a list of
        # hashes is poor), which grows with the volume sent.
        wanted = (sa.func.unnest(sa.bindparam("tenants", [t for t, _ in pairs], type_=ARRAY(sa.Uuid())),
                                 sa.bindparam("keys", keys, type_=ARRAY(sa.String())))
                  .table_valued("tenant_id", "key").render_derived(name="wanted"))
        rows = await session.execute(sa.select(*columns).select_from(wanted).join(
            Message, sa.and_(Message.tenant_id == wanted.c.tenant_id, Message.recipient_key == wanted.c.key,
                             Message.sent_at > now - WEEK)))
    else:
        tenants = list({t for t, _ in pairs})
        rows = await session.execute(sa.select(*columns).where(
            Message.tenant_id.in_(tenants), Message.recipient_key.in_(keys), Message.sent_at > now - WEEK))
    for key, at, purpose, template_key in rows:
        history.add(key, Send(at, purpose, template_key))
    return history


async def lock_recipients(session: AsyncSession, keys: Iterable[str]) -> None:
    """Transaction-scoped advisory locks on the recipients being decided (sorted: no deadlocks)."""
    ordered = sorted(set(keys))
    if not ordered or session.bind.dialect.name != "postgresql":
        return
    await session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(k, 7)) "
                                  "FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k"), {"keys": ordered})
