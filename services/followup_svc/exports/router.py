"""Follow-up completion export for managers and OEM pulls, as CSV, JSON or NDJSON, by store-local period, store
and rule, streamed from a database cursor (memory stays flat whatever the size).

Who reads it: the managers who read the follow-up reports (their stores), and integration keys with
``followups:read`` (the key's stores).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from followup_svc.deps import CtxDep
from followup_svc.exports import queries
from followup_svc.playbooks.schemas import KEY
from followup_svc.reports import service
from shared.auth import require_roles
from shared.auth.roles import MANAGERS
from shared.errors import problem_responses
from shared.http.export import FormatParam, export_responses, stream_export, stream_rows
from shared.validation import IsoDate

router = APIRouter(tags=["exports"], dependencies=[require_roles(*MANAGERS, scope="followups:read")],
                   responses=problem_responses(401, 403, 404, 422))


@router.get("/api/v1/followups/exports/completion", response_class=StreamingResponse,
            responses=export_responses("One row per occurrence or task due in the period, by due time."))
async def export_completion(
        ctx: CtxDep, fmt: FormatParam = "json",
        store_id: Annotated[uuid.UUID | None, Query(
            description="One of your stores; default: every store you may see (404 for a store outside your "
                        "scope).")] = None,
        from_: Annotated[IsoDate | None, Query(
            alias="from", description="First store-local day (default: the first of `to`'s month).")] = None,
        to: Annotated[IsoDate | None, Query(
            description="Last store-local day, inclusive (default: today); at most 366 days from `from`.")] = None,
        rule: Annotated[str | None, Query(max_length=60, pattern=KEY.pattern,
                                          description="One playbook rule (e.g. `post_delivery_call_3h`).")] = None,
) -> StreamingResponse:
    """Follow-up completion: every planned touch due in the period (store-local days) — its rule, subject,
    due time, state (fired, skipped, cancelled, failed or still scheduled) and reason — with the task it created:
    status, assignee, SLA due time, when and by whom it was completed, whether on time, attempts, escalation, and
    the call's outcome (reached, satisfaction, comment type, what follows, summary); then tasks created by hand
    due in the period. The customer's name (and phone numbers in summaries) are masked unless you may see
    personal data (integration keys: `pii:read`)."""
    scope = await service.resolve_scope(ctx, store_id)
    first, last = service.resolve_period(scope, from_, to)  # at most 366 days, as the reports
    await ctx.session.close()  # the stream reads on its own session
    rows = stream_rows(ctx.runtime.sessionmaker, queries.completion(scope, first, last, rule),
                       queries.completion_row(scope, ctx.principal))
    return await stream_export(f"followup-completion-{first.isoformat()}_{last.isoformat()}", fmt, rows, queries.COLUMNS)
