"""Every customer query: scoped through ``shared.auth.scoped`` and excluding merged-away records."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import sqlalchemy as sa
from lunardate import LunarDate
from sqlalchemy.ext.asyncio import AsyncSession

from customer_svc.models import Consent, Customer, CustomerPhone, CustomerTag, TimelineEntry, Vehicle
from shared.auth import Principal, scoped
from shared.db.base import contains_pattern
from shared.http.pagination import PageParams, paginate


def visible(principal: Principal) -> sa.Select:
    return scoped(sa.select(Customer), Customer, principal).where(Customer.merged_into_id.is_(None))


async def get_visible(session: AsyncSession, principal: Principal, customer_id: uuid.UUID,
                      for_update: bool = False) -> Customer | None:
    stmt = visible(principal).where(Customer.id == customer_id)
    if for_update:
        stmt = stmt.with_for_update(of=Customer)
    return await session.scalar(stmt)


async def find_by_phones(session: AsyncSession, tenant_id: uuid.UUID, phones: list[str],
                         store_id: uuid.UUID | None = None, exclude: uuid.UUID | None = None) -> list[Customer]:
    stmt = (sa.select(Customer).join(CustomerPhone, CustomerPhone.customer_id == Customer.id)
            .where(CustomerPhone.tenant_id == tenant_id, CustomerPhone.e164.in_(phones),
                   Customer.merged_into_id.is_(None)))
    if store_id is not None:
        stmt = stmt.where(Customer.store_id == store_id)
    if exclude is not None:
        stmt = stmt.where(Customer.id != exclude)
    return list((await session.scalars(stmt.distinct())).all())


async def find_by_id_number(session: AsyncSession, tenant_id: uuid.UUID, id_number: str,
                            store_id: uuid.UUID | None = None, exclude: uuid.UUID | None = None) -> list[Customer]:
    stmt = sa.select(Customer).where(Customer.tenant_id == tenant_id, Customer.id_number == id_number,
                                     Customer.merged_into_id.is_(None))
    if store_id is not None:
        stmt = stmt.where(Customer.store_id == store_id)
    if exclude is not None:
        stmt = stmt.where(Customer.id != exclude)
    return list((await session.scalars(stmt)).all())


def birthday_keys(start: date, end: date) -> tuple[set[int], set[int]]:
    """Month*100+day keys of the dates in [start, end], in the solar and in the lunar calendar."""
    solar, lunar = set(), set()
    day = start
    while day <= end:
        solar.add(day.month * 100 + day.day)
        try:
            ld = LunarDate.fromSolarDate(day.year, day.month, day.day)
            if not ld.isLeapMonth:
                lunar.add(ld.month * 100 + ld.day)
        except ValueError:
            pass
        day += timedelta(days=1)
    return solar, lunar


async def search(session: AsyncSession, principal: Principal, params: PageParams, *, q: str | None = None,
                 phone: str | None = None, plate: str | None = None, vin: str | None = None,
                 customer_no: str | None = None, tag: str | None = None, store_id: uuid.UUID | None = None,
                 relationship_type: str | None = None, intent_level: str | None = None,
                 assigned_to: uuid.UUID | None = None, created_from: datetime | None = None,
                 created_to: datetime | None = None, birthday_from: date | None = None,
                 birthday_to: date | None = None) -> list[Customer]:
    stmt = visible(principal)
    if q:
        stmt = stmt.where(sa.or_(Customer.name.like(contains_pattern(q), escape="\\"), Customer.customer_no == q))
    if phone:
        stmt = stmt.where(Customer.id.in_(sa.select(CustomerPhone.customer_id).where(
            CustomerPhone.tenant_id == principal.tenant_id, CustomerPhone.e164 == phone)))
    if plate or vin:
        vs = sa.select(Vehicle.customer_id).where(Vehicle.tenant_id == principal.tenant_id)
        if plate:
            vs = vs.where(Vehicle.plate == plate)
        if vin:
            vs = vs.where(Vehicle.vin == vin)
        stmt = stmt.where(Customer.id.in_(vs))
    if customer_no:
        stmt = stmt.where(Customer.customer_no == customer_no)
    if tag:
        stmt = stmt.where(Customer.id.in_(sa.select(CustomerTag.customer_id).where(
            CustomerTag.tenant_id == principal.tenant_id, CustomerTag.tag == tag)))
    if store_id:
        stmt = stmt.where(Customer.store_id == store_id)
    if relationship_type:
        stmt = stmt.where(Customer.relationship_type == relationship_type)
    if intent_level:
        stmt = stmt.where(Customer.intent_level == intent_level)
    if assigned_to:
        stmt = stmt.where(sa.or_(Customer.assigned_sales_id == assigned_to, Customer.assigned_advisor_id == assigned_to))
    if created_from:
        stmt = stmt.where(Customer.created_at >= created_from)
    if created_to:
        stmt = stmt.where(Customer.created_at < created_to)
    if birthday_from and birthday_to:
        solar, lunar = birthday_keys(birthday_from, birthday_to)
        stmt = stmt.where(sa.or_(
            sa.and_(Customer.birthday_calendar == "solar", Customer.birthday_md.in_(solar)),
            sa.and_(Customer.birthday_calendar == "lunar", Customer.birthday_md.in_(lunar)),
        ))
    return list((await session.scalars(paginate(stmt, Customer.id, params))).all())


async def timeline(session: AsyncSession, tenant_id: uuid.UUID, customer_ids: list[uuid.UUID],
                   params: PageParams) -> list[TimelineEntry]:
    stmt = sa.select(TimelineEntry).where(TimelineEntry.tenant_id == tenant_id,
                                          TimelineEntry.customer_id.in_(customer_ids))
    return list((await session.scalars(paginate(stmt, TimelineEntry.id, params))).all())


def _child_rows(model: type, columns: tuple[sa.ColumnElement, ...], order_by: tuple[sa.ColumnElement, ...]) -> sa.ColumnElement:
    """``ARRAY(SELECT ROW(...) ... ORDER BY ...)`` of one child table: asyncpg returns a list of tuples ([] if none)."""
    return sa.func.array(sa.select(sa.func.row(*columns)).where(model.customer_id == Customer.id)  # type: ignore[attr-defined]
                         .order_by(*order_by).scalar_subquery())


_PHONES = _child_rows(CustomerPhone, (CustomerPhone.e164, CustomerPhone.label, CustomerPhone.is_primary),
                      (CustomerPhone.position,)).label("_phones")
_TAGS = _child_rows(CustomerTag, (CustomerTag.tag,), (CustomerTag.tag,)).label("_tags")
_CONSENTS = _child_rows(Consent, (Consent.channel, Consent.purpose, Consent.granted, Consent.source, Consent.recorded_at),
                        (Consent.channel, Consent.purpose)).label("_consents")


@functools.cache
def _read_statement(tenant_wide: bool) -> sa.Select:
    """Built once per scoping shape, with bind parameters (building and cache-keying a 50-column statement per
    request costs more CPU than running it); still scoped through :func:`scoped` like every customer query."""
    params = SimpleNamespace(tenant_id=sa.bindparam("tenant_id"), store_ids=sa.bindparam("store_ids", expanding=True),
                             tenant_wide=tenant_wide)
    return scoped(sa.select(*Customer.__table__.c, _PHONES, _TAGS, _CONSENTS), Customer, params).where(  # type: ignore[arg-type]
        Customer.merged_into_id.is_(None), Customer.id == sa.bindparam("customer_id"))


async def read_visible(session: AsyncSession, principal: Principal,
                       customer_id: uuid.UUID) -> SimpleNamespace | Customer | None:
    """A visible customer for rendering only (``GET /customers/{id}``): the values ``get_visible`` and its three
    selectin loads give, read in ONE statement instead of four (and, outside a transaction, on a connection held
    for that statement only, without BEGIN/ROLLBACK: one statement is one snapshot anyway). Returns an object with the attributes ``customer_view`` reads.
    SQLite (embedded mode) has no arrays of rows: there it is :func:`get_visible`."""
    if session.bind.dialect.name != "postgresql":
        return await get_visible(session, principal, customer_id)
    params: dict[str, object] = {"tenant_id": principal.tenant_id, "customer_id": customer_id}
    if not principal.tenant_wide:
        params["store_ids"] = list(principal.store_ids)
    stmt = _read_statement(principal.tenant_wide)
    if session.in_transaction():
        row = (await (await session.connection()).execute(stmt, params)).first()
    else:
        # Its own pooled connection, held for this one statement only (not until the request ends).
        async with session.bind.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            row = (await conn.execute(stmt, params)).first()
    if row is None:
        return None
    values = dict(row._mapping)
    phones, tags, consents = values.pop("_phones"), values.pop("_tags"), values.pop("_consents")
    return SimpleNamespace(
        **values,
        phones=[SimpleNamespace(e164=e164, label=label, is_primary=primary) for e164, label, primary in phones],
        tags=sorted(t for (t,) in tags),
        consents=[SimpleNamespace(channel=ch, purpose=pu, granted=gr, source=so,
                                  recorded_at=None if at is None else at.astimezone(UTC))
                  for ch, pu, gr, so, at in consents],
    )
