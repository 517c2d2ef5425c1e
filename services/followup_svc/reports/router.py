"""Follow-up reports for managers (DOMAIN.md §14), as JSON or as CSV that Excel opens (UTF-8 with BOM)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from followup_svc.deps import CtxDep
from followup_svc.reports import service
from followup_svc.reports.schemas import CallbacksReport, CoverageReport, DailyActivityReport, OutcomesReport
from shared.auth import require_roles
from shared.auth.roles import MANAGERS
from shared.errors import problem_responses
from shared.http.export import sections_csv, sections_csv_doc
from shared.validation import IsoDate

router = APIRouter(prefix="/api/v1/reports/followup", tags=["reports"], dependencies=[require_roles(*MANAGERS)],
                   responses=problem_responses(401, 403, 404, 422))

StoreParam = Annotated[uuid.UUID | None, Query(
    description="One of your stores; default: every store you may see (404 for a store outside your scope).")]
FromParam = Annotated[IsoDate | None, Query(
    alias="from", description="First store-local day (default: the first of `to`'s month).")]
ToParam = Annotated[IsoDate | None, Query(
    alias="to", description="Last store-local day, inclusive (default: today); at most 366 days after `from`.")]
FormatParam = Annotated[Literal["json", "csv"], Query(
    alias="format", description="`csv`: the same rows as a CSV file (UTF-8 with BOM, opens in Excel).")]


def _span(first: date, last: date) -> str:
    return f"{first.isoformat()}_{last.isoformat()}"


@router.get("/daily-activity", response_model=DailyActivityReport, responses=sections_csv_doc(DailyActivityReport))
async def daily_activity(ctx: CtxDep, store_id: StoreParam = None,
                         day: Annotated[IsoDate | None, Query(description="Store-local day (default: today).")] = None,
                         fmt: FormatParam = "json") -> Any:
    """The daily activity report (营业活动日报表, T-10): per staff member, the tasks due that day, done, failed,
    still open and overdue, how many calls reached the customer and how many customers were contacted."""
    scope = await service.resolve_scope(ctx, store_id)
    day = service.check_day(day, "query.day") if day is not None else scope.today()
    report = await service.daily_activity(ctx, scope, day)
    if fmt == "csv":
        return await sections_csv(f"followup-daily-activity-{day.isoformat()}", [("staff", list(report.rows)),
                                                                   ("total", [report.totals])])
    return report


@router.get("/callbacks", response_model=CallbacksReport, responses=sections_csv_doc(CallbacksReport))
async def callbacks(ctx: CtxDep, store_id: StoreParam = None, from_: FromParam = None, to: ToParam = None,
                    fmt: FormatParam = "json") -> Any:
    """Callback execution (回访执行): call tasks due in the period per playbook rule and per assignee — planned
    vs done, done within the SLA, reached vs not reached, overdue and escalated, with the rates."""
    scope = await service.resolve_scope(ctx, store_id)
    first, last = service.resolve_period(scope, from_, to)
    report = await service.callbacks(ctx, scope, first, last)
    if fmt == "csv":
        return await sections_csv(f"followup-callbacks-{_span(first, last)}",
                    [("rule", list(report.by_rule)), ("assignee", list(report.by_assignee)),
                     ("total", [report.totals])])
    return report


@router.get("/minor-repair-coverage", response_model=CoverageReport, responses=sections_csv_doc(CoverageReport))
async def minor_repair_coverage(ctx: CtxDep, store_id: StoreParam = None, from_: FromParam = None,
                                to: ToParam = None, fmt: FormatParam = "json") -> Any:
    """Minor-repair callback coverage (T-55): minor-repair visits completed in the period, those sampled for a
    callback, callbacks done and customers reached; coverage = reached / visits against the 30% target."""
    scope = await service.resolve_scope(ctx, store_id)
    first, last = service.resolve_period(scope, from_, to)
    report = await service.minor_repair_coverage(ctx, scope, first, last)
    if fmt == "csv":
        return await sections_csv(f"followup-minor-repair-coverage-{_span(first, last)}",
                    [("store", list(report.stores)), ("total", [report.total])])
    return report


@router.get("/followups/outcomes", response_model=OutcomesReport, responses=sections_csv_doc(OutcomesReport))
async def followup_outcomes(ctx: CtxDep, store_id: StoreParam = None, from_: FromParam = None,
                            to: ToParam = None, fmt: FormatParam = "json") -> Any:
    """What became of the follow-ups due in the period: per rule, how many fired, were skipped, cancelled or
    failed (or still wait), and the most frequent reasons touches did not happen."""
    scope = await service.resolve_scope(ctx, store_id)
    first, last = service.resolve_period(scope, from_, to)
    report = await service.outcomes(ctx, scope, first, last)
    if fmt == "csv":
        return await sections_csv(f"followup-outcomes-{_span(first, last)}",
                    [("rule", list(report.by_rule)), ("total", [report.totals]), ("reason", list(report.top_reasons))])
    return report
