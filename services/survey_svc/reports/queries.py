"""The satisfaction and complaint reports, computed by Postgres (or SQLite, embedded) with GROUP BY.

Each table is read once per report: records (visits and deliveries) by ``completed_at``, invitations by
``created_at``, responses by ``answered_at``, complaints by ``opened_at``, each in its stores' local days (see
:mod:`survey_svc.reports.scope`); the satisfaction report's three scans run side by side on their own
connections. Responses are grouped by (report key, survey) with sums and counts only, so the per-item averages
of the whole period come out of the same single pass; Python then adds up those few pre-aggregated rows (one
per key and survey), never the responses themselves.

Rates are per period, not per cohort: a month's return rate is that month's answers over that month's
invitations, so an invitation sent on the 30th and answered on the 2nd counts in two months.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from survey_svc.deps import Ctx
from survey_svc.models import Complaint, Invitation, Response, StaffView, SurveyTemplate, VisitView
from survey_svc.reports import schemas as s
from survey_svc.reports.scope import Scope
from survey_svc.surveys.store import definition_of

VALID = ("none", "accepted")
RECORD_KINDS = ("visit", "delivery")
TOP_REPEATS = 20
P90 = 0.9
T = TypeVar("T")


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _avg(total: float | None, n: int) -> float | None:
    return round(total / n, 2) if n and total is not None else None


def _key(scope: Scope, group_by: str, model: Any, column: Any) -> Any:
    if group_by == "month":
        return scope.month_of(model, column)
    return getattr(model, f"{group_by}_id")


async def _staff_names(session: AsyncSession, tenant_id: uuid.UUID, ids: Iterable[Any]) -> dict[uuid.UUID, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await session.execute(sa.select(StaffView.id, StaffView.name).where(
        StaffView.tenant_id == tenant_id, StaffView.id.in_(wanted)))
    return {sid: name for sid, name in rows}


async def _with_session(ctx: Ctx, query: Callable[..., Awaitable[T]], *args: Any) -> T:
    async with ctx.runtime.sessionmaker() as session:
        return await query(session, *args)


# --- survey items -------------------------------------------------------------------------------------------


async def survey_items(session: AsyncSession, tenant_id: uuid.UUID, survey: str | None) -> dict[str, dict[str, str]]:
    """Per survey key, its scored rating items in questionnaire order with the newest version's wording (older
    versions' items that were dropped come last)."""
    stmt = sa.select(SurveyTemplate).where(SurveyTemplate.tenant_id == tenant_id) \
        .order_by(SurveyTemplate.key, SurveyTemplate.version.desc())
    if survey is not None:
        stmt = stmt.where(SurveyTemplate.key == survey)
    out: dict[str, dict[str, str]] = {}
    for template in await session.scalars(stmt):
        items = out.setdefault(template.key, {})
        for q in definition_of(template).questions:
            if q.type == "rating" and q.scored and q.id not in items:
                items[q.id] = q.text
    return out


def item_columns(items: dict[str, dict[str, str]]) -> list[str]:
    """Every item id of the surveys, ``q1``, ``q2``… first (numerically), then the others by name."""
    ids = {i for per in items.values() for i in per}

    def order(i: str) -> tuple[int, int, str]:
        return (0, int(i[1:]), i) if i[:1] == "q" and i[1:].isdigit() else (1, 0, i)

    return sorted(ids, key=order)


# --- satisfaction -------------------------------------------------------------------------------------------


