"""The public side of an invitation: find it by its link's token, mark it opened, take the answer.

Nothing here needs a login, so nothing here says more than the link's own survey: a wrong token and a token of
another group look the same (not found), and no customer data is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from survey_svc.invitations.tokens import device_hash, token_hash, well_formed
from survey_svc.models import Invitation, StoreView
from survey_svc.responses.service import Submission, state_of, submit
from survey_svc.surveys.schemas import SurveyDefinition
from survey_svc.surveys.store import definition_by_id
from shared.messaging.outbox import Outbox

NOTICES = {
    "not_found": ("链接无效", "没有找到这份调查,请检查链接是否完整。", 404),
    "expired": ("调查已结束", "这份调查的有效期已过,感谢您的关注。如有意见,欢迎致电门店。", 410),
    "cancelled": ("调查已关闭", "这份调查已不再收集答复,感谢您的关注。", 410),
    "answered": ("您已完成调查", "您的答复我们已经收到,感谢您的宝贵意见!", 200),
}


@dataclass
class Opened:
    invitation: Invitation
    definition: SurveyDefinition
    store_name: str | None
    state: str


async def find(session: AsyncSession, token: str, now: datetime, *, lock: bool = False,
               store_name: bool = True) -> Opened | None:
    """The invitation behind a link, its survey version and (for pages that show it) its store's name."""
    if not well_formed(token):
        return None
    stmt = sa.select(Invitation).where(Invitation.token_hash == token_hash(token))
    inv = await session.scalar(stmt.with_for_update() if lock else stmt)
    if inv is None:
        return None
    store = await session.get(StoreView, inv.store_id) if store_name else None
    return Opened(inv, await definition_by_id(session, inv.template_id), store.name if store else None,
                  state_of(inv, now))


async def mark_opened(session: AsyncSession, opened: Opened, now: datetime) -> None:
    if opened.state == "open" and opened.invitation.opened_at is None:
        await session.execute(sa.update(Invitation).where(
            Invitation.id == opened.invitation.id, Invitation.opened_at.is_(None)).values(opened_at=now))
        await session.commit()


async def answer(session: AsyncSession, outbox: Outbox, secret: bytes, opened: Opened, answers: dict[str, Any],
                 ip: str | None, user_agent: str | None, now: datetime, form: bool = False) -> None:
    await submit(session, outbox, opened.invitation, Submission(
        answers=answers, channel="web", device_hash=device_hash(secret, ip, user_agent), form=form), now)
    await session.commit()
