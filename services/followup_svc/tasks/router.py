"""Tasks API: my day, team queues, calendar, outcomes, reschedule, reassignment, cancellation, notes, workload.

Executors (sales consultants, service advisors, CS agents) see their own tasks and their roles' unassigned
queues; managers see every task of their stores. A task you may not see answers 404.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from followup_svc.deps import Ctx, CtxDep, IdempotencyKey, IfMatch
from followup_svc.tasks import schemas as s
from followup_svc.tasks import queries, service
from shared.auth import require_roles
from shared.auth.roles import MANAGERS, STAFF, Role
from shared.errors import InvalidField, problem_responses
from shared.http.etag import tagged
from shared.http.pagination import Page, PageParams, make_page, page_params
from shared.validation import IsoDate, IsoDateTime

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"], responses=problem_responses(401, 403, 422))
staff_only = require_roles(*STAFF)
managers_only = require_roles(*MANAGERS)


def _day(name: str, value: date | None) -> date | None:
    if value is not None and not s.FIRST_DAY <= value <= s.LAST_DAY:
        raise InvalidField(f"query.{name}", "must be between 2000-01-01 and 2099-12-31")
    return value


def _instant(name: str, value: datetime | None) -> datetime | None:
    if value is not None and not s.EARLIEST <= value < s.LATEST:
        raise InvalidField(f"query.{name}", "must be between 2000 and 2100")
    return value


def _read(ctx: Ctx, task, response: Response | None = None) -> s.TaskRead:  # type: ignore[no-untyped-def]
    body = s.TaskRead.model_validate(queries.view(task, ctx.runtime.clock.now()))
    return tagged(response, body) if response is not None else body


@router.get("/mine", response_model=s.MyTasks, dependencies=[staff_only])
async def my_tasks(ctx: CtxDep, day: Annotated[IsoDate | None, Query(
        description="Store-local day (default: today in your first store).")] = None) -> s.MyTasks:
    """My tasks today: open and in-progress tasks assigned to me, due by the end of the (store-local) day,
    earlier ones included and flagged `overdue` once past their SLA; by priority, then due time."""
    found_day, tasks = await queries.my_tasks(ctx, _day("day", day))
    items = [_read(ctx, t) for t in tasks]
    return s.MyTasks(day=found_day, items=items, overdue=sum(1 for i in items if i.overdue))


@router.get("/calendar", response_model=s.Calendar, dependencies=[staff_only], responses=problem_responses(404))
async def task_calendar(
        ctx: CtxDep,
        start: Annotated[IsoDate, Query(alias="from", description="First local day.")],
        end: Annotated[IsoDate, Query(alias="to", description="Last local day (inclusive; at most 62 days).")],
        assignee_id: Annotated[uuid.UUID | None, Query(
            description="Managers: whose calendar (default: yours).")] = None,
        team: Annotated[bool, Query(description="Managers: everyone's tasks in a store of yours (with "
                                                "`store_id` when you have several).")] = False,
        store_id: Annotated[uuid.UUID | None, Query(description="Only this store.")] = None) -> s.Calendar:
    """Per local day: counts and items of your tasks (managers: someone's, or the team's), plus the task
    occurrences rules have planned and not yet created (`planned`, with who would get them today), so you
    see what is coming."""
    first, last = _day("from", start), _day("to", end)
    return await queries.calendar(ctx, first, last, assignee_id, team, store_id)  # type: ignore[arg-type]


@router.get("/workload", response_model=s.Workload, dependencies=[managers_only], responses=problem_responses(404))
async def workload(ctx: CtxDep,
                   day: Annotated[IsoDate | None, Query(description="Store-local day (default: today).")] = None,
                   store_id: Annotated[uuid.UUID | None, Query(description="Default: your first store.")] = None
                   ) -> s.Workload:
    """Managers: per person of the store, open tasks due that day against the daily cap (and carried over
    from earlier days), and each team queue's unassigned tasks."""
    return await queries.workload(ctx, _day("day", day), store_id)


@router.get("", response_model=Page[s.TaskRead], dependencies=[staff_only], responses=problem_responses(404))
async def list_tasks(
        ctx: CtxDep, params: Annotated[PageParams, Depends(page_params)],
        store_id: uuid.UUID | None = None,
        role: Annotated[Role | None, Query(description="The team the tasks belong to.")] = None,
        assignee_id: uuid.UUID | None = None,
        unassigned: Annotated[bool | None, Query(
            description="true: only the team queue; false: only assigned.")] = None,
        status: Annotated[list[s.TaskStatus] | None, Query(max_length=5, description="Repeatable.")] = None,
        due_from: Annotated[IsoDateTime | None, Query(description="Due at or after.")] = None,
        due_to: Annotated[IsoDateTime | None, Query(description="Due before (exclusive).")] = None,
        customer_id: uuid.UUID | None = None,
        rule_key: Annotated[str | None, Query(max_length=60)] = None,
        overdue: Annotated[bool | None, Query(description="true: open past their SLA; false: the others.")] = None,
) -> dict:
    """Team queue and search, newest first. Executors see their own tasks and their roles' unassigned queue;
    managers every task of their stores."""
    if unassigned and assignee_id is not None:
        raise InvalidField("query.unassigned", "cannot be combined with assignee_id")
    due_from, due_to = _instant("due_from", due_from), _instant("due_to", due_to)
    if due_from and due_to and due_to <= due_from:
        raise InvalidField("query.due_to", "must be after due_from")
    f = queries.TaskFilter(store_id=store_id, role=str(role) if role else None, assignee_id=assignee_id,
                           unassigned=unassigned, statuses=list(status) if status else None,
                           due_from=due_from, due_to=due_to,
                           customer_id=customer_id, rule_key=rule_key, overdue=overdue)
    rows = await queries.list_tasks(ctx, params, f)
    return make_page(rows, params, lambda t: _read(ctx, t))


