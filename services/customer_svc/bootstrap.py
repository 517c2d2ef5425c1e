"""Creating a dealer group with its first admin (no API can do that: there is no caller yet) and the demo seed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from customer_svc.auth.passwords import hash_password
from customer_svc.models import Staff, StaffStore, Store, Tenant
from customer_svc.staff.service import staff_event
from customer_svc.stores.schemas import DEFAULT_HOURS
from customer_svc.stores.service import store_event
from shared.auth.roles import Role
from shared.messaging.outbox import Outbox


@dataclass
class StaffSeed:
    employee_no: str
    name: str
    department: str
    roles: list[str]
    store_codes: list[str]


DEMO_STORES = [("SZ-FT", "深圳福田店 (demo)"), ("SZ-NS", "深圳南山店 (demo)")]
DEMO_PASSWORD = "aftercare-demo"
_ROLE_DEPT = {
    Role.SALES_CONSULTANT: "sales", Role.SERVICE_ADVISOR: "service", Role.CS_AGENT: "customer_service",
    Role.SHOWROOM_MANAGER: "sales", Role.SALES_MANAGER: "sales", Role.SERVICE_MANAGER: "service",
    Role.CS_MANAGER: "customer_service", Role.CS_DIRECTOR: "customer_service", Role.ADMIN: "admin",
}


async def create_tenant(sessionmaker: async_sessionmaker[AsyncSession], outbox: Outbox, *, code: str, name: str,
                        stores: list[tuple[str, str]], staff: list[StaffSeed], password: str) -> uuid.UUID:
    """Idempotent by tenant code: running it twice changes nothing the second time."""
    async with sessionmaker() as session, session.begin():
        existing = await session.scalar(sa.select(Tenant.id).where(Tenant.code == code))
        if existing:
            return existing
        tenant = Tenant(code=code, name=name)
        session.add(tenant)
        await session.flush()
        by_code: dict[str, Store] = {}
        for store_code, store_name in stores:
            store = Store(tenant_id=tenant.id, code=store_code, name=store_name, timezone="Asia/Shanghai",
                          business_hours=dict(DEFAULT_HOURS))
            session.add(store)
            by_code[store_code] = store
        await session.flush()
        for store in by_code.values():
            outbox.append(session, store_event(store), tenant_id=tenant.id, store_id=store.id)
        hashed = hash_password(password)
        for seed in staff:
            member = Staff(tenant_id=tenant.id, employee_no=seed.employee_no, name=seed.name,
                           department=seed.department, roles=seed.roles, password_hash=hashed,
                           stores=[StaffStore(store_id=by_code[c].id) for c in seed.store_codes])
            session.add(member)
            await session.flush()
            outbox.append(session, staff_event(member), tenant_id=tenant.id, store_id=None)
        return tenant.id


def demo_staff() -> list[StaffSeed]:
    """One staff user per role: the admin and CS director work group-wide, the rest in the first store."""
    first, codes = DEMO_STORES[0][0], [c for c, _ in DEMO_STORES]
    return [StaffSeed(role.value, f"Demo {role.value.replace('_', ' ')}", _ROLE_DEPT[role], [role.value],
                      codes if role in (Role.ADMIN, Role.CS_DIRECTOR) else [first])
            for role in Role if role is not Role.INTEGRATION]


async def seed_demo(sessionmaker: async_sessionmaker[AsyncSession], outbox: Outbox) -> uuid.UUID:
    return await create_tenant(sessionmaker, outbox, code="demo", name="Demo Auto Group (演示汽车集团)",
                               stores=DEMO_STORES, staff=demo_staff(), password=DEMO_PASSWORD)
