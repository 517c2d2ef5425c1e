"""SLA watch: overdue tasks go up the chain of DOMAIN.md §3.1 (executor → supervisor → service quality).

``escalate_at`` says when a task is looked at next, so the watch reads only tasks that need it.
A task past its SLA is marked overdue and escalated to level 1 (the executor's supervisors: sales or
showroom manager, service manager, CS manager). Still open one more SLA period later (at least a day), it
goes to level 2 (CS manager and CS director). Each step publishes an event naming the staff to notify.
Safe with N workers: tasks are claimed with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from followup_svc.clock import Clock
from followup_svc.models import StaffView, Task
from followup_svc.models.task import OPEN_STATES
from shared.auth.roles import Role, eligible_staff
from shared.events.catalog.followup import TaskEscalated, TaskOverdue
from shared.messaging.outbox import Outbox

SUPERVISORS: dict[str, tuple[Role, ...]] = {
    Role.SALES_CONSULTANT: (Role.SALES_MANAGER, Role.SHOWROOM_MANAGER),
    Role.SERVICE_ADVISOR: (Role.SERVICE_MANAGER,),
    Role.CS_AGENT: (Role.CS_MANAGER,),
}
QUALITY: tuple[Role, ...] = (Role.CS_MANAGER, Role.CS_DIRECTOR)
MIN_SECOND_STEP = timedelta(hours=24)


def chain_for(role: str, level: int) -> tuple[Role, ...]:
    if level == 1:
        return SUPERVISORS.get(role, (Role.CS_MANAGER,))
    return QUALITY


class Escalator:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], outbox: Outbox, clock: Clock,
                 batch_size: int = 200) -> None:
        self.sessionmaker = sessionmaker
        self.outbox = outbox
        self.clock = clock
        self.batch_size = batch_size

    async def run_once(self) -> int:
        async with self.sessionmaker() as session, session.begin():
            now = self.clock.now()
            tasks = list((await session.scalars(
                sa.select(Task).where(Task.escalate_at <= now)
                .order_by(Task.escalate_at).limit(self.batch_size).with_for_update(skip_locked=True))).all())
            staff_cache: dict[tuple[uuid.UUID, uuid.UUID], list[StaffView]] = {}
            for task in tasks:
                if task.status not in OPEN_STATES:
                    task.escalate_at = None
                    continue
                if task.escalation_level == 0:
                    task.overdue_at = now
                    self.outbox.append(session, TaskOverdue(task_id=task.id, assignee_id=task.assignee_id,
                                                            role=task.role, sla_due_at=task.sla_due_at),
                                       tenant_id=task.tenant_id, store_id=task.store_id)
                level = task.escalation_level + 1
                roles = chain_for(task.role, level)
                key = (task.tenant_id, task.store_id)
                if key not in staff_cache:
                    staff_cache[key] = list(await session.scalars(sa.select(StaffView).where(
                        StaffView.tenant_id == task.tenant_id, StaffView.active.is_(True))))
                notify = [s.id for s in eligible_staff(staff_cache[key], task.store_id, roles)]
                task.escalation_level, task.escalated_at, task.version = level, now, task.version + 1
                task.escalate_at = now + max(task.sla_due_at - task.due_at, MIN_SECOND_STEP) if level < 2 else None
                self.outbox.append(session, TaskEscalated(
                    task_id=task.id, level=level, to_roles=[str(r) for r in roles], notify_staff_ids=notify,
                    title=task.title, customer_id=task.customer_id,
                    reason=f"not finished by its SLA ({task.sla_due_at:%Y-%m-%d %H:%M} UTC)"),
                    tenant_id=task.tenant_id, store_id=task.store_id)
            return len(tasks)
