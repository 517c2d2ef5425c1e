"""The contact policy in force for a store: its own override, else its dealer group's, else the defaults."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.models import Policy
from shared.calendar import StoreCalendar


@dataclass(frozen=True)
class PolicyConfig:
    quiet_start: time
    quiet_end: time
    marketing_start: time
    marketing_end: time
    marketing_quiet: str
    marketing_on_holidays: bool
    daily_cap: int
    template_daily_cap: int
    weekly_marketing_budget: int
    weekly_service_budget: int
    opt_out_text: str

    @classmethod
    def of(cls, row: Policy | None) -> PolicyConfig:
        row = row or Policy()
        defaults = {c.key: c.default.arg for c in Policy.__table__.columns if c.default is not None
                    and not callable(c.default.arg)}

        def pick(name: str) -> object:
            value = getattr(row, name)
            return defaults[name] if value is None else value

        return cls(quiet_start=time.fromisoformat(str(pick("quiet_start"))),
                   quiet_end=time.fromisoformat(str(pick("quiet_end"))),
                   marketing_start=time.fromisoformat(str(pick("marketing_start"))),
                   marketing_end=time.fromisoformat(str(pick("marketing_end"))),
                   marketing_quiet=str(pick("marketing_quiet")),
                   marketing_on_holidays=bool(pick("marketing_on_holidays")),
                   daily_cap=int(pick("daily_cap")),  # type: ignore[call-overload]
                   template_daily_cap=int(pick("template_daily_cap")),  # type: ignore[call-overload]
                   weekly_marketing_budget=int(pick("weekly_marketing_budget")),  # type: ignore[call-overload]
                   weekly_service_budget=int(pick("weekly_service_budget")),  # type: ignore[call-overload]
                   opt_out_text=str(pick("opt_out_text")))

    def weekly_budget(self, purpose: str) -> int:
        return self.weekly_marketing_budget if purpose == "marketing" else self.weekly_service_budget

    def calendars(self, timezone: str) -> tuple[StoreCalendar, StoreCalendar]:
        """(quiet hours for every message, the marketing window expressed as its own quiet hours)."""
        return (_calendar(timezone, self.quiet_start, self.quiet_end),
                _calendar(timezone, self.marketing_end, self.marketing_start))


_calendars: dict[tuple[str, time, time], StoreCalendar] = {}


def _calendar(timezone: str, start: time, end: time) -> StoreCalendar:
    key = (timezone, start, end)
    cal = _calendars.get(key)
    if cal is None:
        cal = _calendars[key] = StoreCalendar(timezone=timezone, quiet_start=start, quiet_end=end)
    return cal


class PolicyBook:
    """Policies of some dealer groups, read in one query; ``for_store`` applies the store override."""

    def __init__(self, rows: Iterable[Policy]) -> None:
        self._rows = {(r.tenant_id, r.store_id): r for r in rows}
        self._cache: dict[tuple[uuid.UUID, uuid.UUID], PolicyConfig] = {}

    def for_store(self, tenant_id: uuid.UUID, store_id: uuid.UUID) -> PolicyConfig:
        key = (tenant_id, store_id)
        config = self._cache.get(key)
        if config is None:
            row = self._rows.get(key) or self._rows.get((tenant_id, None))
            config = self._cache[key] = PolicyConfig.of(row)
        return config


async def load_policies(session: AsyncSession, tenant_ids: Iterable[uuid.UUID]) -> PolicyBook:
    ids = list(set(tenant_ids))
    rows = (await session.scalars(sa.select(Policy).where(Policy.tenant_id.in_(ids)))).all() if ids else []
    return PolicyBook(rows)
