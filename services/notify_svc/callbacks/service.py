"""What provider pushes do: receipts end messages, replies may opt out, WeChat events grant authorisations."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notify_svc.channels.base import InboundReply, Receipt
from notify_svc.messages.optout import is_opt_out, revoke_by_openid, revoke_by_phone
from notify_svc.messages.receipts import apply_receipt
from notify_svc.models import WechatQuota
from shared.db.base import dialect_insert, utcnow
from shared.messaging.outbox import Outbox
from shared.pii import mask_number

log = structlog.get_logger("callbacks")


async def record_receipts(sessionmaker: async_sessionmaker[AsyncSession], outbox: Outbox,
                          receipts: Sequence[Receipt]) -> int:
    """One transaction per receipt: a bad one (unknown id) never blocks the rest of the push."""
    applied = 0
    for receipt in receipts:
        async with sessionmaker() as session, session.begin():
            applied += await apply_receipt(session, outbox, None, receipt, utcnow())
    return applied


async def record_replies(sessionmaker: async_sessionmaker[AsyncSession], outbox: Outbox,
                         replies: Sequence[InboundReply]) -> int:
    revoked = 0
    for reply in replies:
        if not is_opt_out(reply.content):
            log.info("sms_reply_ignored", provider=reply.provider, phone=mask_number(reply.phone))
            continue
        async with sessionmaker() as session, session.begin():
            revoked += await revoke_by_phone(session, outbox, reply.phone, reply.content, reply.sign_name, utcnow())
        log.info("sms_opt_out", provider=reply.provider, phone=mask_number(reply.phone))
    return revoked


async def grant_subscriptions(sessionmaker: async_sessionmaker[AsyncSession], inbox: Any, openid: str,
                              template_ids: Sequence[str], pushed_at: datetime | None) -> None:
    """Each accepted one-time subscription allows one message of that template (WeChat 订阅通知). WeChat pushes an
    event again when it got no answer in 5 s: the (user, push time, template) is recorded in the inbox table, so a
    repeated push grants nothing more."""
    if not template_ids:
        return
    async with sessionmaker() as session, session.begin():
        insert = dialect_insert(session)
        for template_id in template_ids:
            push_id = uuid.uuid5(uuid.NAMESPACE_URL, f"wechat-subscription:{openid}:{pushed_at}:{template_id}")
            first = await session.execute(insert(inbox).values(event_id=push_id, consumer="wechat.subscriptions",
                                                               event_type="subscribe_msg_popup_event")
                                          .on_conflict_do_nothing().returning(inbox.c.event_id))
            if first.first() is None:
                continue
            stmt = insert(WechatQuota).values(openid=openid, template_id=template_id, remaining=1,
                                              updated_at=utcnow())
            await session.execute(stmt.on_conflict_do_update(
                index_elements=["openid", "template_id"],
                set_={"remaining": WechatQuota.__table__.c.remaining + 1, "updated_at": utcnow()}))


async def unfollowed(sessionmaker: async_sessionmaker[AsyncSession], outbox: Outbox, openid: str) -> int:
    async with sessionmaker() as session, session.begin():
        return await revoke_by_openid(session, outbox, openid, utcnow())
