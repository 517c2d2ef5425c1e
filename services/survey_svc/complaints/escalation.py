"""Escalation along the chain of DOMAIN §10.8, by the SLA watch (a deadline passed) or by hand.

Level 1 is the CS supervisor (客服主管, our ``cs_manager``); level 2 the superior of the line the complaint is
about: the sales manager for sales complaints ("salespeople escalate to superiors"), the service manager for
service and parts (urgent and quality cases; a safety complaint goes there at intake, whatever its category),
with the CS director too for a major case; level 3 the director or general manager (店长 / 总经理).
Each step publishes ``ComplaintEscalated`` naming the active staff of the store holding those roles (group-wide
roles count for every store), and sets when the watch looks next: one more SLA period, or the next deadline if
that comes first, until the top level. A level nobody active holds in the store is passed at once to the next
(both steps on the log; the event goes to the level that reaches someone), so a case never waits unseen.
Missing the first response, the resolution and, once resolved, the closing deadline all count. Times in the
notices are the store's local time (staff read them as SMS).

The watch reads only cases whose ``escalate_at`` has come and claims them with ``FOR UPDATE SKIP LOCKED``, so
any number of workers share it. A case closed, on hold or at the top is not watched (``escalate_at`` is None).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from survey_svc.complaints.events import publish
from survey_svc.complaints.sla import CLOSING_WINDOW, TOP_LEVEL, breach_of, next_due
from survey_svc.deps import audit_log
from survey_svc.models import Complaint, ComplaintEntry, StaffView, StoreView
from survey_svc.policy import PolicyRules, rules_for
from shared.auth.roles import Role, eligible_staff
from shared.calendar import zone
from shared.db.base import utcnow
from shared.events.catalog.survey import ComplaintEscalated
from shared.ids import new_id
from shared.messaging.outbox import Outbox

#: The zone of a store survey_svc does not know yet.
DEFAULT_ZONE = "Asia/Shanghai"

_TITLES = {
    "first_response": "投诉 {n} 超过首次响应时限,已升级至第{level}级",
    "resolution": "投诉 {n} 超过解决时限,已升级至第{level}级",
    "closing": "投诉 {n} 已解决但超过结案时限,已升级至第{level}级",
    "safety": "紧急:涉及安全的投诉 {n},请立即处理(第{level}级)",
    "manual": "投诉 {n} 已人工升级至第{level}级",
}
_MISSED = {"first_response": "no first response by {t}", "resolution": "no resolution by {t}",
           "closing": "resolved but not closed by {t}"}


def chain_roles(c: Complaint, level: int) -> tuple[Role, ...]:
    """Who a case reaches at ``level`` (DOMAIN §10.8): by its category, safety and whether it is major."""
    if level == 1:
        return (Role.CS_MANAGER,)
    if level == 2:
        roles = [Role.SALES_MANAGER] if c.category == "sales" else [Role.SERVICE_MANAGER]
        if c.safety and Role.SERVICE_MANAGER not in roles:
            roles.append(Role.SERVICE_MANAGER)
        if c.kind == "major":
            roles.append(Role.CS_DIRECTOR)
        return tuple(roles)
    return (Role.CS_DIRECTOR, Role.ADMIN)


async def staff_of(session: AsyncSession, tenant_id: uuid.UUID) -> list[StaffView]:
    return list(await session.scalars(sa.select(StaffView).where(StaffView.tenant_id == tenant_id,
                                                                 StaffView.active.is_(True))))


def escalate(session: AsyncSession, outbox: Outbox, c: Complaint, level: int, breach: str, reason: str,
             staff: list[StaffView], rules: PolicyRules, now: datetime, actor_id: uuid.UUID | None = None) -> None:
    """Move ``c`` (locked by the caller) up to ``level``, or past it while a level has nobody active to tell:
    log, event, and the watch's next look."""
    roles = chain_roles(c, level)
    notify = [s.id for s in eligible_staff(staff, c.store_id, roles)]
    while not notify and level < TOP_LEVEL:
        _entry(session, c, level, breach, roles, [], now, actor_id,
               f"{reason} (nobody active holds {', '.join(roles)} in this store: passed on to level {level + 1})",
               passed_on=True)
        level += 1
        roles = chain_roles(c, level)
        notify = [s.id for s in eligible_staff(staff, c.store_id, roles)]
    c.escalation_level, c.escalated_at = level, now
    c.escalate_at = _next_look(c, rules, now)
    c.version += 1
    c.updated_at = now
    _entry(session, c, level, breach, roles, notify, now, actor_id, reason)
    publish(session, outbox, c, ComplaintEscalated, level=level, to_roles=[str(r) for r in roles],
            notify_staff_ids=notify, reason=reason, title=_TITLES[breach].format(n=c.number, level=level))