async def satisfaction(ctx: Ctx, scope: Scope, group_by: str, survey: str | None) -> s.SatisfactionReport:
    session = ctx.session
    items = await survey_items(session, scope.tenant_id, survey)
    columns = item_columns(items)
    # Three independent scans, each on its own connection: they run side by side.
    responses, invitations, records = await asyncio.gather(
        _with_session(ctx, _response_sums, scope, group_by, survey, items, columns),
        _with_session(ctx, _invitation_counts, scope, group_by, survey),
        _with_session(ctx, _record_counts, scope, group_by))

    # With a survey chosen, the records it is based on are the kinds its invitations are about.
    used = {about for (_, about), n in invitations.items() if n[0] and about in RECORD_KINDS}
    kinds = used if survey is not None and used else set(RECORD_KINDS)
    keys: set[Any] = {k for k, _ in responses} | {k for k, _ in invitations} | {k for k, _ in records}
    if group_by == "store":
        keys |= set(scope.stores)
    elif group_by == "month":
        keys |= set(scope.months())

    per_key: dict[Any, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (key, _survey), sums in responses.items():
        _add(per_key[key], sums)
    for (key, about), (live, _) in invitations.items():
        acc = per_key[key]
        acc["invitations"] += live
        if about in RECORD_KINDS:
            acc["invitations_about_records"] += live
    for (key, kind), n in records.items():
        acc = per_key[key]
        acc["repair_orders" if kind == "visit" else "deliveries"] += n
        if kind in kinds:
            acc["records"] += n
    total: dict[str, float] = defaultdict(float)
    for key in keys:
        _add(total, per_key[key])

    rows = await _satisfaction_rows(session, scope, group_by, {k: _counts(per_key[k]) for k in keys})
    return s.SatisfactionReport(
        store_id=scope.store_id, from_date=scope.first, to_date=scope.last, days=scope.days,
        generated_at=scope.now, time_zones=sorted(scope.zones()), survey=survey,
        group_by=group_by,  # type: ignore[arg-type]
        totals=_counts(total), rows=rows, items=_items(items, columns, survey, responses))


def _add(into: dict[str, float], sums: dict[str, Any]) -> None:
    for name, value in sums.items():
        if value is not None and not name.startswith("item:"):
            into[name] += value


def _item_score(session: AsyncSession, item_scores: Any, item: str) -> Any:
    """One item's 0–100 score. Postgres: the JSONB number cast straight to numeric (no text round trip: the
    report extracts every item of a million rows); SQLite: ``json_extract`` as a float."""
    if session.bind.dialect.name == "postgresql":
        return sa.cast(item_scores[item], sa.Numeric)
    return item_scores[item].as_float()


async def _response_sums(session: AsyncSession, scope: Scope, group_by: str, survey: str | None,
                         items: dict[str, dict[str, str]],
                         columns: list[str]) -> dict[tuple[Any, str], dict[str, Any]]:
    """One pass over the period's responses: per (key, survey), counts and sums (items included).

    The inner query computes each row's values once (validity, each item's score, only for the surveys that ask
    it); ``OFFSET 0`` keeps Postgres from folding it into the outer one, which would evaluate each expression
    again for every aggregate that uses it."""
    where = [scope.within(Response, Response.answered_at)]
    if survey is not None:
        where.append(Response.survey_key == survey)
    surveys_of = {item: sorted(k for k, per in items.items() if item in per) for item in columns}
    scores = []
    for i, item in enumerate(columns):
        score = _item_score(session, Response.item_scores, item)
        if survey is None and len(surveys_of[item]) < len(items):
            score = sa.case((Response.survey_key.in_(surveys_of[item]), score))
        scores.append(score.label(f"i{i}"))
    inner = sa.select(_key(scope, group_by, Response, Response.answered_at).label("k"), Response.survey_key,
                      Response.channel, Response.review_status, Response.review_status.in_(VALID).label("valid"),
                      Response.satisfaction_index, Response.overall_score, Response.nps_class, Response.low_score,
                      *scores).where(*where).offset(0).subquery()
    c = inner.c
    valid = c.valid.is_(True)
    measures = [
        sa.func.count().label("responses"),
        sa.func.count().filter(c.channel == "web").label("web_responses"),
        sa.func.count().filter(c.channel == "phone").label("phone_responses"),
        sa.func.count().filter(valid).label("valid_responses"),
        sa.func.count().filter(c.review_status == "pending").label("pending_review"),
        sa.func.count().filter(c.review_status == "rejected").label("rejected"),
        sa.func.sum(c.satisfaction_index).filter(valid).label("index_sum"),
        sa.func.count(c.satisfaction_index).filter(valid).label("index_n"),
        sa.func.sum(c.overall_score).filter(valid).label("overall_sum"),
        sa.func.count(c.overall_score).filter(valid).label("overall_n"),
        sa.func.count().filter(valid, c.overall_score == 0).label("very_dissatisfied"),
        sa.func.count().filter(valid, c.low_score.is_(True)).label("low_score"),
        sa.func.count().filter(valid, c.nps_class == "promoter").label("promoters"),
        sa.func.count().filter(valid, c.nps_class == "passive").label("passives"),
        sa.func.count().filter(valid, c.nps_class == "detractor").label("detractors"),
    ]
    for i in range(len(columns)):
        score = c[f"i{i}"]
        measures += [sa.func.sum(score).filter(valid).label(f"item:{i}:sum"),
                     sa.func.count(score).filter(valid).label(f"item:{i}:n"),
                     sa.func.count().filter(valid, score == 0).label(f"item:{i}:zero")]
    rows = await session.execute(sa.select(c.k, c.survey_key, *measures).group_by(c.k, c.survey_key))
    out = {}
    for row in rows:
        values = {name: float(v) if isinstance(v, Decimal) else v for name, v in row._mapping.items()}
        key, survey_key = values.pop("k"), values.pop("survey_key")
        out[(key, survey_key)] = values
    return out


async def _invitation_counts(session: AsyncSession, scope: Scope, group_by: str,
                             survey: str | None) -> dict[tuple[Any, str], tuple[int, int]]:
    """Per (key, what it is about): invitations not cancelled, and all."""
    where = [scope.within(Invitation, Invitation.created_at)]
    if survey is not None:
        where.append(Invitation.survey_key == survey)
    inner = sa.select(_key(scope, group_by, Invitation, Invitation.created_at).label("k"), Invitation.about_type,
                      Invitation.status).where(*where).subquery()
    rows = await session.execute(sa.select(
        inner.c.k, inner.c.about_type, sa.func.count().filter(inner.c.status != "cancelled"), sa.func.count())
        .group_by(inner.c.k, inner.c.about_type))
    return {(k, about): (live, n) for k, about, live, n in rows}


async def _record_counts(session: AsyncSession, scope: Scope, group_by: str) -> dict[tuple[Any, str], int]:
    """Per (key, kind): repair orders (``visit``) and deliveries completed in the period."""
    inner = sa.select(_key(scope, group_by, VisitView, VisitView.completed_at).label("k"), VisitView.kind) \
        .where(scope.within(VisitView, VisitView.completed_at)).subquery()
    rows = await session.execute(sa.select(inner.c.k, inner.c.kind, sa.func.count())
                                 .group_by(inner.c.k, inner.c.kind))
    return {(k, kind): n for k, kind, n in rows}


def _counts(acc: dict[str, float]) -> s.SatisfactionCounts:
    n = {name: int(acc.get(name, 0)) for name in (
        "repair_orders", "deliveries", "records", "invitations", "invitations_about_records", "responses",
        "web_responses", "phone_responses", "valid_responses", "pending_review", "rejected", "very_dissatisfied",
        "low_score", "promoters", "passives", "detractors", "index_n", "overall_n")}
    nps_answers = n["promoters"] + n["passives"] + n["detractors"]
    return s.SatisfactionCounts(
        repair_orders=n["repair_orders"], deliveries=n["deliveries"], records=n["records"],
        invitations=n["invitations"], invitations_about_records=n["invitations_about_records"],
        survey_rate=_rate(n["invitations_about_records"], n["records"]),
        responses=n["responses"], web_responses=n["web_responses"], phone_responses=n["phone_responses"],
        return_rate=_rate(n["responses"], n["invitations"]),
        valid_responses=n["valid_responses"], pending_review=n["pending_review"], rejected=n["rejected"],
        valid_rate=_rate(n["valid_responses"], n["responses"]),
        avg_satisfaction_index=_avg(acc.get("index_sum"), n["index_n"]),
        avg_overall_score=_avg(acc.get("overall_sum"), n["overall_n"]),
        very_dissatisfied=n["very_dissatisfied"], low_score=n["low_score"], nps_answers=nps_answers,
        promoters=n["promoters"], passives=n["passives"], detractors=n["detractors"],
        nps=round(100 * (n["promoters"] - n["detractors"]) / nps_answers, 1) if nps_answers else None)


def _items(items: dict[str, dict[str, str]], columns: list[str], survey: str | None,
           responses: dict[tuple[Any, str], dict[str, Any]]) -> list[s.SurveyItems]:
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0, 0])
    for (_, survey_key), values in responses.items():
        for i, item in enumerate(columns):
            acc = sums[(survey_key, item)]
            acc[0] += values[f"item:{i}:sum"] or 0
            acc[1] += values[f"item:{i}:n"]
            acc[2] += values[f"item:{i}:zero"]
    out = []
    answered = {survey_key for _, survey_key in responses}
    for survey_key in sorted(answered | ({survey} if survey else set())):
        scored = []
        for item, text in items.get(survey_key, {}).items():
            total, n, zero = sums.get((survey_key, item), (0.0, 0, 0))
            scored.append(s.ItemScore(survey=survey_key, item=item, text=text, answers=int(n),
                                      average=_avg(total, int(n)), very_dissatisfied=int(zero)))
        ranked = [i for i in scored if i.average is not None]
        out.append(s.SurveyItems(
            survey=survey_key, items=scored,
            strongest=max(ranked, key=lambda i: i.average or 0).item if ranked else None,
            weakest=min(ranked, key=lambda i: i.average or 0).item if ranked else None))
    return out


