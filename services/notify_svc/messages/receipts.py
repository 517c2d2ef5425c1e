"""Delivery receipts (pushed by providers, or found by a status query) move a message to its final status.

Receipts may come twice, late, or before the send's own answer is recorded (Aliyun says its pushes are not
idempotent): only a message still ``sending`` or ``sent`` moves, so repeats change nothing. A failed receipt
falls back to the next channel when the message has one left.

A receipt of a batch send (Aliyun ``SendBatchSms``) echoes the batch's ids, shared by up to 100 messages: the
number it names picks the message, compared in its masked form (the dispatcher never puts two numbers that mask
alike in one batch, so the masked number is unique within a batch and no clear number is stored beside messages).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.channels.base import Receipt
from notify_svc.messages.events import event_for
from notify_svc.models import Message, MessageEvent
from shared.ids import new_id
from shared.messaging.outbox import Outbox
from shared.pii import mask_number

M = Message.__table__


async def find_message(session: AsyncSession, receipt: Receipt, message_id: uuid.UUID | None = None) -> Any | None:
    message_id = message_id or receipt.message_id
    stmt = sa.select(M).with_for_update()
    if message_id is not None:
        stmt = stmt.where(M.c.id == message_id)
    elif receipt.provider_message_id or receipt.batch_out_id:
        # A batch's messages hold its OutId until its answer (the BizId) is recorded, so either may match.
        ids = [i for i in (receipt.provider_message_id, receipt.batch_out_id) if i]
        stmt = stmt.where(M.c.provider == receipt.provider, M.c.provider_message_id.in_(ids))
        if receipt.to:
            stmt = stmt.where(M.c.recipient_masked == mask_number(receipt.to))
    else:
        return None
    return (await session.execute(stmt.limit(1))).first()


async def apply_receipt(session: AsyncSession, outbox: Outbox, message_id: uuid.UUID | None, receipt: Receipt,
                        now: datetime) -> bool:
    """Apply one receipt; False when it matched no message or changed nothing (a repeat)."""
    row = await find_message(session, receipt, message_id)
    if row is None or row.status not in ("sending", "sent"):
        return False
    if row.provider is not None and row.provider != receipt.provider:
        return False  # a late re-push about an earlier channel's attempt: the current attempt is another provider
    at = receipt.at or now
    values: dict[str, Any] = {"updated_at": now, "next_attempt_at": None}
    if receipt.provider_message_id and not row.provider_message_id:
        values["provider_message_id"] = receipt.provider_message_id
    if receipt.delivered:
        values.update(status="delivered", delivered_at=at, reason=None, detail=None)
        event = event_for(row, "delivered", delivered_at=at)
    else:
        failed = [*(row.failed_channels or []), row.channel]
        remaining = [c for c in row.channels if c not in failed]
        values.update(failed_channels=failed, detail=(receipt.code or receipt.detail or "")[:500] or None)
        if remaining:
            values.update(status="queued", reason="fallback", next_attempt_at=now)
            event = None
        else:
            values.update(status="failed", reason="receipt_failed")
            event = event_for(row, "failed", reason="receipt_failed", code=receipt.code)
    await session.execute(sa.update(M).where(M.c.id == row.id).values(**values))
    await session.execute(sa.insert(MessageEvent.__table__).values(
        id=new_id(), message_id=row.id, at=now, status="delivered" if receipt.delivered else "failed",
        reason="receipt", channel=row.channel, provider=receipt.provider, code=receipt.code,
        detail=(receipt.detail or None) and receipt.detail[:500]))
    if event is not None:
        await outbox.append_many(session, [event])
    return True
