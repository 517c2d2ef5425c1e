"""The follow-up completion export: one row per occurrence due in the period (what the outcomes report counts)
with the task it created, if any, plus the tasks staff created by hand (no occurrence) due in the period (what
the callbacks report counts besides). One statement, streamed from a server-side cursor.

"On time" is the task's SLA: finished (done or failed) by ``sla_due_at``; false once the SLA passed unfinished;
empty while it still runs, for cancelled tasks and for occurrences without a task (messages, commands).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from followup_svc.models import CustomerView, FollowUp, StaffView, Task
from followup_svc.reports.service import DEFAULT_ZONE, FINISHED, Scope
from shared.auth.principal import Principal
from shared.calendar import zone
from shared.http.export import local_iso
from shared.pii import mask_name, mask_phone

#: Columns of the export. Times are ISO 8601 in the store's zone (with its offset).
COLUMNS = ["occurrence_id", "rule_key", "store_code", "store_id", "subject_type", "subject_id", "customer_id",
           "customer_name", "vehicle_id", "purpose", "due_at", "state", "reason", "fired_at", "task_id", "task_kind",
           "task_status", "role", "assignee_id", "assignee_name", "sla_due_at", "completed_at", "completed_by",
           "completed_by_name", "on_time", "attempts", "escalation_level", "reached", "satisfaction",
           "comment_type", "follow_on", "rework_needed", "summary"]


def _null(column: Any) -> Any:
    return sa.cast(sa.null(), column.type)


def completion(scope: Scope, first: date, last: date, rule: str | None) -> sa.Select[Any]:
    """Occurrences due in the period with their task, and hand-made tasks due in it, by due time."""
    task_columns = [Task.id.label("task_id"), Task.kind.label("task_kind"), Task.status.label("task_status"),
                    Task.role, Task.assignee_id, Task.sla_due_at, Task.completed_at, Task.completed_by,
                    Task.attempt, Task.escalation_level, Task.outcome]
    occurrences = sa.select(
        FollowUp.id.label("occurrence_id"), FollowUp.rule_key, FollowUp.store_id, FollowUp.subject_type,
        FollowUp.subject_id, FollowUp.customer_id, FollowUp.vehicle_id, FollowUp.purpose, FollowUp.due_at,
        FollowUp.state, FollowUp.reason, FollowUp.fired_at, *task_columns,
    ).outerjoin(Task, Task.id == FollowUp.task_id).where(scope.within(FollowUp, FollowUp.due_at, first, last))
    by_hand = sa.select(
        _null(FollowUp.id).label("occurrence_id"), Task.rule_key, Task.store_id, _null(FollowUp.subject_type),
        _null(FollowUp.subject_id), Task.customer_id, Task.vehicle_id, _null(FollowUp.purpose), Task.due_at,
        _null(FollowUp.state), _null(FollowUp.reason), _null(FollowUp.fired_at), *task_columns,
    ).where(Task.followup_id.is_(None), scope.within(Task, Task.due_at, first, last))
    if rule is not None:
        occurrences = occurrences.where(FollowUp.rule_key == rule)
        by_hand = by_hand.where(Task.rule_key == rule)
    rows = sa.union_all(occurrences, by_hand).subquery()
    assignee, closer = aliased(StaffView), aliased(StaffView)
    return sa.select(rows, CustomerView.name.label("customer_name"), assignee.name.label("assignee_name"),
                     closer.name.label("completed_by_name")) \
        .outerjoin(CustomerView, CustomerView.id == rows.c.customer_id) \
        .outerjoin(assignee, assignee.id == rows.c.assignee_id) \
        .outerjoin(closer, closer.id == rows.c.completed_by) \
        .order_by(rows.c.due_at, sa.func.coalesce(rows.c.occurrence_id, rows.c.task_id))


def _on_time(status: str | None, sla_due: datetime | None, completed: datetime | None,
             now: datetime) -> bool | None:
    if status is None or sla_due is None or status == "cancelled":
        return None
    if status in FINISHED and completed is not None:
        return completed <= sla_due
    return False if sla_due < now else None


def completion_row(scope: Scope, principal: Principal) -> Callable[[Any], dict[str, Any]]:
    """Row -> export row; the customer's name and phone numbers in the call summary are masked unless the caller
    sees personal data."""
    codes = {sid: (view.code if view is not None else None) for sid, view in scope.stores.items()}
    zones = {sid: zone(view.timezone) for sid, view in scope.stores.items() if view is not None}
    default = zone(DEFAULT_ZONE)  # a store the read model has not heard of yet
    pii, now = principal.sees_pii, scope.now

    def convert(r: Any) -> dict[str, Any]:
        tz = zones.get(r.store_id, default)
        outcome = r.outcome or {}
        name, summary = r.customer_name, outcome.get("summary")
        if not pii:
            name = mask_name(name) if name else name
            summary = mask_phone(summary) if isinstance(summary, str) else summary
        return {
            "occurrence_id": r.occurrence_id, "rule_key": r.rule_key, "store_code": codes.get(r.store_id),
            "store_id": r.store_id, "subject_type": r.subject_type, "subject_id": r.subject_id,
            "customer_id": r.customer_id, "customer_name": name, "vehicle_id": r.vehicle_id, "purpose": r.purpose,
            "due_at": local_iso(r.due_at, tz), "state": r.state, "reason": r.reason,
            "fired_at": local_iso(r.fired_at, tz), "task_id": r.task_id, "task_kind": r.task_kind,
            "task_status": r.task_status, "role": r.role, "assignee_id": r.assignee_id,
            "assignee_name": r.assignee_name, "sla_due_at": local_iso(r.sla_due_at, tz),
            "completed_at": local_iso(r.completed_at, tz), "completed_by": r.completed_by,
            "completed_by_name": r.completed_by_name,
            "on_time": _on_time(r.task_status, r.sla_due_at, r.completed_at, now),
            "attempts": r.attempt, "escalation_level": r.escalation_level, "reached": outcome.get("reached"),
            "satisfaction": outcome.get("satisfaction"), "comment_type": outcome.get("comment_type"),
            "follow_on": outcome.get("follow_on"), "rework_needed": outcome.get("rework_needed"),
            "summary": summary}

    return convert
