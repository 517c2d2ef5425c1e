"""Opt-outs the recipient sends back ("TD", "T", "R", "N", "退订" ...): marketing consent is revoked at once here
and the change is published, so customer_svc records it on the customer and every service sees it.

Which dealer group a reply is for follows the SMS signature it answered (each group signs its own messages);
a reply whose signature no group uses revokes the number's marketing consent in every group that has it —
an opt-out honoured too widely costs a promotion, one honoured too narrowly breaks the law (MIIT Order 31).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.consent import set_consent
from notify_svc.models import CustomerView, Template
from shared.events.catalog.notify import ConsentRevoked
from shared.messaging.outbox import Outbox

#: Replies that mean "stop" (carrier conventions and what our own opt-out texts ask for), compared after
#: removing spaces and punctuation, case-insensitively.
OPT_OUT_WORDS = frozenset({"TD", "T", "R", "N", "QX", "STOP", "UNSUBSCRIBE", "退订", "退", "取消", "拒收", "退订TD",
                           "TD退订"})
_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)


def is_opt_out(content: str) -> bool:
    """Full-width letters (ＴＤ, as a Chinese keyboard in full-width mode types them) count as ASCII."""
    text = _NOISE.sub("", unicodedata.normalize("NFKC", content or "")).upper()
    return text in OPT_OUT_WORDS or text.startswith("退订")


async def revoke_by_phone(session: AsyncSession, outbox: Outbox, phone: str, content: str, sign_name: str | None,
                          now: datetime) -> int:
    stmt = sa.select(CustomerView).where(CustomerView.phone == phone).with_for_update()
    if sign_name:
        tenants = sa.select(Template.tenant_id).where(Template.sign_name == sign_name).distinct()
        if (await session.scalar(sa.select(sa.exists(tenants)))):
            stmt = stmt.where(CustomerView.tenant_id.in_(tenants))
    return await _revoke(session, outbox, list(await session.scalars(stmt)), "sms", ("marketing",), "sms_reply",
                         content, now)


async def revoke_by_openid(session: AsyncSession, outbox: Outbox, openid: str, now: datetime) -> int:
    """An unfollow: the account can no longer message them, for any purpose."""
    rows = list(await session.scalars(sa.select(CustomerView).where(CustomerView.wechat_openid == openid)
                                      .with_for_update()))
    return await _revoke(session, outbox, rows, "wechat", ("marketing", "service"), "wechat_unfollow", None, now)


async def _revoke(session: AsyncSession, outbox: Outbox, customers: list[CustomerView], channel: str,
                  purposes: tuple[str, ...], source: str, content: str | None, now: datetime) -> int:
    events = []
    for customer in customers:
        for purpose in purposes:
            if not set_consent(customer, f"{channel}:{purpose}", False, now):
                continue  # already withdrawn: a repeated "TD" changes nothing
            revoked = ConsentRevoked(customer_id=customer.id, channel=channel,  # type: ignore[arg-type]
                                     purpose=purpose, source=source, content=content, recorded_at=now)
            events.append((revoked, customer.tenant_id, customer.store_id))
    await outbox.append_many(session, events)
    return len(events)