async def _satisfaction_rows(session: AsyncSession, scope: Scope, group_by: str,
                             counts: dict[Any, s.SatisfactionCounts]) -> list[Any]:
    if group_by == "month":
        return [s.SatisfactionByMonth(month=k, **c.model_dump()) for k, c in sorted(counts.items())]
    if group_by == "store":
        rows = [s.SatisfactionByStore(**_store_key(scope, k), **c.model_dump()) for k, c in counts.items()]
        return sorted(rows, key=lambda r: (r.store_code is None, r.store_code or "", str(r.store_id)))
    names = await _staff_names(session, scope.tenant_id, counts)
    rows = [s.SatisfactionByStaff(staff_id=k, staff_name=names.get(k) if k else None, **c.model_dump())
            for k, c in counts.items()]
    return sorted(rows, key=lambda r: (r.staff_id is None, -r.responses, r.staff_name or "", str(r.staff_id)))


def _store_key(scope: Scope, store_id: uuid.UUID) -> dict[str, Any]:
    view = scope.stores.get(store_id)
    return dict(store_id=store_id, store_code=view.code if view is not None else None,
                store_name=view.name if view is not None else None)


# --- complaints ---------------------------------------------------------------------------------------------


def _hours(session: AsyncSession, end: Any, start: Any) -> Any:
    if session.bind.dialect.name == "postgresql":
        return sa.cast(sa.extract("epoch", end - start), sa.Float) / 3600.0
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 24.0


