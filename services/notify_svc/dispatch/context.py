"""Everything the dispatcher reads to decide one batch, loaded in a handful of queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.models import CustomerView, StaffView, StoreView, Template, WechatQuota
from notify_svc.policy.caps import SendHistory
from notify_svc.policy.config import PolicyBook, load_policies
from notify_svc.recipients import Recipient


class TemplateBook:
    """Templates of the batch's keys: a store's own version wins over its group's."""

    def __init__(self, rows: Sequence[Template]) -> None:
        self._rows = {(t.tenant_id, t.store_id, t.key, t.channel): t for t in rows}

    def find(self, tenant_id: uuid.UUID, store_id: uuid.UUID, key: str, channel: str) -> Template | None:
        return self._rows.get((tenant_id, store_id, key, channel)) or self._rows.get((tenant_id, None, key, channel))

    def purpose(self, message: Any) -> str:
        """The message's purpose as its templates make it: a greeting or a campaign is marketing whoever asks
        for it and whatever they say (consent, the marketing window and its budget follow from this)."""
        if message.purpose == "marketing":
            return "marketing"
        for channel in message.channels:
            channel = "sms" if channel == "console" else channel
            for store in (message.store_id, None):  # a store's copy cannot make the group's greeting service
                found = self._rows.get((message.tenant_id, store, message.template_key, channel))
                if found is not None and found.purpose == "marketing":
                    return "marketing"
        return message.purpose


@dataclass
class BatchContext:
    now: datetime
    recipients: dict[tuple[str, uuid.UUID], Recipient]
    merged_into: dict[uuid.UUID, uuid.UUID]
    stores: dict[uuid.UUID, StoreView]
    policies: PolicyBook
    templates: TemplateBook
    quotas: dict[tuple[str, str], int]
    history: SendHistory

    def recipient(self, message: Any) -> Recipient | None:
        if message.staff_id is not None:
            return self.recipients.get(("staff", message.staff_id))
        customer_id = self.merged_into.get(message.customer_id, message.customer_id)
        return self.recipients.get(("customer", customer_id))

    def timezone(self, store_id: uuid.UUID) -> str:
        store = self.stores.get(store_id)
        return store.timezone if store else "Asia/Shanghai"


async def load_context(session: AsyncSession, messages: Sequence[Any], now: datetime, secret: bytes) -> BatchContext:
    customer_ids = {m.customer_id for m in messages if m.customer_id is not None and m.staff_id is None}
    recipients: dict[tuple[str, uuid.UUID], Recipient] = {}
    merged_into: dict[uuid.UUID, uuid.UUID] = {}
    if customer_ids:
        customers = list((await session.scalars(sa.select(CustomerView).where(CustomerView.id.in_(customer_ids)))))
        targets = {c.merged_into for c in customers if c.status == "merged" and c.merged_into is not None}
        merged_into = {c.id: c.merged_into for c in customers if c.status == "merged" and c.merged_into is not None}
        if targets - customer_ids:
            customers += list(await session.scalars(sa.select(CustomerView)
                                                    .where(CustomerView.id.in_(targets - customer_ids))))
        recipients.update({("customer", c.id): Recipient.of_customer(c, secret) for c in customers})
    staff_ids = {m.staff_id for m in messages if m.staff_id is not None}
    if staff_ids:
        for member in await session.scalars(sa.select(StaffView).where(StaffView.id.in_(staff_ids),
                                                                       StaffView.active.is_(True))):
            recipients[("staff", member.id)] = Recipient.of_staff(member, secret)
    store_ids = {m.store_id for m in messages}
    stores = {s.id: s for s in await session.scalars(sa.select(StoreView).where(StoreView.id.in_(store_ids)))}
    tenants = {m.tenant_id for m in messages}
    keys = {m.template_key for m in messages}
    templates = TemplateBook((await session.scalars(
        sa.select(Template).where(Template.tenant_id.in_(tenants), Template.key.in_(keys),
                                  sa.or_(Template.store_id.is_(None), Template.store_id.in_(store_ids))))).all())
    return BatchContext(now, recipients, merged_into, stores, await load_policies(session, tenants), templates,
                        {}, SendHistory())


async def load_quotas(session: AsyncSession, ctx: BatchContext) -> None:
    """WeChat one-time authorisations left for the batch's recipients: read after their locks are held, so a
    worker that waited on another's lock sees what that one used up."""
    openids = {r.openid for r in ctx.recipients.values() if r.openid}
    if openids:
        rows = await session.execute(sa.select(WechatQuota.openid, WechatQuota.template_id, WechatQuota.remaining)
                                     .where(WechatQuota.openid.in_(openids)))
        ctx.quotas = {(o, t): n for o, t, n in rows}
