"""Follow-up reports (DOMAIN.md §14): the daily activity per staff member, callback execution, minor-repair
coverage and what became of the planned touches. Counts are over store-local days."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, Field

#: Callback coverage the minor-repair KPI asks for (T-55: ≥ 30% of the minor-repair volume).
MINOR_REPAIR_TARGET = 0.30
#: Longest period one report covers (a year, leap day included).
MAX_DAYS = 366


class ReportHeader(BaseModel):
    store_id: uuid.UUID | None = Field(description="The store asked for; null: every store you may see.")
    generated_at: datetime = Field(description="When the report was computed (the service clock, UTC).")


class PeriodHeader(ReportHeader):
    from_date: date = Field(description="First store-local day counted.")
    to_date: date = Field(description="Last store-local day counted (inclusive).")


class _Staff(BaseModel):
    staff_id: uuid.UUID | None = Field(description="The assignee; null: the team queue of `role` (unassigned tasks).")
    staff_name: str | None = Field(description="The assignee's name (null for a team queue).")
    role: str = Field(description="The role the tasks are for (sales_consultant, service_advisor, cs_agent...).")


# Row models name their key class as the last base: pydantic takes the fields of later bases first, so the keys
# lead in the JSON and in the CSV columns.


# --- daily activity (T-10) ----------------------------------------------------------------------------------


class ActivityCounts(BaseModel):
    due: int = Field(description="Tasks due that day.")
    done: int = Field(description="Tasks finished as done that day (whenever they were due).")
    failed: int = Field(description="Tasks given up as failed that day.")
    open: int = Field(description="Of the tasks due that day, those still open or in progress now.")
    overdue: int = Field(description="Tasks past their SLA and still unfinished at the end of that day "
                                     "(now, for today), whenever they were due.")
    reached: int = Field(description="Tasks finished that day whose outcome says the customer was reached "
                                     "(`outcome.reached` = `reached`).")
    customers_contacted: int = Field(description="Distinct customers of the tasks finished (done or failed) that day.")


class ActivityRow(ActivityCounts, _Staff):
    pass


class DailyActivityReport(ReportHeader):
    day: date = Field(description="The store-local day reported.")
    rows: list[ActivityRow] = Field(description="One row per staff member and role (every active executor of the "
                                                "stores, with zeros when idle), then the team queues.")
    totals: ActivityCounts = Field(description="All rows together (`customers_contacted` counted once per customer).")


# --- callback execution ----------------------------------------------------------------------------------


class CallbackCounts(BaseModel):
    planned: int = Field(description="Call tasks due in the period.")
    cancelled: int = Field(description="Of those, cancelled (the reason for the call went away).")
    done: int = Field(description="Finished as done.")
    done_on_time: int = Field(description="Done no later than the SLA (`completed_at <= sla_due_at`).")
    failed: int = Field(description="Given up as failed.")
    open: int = Field(description="Still open or in progress.")
    overdue: int = Field(description="Missed the SLA: still open past it, or finished (done/failed) after it.")
    escalated: int = Field(description="Escalated at least once (escalation level ≥ 1).")
    reached: int = Field(description="Finished with `outcome.reached` = `reached`.")
    not_reached: int = Field(description="Finished with any other `outcome.reached` (not reached, refused, wrong "
                                         "number).")
    completion_rate: float | None = Field(description="done / (planned − cancelled); null when nothing was planned.")
    on_time_rate: float | None = Field(description="done_on_time / (planned − cancelled); null when nothing was "
                                                   "planned.")
    reach_rate: float | None = Field(description="reached / (reached + not_reached); null without recorded outcomes.")


class _CallRule(BaseModel):
    rule_key: str | None = Field(description="The playbook rule that planned the calls; null: calls made by hand.")


class CallbacksByRule(CallbackCounts, _CallRule):
    pass


class CallbacksByAssignee(CallbackCounts, _Staff):
    pass


class CallbacksReport(PeriodHeader):
    totals: CallbackCounts
    by_rule: list[CallbacksByRule] = Field(description="Per playbook rule, most planned first.")
    by_assignee: list[CallbacksByAssignee] = Field(description="Per assignee and role, most planned first.")


# --- minor-repair coverage (T-55) ----------------------------------------------------------------------------


class CoverageCounts(BaseModel):
    minor_repair_visits: int = Field(description="Minor-repair visits completed in the period (each visit gets a "
                                                 "`service_thanks` occurrence, so those are counted).")
    sampled: int = Field(description="Of those, visits the playbook picked for a callback (`minor_repair_callback`).")
    callbacks_done: int = Field(description="Callbacks about those visits finished as done.")
    reached: int = Field(description="Visits whose callback reached the customer (`outcome.reached` = `reached`).")
    coverage: float | None = Field(description="reached / minor_repair_visits; null without visits.")
    meets_target: bool | None = Field(description="coverage ≥ target; null without visits.")


class _Store(BaseModel):
    store_id: uuid.UUID
    store_name: str | None = Field(description="From the store directory (null if not known yet).")


class CoverageRow(CoverageCounts, _Store):
    pass


class CoverageReport(PeriodHeader):
    target: float = Field(default=MINOR_REPAIR_TARGET, description="Required share of minor-repair visits called back.")
    stores: list[CoverageRow] = Field(description="One row per store in scope.")
    total: CoverageCounts = Field(description="All those stores together.")


# --- outcomes of the planned touches ---------------------------------------------------------------------


class OutcomeCounts(BaseModel):
    scheduled: int = Field(description="Still waiting (not due yet, or deferred).")
    fired: int = Field(description="Carried out: a task, message or survey was created.")
    skipped: int = Field(description="Not done on purpose (stale, no consent, do-not-call, customer lost...).")
    cancelled: int = Field(description="The reason for it went away (date changed, vehicle sold, appointment "
                                       "moved...).")
    failed: int = Field(description="Gave up after retries.")
    total: int


class _Rule(BaseModel):
    rule_key: str


class OutcomesByRule(OutcomeCounts, _Rule):
    pass


class SkipReason(BaseModel):
    state: str = Field(description="skipped, cancelled or failed.")
    reason: str = Field(description="Why (variable details such as how late are folded: `stale (too late)`).")
    count: int


class OutcomesReport(PeriodHeader):
    totals: OutcomeCounts
    by_rule: list[OutcomesByRule] = Field(description="Occurrences due in the period per rule, most first.")
    top_reasons: list[SkipReason] = Field(description="The most frequent reasons touches did not happen (up to 10).")
