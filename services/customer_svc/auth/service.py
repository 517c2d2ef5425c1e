"""Logins, refresh-token rotation, and API keys exchanged for integration tokens (client credentials)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from customer_svc.auth.passwords import verify_password
from customer_svc.auth.schemas import ApiKeyCreate, TokenPair
from customer_svc.deps import Ctx
from customer_svc.models import ApiKey, RefreshToken, Staff, Store, Tenant
from customer_svc.settings import CustomerSettings
from shared.auth.principal import Principal
from shared.auth.tokens import TokenIssuer
from shared.audit import snapshot
from shared.db.base import utcnow
from shared.errors import InvalidField, NotFound, TooManyRequests, Unauthorized

SCOPES = frozenset({"customers:read", "customers:write", "vehicles:read", "vehicles:write", "visits:write",
                    "surveys:read", "pii:read", "visits:read"})


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class AuthService:
    def __init__(self, session: AsyncSession, issuer: TokenIssuer, settings: CustomerSettings) -> None:
        self.session = session
        self.issuer = issuer
        self.settings = settings

    async def _pair(self, staff: Staff) -> TokenPair:
        access, ttl = self.issuer.issue(subject=staff.id, tenant_id=staff.tenant_id, store_ids=staff.store_ids,
                                        roles=staff.roles)
        refresh = secrets.token_urlsafe(32)
        self.session.add(RefreshToken(staff_id=staff.id, token_hash=_sha(refresh), created_at=utcnow(),
                                      expires_at=utcnow() + timedelta(days=self.settings.refresh_token_days)))
        return TokenPair(access_token=access, expires_in=ttl, refresh_token=refresh)

    async def login(self, tenant_code: str, employee_no: str, password: str) -> TokenPair:
        """Failed attempts count per account; after too many the account is locked for a while (429).

        The argon2 check (~0.1 s of CPU) runs in a thread, outside any transaction: it neither blocks the event
        loop nor holds the account's row lock. The counters are then updated under the lock.
        """
        async with self.session.begin():
            staff = await self.session.scalar(
                sa.select(Staff).join(Tenant, Tenant.id == Staff.tenant_id)
                .where(Tenant.code == tenant_code, Staff.employee_no == employee_no))
            self._refuse_if_locked(staff)
            password_hash = staff.password_hash if staff else None
        ok = await asyncio.to_thread(verify_password, password_hash, password)
        if staff is None:
            raise Unauthorized("Unknown account or wrong password.")
        async with self.session.begin():
            await self.session.refresh(staff, with_for_update=True)
            self._refuse_if_locked(staff)
            if ok and staff.active and staff.password_hash == password_hash:
                staff.failed_logins, staff.locked_until = 0, None
                return await self._pair(staff)
            if not ok:
                staff.failed_logins += 1
                if staff.failed_logins >= self.settings.login_max_failures:
                    staff.locked_until = utcnow() + timedelta(minutes=self.settings.login_lock_minutes)
                    staff.failed_logins = 0
        raise Unauthorized("Unknown account or wrong password.")

    @staticmethod
    def _refuse_if_locked(staff: Staff | None) -> None:
        now = utcnow()
        if staff is not None and staff.locked_until is not None and staff.locked_until > now:
            raise TooManyRequests("Too many failed logins; try again later.",
                                  retry_after=int((staff.locked_until - now).total_seconds()) + 1)

    async def refresh(self, token: str) -> TokenPair:
        async with self.session.begin():
            row = await self.session.scalar(
                sa.select(RefreshToken).where(RefreshToken.token_hash == _sha(token)).with_for_update())
            if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
                raise Unauthorized("The refresh token is not valid.")
            staff = await self.session.get(Staff, row.staff_id)
            if staff is None or not staff.active:
                raise Unauthorized("The account is deactivated.")
            row.revoked_at = utcnow()
            return await self._pair(staff)

    async def logout(self, token: str) -> None:
        async with self.session.begin():
            await self.session.execute(sa.update(RefreshToken).where(
                RefreshToken.token_hash == _sha(token), RefreshToken.revoked_at.is_(None)).values(revoked_at=utcnow()))

    async def exchange_api_key(self, api_key: str) -> TokenPair:
        prefix, _, secret = api_key.partition(".")
        async with self.session.begin():
            key = await self.session.scalar(sa.select(ApiKey).where(ApiKey.prefix == prefix))
            if key is None or key.revoked_at is not None or not secrets.compare_digest(key.key_hash, _sha(secret)):
                raise Unauthorized("The API key is not valid.")
            key.last_used_at = utcnow()
            access, ttl = self.issuer.issue(subject=key.id, tenant_id=key.tenant_id,
                                            store_ids=[uuid.UUID(s) for s in key.store_ids],
                                            roles=["integration"], scopes=key.scopes, kind="integration")
        return TokenPair(access_token=access, expires_in=ttl)


async def create_api_key(ctx: Ctx, data: ApiKeyCreate) -> tuple[ApiKey, str]:
    for i, scope in enumerate(data.scopes):
        if scope not in SCOPES:
            raise InvalidField(f"body.scopes.{i}", f"unknown scope; use one of {', '.join(sorted(SCOPES))}")
    async with ctx.session.begin():
        found = set((await ctx.session.scalars(sa.select(Store.id).where(
            Store.tenant_id == ctx.principal.tenant_id, Store.id.in_(data.store_ids)))).all())
        for i, sid in enumerate(data.store_ids):
            if sid not in found:
                raise InvalidField(f"body.store_ids.{i}", "no such store in your dealer group")
        prefix, secret = "ak_" + secrets.token_hex(6), secrets.token_urlsafe(32)
        key = ApiKey(tenant_id=ctx.principal.tenant_id, name=data.name, prefix=prefix, key_hash=_sha(secret),
                     scopes=sorted(set(data.scopes)), store_ids=[str(s) for s in dict.fromkeys(data.store_ids)],
                     created_by=ctx.principal.subject)
        ctx.session.add(key)
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "create", "api_key", key.id, tenant_id=key.tenant_id,
                         store_id=None, after=snapshot(key))
    return key, f"{prefix}.{secret}"


async def list_api_keys(ctx: Ctx) -> list[ApiKey]:
    return list((await ctx.session.scalars(sa.select(ApiKey).where(
        ApiKey.tenant_id == ctx.principal.tenant_id).order_by(ApiKey.created_at))).all())


async def revoke_api_key(ctx: Ctx, key_id: uuid.UUID) -> None:
    async with ctx.session.begin():
        key = await ctx.session.get(ApiKey, key_id)
        if key is None or key.tenant_id != ctx.principal.tenant_id:
            raise NotFound("API key not found.")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            ctx.audit.record(ctx.session, ctx.principal, "revoke", "api_key", key.id, tenant_id=key.tenant_id,
                             store_id=None, after={"revoked_at": key.revoked_at})


def principal_view(p: Principal) -> dict:
    return {"subject": p.subject, "tenant_id": p.tenant_id, "store_ids": sorted(p.store_ids),
            "roles": sorted(p.roles), "scopes": sorted(p.scopes), "kind": p.kind}
