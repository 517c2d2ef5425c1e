"""The integration call audit's buffer: a failed write loses nothing and is retried, the buffer stays bounded, and
a broken audit never breaks the request it records."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import sqlalchemy as sa

from customer_svc.app import CustomerRuntime, create_service_app
from customer_svc.models import AuditEntry
from shared.auth.principal import Principal
from shared.auth.roles import Role
from shared.http.call_audit import CallAudit

pytestmark = pytest.mark.usefixtures("customer_runtime")


def integration(tenant: uuid.UUID | None = None) -> Principal:
    return Principal(subject=uuid.uuid4(), tenant_id=tenant or uuid.uuid4(), store_ids=frozenset(),
                     roles=frozenset({Role.INTEGRATION}), scopes=frozenset({"customers:read"}), kind="integration")


def add(audit: CallAudit, principal: Principal, path: str = "/api/v1/customers") -> None:
    audit.add(principal, "GET", "/api/v1/customers", path, 200, 1.0, "127.0.0.1", None)


async def stored(runtime: CustomerRuntime, actor: uuid.UUID) -> list[str]:
    async with runtime.sessionmaker() as session:
        rows = await session.scalars(sa.select(AuditEntry).where(AuditEntry.actor_id == actor).order_by(AuditEntry.id))
        return [r.after["path"] for r in rows]


async def test_a_failed_flush_keeps_the_entries_for_the_next_try(customer_runtime: CustomerRuntime) -> None:
    table = customer_runtime.call_audit.table
    assert table is not None
    missing = sa.Table("no_such_table", sa.MetaData(), *(sa.Column(c.name, c.type) for c in table.columns),
                       schema=table.schema)
    audit = CallAudit("test", customer_runtime.engine, missing, batch_size=2)
    principal = integration()
    for i in range(3):
        add(audit, principal, f"/p{i}")
    with pytest.raises(sa.exc.DBAPIError):
        await audit.flush()
    assert [r["after"]["path"] for r in audit.buffer] == ["/p0", "/p1", "/p2"]  # nothing lost, order kept

    audit.table = table  # the database is back
    assert await audit.flush() == 3 and not audit.buffer
    assert await stored(customer_runtime, principal.subject) == ["/p0", "/p1", "/p2"]


async def test_the_loop_retries_until_the_database_takes_them(customer_runtime: CustomerRuntime) -> None:
    table = customer_runtime.call_audit.table
    assert table is not None
    missing = sa.Table("no_such_table", sa.MetaData(), *(sa.Column(c.name, c.type) for c in table.columns),
                       schema=table.schema)
    audit = CallAudit("test", customer_runtime.engine, missing, poll_seconds=0.05)
    principal = integration()
    add(audit, principal)
    stop = asyncio.Event()
    task = asyncio.create_task(audit.loop.run(stop))
    try:
        await asyncio.sleep(0.3)
        assert len(audit.buffer) == 1 and not task.done()  # failing, logging, still running
        audit.table = table
        for _ in range(100):
            if not audit.buffer:
                break
            await asyncio.sleep(0.1)
        assert await stored(customer_runtime, principal.subject) == ["/api/v1/customers"]
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_buffer_is_bounded_dropping_the_oldest(customer_runtime: CustomerRuntime) -> None:
    audit = CallAudit("test", customer_runtime.engine, customer_runtime.call_audit.table, max_buffered=2)
    principal = integration()
    for i in range(3):
        add(audit, principal, f"/p{i}")
    assert [r["after"]["path"] for r in audit.buffer] == ["/p1", "/p2"] and audit.dropped == 1
    await audit.flush()
    assert audit.dropped == 0 and await stored(customer_runtime, principal.subject) == ["/p1", "/p2"]


async def test_a_broken_audit_never_breaks_the_request(customer_runtime: CustomerRuntime) -> None:
    app = create_service_app(customer_runtime)
    original = customer_runtime.call_audit.add

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit is broken")

    token, _ = customer_runtime.issuer.issue(subject=uuid.uuid4(), tenant_id=uuid.uuid4(), store_ids=[],
                                             roles=["integration"], scopes=["customers:read"], kind="integration")
    customer_runtime.call_audit.add = broken  # type: ignore[method-assign]
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            resp = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200 and resp.json()["kind"] == "integration"
    finally:
        customer_runtime.call_audit.add = original  # type: ignore[method-assign]
