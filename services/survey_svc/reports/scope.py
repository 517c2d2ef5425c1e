"""Who and when a report covers: the caller's stores (or one of them) and a period of store-local days.

Every store counts its own days and months: the bounds of a local day or month are turned into UTC instants
per time zone, so one query covers stores in several zones and a month row of a multi-zone report holds each
store's own local month. The filters are plain range conditions on the stored UTC column (``tenant_id``,
``store_id``, time), which the ``(tenant_id, store_id, <time>)`` indexes serve; month buckets are a CASE over
the same instants, so the SQL is the same on Postgres and on SQLite (embedded mode).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from survey_svc.deps import Ctx
from survey_svc.models import StoreView
from survey_svc.reports.schemas import MAX_DAYS
from shared.auth.scoping import stores_in_scope
from shared.calendar import StoreCalendar
from shared.errors import InvalidField

DEFAULT_ZONE = StoreCalendar.timezone
#: Report days must convert to UTC and back in every zone: no dates near the ends of the calendar.
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)
_MIDNIGHT = time(0, 0)


@dataclass
class Scope:
    """The stores a report covers, their time zones, the period and the service's "now"."""

    tenant_id: uuid.UUID
    store_id: uuid.UUID | None
    stores: dict[uuid.UUID, StoreView | None]
    #: Tenant-wide without a store filter: every store counts, also one the directory has not heard of yet.
    everything: bool
    now: datetime
    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def zones(self) -> dict[str, list[uuid.UUID]]:
        found: dict[str, list[uuid.UUID]] = {}
        for sid, view in self.stores.items():
            found.setdefault(view.timezone if view is not None else DEFAULT_ZONE, []).append(sid)
        if self.everything:
            found.setdefault(DEFAULT_ZONE, [])
        return found

    def zone_of(self, store_id: uuid.UUID) -> str:
        view = self.stores.get(store_id)
        return view.timezone if view is not None else DEFAULT_ZONE

    def months(self) -> list[str]:
        """Every month the period touches, ``YYYY-MM``, oldest first."""
        out, day = [], self.first.replace(day=1)
        while day <= self.last:
            out.append(f"{day:%Y-%m}")
            day = _next_month(day)
        return out

    def _zone_filters(self, model: Any) -> list[tuple[str, ColumnElement[bool] | None]]:
        """Per time zone in scope, the condition picking its stores (None: no store condition needed)."""
        zones = self.zones()
        out: list[tuple[str, ColumnElement[bool] | None]] = []
        for zone, ids in zones.items():
            if self.everything and zone == DEFAULT_ZONE:
                others = [s for z, more in zones.items() if z != zone for s in more]
                out.append((zone, model.store_id.not_in(others) if others else None))
            else:
                out.append((zone, model.store_id.in_(ids)))
        return out

    def within(self, model: Any, column: Any) -> ColumnElement[bool]:
        """The tenant, the stores in scope and ``column`` within their local days ``first``..``last``."""
        clauses = []
        for zone, stores in self._zone_filters(model):
            calendar = StoreCalendar(zone)
            start = calendar.at_local(self.first, _MIDNIGHT)
            end = calendar.at_local(self.last + timedelta(days=1), _MIDNIGHT)
            cond = sa.and_(column >= start, column < end)
            clauses.append(cond if stores is None else sa.and_(stores, cond))
        return sa.and_(model.tenant_id == self.tenant_id, sa.or_(*clauses) if clauses else sa.false())

    def month_of(self, model: Any, column: Any) -> Any:
        """``YYYY-MM`` of ``column`` in its store's zone, for rows already ``within`` the period."""
        labels = self.months()
        per_zone = [(stores, self._month_case(zone, column, labels)) for zone, stores in self._zone_filters(model)]
        if len(per_zone) == 1:
            return per_zone[0][1]
        *cases, (_, last) = sorted(per_zone, key=lambda z: z[0] is None)  # the catch-all zone (if any) last
        return sa.case(*((stores, expr) for stores, expr in cases), else_=last)

    def _month_case(self, zone: str, column: Any, labels: list[str]) -> Any:
        if len(labels) == 1:
            return sa.literal(labels[0], sa.String)
        calendar = StoreCalendar(zone)
        whens = []
        for label in labels[:-1]:
            start = date(int(label[:4]), int(label[5:]), 1)
            whens.append((column < calendar.at_local(_next_month(start), _MIDNIGHT), sa.literal(label, sa.String)))
        return sa.case(*whens, else_=sa.literal(labels[-1], sa.String))


def _next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def check_period(first: date | None, last: date | None, today: date, max_days: int = MAX_DAYS) -> tuple[date, date]:
    """``to`` defaults to today (store-local), ``from`` to the first of that month; at most ``max_days`` (reports:
    two years)."""
    for value, field in ((first, "query.from"), (last, "query.to")):
        if value is not None and not EARLIEST <= value <= LATEST:
            raise InvalidField(field, f"must be between {EARLIEST} and {LATEST}")
    end = last or today
    start = first or end.replace(day=1)
    if end < start:
        raise InvalidField("query.from", "must not be after `to`" if last is not None
                           else "must not be after `to` (today by default)")
    if (end - start).days + 1 > max_days:
        # Name what was sent: a ``from`` alone is too early for today's ``to``.
        raise InvalidField("query.to" if last is not None else "query.from",
                           f"a report covers at most {max_days} days"
                           + (" (two years)" if max_days == MAX_DAYS else "")
                           + ("" if last is not None else f", so from {today - timedelta(days=max_days - 1)} "
                              "at the earliest with today's `to`"))
    return start, end


async def resolve_scope(ctx: Ctx, store_id: uuid.UUID | None, first: date | None, last: date | None,
                        max_days: int = MAX_DAYS) -> Scope:
    """The caller's stores, or ``store_id`` when it is one of them (else 404, as for any record out of scope),
    and the period checked (at most ``max_days``)."""
    principal = ctx.principal
    stores, whole_group = await stores_in_scope(ctx.session, StoreView, principal, store_id)
    now = ctx.runtime.clock()
    zones = {v.timezone if v is not None else DEFAULT_ZONE for v in stores.values()} or {DEFAULT_ZONE}
    today = StoreCalendar(zones.pop() if len(zones) == 1 else DEFAULT_ZONE).local(now).date()
    start, end = check_period(first, last, today, max_days)
    return Scope(principal.tenant_id, store_id, stores, whole_group, now, start, end)
