"""Every customer query: scoped through ``shared.auth.scoped`` and excluding merged-away records."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from types import SimpleNamespace

import sqlalchemy as sa
from lunardate import LunarDate
from sqlalchemy.ext.asyncio import AsyncSession

from customer_svc.models import Customer, CustomerPhone, CustomerTag, TimelineEntry, Vehicle
from shared.auth import Principal, scoped
from shared.auth.scopes import readable_prefixes
from shared.db.base import contains_pattern, where_given
from shared.db.reader import Reader
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
    if tag:
        stmt = stmt.where(Customer.id.in_(sa.select(CustomerTag.customer_id).where(
            CustomerTag.tenant_id == principal.tenant_id, CustomerTag.tag == tag)))
    stmt = where_given(stmt, (Customer.customer_no, customer_no), (Customer.store_id, store_id),
                       (Customer.relationship_type, relationship_type), (Customer.intent_level, intent_level))
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
                   params: PageParams, key: Principal | None = None) -> list[TimelineEntry]:
    """The customers' timeline entries; for an integration ``key``, only events its scopes read (a visit needs
    ``visits:read``, a complaint ``complaints:read``...) and of its stores."""
    stmt = sa.select(TimelineEntry).where(TimelineEntry.tenant_id == tenant_id,
                                          TimelineEntry.customer_id.in_(customer_ids))
    if key is not None:
        entry = TimelineEntry.event_type
        stmt = stmt.where(sa.or_(sa.false(), *(sa.and_(entry.startswith(prefix, autoescape=True),
                                                       *(~entry.startswith(o, autoescape=True) for o in others))
                                               for prefix, others in readable_prefixes(key.scopes))),
                          sa.or_(TimelineEntry.store_id.is_(None), TimelineEntry.store_id.in_(key.store_ids)))
    return list((await session.scalars(paginate(stmt, TimelineEntry.id, params))).all())


#: ``GET /customers/{id}`` in one prepared statement on the raw reader. The WHERE clause is the one
#: ``visible()`` builds through ``scoped()`` (tenant always, stores unless $3 says the caller is group-wide,
#: never a merged-away record); the isolation tests hold the two to the same answers.
_READ_SQL = """
SELECT c.*,
  ARRAY(SELECT ROW(p.e164, p.label, p.is_primary) FROM customer.customer_phone p
        WHERE p.customer_id = c.id ORDER BY p.position) AS _phones,
  ARRAY(SELECT t.tag FROM customer.customer_tag t WHERE t.customer_id = c.id ORDER BY t.tag) AS _tags,
  ARRAY(SELECT ROW(x.channel, x.purpose, x.granted, x.source, x.recorded_at) FROM customer.consent x
        WHERE x.customer_id = c.id ORDER BY x.channel, x.purpose) AS _consents
FROM customer.customer c
WHERE c.id = $1 AND c.tenant_id = $2 AND c.merged_into_id IS NULL AND ($3 OR c.store_id = ANY($4::uuid[]))
"""


async def read_visible(reader: Reader, principal: Principal, customer_id: uuid.UUID) -> SimpleNamespace | None:
    """A visible customer for rendering only: the values ``get_visible`` and its three selectin loads give, as
    attributes ``customer_view`` reads, in one round trip and without ORM objects."""
    row = await reader.fetchrow(_READ_SQL, customer_id, principal.tenant_id, principal.tenant_wide,
                                list(principal.store_ids))
    if row is None:
        return None
    values = dict(row)
    phones, tags, consents = values.pop("_phones"), values.pop("_tags"), values.pop("_consents")
    return SimpleNamespace(
        **values,
        phones=[SimpleNamespace(e164=e164, label=label, is_primary=primary) for e164, label, primary in phones],
        tags=list(tags),
        consents=[SimpleNamespace(channel=ch, purpose=pu, granted=gr, source=so, recorded_at=at)
                  for ch, pu, gr, so, at in consents],
    )
