"""The bench's own infrastructure: a fresh database (migrated) and vhost, a key pair, a seeded dealer group."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from customer_svc.app import MIGRATIONS, CustomerRuntime
from customer_svc.bootstrap import StaffSeed, create_tenant
from customer_svc.models import Staff, Store
from customer_svc.settings import CustomerSettings
from shared.auth.tokens import generate_keypair
from shared.db import migrations
from shared.testing import infra

EXCHANGE = "aftercare.events"


@dataclass
class BenchEnv:
    workdir: Path
    db_name: str = ""
    database_url: str = ""
    vhost: str = ""
    amqp_url: str = ""
    private_key: Path = field(default_factory=Path)
    public_key: Path = field(default_factory=Path)
    extra_service_env: dict[str, str] = field(default_factory=dict)

    def settings(self, **overrides: object) -> CustomerSettings:
        values: dict[str, object] = dict(database_url=self.database_url, amqp_url=self.amqp_url, exchange=EXCHANGE,
                                         jwt_private_key=str(self.private_key), jwt_public_key=str(self.public_key),
                                         environment="prod", var_dir=self.workdir / "var")
        values.update(overrides)
        return CustomerSettings(**values)  # type: ignore[arg-type]

    def service_env(self) -> dict[str, str]:
        """Environment for ``python -m customer_svc api`` (production settings, as a deployment sets them)."""
        return {
            "CUSTOMER_ENVIRONMENT": "prod",
            "CUSTOMER_DATABASE_URL": self.database_url,
            "CUSTOMER_AMQP_URL": self.amqp_url,
            "CUSTOMER_EXCHANGE": EXCHANGE,
            "CUSTOMER_JWT_PRIVATE_KEY": str(self.private_key),
            "CUSTOMER_JWT_PUBLIC_KEY": str(self.public_key),
            "CUSTOMER_VAR_DIR": str(self.workdir / "var"),
            **self.extra_service_env,
        }


async def create_env() -> BenchEnv:
    env = BenchEnv(Path(tempfile.mkdtemp(prefix="aftercare-bench-")))
    try:
        env.db_name, env.database_url = await infra.create_database()
        env.vhost, env.amqp_url = await asyncio.to_thread(infra.create_vhost)
        private, public = generate_keypair()
        env.private_key, env.public_key = env.workdir / "jwt_private.pem", env.workdir / "jwt_public.pem"
        env.private_key.write_text(private)
        env.private_key.chmod(0o600)
        env.public_key.write_text(public)
        await asyncio.to_thread(migrations.upgrade, env.settings(), MIGRATIONS)
    except BaseException:
        await destroy_env(env)
        raise
    return env


async def destroy_env(env: BenchEnv) -> None:
    if env.db_name:
        await infra.drop_database(env.db_name)
    if env.vhost:
        await asyncio.to_thread(infra.delete_vhost, env.vhost)
    shutil.rmtree(env.workdir, ignore_errors=True)


@dataclass
class Tenant:
    tenant_id: uuid.UUID
    store_id: uuid.UUID
    token: str


async def seed_tenant(runtime: CustomerRuntime, role: str = "sales_consultant") -> Tenant:
    """A dealer group with one store and one staff member of ``role`` in it; a 1-hour access token for them."""
    code = f"bench{uuid.uuid4().hex[:8]}"
    tenant = await create_tenant(runtime.sessionmaker, runtime.outbox, code=code, name=f"Bench {code}",
                                 stores=[("A", "Bench store A")],
                                 staff=[StaffSeed("bench-1", "Bench user", "sales", [role], ["A"])],
                                 password="bench-password-not-used")
    async with runtime.sessionmaker() as session:
        store = await session.scalar(sa.select(Store.id).where(Store.tenant_id == tenant))
        member = await session.scalar(sa.select(Staff).where(Staff.tenant_id == tenant))
        assert store is not None and member is not None
        token, _ = runtime.issuer.issue(subject=member.id, tenant_id=tenant, store_ids=member.store_ids,
                                        roles=member.roles, ttl=timedelta(hours=1))
    return Tenant(tenant, store, token)