async def complaints(ctx: Ctx, scope: Scope, group_by: str) -> s.ComplaintReport:
    session = ctx.session
    now = scope.now
    key = {"month": lambda: scope.month_of(Complaint, Complaint.opened_at), "store": lambda: Complaint.store_id,
           "category": lambda: Complaint.category, "severity": lambda: Complaint.severity}[group_by]()
    resolved = sa.func.coalesce(Complaint.resolved_at, Complaint.closed_at)
    clock = sa.func.coalesce(Complaint.held_at, now)  # on hold, the deadlines' clock stopped when the hold began
    inner = sa.select(
        key.label("k"), Complaint.category, Complaint.severity, Complaint.status, Complaint.channel,
        Complaint.kind, Complaint.feedback_result, Complaint.feedback_speed, Complaint.escalation_level,
        Complaint.first_responded_at, Complaint.closed_at,
        _hours(session, Complaint.first_responded_at, Complaint.opened_at).label("fr_hours"),
        _hours(session, Complaint.closed_at, Complaint.opened_at).label("close_hours"),
        sa.or_(Complaint.first_responded_at > Complaint.first_response_due,
               sa.and_(Complaint.first_responded_at.is_(None), Complaint.first_response_due < clock))
        .label("fr_late"),
        sa.or_(resolved > Complaint.resolution_due, sa.and_(resolved.is_(None), Complaint.resolution_due < clock))
        .label("res_late"),
    ).where(scope.within(Complaint, Complaint.opened_at)).subquery()
    c = inner.c
    postgres = session.bind.dialect.name == "postgresql"
    measures = [
        sa.func.count().label("complaints"),
        sa.func.count().filter(sa.or_(c.kind == "major", c.category == "major")).label("major"),
        sa.func.count().filter(c.status != "closed").label("open"),
        sa.func.count().filter(c.status == "closed").label("closed"),
        sa.func.count().filter(c.escalation_level >= 1).label("escalated"),
        sa.func.count(c.first_responded_at).label("responded"),
        sa.func.avg(c.fr_hours).label("avg_first_response_hours"),
        sa.func.avg(c.close_hours).label("avg_closure_hours"),
        sa.func.count().filter(c.fr_late.is_(True)).label("first_response_late"),
        sa.func.count().filter(c.res_late.is_(True)).label("resolution_late"),
    ]
    if postgres:
        measures += [sa.func.percentile_cont(P90).within_group(c.fr_hours).label("p90_first_response_hours"),
                     sa.func.percentile_cont(P90).within_group(c.close_hours).label("p90_closure_hours")]
    grouped = {r.k: dict(r._mapping) for r in await session.execute(sa.select(c.k, *measures).group_by(c.k))}
    totals = dict((await session.execute(sa.select(*measures))).one()._mapping)
    if not postgres:  # SQLite (embedded mode) has no percentile aggregate: its few cases are ranked here
        await _p90_in_python(session, inner, grouped, totals)

    mix = (await session.execute(sa.select(c.category, c.severity, c.status, c.channel, c.feedback_result,
                                           c.feedback_speed, sa.func.count())
                                 .group_by(c.category, c.severity, c.status, c.channel, c.feedback_result,
                                           c.feedback_speed))).all()
    repeat_q = sa.select(Complaint.customer_id, sa.func.count().label("n")).where(
        scope.within(Complaint, Complaint.opened_at), Complaint.customer_id.is_not(None)) \
        .group_by(Complaint.customer_id).having(sa.func.count() >= 2).subquery()
    repeats = (await session.execute(
        sa.select(repeat_q.c.customer_id, repeat_q.c.n, sa.func.count().over().label("of"))
        .order_by(repeat_q.c.n.desc(), repeat_q.c.customer_id).limit(TOP_REPEATS))).all()

    records: dict[Any, int] = defaultdict(int)
    for (k, _kind), n in (await _record_counts(session, scope, group_by if group_by in ("store", "month")
                                               else "store")).items():
        records[k] += n
    all_records = sum(records.values())

    keys = set(grouped)
    if group_by == "store":
        keys |= set(scope.stores)
    elif group_by == "month":
        keys |= set(scope.months())
    rows: list[Any] = []
    for k in keys:
        counts = _complaint_counts(grouped.get(k), records.get(k, 0) if group_by in ("store", "month") else None)
        if group_by == "store":
            rows.append(s.ComplaintsByStore(**_store_key(scope, k), **counts.model_dump()))
        elif group_by == "month":
            rows.append(s.ComplaintsByMonth(month=k, **counts.model_dump()))
        elif group_by == "category":
            rows.append(s.ComplaintsByCategory(category=k, **counts.model_dump()))
        else:
            rows.append(s.ComplaintsBySeverity(severity=k, **counts.model_dump()))
    rows.sort(key=_complaint_order(group_by))

    def tally(index: int) -> list[s.Count]:
        counted: Counter[str | None] = Counter()
        for row in mix:
            counted[row[index]] += row[-1]
        return [s.Count(value=v, count=n) for v, n in sorted(counted.items(), key=lambda x: (-x[1], str(x[0])))]

    return s.ComplaintReport(
        store_id=scope.store_id, from_date=scope.first, to_date=scope.last, days=scope.days, generated_at=now,
        time_zones=sorted(scope.zones()), group_by=group_by,  # type: ignore[arg-type]
        totals=_complaint_counts(totals if totals["complaints"] else None, all_records), rows=rows,
        by_category=tally(0), by_severity=tally(1), by_status=tally(2), by_channel=tally(3),
        feedback_result=[x for x in tally(4) if x.value is not None],
        feedback_speed=[x for x in tally(5) if x.value is not None],
        repeat_complainers=repeats[0].of if repeats else 0,
        top_repeat_complainers=[s.RepeatComplainer(customer_id=r.customer_id, complaints=r.n) for r in repeats])


