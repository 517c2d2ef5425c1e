"""The dispatcher in embedded mode (SQLite, no row locks): its loops take turns, so nothing is sent twice."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from notify_svc.app import NotifyRuntime
from notify_svc.messages.intake import Request, accept
from notify_svc.models import CustomerView, StoreView
from notify_svc.settings import NotifySettings
from notify_svc.templates.seeding import ensure_default_templates
from tests.test_embedded import PLATFORM_ENV


async def test_concurrent_loops_on_sqlite_send_each_message_once(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PLATFORM_ENV:
        monkeypatch.delenv(name, raising=False)
    runtime = NotifyRuntime(NotifySettings(var_dir=tmp_path, environment="test", dispatcher_loops=2))
    await runtime.prepare()
    tenant, store = uuid.uuid4(), uuid.uuid4()
    midday = datetime.combine(datetime.now(ZoneInfo("Asia/Shanghai")).date(), time(11),
                              ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    runtime.dispatcher.clock = lambda: midday
    try:
        async with runtime.sessionmaker() as s, s.begin():
            s.add(StoreView(id=store, tenant_id=tenant, code="E", name="Embedded store"))
            await ensure_default_templates(s, tenant)
            customers = [CustomerView(id=uuid.uuid4(), tenant_id=tenant, store_id=store, name=f"客户{i}",
                                      phone=f"+8613900{i:06d}", consents={}, consent_at={}) for i in range(60)]
            s.add_all(customers)
            await s.flush()
            await accept(s, [Request(tenant_id=tenant, store_id=store, idempotency_key=f"e:{c.id}", source="followup",
                                     template_key="purchase_thanks", purpose="service", channels=["sms"],
                                     customer_id=c.id, not_before=midday) for c in customers], midday)
        done = await asyncio.gather(*(loop.step() for loop in runtime.dispatch_loops))
        while sum(done):
            done = await asyncio.gather(*(loop.step() for loop in runtime.dispatch_loops))
        lines = [json.loads(line) for line in (tmp_path / "messages.jsonl").read_text().splitlines()]
        ids = [line.get("message_id") or line.get("id") for line in lines]
        assert len(lines) == 60 and len(set(ids)) == 60
    finally:
        await runtime.dispose()
