"""Exports for managers and OEM pulls: survey results (one row per response) and complaint cases, as CSV, JSON or
NDJSON, by store-local period and store, streamed from a database cursor (memory stays flat whatever the size).

Who reads them: the managers who read the reports (their stores), and integration keys with ``surveys:read`` or
``complaints:read`` (the key's stores).
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from survey_svc.complaints.schemas import Status
from survey_svc.deps import Ctx, CtxDep, complaint_readers, survey_readers
from survey_svc.exports import queries
from survey_svc.reports.queries import item_columns, survey_items
from survey_svc.reports.schemas import MAX_DAYS as REPORT_DAYS
from survey_svc.reports.scope import Scope, resolve_scope
from survey_svc.surveys.schemas import KEY
from shared.errors import problem_responses
from shared.http.export import MAX_EXPORT_DAYS, ExportFormat, FormatParam, export_responses, stream_export, \
    stream_rows
from shared.validation import IsoDate

router = APIRouter(tags=["exports"], responses=problem_responses(401, 403, 404, 422))

StoreParam = Annotated[uuid.UUID | None, Query(
    description="One of your stores; default: every store you may see (404 for a store outside your scope).")]
FromParam = Annotated[IsoDate | None, Query(
    alias="from", description="First store-local day (default: the first of `to`'s month).")]
ToParam = Annotated[IsoDate | None, Query(
    alias="to", description=f"Last store-local day, inclusive (default: today); at most {MAX_EXPORT_DAYS} days "
                            "from `from`.")]
SurveyParam = Annotated[str | None, Query(max_length=60, pattern=KEY.pattern,
                                          description="One survey (e.g. `service_satisfaction`); default: all.")]


def _span(scope: Scope) -> str:
    return f"{scope.first.isoformat()}_{scope.last.isoformat()}"


async def _responses(ctx: Ctx, fmt: ExportFormat, store_id: uuid.UUID | None, from_: date | None,
                     to: date | None, survey: str | None, max_days: int) -> StreamingResponse:
    scope = await resolve_scope(ctx, store_id, from_, to, max_days)
    items = item_columns(await survey_items(ctx.session, scope.tenant_id, survey))
    await ctx.session.close()  # the stream reads on its own session
    rows = stream_rows(ctx.runtime.sessionmaker, queries.responses(scope, survey), queries.response_row(scope, items))
    return await stream_export(f"survey-responses-{_span(scope)}", fmt, rows,
                               [*queries.RESPONSE_COLUMNS, *map(queries.item_column, items)])


@router.get("/api/v1/surveys/exports/responses", response_class=StreamingResponse, dependencies=[survey_readers],
            responses=export_responses("One row per response, oldest first."))
async def export_responses_(ctx: CtxDep, fmt: FormatParam = "json", store_id: StoreParam = None,
                            from_: FromParam = None, to: ToParam = None,
                            survey: SurveyParam = None) -> StreamingResponse:
    """Survey results for OEM reporting: every response answered in the period (store-local days), oldest
    first — ids, store code, survey and version, the store-local answer time, channel, satisfaction index,
    overall score, NPS, low score, integrity flags and review status, then one column per scored item (`q1`…,
    0–100; empty where the survey does not ask it). No names, phones or free text."""
    return await _responses(ctx, fmt, store_id, from_, to, survey, MAX_EXPORT_DAYS)


@router.get("/api/v1/surveys/reports/responses.csv", response_class=StreamingResponse,
            dependencies=[survey_readers],
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                             "description": "One row per response (UTF-8 with BOM)."}})
async def responses_csv(ctx: CtxDep, store_id: StoreParam = None, from_: FromParam = None, to: ToParam = None,
                        survey: SurveyParam = None) -> StreamingResponse:
    """The response export as CSV (the same rows as `GET /api/v1/surveys/exports/responses?format=csv`), kept
    for existing clients; a period of up to two years, as for the reports."""
    return await _responses(ctx, "csv", store_id, from_, to, survey, REPORT_DAYS)


@router.get("/api/v1/complaints/exports/cases", response_class=StreamingResponse, dependencies=[complaint_readers],
            responses=export_responses("One row per complaint case, oldest first."))
async def export_cases(ctx: CtxDep, fmt: FormatParam = "json", store_id: StoreParam = None,
                       from_: FromParam = None, to: ToParam = None,
                       status: Annotated[list[Status] | None, Query(max_length=4, description="Repeatable; default: "
                                                                                              "all.")] = None,
                       ) -> StreamingResponse:
    """Complaint cases opened in the period (store-local days), oldest first: number, store, opened / responded /
    resolved / closed times (store-local, with offset), category, severity, owner, the SLA deadlines and whether
    they were kept (`first_response_met`, `resolution_met`, `sla_met`; empty while a deadline still runs),
    status, the resolution and goodwill, root cause and action taken, and the customer's satisfaction with the
    result and speed. The complainant's name and phone (and phone numbers in the text) are masked unless you
    may see personal data (integration keys: `pii:read`)."""
    scope = await resolve_scope(ctx, store_id, from_, to, MAX_EXPORT_DAYS)
    await ctx.session.close()
    rows = stream_rows(ctx.runtime.sessionmaker, queries.complaints(scope, list(status) if status else None),
                       queries.complaint_row(scope, ctx.principal, scope.now))
    return await stream_export(f"complaints-{_span(scope)}", fmt, rows, queries.COMPLAINT_COLUMNS)
