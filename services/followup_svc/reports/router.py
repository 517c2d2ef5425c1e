"""Follow-up reports for managers (DOMAIN.md §14), as JSON or as CSV that Excel opens (UTF-8 with BOM)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from followup_svc.deps import CtxDep
from followup_svc.reports import service
from followup_svc.reports.schemas import CallbacksReport, CoverageReport, DailyActivityReport, OutcomesReport
from shared.auth import require_roles
from shared.auth.roles import MANAGERS
from shared.errors import problem_responses
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


def _csv_doc(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "content": {"text/csv": {"schema": {"type": "string"}}},
                  "description": "The report (JSON), or with `format=csv` its rows as CSV: a `section` column, "
                                 "then the JSON fields."}}


def _csv(name: str, sections: list[tuple[str, list[BaseModel]]]) -> Response:
    """Rows of every section in one table: ``section`` first, then the union of the rows' fields."""
    rows = [{"section": label, **row.model_dump(mode="json")} for label, items in sections for row in items]
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns or ["section"], lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return Response(("\ufeff" + out.getvalue()).encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


def _span(first: date, last: date) -> str:
    return f"{first.isoformat()}_{last.isoformat()}"


@router.get("/daily-activity", response_model=DailyActivityReport, responses=_csv_doc(DailyActivityReport))
async def daily_activity(ctx: CtxDep, store_id: StoreParam = None,
                         day: Annotated[IsoDate | None, Query(description="Store-local day (default: today).")] = None,
                         fmt: FormatParam = "json") -> Any:
    """The daily activity report (营业活动日报表, T-10): per staff member, the tasks due that day, done, failed,
    still open and overdue, how many calls reached the customer and how many customers were contacted."""
    scope = await service.resolve_scope(ctx, store_id)
    day = service.check_day(day, "query.day") if day is not None else scope.today()
    report = await service.daily_activity(ctx, scope, day)
    if fmt == "csv":
        return _csv(f"followup-daily-activity-{day.isoformat()}", [("staff", list(report.rows)),
                                                                   ("total", [report.totals])])
    return report


@router.get("/callbacks", response_model=CallbacksReport, responses=_csv_doc(CallbacksReport))
async def callbacks(ctx: CtxDep, store_id: StoreParam = None, from_: FromParam = None, to: ToParam = None,
                    fmt: FormatParam = "json") -> Any:
    """Callback execution (回访执行): call tasks due in the period per playbook rule and per assignee — planned
    vs done, done within the SLA, reached vs not reached, overdue and escalated, with the rates."""
    scope = await service.resolve_scope(ctx, store_id)
    first, last = service.resolve_period(scope, from_, to)
    report = await service.callbacks(ctx, scope, first, last)
    if fmt == "csv":
        return _csv(f"followup-callbacks-{_span(first, last)}",
                    [("rule", list(report.by_rule)), ("assignee", list(report.by_assignee)),
                     ("total", [report.totals])])
    return report


@router.get("/minor-repair-coverage", response_model=CoverageReport, responses=_csv_doc(CoverageReport))
async def minor_repair_coverage(ctx: CtxDep, store_id: StoreParam = None, from_: FromParam = None,
                                to: ToParam = None, fmt: FormatParam = "json") -> Any:
    """Minor-repair callback coverage (T-55): minor-repair visits completed in the period, those sampled for a
    callback, callbacks done and customers reached; coverage = reached / visits against the 30% target."""
    scope = await service.resolve_scope(ctx, store_id)
    first, last = service.resolve_period(scope, from_, to)
    report = await service.minor_repair_coverage(ctx, scope, first, last)
    if fmt == "csv":
        return _csv(f"followup-minor-repair-coverage-{_span(first, last)}",
                    [("store", list(report.stores)), ("total", [report.total])])
    return report


@router.get("/followups/outcomes", response_model=OutcomesReport, responses=_csv_doc(OutcomesReport))
async def followup_outcomes(ctx: CtxDep, store_id: StoreParam = None, from_: FromParam = None,
                            to: ToParam = None, fmt: FormatParam = "json") -> Any:
    """What became of the follow-ups due in the period: per rule, how many fired, were skipped, cancelled or
    failed (or still wait), and the most frequent reasons touches did not happen."""
    scope = await service.resolve_scope(ctx, store_id)
    first, last = service.resolve_period(scope, from_, to)
    report = await service.outcomes(ctx, scope, first, last)
    if fmt == "csv":
        return _csv(f"followup-outcomes-{_span(first, last)}",
                    [("rule", list(report.by_rule)), ("total", [report.totals]), ("reason", list(report.top_reasons))])
    return report