def _entry(session: AsyncSession, c: Complaint, level: int, breach: str, roles: tuple[Role, ...],
           notify: list[uuid.UUID], now: datetime, actor_id: uuid.UUID | None, body: str, **extra: Any) -> None:
    session.add(ComplaintEntry(id=new_id(), complaint_id=c.id, tenant_id=c.tenant_id, kind="escalation",
                               author_id=actor_id, body=body, created_at=now,
                               data={"level": level, "breach": breach, "to_roles": [str(r) for r in roles],
                                     "notify_staff_ids": [str(i) for i in notify], **extra}))


def _next_look(c: Complaint, rules: PolicyRules, now: datetime) -> datetime | None:
    """One more SLA period of the stage the case is in, or its deadline if that comes first."""
    due = next_due(c)
    if due is None:
        return None
    sla = rules.sla(c.severity)
    if c.resolved_at is not None:
        period = CLOSING_WINDOW
    else:
        period = timedelta(hours=sla.first_response_hours if c.first_responded_at is None else sla.resolution_hours)
    return min([now + period] + ([due] if due > now else []))


def missed(breach: str, due_at: datetime, store: StoreView | None) -> str:
    """What was missed, with the deadline in the store's local time."""
    local = due_at.astimezone(zone(store.timezone if store else DEFAULT_ZONE))
    return _MISSED[breach].format(t=f"{local:%Y-%m-%d %H:%M}")


class SlaWatch:
    """The worker loop's step: escalate every case whose look is due by one level."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], outbox: Outbox,
                 clock: Callable[[], datetime] = utcnow, batch: int = 200) -> None:
        self.sessionmaker, self.outbox, self.clock, self.batch = sessionmaker, outbox, clock, batch

    async def run_once(self) -> int:
        now = self.clock()
        async with self.sessionmaker() as session, session.begin():
            due = list((await session.scalars(
                sa.select(Complaint).where(Complaint.escalate_at.is_not(None), Complaint.escalate_at <= now)
                .order_by(Complaint.escalate_at).limit(self.batch).with_for_update(skip_locked=True))).all())
            rules: dict[uuid.UUID, PolicyRules] = {}
            staff: dict[uuid.UUID, list[StaffView]] = {}
            stores: dict[uuid.UUID, StoreView | None] = {}
            for c in due:
                breach = breach_of(c, now)
                if next_due(c) is None or breach is None:
                    # answered or resolved in time, on hold or closed: look again at the next deadline, if any
                    c.escalate_at = next_due(c)
                    continue
                if c.tenant_id not in rules:
                    rules[c.tenant_id] = await rules_for(session, c.tenant_id)
                    staff[c.tenant_id] = await staff_of(session, c.tenant_id)
                if c.store_id not in stores:
                    stores[c.store_id] = await session.get(StoreView, c.store_id)
                due_at = {"first_response": c.first_response_due, "resolution": c.resolution_due,
                          "closing": c.closing_due}[breach]
                escalate(session, self.outbox, c, c.escalation_level + 1, breach,
                         missed(breach, due_at, stores[c.store_id]), staff[c.tenant_id], rules[c.tenant_id], now)
                audit_log.record(session, None, "complaint.escalate", "complaint", c.id, tenant_id=c.tenant_id,
                                 store_id=c.store_id, after={"escalation_level": c.escalation_level,
                                                             "breach": breach})
            return len(due)