async def _p90_in_python(session: AsyncSession, inner: Any, grouped: dict[Any, dict[str, Any]],
                         totals: dict[str, Any]) -> None:
    rows = (await session.execute(sa.select(inner.c.k, inner.c.fr_hours, inner.c.close_hours))).all()
    for name, index in (("p90_first_response_hours", 1), ("p90_closure_hours", 2)):
        per: dict[Any, list[float]] = defaultdict(list)
        for row in rows:
            if row[index] is not None:
                per[row[0]].append(float(row[index]))
        for k, values in per.items():
            grouped[k][name] = _percentile(values, P90)
        totals[name] = _percentile([v for vs in per.values() for v in vs], P90)


def _percentile(values: list[float], q: float) -> float | None:
    """Continuous percentile, as Postgres' ``percentile_cont``."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _complaint_counts(row: dict[str, Any] | None, records: int | None) -> s.ComplaintCounts:
    row = row or {}

    def hours(name: str) -> float | None:
        value = row.get(name)
        return round(float(value), 2) if value is not None else None

    n = {name: int(row.get(name) or 0) for name in ("complaints", "major", "open", "closed", "escalated",
                                                     "responded", "first_response_late", "resolution_late")}
    return s.ComplaintCounts(
        **n, avg_first_response_hours=hours("avg_first_response_hours"),
        p90_first_response_hours=hours("p90_first_response_hours"), avg_closure_hours=hours("avg_closure_hours"),
        p90_closure_hours=hours("p90_closure_hours"),
        complaint_rate=None if records is None else _rate(n["complaints"], records))


def _complaint_order(group_by: str) -> Any:
    if group_by == "month":
        return lambda r: r.month
    if group_by == "store":
        return lambda r: (r.store_code is None, r.store_code or "", str(r.store_id))
    return lambda r: (-r.complaints, getattr(r, group_by))