@router.post("", status_code=201, response_model=s.TaskRead, dependencies=[staff_only],
             responses=problem_responses(409))
async def create_task(ctx: CtxDep, body: s.TaskCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """Add an ad-hoc task for a customer of your stores (to a person, or to a team queue when `assignee_id` is
    null). Its SLA is `due_at + sla_hours`. Honours `Idempotency-Key`."""
    return await ctx.runtime.idempotency.create(
        ctx.principal, idempotency_key, "POST /tasks", body, lambda: service.create_task(ctx, body), s.TaskRead,
        "/api/v1/tasks", view=lambda t: queries.view(t, ctx.runtime.clock.now()))


@router.post("/reassign-bulk", response_model=s.BulkReassignResult, dependencies=[managers_only],
             responses=problem_responses(404))
async def reassign_bulk(ctx: CtxDep, body: s.BulkReassignWrite) -> s.BulkReassignResult:
    """Managers: move every open task of one person (a leaver) to someone else or back to the queues. Running it
    again moves nothing."""
    ids = await service.reassign_bulk(ctx, body)
    return s.BulkReassignResult(moved=len(ids), task_ids=ids)


@router.get("/{task_id}", response_model=s.TaskDetail, dependencies=[staff_only], responses=problem_responses(404))
async def get_task(ctx: CtxDep, task_id: uuid.UUID, response: Response) -> s.TaskDetail:
    """A task with its notes (oldest first) and its ETag."""
    task, notes = await queries.task_detail(ctx, task_id)
    detail = s.TaskDetail.model_validate(queries.view(task, ctx.runtime.clock.now(), notes))
    return tagged(response, detail)


@router.post("/{task_id}/start", response_model=s.TaskRead, dependencies=[staff_only],
             responses=problem_responses(404, 409, 412))
async def start_task(ctx: CtxDep, task_id: uuid.UUID, response: Response, if_match: IfMatch = None) -> s.TaskRead:
    """Start working on a task (open → in progress), by its assignee or a manager. Starting an unassigned task
    of your team's queue claims it. `If-Match` is checked when sent."""
    return _read(ctx, await service.start_task(ctx, task_id, if_match), response)


@router.post("/{task_id}/outcome", response_model=s.TaskRead, dependencies=[staff_only],
             responses=problem_responses(404, 409, 412, 428))
async def record_outcome(ctx: CtxDep, task_id: uuid.UUID, body: s.OutcomeWrite, response: Response,
                         if_match: IfMatch = None) -> s.TaskRead:
    """Record the callback's outcome (DOMAIN §4.10). `reached` → done; `refused` / `wrong_number` → failed;
    `not_reached` → retried at the store's next business slot at least 4 hours later, and the third miss fails
    the task. `serviced_elsewhere_on` moves the vehicle's maintenance cycle on. Requires `If-Match`; a finished
    task answers 409."""
    return _read(ctx, await service.record_outcome(ctx, task_id, body, if_match), response)


@router.post("/{task_id}/notes", status_code=201, response_model=s.NoteRead, dependencies=[staff_only],
             responses=problem_responses(404, 409))
async def add_note(ctx: CtxDep, task_id: uuid.UUID, body: s.NoteWrite,
                   idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Add a note to a task you can see (append-only; does not change the task's ETag). Honours
    `Idempotency-Key`."""

    async def create():  # type: ignore[no-untyped-def]
        note = await service.add_note(ctx, task_id, body)
        return (s.NoteRead.model_validate(note).model_dump(mode="json"),
                {"Location": f"/api/v1/tasks/{task_id}/notes/{note.id}"})

    return await ctx.runtime.idempotency.run(ctx.principal, idempotency_key, f"POST /tasks/{task_id}/notes",
                                             body.model_dump(mode="json"), create)


@router.post("/{task_id}/reschedule", response_model=s.TaskRead, dependencies=[staff_only],
             responses=problem_responses(404, 409, 412, 428))
async def reschedule(ctx: CtxDep, task_id: uuid.UUID, body: s.RescheduleWrite, response: Response,
                     if_match: IfMatch = None) -> s.TaskRead:
    """Move an open task (its assignee or a manager): the due time and the SLA shift by the same amount.
    The reason is kept as a note. Requires `If-Match`."""
    return _read(ctx, await service.reschedule(ctx, task_id, body, if_match), response)


@router.post("/{task_id}/reassign", response_model=s.TaskRead, dependencies=[staff_only],
             responses=problem_responses(404, 409, 412, 428))
async def reassign(ctx: CtxDep, task_id: uuid.UUID, body: s.ReassignWrite, response: Response,
                   if_match: IfMatch = None) -> s.TaskRead:
    """Give an open task to someone else (managers), or back to the team queue (managers, or its assignee).
    The reason is kept as a note. Requires `If-Match`."""
    return _read(ctx, await service.reassign(ctx, task_id, body, if_match), response)


@router.post("/{task_id}/cancel", response_model=s.TaskRead, dependencies=[managers_only],
             responses=problem_responses(404, 409, 412))
async def cancel(ctx: CtxDep, task_id: uuid.UUID, body: s.CancelWrite, response: Response,
                 if_match: IfMatch = None) -> s.TaskRead:
    """Managers: cancel an open task (a finished one answers 409; cancelling twice changes nothing). The
    reason is kept as a note. `If-Match` is checked when sent."""
    return _read(ctx, await service.cancel(ctx, task_id, body, if_match), response)

