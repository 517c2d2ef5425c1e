"""Report shapes: the satisfaction report (DOMAIN §9.3 fields, §14) and complaint statistics (§10.10).

Rates are fractions (0–1, four decimals), null when their denominator is zero; averages are over valid
responses (not rejected by a reviewer, not waiting for review) and null without any. Row models name their key
class last: pydantic takes the fields of later bases first, so the keys lead in the JSON and in the CSV columns.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

#: Longest period one report covers: two years (a leap day included).
MAX_DAYS = 731

SurveyGroup = Literal["store", "staff", "month"]
ComplaintGroup = Literal["category", "severity", "store", "month"]


class ReportHeader(BaseModel):
    store_id: uuid.UUID | None = Field(description="The store asked for; null: every store you may see.")
    from_date: date = Field(description="First store-local day counted.")
    to_date: date = Field(description="Last store-local day counted (inclusive).")
    days: int = Field(description="Days in the period (the report template's 天数).")
    generated_at: datetime = Field(description="When the report was computed (the service clock, UTC).")
    time_zones: list[str] = Field(description="Time zones of the stores covered: every store's days and months are "
                                              "its own local ones.")


# --- satisfaction ---------------------------------------------------------------------------------------


class SatisfactionCounts(BaseModel):
    repair_orders: int = Field(description="Settled service visits (repair orders) completed in the period.")
    deliveries: int = Field(description="Vehicle deliveries in the period.")
    records: int = Field(description="The records surveys are based on (调查基数): repair orders and deliveries; "
                                     "with `survey`, only the kinds that survey's invitations are about.")
    invitations: int = Field(description="Invitations created in the period (sent links and phone surveys; "
                                         "cancelled ones not counted).")
    invitations_about_records: int = Field(description="Of those, invitations about a visit or delivery (not about "
                                                       "a complaint): the numerator of the survey rate.")
    survey_rate: float | None = Field(description="调查率: invitations_about_records / records.")
    responses: int = Field(description="Answers received in the period (回收数), every review status.")
    web_responses: int = Field(description="Of those, answered on the public page.")
    phone_responses: int = Field(description="Of those, recorded by staff during a phone callback.")
    return_rate: float | None = Field(description="回收率: responses / invitations.")
    valid_responses: int = Field(description="Answers counted in the scores: not flagged, or flagged and accepted "
                                             "by a reviewer.")
    pending_review: int = Field(description="Flagged answers still waiting for a reviewer (not counted yet).")
    rejected: int = Field(description="Answers a reviewer rejected as invalid (never counted).")
    valid_rate: float | None = Field(description="有效率: valid_responses / responses.")
    avg_satisfaction_index: float | None = Field(description="Mean 0–100 satisfaction index of the valid answers.")
    avg_overall_score: float | None = Field(description="平均总评满意率: mean 0–100 score of the overall question "
                                                        "(Q1) of the valid answers.")
    very_dissatisfied: int = Field(description="很不满意: valid answers scoring 0 on the overall question.")
    low_score: int = Field(description="Valid answers that were low scores (each opened a recovery task).")
    nps_answers: int = Field(description="Valid answers with an NPS question answered.")
    promoters: int = Field(description="NPS 9–10.")
    passives: int = Field(description="NPS 7–8.")
    detractors: int = Field(description="NPS 0–6.")
    nps: float | None = Field(description="Promoters% − detractors% of nps_answers (−100…100, one decimal).")


class _StoreKey(BaseModel):
    store_id: uuid.UUID
    store_code: str | None = Field(description="From the store directory (null if not known yet).")
    store_name: str | None


class _StaffKey(BaseModel):
    staff_id: uuid.UUID | None = Field(description="The advisor or consultant rated (of the repair order or sale); "
                                                   "null: none recorded.")
    staff_name: str | None


class _MonthKey(BaseModel):
    month: str = Field(description="Store-local month, `YYYY-MM` (the first and last may be partial).")


class SatisfactionByStore(SatisfactionCounts, _StoreKey):
    pass


class SatisfactionByStaff(SatisfactionCounts, _StaffKey):
    pass


class SatisfactionByMonth(SatisfactionCounts, _MonthKey):
    pass


class ItemScore(BaseModel):
    survey: str = Field(description="Survey key (items are compared within one survey).")
    item: str = Field(description="Question id, e.g. `q2`.")
    text: str | None = Field(description="The question as the newest version asks it.")
    answers: int = Field(description="Valid answers scoring this item.")
    average: float | None = Field(description="Mean 0–100 score.")
    very_dissatisfied: int = Field(description="Valid answers scoring 0 on this item.")


class SurveyItems(BaseModel):
    survey: str
    items: list[ItemScore] = Field(description="Every scored rating item, in questionnaire order.")
    strongest: str | None = Field(description="Item with the highest average (最强项).")
    weakest: str | None = Field(description="Item with the lowest average (最弱项): the one to explain and act on.")


class SatisfactionReport(ReportHeader):
    survey: str | None = Field(description="The survey reported; null: every survey.")
    group_by: SurveyGroup
    totals: SatisfactionCounts = Field(description="The whole period and scope.")
    rows: list[SatisfactionByStore] | list[SatisfactionByStaff] | list[SatisfactionByMonth] = Field(
        description="One row per store (every store in scope), per staff member rated (most responses first), or "
                    "per month of the period (the trend, every month listed).")
    items: list[SurveyItems] = Field(description="Per survey answered in the period (or the one asked for), "
                                                 "per-item averages over the whole period.")


# --- complaints ---------------------------------------------------------------------------------------------


class ComplaintCounts(BaseModel):
    complaints: int = Field(description="Cases opened in the period.")
    major: int = Field(description="Major cases (重大投诉: kind or category `major`).")
    open: int = Field(description="Of those, not closed now.")
    closed: int = Field(description="Of those, closed now.")
    escalated: int = Field(description="Escalated at least once.")
    responded: int = Field(description="With a first response recorded.")
    avg_first_response_hours: float | None = Field(description="Mean hours from intake to the first response.")
    p90_first_response_hours: float | None = Field(description="90th percentile of the same (continuous).")
    avg_closure_hours: float | None = Field(description="Mean hours from intake to closure, over closed cases.")
    p90_closure_hours: float | None = Field(description="90th percentile of the same.")
    first_response_late: int = Field(description="SLA breach: first response after its due time, or none yet and "
                                                 "the due time has passed.")
    resolution_late: int = Field(description="SLA breach: resolved (or closed) after the resolution due time, or "
                                             "neither yet and it has passed.")
    complaint_rate: float | None = Field(description="客户投诉率: complaints / repair orders and deliveries in the "
                                                     "period (null for category and severity rows).")


class _CategoryKey(BaseModel):
    category: str = Field(description="sales, parts, service or major.")


class _SeverityKey(BaseModel):
    severity: str


class ComplaintsByCategory(ComplaintCounts, _CategoryKey):
    pass


class ComplaintsBySeverity(ComplaintCounts, _SeverityKey):
    pass


class ComplaintsByStore(ComplaintCounts, _StoreKey):
    pass


class ComplaintsByMonth(ComplaintCounts, _MonthKey):
    pass


class Count(BaseModel):
    value: str | None = Field(description="The category, severity, status, channel or feedback given.")
    count: int


class RepeatComplainer(BaseModel):
    customer_id: uuid.UUID = Field(description="The customer (an id only: look them up with the PII permission).")
    complaints: int


class ComplaintReport(ReportHeader):
    group_by: ComplaintGroup
    totals: ComplaintCounts
    rows: (list[ComplaintsByCategory] | list[ComplaintsBySeverity] | list[ComplaintsByStore]
           | list[ComplaintsByMonth]) = Field(description="One row per category, severity, store or month.")
    by_category: list[Count]
    by_severity: list[Count]
    by_status: list[Count] = Field(description="Current status of the cases opened in the period "
                                               "(ongoing, in_process, hold, closed).")
    by_channel: list[Count] = Field(description="Where the cases came in (客户抱怨来源).")
    feedback_result: list[Count] = Field(description="Closed cases: the customer's satisfaction with the result.")
    feedback_speed: list[Count] = Field(description="Closed cases: the customer's satisfaction with the speed.")
    repeat_complainers: int = Field(description="Customers with two or more cases opened in the period.")
    top_repeat_complainers: list[RepeatComplainer] = Field(description="Up to 20 of them, most cases first.")
