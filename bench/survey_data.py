"""Data of the survey bench, COPYed straight into survey_svc's tables (binary COPY through asyncpg).

- One dealer group with ``STORES`` stores (Asia/Shanghai) and six staff members each, and its default surveys.
- A year of history: ``responses`` answers spread evenly over ``year`` (80% the service questionnaire about a
  repair order, 20% the sales survey about a delivery), each with its answered invitation and the visit or
  delivery it was about, plus a quarter as many visits never surveyed. Answers are drawn from combinations scored
  by survey_svc's own scoring and low-score rules, so every derived column is what the service would have
  written. 10% were taken by phone; 1% are flagged and rejected, 1% flagged and waiting, 1% flagged and accepted.
- ``open_invitations`` open invitations in the first store, each for its own customer (unique phone) and repair
  order, created now: the answer links the submission run uses.

Foreign keys are not re-checked during the load (``session_replication_role = replica``): every referenced row
is written first by this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa

from survey_svc.invitations.tokens import token_for, token_hash
from survey_svc.models import SurveyTemplate
from survey_svc.policy import PolicyRules
from survey_svc.settings import SurveySettings
from survey_svc.surveys import answers as ans
from survey_svc.surveys.store import definition_of, ensure_default_surveys
from shared.db.engine import create_engine, make_sessionmaker

STORES = 10
STAFF_PER_STORE = 6
CHUNK = 50_000
SERVICE_ANSWERS = [
    {"q1": q1, "q2": q2, "q3": q3, "q4": "very_satisfied", "q5": q5, "q6": q6}
    for q1 in ("very_satisfied", "satisfied", "neutral", "dissatisfied", "very_dissatisfied")
    for q2 in ("very_satisfied", "satisfied", "neutral")
    for q3 in ("very_satisfied", "satisfied", "dissatisfied")
    for q5 in ("very_satisfied", "satisfied")
    for q6 in ("yes", "yes", "yes", "no")]
SALES_ANSWERS = [{"q1": q1, "q2": q2, "q3": "satisfied", "q4": q4, "nps": nps}
                 for q1 in ("very_satisfied", "satisfied", "neutral", "very_dissatisfied")
                 for q2 in ("very_satisfied", "satisfied") for q4 in ("yes", "no") for nps in range(11)]
#: What the submission run answers (validated and scored by the service on every request).
SUBMIT_ANSWERS = {"q1": "satisfied", "q2": "very_satisfied", "q3": "satisfied", "q4": "very_satisfied",
                  "q5": "satisfied", "q6": "yes", "comment": "服务很好,等待时间稍长。", "contact_way": ["sms"]}


def _uuid(space: int, i: int) -> uuid.UUID:
    return uuid.UUID(int=(space << 96) | i)


@dataclass
class Seeded:
    tenant_id: uuid.UUID
    store_ids: list[uuid.UUID]
    admin_id: uuid.UUID
    tokens: list[str] = field(default_factory=list)


@dataclass
class _Scored:
    answers: str
    items: str
    index: float | None
    overall: float | None
    nps: int | None
    nps_class: str | None
    low: bool
    reasons: str


def _combos(template: SurveyTemplate, given: list[dict[str, Any]]) -> list[_Scored]:
    definition, rules = definition_of(template), PolicyRules()
    out = []
    for raw in given:
        valid = ans.validate(definition, raw)
        scored = ans.score(definition, valid)
        reasons = rules.low_reasons(scored)
        out.append(_Scored(orjson.dumps(valid).decode(), orjson.dumps(scored.item_scores).decode(),
                           scored.satisfaction_index, scored.overall_score, scored.nps_score, scored.nps_class,
                           bool(reasons), orjson.dumps(reasons).decode()))
    return out


async def _copy(conn: asyncpg.Connection, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    total, batch = 0, []
    for row in rows:
        batch.append(row)
        if len(batch) == CHUNK:
            await conn.copy_records_to_table(table, records=batch, columns=columns, schema_name="survey")
            total, batch = total + len(batch), []
    if batch:
        await conn.copy_records_to_table(table, records=batch, columns=columns, schema_name="survey")
        total += len(batch)
    return total


VISIT_COLS = ["id", "kind", "tenant_id", "store_id", "customer_id", "vehicle_id", "visit_type", "ro_number",
              "staff_id", "completed_at", "delivery_date"]
INVITATION_COLS = ["id", "tenant_id", "store_id", "idempotency_key", "token_hash", "template_id", "survey_key",
                   "survey_version", "customer_id", "vehicle_id", "about_type", "about_id", "staff_id", "source",
                   "channels", "status", "flags", "created_at", "expires_at", "remind_at", "reminded_at",
                   "opened_at", "answered_at", "created_by"]
RESPONSE_COLS = ["id", "tenant_id", "store_id", "invitation_id", "template_id", "survey_key", "survey_version",
                 "customer_id", "vehicle_id", "about_type", "about_id", "staff_id", "channel", "recorded_by",
                 "answers", "item_scores", "satisfaction_index", "overall_score", "nps_score", "nps_class",
                 "low_score", "low_reasons", "comment", "flags", "review_status", "reviewed_by", "reviewed_at",
                 "review_note", "device_hash", "answered_at"]


async def seed(settings: SurveySettings, responses: int, year: int, open_invitations: int) -> Seeded:
    tenant = _uuid(0xBE75, 1)
    stores = [_uuid(0xBE75, 100 + s) for s in range(STORES)]
    staff = [_uuid(0xBE75, 1000 + k) for k in range(STORES * STAFF_PER_STORE)]
    admin = _uuid(0xBE75, 999)
    now = datetime.now(UTC)
    engine = create_engine(settings)
    sessions = make_sessionmaker(engine)
    async with sessions() as s, s.begin():
        await ensure_default_surveys(s, tenant)
    async with sessions() as s:
        templates = {t.key: t for t in await s.scalars(sa.select(SurveyTemplate).where(
            SurveyTemplate.tenant_id == tenant))}
    await engine.dispose()
    service, sales = templates["service_satisfaction"], templates["sales_satisfaction"]
    combos = {"service_satisfaction": _combos(service, SERVICE_ANSWERS),
              "sales_satisfaction": _combos(sales, SALES_ANSWERS)}

    dsn = settings.effective_database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.copy_records_to_table("store", schema_name="survey", columns=[
            "id", "tenant_id", "code", "name", "timezone", "active", "updated_at"], records=[
            (sid, tenant, f"S{n:02d}", f"基准门店{n:02d}", "Asia/Shanghai", True, now) for n, sid in enumerate(stores)])
        await conn.copy_records_to_table("staff", schema_name="survey", columns=[
            "id", "tenant_id", "name", "roles", "store_ids", "active", "updated_at"], records=[
            (sid, tenant, f"顾问{k:02d}", '["service_advisor"]', f'["{stores[k // STAFF_PER_STORE]}"]', True, now)
            for k, sid in enumerate(staff)])

        start = datetime(year, 1, 1, tzinfo=UTC) - timedelta(hours=8)  # midnight in Shanghai
        step = timedelta(days=365) / responses
        jitter = max(1, int(step.total_seconds()))  # stays inside the year
        rnd = random.Random(20250101)
        extra_visits = responses // 4

        def history() -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]]:
            for i in range(responses):
                at = start + step * i + timedelta(seconds=rnd.randrange(jitter))
                store = i % STORES
                staff_id = staff[store * STAFF_PER_STORE + (i // STORES) % STAFF_PER_STORE]
                survey = "sales_satisfaction" if i % 5 == 4 else "service_satisfaction"
                template = sales if survey == "sales_satisfaction" else service
                kind = "delivery" if survey == "sales_satisfaction" else "visit"
                c = combos[survey][rnd.randrange(len(combos[survey]))]
                customer, about, inv_id = _uuid(0xC057, i), _uuid(0x5151, i), _uuid(0x1111, i)
                invited = at - timedelta(days=2)
                visit = (about, kind, tenant, stores[store], customer, None, "maintenance" if kind == "visit" else None,
                         None, staff_id, at - timedelta(days=3), None)
                invitation = (inv_id, tenant, stores[store], f"bench:{i}", hashlib.sha256(inv_id.bytes).hexdigest(),
                              template.id, survey, template.version, customer, None, kind, about, staff_id, "playbook",
                              '["sms"]', "answered", "[]", invited, invited + timedelta(days=14), None, None, at, at,
                              None)
                phone = i % 10 == 9
                review = {7: "rejected", 13: "pending", 21: "accepted"}.get(i % 100, "none")
                response = (_uuid(0x2222, i), tenant, stores[store], inv_id, template.id, survey, template.version,
                            customer, None, kind, about, staff_id, "phone" if phone else "web",
                            staff_id if phone else None, c.answers, c.items, c.index, c.overall, c.nps, c.nps_class,
                            c.low, c.reasons, None, '["same_device"]' if review != "none" else "[]", review,
                            admin if review in ("rejected", "accepted") else None,
                            at + timedelta(days=1) if review in ("rejected", "accepted") else None, None,
                            None if phone else hashlib.sha256(customer.bytes).hexdigest(), at)
                yield visit, invitation, response

        # Generating a chunk (Python) overlaps with the server writing the previous one (three connections).
        conns = [conn, await asyncpg.connect(dsn), await asyncpg.connect(dsn)]
        pending: list[asyncio.Task[Any]] = []
        try:
            for extra in conns[1:]:
                await extra.execute("SET session_replication_role = replica")
            made = history()
            while chunk := list(itertools.islice(made, CHUNK)):
                await asyncio.gather(*pending)
                pending = [asyncio.create_task(c.copy_records_to_table(
                    table, records=[r[n] for r in chunk], columns=cols, schema_name="survey"))
                    for n, (c, table, cols) in enumerate(zip(conns, ("visit", "invitation", "response"),
                                                             (VISIT_COLS, INVITATION_COLS, RESPONSE_COLS)))]
                del chunk
            await asyncio.gather(*pending)
        finally:
            for extra in conns[1:]:
                await extra.close()
        ystep = timedelta(days=365) / max(extra_visits, 1)
        await _copy(conn, "visit", VISIT_COLS, (
            (_uuid(0x5152, j), "visit", tenant, stores[j % STORES], _uuid(0xC058, j), None, "maintenance", None,
             staff[(j % STORES) * STAFF_PER_STORE + j % STAFF_PER_STORE], start + ystep * j, None)
            for j in range(extra_visits)))

        # the links the submission run answers: open, created now, each its own customer and repair order
        secret = settings.token_secret
        seeded = Seeded(tenant, stores, admin)
        customers, invitations = [], []
        for k in range(open_invitations):
            inv_id, customer, about = _uuid(0x3333, k), _uuid(0xC059, k), _uuid(0x5153, k)
            token = token_for(secret, inv_id)
            seeded.tokens.append(token)
            customers.append((customer, tenant, stores[0], f"客户{k}", f"+86135{k:08d}", "active", now))
            invitations.append((inv_id, tenant, stores[0], f"open:{k}", token_hash(token), service.id,
                                service.key, service.version, customer, None, "visit", about, staff[k % 6],
                                "playbook", '["sms"]', "open", "[]", now, now + timedelta(days=14),
                                now + timedelta(days=3), None, None, None, None))
        await conn.copy_records_to_table("customer", schema_name="survey", columns=[
            "id", "tenant_id", "store_id", "name", "phone", "status", "updated_at"], records=customers)
        await _copy(conn, "invitation", INVITATION_COLS, iter(invitations))
        await conn.execute("SET session_replication_role = DEFAULT")
        for table in ("visit", "invitation", "response", "customer", "store", "staff", "template"):
            await conn.execute(f"VACUUM (ANALYZE) survey.{table}")
    finally:
        await conn.close()
    return seeded
