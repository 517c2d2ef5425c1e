"""Satisfaction and complaint reports for managers and OEM pulls, as JSON or CSV (UTF-8 with BOM, so Excel opens
the Chinese text; written by the exports' helper, :mod:`shared.http.export`). The one-row-per-response export is
in :mod:`survey_svc.exports`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from survey_svc.deps import CtxDep, complaint_readers, survey_readers
from survey_svc.reports import queries
from survey_svc.reports.schemas import ComplaintGroup, ComplaintReport, SatisfactionReport, SurveyGroup
from survey_svc.reports.scope import resolve_scope
from survey_svc.surveys.schemas import KEY
from shared.errors import problem_responses
from shared.http.export import sections_csv, sections_csv_doc
from shared.validation import IsoDate

router = APIRouter(tags=["reports"], responses=problem_responses(401, 403, 404, 422))

StoreParam = Annotated[uuid.UUID | None, Query(
    description="One of your stores; default: every store you may see (404 for a store outside your scope).")]
FromParam = Annotated[IsoDate | None, Query(
    alias="from", description="First store-local day (default: the first of `to`'s month).")]
ToParam = Annotated[IsoDate | None, Query(
    alias="to", description="Last store-local day, inclusive (default: today); at most two years after `from`.")]
SurveyParam = Annotated[str | None, Query(max_length=60, pattern=KEY.pattern,
                                          description="One survey (e.g. `service_satisfaction`); default: all.")]
FormatParam = Annotated[Literal["json", "csv"] | None, Query(
    alias="format", description="`csv`: the report's rows as CSV (UTF-8 with BOM, opens in Excel); also chosen by "
                                "`Accept: text/csv`. Default JSON.")]


SECTIONS = " (total, the group rows, items or breakdowns)"


def wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def _span(report: SatisfactionReport | ComplaintReport) -> str:
    return f"{report.from_date.isoformat()}_{report.to_date.isoformat()}"


@router.get("/api/v1/surveys/reports/satisfaction", response_model=SatisfactionReport, dependencies=[survey_readers],
            responses=sections_csv_doc(SatisfactionReport, SECTIONS))
async def satisfaction_report(
        ctx: CtxDep, request: Request, store_id: StoreParam = None, from_: FromParam = None, to: ToParam = None,
        survey: SurveyParam = None,
        group_by: Annotated[SurveyGroup, Query(description="Rows per store, per staff member rated, or per month "
                                                           "(the trend).")] = "store",
        fmt: FormatParam = None) -> Any:
    """The satisfaction analysis report (客户满意分析报告, DOMAIN §9.3): records surveyed, invitations sent and
    the survey rate, responses and the return rate, valid responses and the valid rate, average satisfaction
    index and overall score, very-dissatisfied count, NPS and low scores — per store, staff member or month —
    plus every item's average with the strongest and weakest. Days and months are each store's local ones."""
    scope = await resolve_scope(ctx, store_id, from_, to)
    report = await queries.satisfaction(ctx, scope, group_by, survey)
    if wants_csv(request, fmt):
        items = [item for group in report.items for item in group.items]
        return await sections_csv(f"satisfaction-{group_by}-{_span(report)}",
                             [("total", [report.totals]), (group_by, list(report.rows)), ("item", items)])
    return report


@router.get("/api/v1/complaints/reports", response_model=ComplaintReport, dependencies=[complaint_readers],
            responses=sections_csv_doc(ComplaintReport, SECTIONS))
async def complaint_report(
        ctx: CtxDep, request: Request, store_id: StoreParam = None, from_: FromParam = None, to: ToParam = None,
        group_by: Annotated[ComplaintGroup, Query(description="Rows per category, severity, store or month.")]
        = "category",
        fmt: FormatParam = None) -> Any:
    """Complaint statistics (DOMAIN §10.10) over the cases opened in the period: counts by category, severity,
    status and channel, major cases, time to first response and to closure (average and 90th percentile),
    SLA breaches, the complaint rate against repair orders and deliveries, and repeat complainers."""
    scope = await resolve_scope(ctx, store_id, from_, to)
    report = await queries.complaints(ctx, scope, group_by)
    if wants_csv(request, fmt):
        breakdowns: list[tuple[str, list[BaseModel]]] = [
            (name, list(getattr(report, name))) for name in
            ("by_category", "by_severity", "by_status", "by_channel", "feedback_result", "feedback_speed")]
        return await sections_csv(f"complaints-{group_by}-{_span(report)}",
                             [("total", [report.totals]), (group_by, list(report.rows)), *breakdowns,
                              ("repeat_complainer", list(report.top_repeat_complainers))])
    return report
