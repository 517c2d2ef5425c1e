"""What an intake batch resolves once: the caller's dealer group, its stores (by code and id) and staff numbers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from customer_svc.imports.records import Located
from customer_svc.models import Staff, Store, Tenant
from shared.auth import Principal
from shared.db.base import in_values


class Reject(Exception):
    """A record refused, naming the field and why (the rest of the batch goes on)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class StoreRef:
    id: uuid.UUID
    code: str
    tz: ZoneInfo


@dataclass
class IntakeScope:
    principal: Principal
    tenant_code: str
    by_code: dict[str, StoreRef]
    by_id: dict[uuid.UUID, StoreRef]
    #: employee number -> (staff id, active), or None where the group has no such number
    _staff: dict[str, tuple[uuid.UUID, bool] | None] = field(default_factory=dict)

    @classmethod
    async def load(cls, session: AsyncSession, principal: Principal) -> IntakeScope:
        code = await session.scalar(sa.select(Tenant.code).where(Tenant.id == principal.tenant_id))
        stores = [StoreRef(s.id, s.code, ZoneInfo(s.timezone)) for s in (await session.execute(
            sa.select(Store.id, Store.code, Store.timezone).where(Store.tenant_id == principal.tenant_id,
                                                                  Store.active.is_(True)))).all()]
        return cls(principal, code or "", {s.code: s for s in stores}, {s.id: s for s in stores})

    def store_of(self, record: Located) -> StoreRef:
        """The record's store, which must be one the caller may write (another group's is refused likewise)."""
        if record.dealer_group is not None and record.dealer_group != self.tenant_code:
            raise Reject("dealer_group", "not your dealer group")
        if record.store_code is None and record.store_id is None:
            raise Reject("store_code", "give store_code (or store_id)")
        store: StoreRef | None
        if record.store_code is not None:
            store = self.by_code.get(record.store_code)
            where = "store_code"
        else:
            try:
                store = self.by_id.get(uuid.UUID(str(record.store_id)))
            except ValueError:
                raise Reject("store_id", "not a store id") from None
            where = "store_id"
        if store is None or not self.principal.can_access_store(store.id):
            raise Reject(where, "not one of your stores")
        return store

    def check_place(self, record: Located, store_id: uuid.UUID) -> None:
        """For a record about something on file (a vehicle): the dealer group and store it names, if it names any,
        must be where that thing is."""
        if record.dealer_group is not None and record.dealer_group != self.tenant_code:
            raise Reject("dealer_group", "not your dealer group")
        if (record.store_code is not None or record.store_id is not None) and self.store_of(record).id != store_id:
            raise Reject("store_code" if record.store_code is not None else "store_id",
                         "the vehicle is on file in another store")

    def writable(self, store_id: uuid.UUID) -> bool:
        return store_id in self.by_id and self.principal.can_access_store(store_id)

    async def resolve_staff(self, session: AsyncSession, numbers: set[str]) -> None:
        """Look up employee numbers of the group's staff (those who left too) not seen before, in one query."""
        wanted = [n for n in numbers if n not in self._staff]
        if not wanted:
            return
        found = {row.employee_no: (row.id, row.active) for row in (await session.execute(
            sa.select(Staff.employee_no, Staff.id, Staff.active).where(
                Staff.tenant_id == self.principal.tenant_id, in_values(session, Staff.employee_no, wanted)))).all()}
        for number in wanted:
            self._staff[number] = found.get(number)

    def staff(self, number: str | None, field: str, already: tuple[uuid.UUID | None, ...] = ()) -> uuid.UUID | None:
        """The staff member an employee number names, who must be active: work is not given to someone who left.
        One who left is accepted where every place the record puts them already holds them (``already``): a record
        sent again after its sales consultant left changes nothing, instead of being refused."""
        if number is None:
            return None
        staff = self._staff.get(number)
        if staff is None or not (staff[1] or (already and all(held == staff[0] for held in already))):
            raise Reject(field, "no active staff member with this employee number")
        return staff[0]
