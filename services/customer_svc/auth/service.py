"""Logins, refresh-token rotation, and API keys exchanged for integration tokens (client credentials).

Integration keys: an admin creates one per partner (scopes, stores), can change its scopes / stores / name, rotate
its secret with an overlap, and revoke it. Revocation and changes refuse or shape the *next* exchange at once;
tokens already issued keep working until they expire (``integration_token_minutes``, 15 by default), since services
verify tokens without calling back here.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from customer_svc.auth.passwords import verify_password
from customer_svc.auth.schemas import ApiKeyCreate, ApiKeyRotate, ApiKeyUpdate, TokenPair
from customer_svc.deps import Ctx
from customer_svc.models import ApiKey, RefreshToken, Staff, Store, Tenant
from customer_svc.settings import CustomerSettings
from shared.auth.principal import Principal
from shared.auth.roles import Role
from shared.events.catalog.customer import ApiKeyChanged
from shared.auth.scopes import SCOPES
from shared.auth.tokens import TokenIssuer
from shared.audit import snapshot
from shared.db.base import utcnow
from shared.errors import Conflict, InvalidField, NotFound, TooManyRequests, Unauthorized, reject_nulls
from shared.http.call_audit import query_calls
from shared.http.etag import check_if_match
from shared.http.pagination import PageParams

#: Key columns never shown or audited.
SECRET_COLUMNS = frozenset({"key_hash", "previous_key_hash"})
#: Last-use times are written at most this often per secret: a partner exchanging on every request must not turn
#: every exchange into a row update.
USE_RECORD_INTERVAL = timedelta(minutes=1)


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

    async def exchange_api_key(self, api_key: str, seen: Callable[[Principal], None] | None = None) -> TokenPair:
        """Either of the key's valid secrets (current, or previous during a rotation's overlap) gets a token.

        The key's row is share-locked (``FOR KEY SHARE``: exchanges do not wait on each other) until the token is
        issued, so a rotation or revocation (``FOR UPDATE``) is either wholly before the exchange or after it: a
        secret's last use is never credited to the secret that replaced it, and no token is issued for a key
        revoked meanwhile. ``seen`` learns the key once its prefix names one (the exchange is then audited as that
        key's call, refused or not)."""
        prefix, _, secret = api_key.partition(".")
        digest, now = _sha(secret), utcnow()
        async with self.session.begin():
            key = await self.session.scalar(sa.select(ApiKey).where(ApiKey.prefix == prefix)
                                            .with_for_update(key_share=True))
            if key is not None and seen is not None:
                seen(Principal(subject=key.id, tenant_id=key.tenant_id, store_ids=frozenset(),
                               roles=frozenset({Role.INTEGRATION}),
                               kind="integration"))
            which = matching_secret(key, digest, now) if key is not None and key.revoked_at is None else None
            if key is None or which is None:
                raise Unauthorized("The API key is not valid.")
            record_use(key, which, now)
            access, ttl = self.issuer.issue(subject=key.id, tenant_id=key.tenant_id,
                                            store_ids=[uuid.UUID(s) for s in key.store_ids],
                                            roles=["integration"], scopes=key.scopes, kind="integration",
                                            ttl=timedelta(minutes=self.settings.integration_token_minutes))
        return TokenPair(access_token=access, expires_in=ttl)


def matching_secret(key: ApiKey, digest: str, now: datetime) -> str | None:
    """Which of the key's secrets ``digest`` is: "current", "previous" (within its overlap) or None."""
    if secrets.compare_digest(key.key_hash, digest):
        return "current"
    if key.previous_active(now) and secrets.compare_digest(key.previous_key_hash or "", digest):
        return "previous"
    return None


def record_use(key: ApiKey, which: str, now: datetime) -> None:
    """Per-secret last use (did the partner switch?), written only when older than ``USE_RECORD_INTERVAL``."""
    column = "current_last_used_at" if which == "current" else "previous_last_used_at"
    last = getattr(key, column)
    if last is None or now - last >= USE_RECORD_INTERVAL:
        setattr(key, column, now)
        key.last_used_at = now


def _check_scopes(scopes: list[str]) -> None:
    for i, scope in enumerate(scopes):
        if scope not in SCOPES:
            raise InvalidField(f"body.scopes.{i}", f"unknown scope; use one of {', '.join(sorted(SCOPES))}")


async def _check_stores(ctx: Ctx, store_ids: list[uuid.UUID]) -> list[str]:
    found = set((await ctx.session.scalars(sa.select(Store.id).where(
        Store.tenant_id == ctx.principal.tenant_id, Store.id.in_(store_ids)))).all())
    for i, sid in enumerate(store_ids):
        if sid not in found:
            raise InvalidField(f"body.store_ids.{i}", "no such store in your dealer group")
    return [str(s) for s in dict.fromkeys(store_ids)]


def _audit_view(key: ApiKey) -> dict:
    return snapshot(key, exclude=SECRET_COLUMNS)


async def create_api_key(ctx: Ctx, data: ApiKeyCreate) -> tuple[ApiKey, str]:
    _check_scopes(data.scopes)
    async with ctx.session.begin():
        store_ids = await _check_stores(ctx, data.store_ids)
        prefix, secret = "ak_" + secrets.token_hex(6), secrets.token_urlsafe(32)
        key = ApiKey(tenant_id=ctx.principal.tenant_id, name=data.name, prefix=prefix, key_hash=_sha(secret),
                     scopes=sorted(set(data.scopes)), store_ids=store_ids, created_by=ctx.principal.subject)
        ctx.session.add(key)
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "create", "api_key", key.id, tenant_id=key.tenant_id,
                         store_id=None, after=_audit_view(key))
    return key, f"{prefix}.{secret}"


async def _get_key(ctx: Ctx, key_id: uuid.UUID, for_update: bool = False) -> ApiKey:
    stmt = sa.select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == ctx.principal.tenant_id)
    key = await ctx.session.scalar(stmt.with_for_update() if for_update else stmt)
    if key is None:
        raise NotFound("API key not found.")
    return key


async def get_api_key(ctx: Ctx, key_id: uuid.UUID) -> ApiKey:
    async with ctx.session.begin():
        return await _get_key(ctx, key_id)


async def update_api_key(ctx: Ctx, key_id: uuid.UUID, data: ApiKeyUpdate, if_match: str | None) -> ApiKey:
    """Change name, scopes or stores. The next exchange carries them; issued tokens keep theirs until expiry."""
    changes = data.model_dump(exclude_unset=True)
    reject_nulls(changes)
    if "scopes" in changes:
        _check_scopes(changes["scopes"])
        changes["scopes"] = sorted(set(changes["scopes"]))
    async with ctx.session.begin():
        if "store_ids" in changes:
            changes["store_ids"] = await _check_stores(ctx, changes["store_ids"])
        key = await _get_key(ctx, key_id, for_update=True)
        check_if_match(if_match, key.version)
        if key.revoked_at is not None:
            raise Conflict("The key is revoked; create a new one.")
        before = _audit_view(key)
        for field, value in changes.items():
            setattr(key, field, value)
        key.version += 1
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "update", "api_key", key.id, tenant_id=key.tenant_id,
                         store_id=None, before=before, after=_audit_view(key))
        if {"scopes", "store_ids"} & set(changes):
            _announce(ctx, key)
    return key


def _announce(ctx: Ctx, key: ApiKey) -> None:
    """Tell the services that keep things a key set up (a partner's webhook endpoints) what it may do now."""
    ctx.outbox.append(ctx.session, ApiKeyChanged(api_key_id=key.id, scopes=key.scopes,
                                                 store_ids=[uuid.UUID(s) for s in key.store_ids],
                                                 revoked=key.revoked_at is not None),
                      tenant_id=key.tenant_id, store_id=None)


async def rotate_api_key(ctx: Ctx, key_id: uuid.UUID, data: ApiKeyRotate) -> tuple[ApiKey, str]:
    """A new secret for the same key (same id, prefix, scopes): the partner deploys it while the secret it replaces
    keeps working for ``overlap_hours``; after that only the new one does.

    Only two secrets are ever valid. Rotating again while an overlap runs: the secret that was current becomes the
    previous one (with the new overlap) and the older one stops at once -- unless the current secret has never
    been exchanged (a lost response, a double click, a partner who never received it): then that one is dropped
    instead, and the older one, the one the partner still uses, is the one kept for the new overlap.

    Not idempotent, like creation: replaying a response would mean storing the secret.
    """
    async with ctx.session.begin():
        key = await _get_key(ctx, key_id, for_update=True)
        if key.revoked_at is not None:
            raise Conflict("The key is revoked; create a new one.")
        now = utcnow()
        kept = "older" if key.previous_active(now) and key.current_last_used_at is None else "replaced"
        if kept == "replaced":
            key.previous_key_hash, key.previous_last_used_at = key.key_hash, key.current_last_used_at
        if data.overlap_hours == 0:
            key.previous_key_hash = key.previous_valid_until = key.previous_last_used_at = None
        else:
            key.previous_valid_until = now + timedelta(hours=data.overlap_hours)
        secret = secrets.token_urlsafe(32)
        key.key_hash, key.current_last_used_at, key.rotated_at = _sha(secret), None, now
        key.version += 1
        ctx.audit.record(ctx.session, ctx.principal, "rotate", "api_key", key.id, tenant_id=key.tenant_id,
                         store_id=None, after={"rotated_at": now, "overlap_hours": data.overlap_hours,
                                               "previous_valid_until": key.previous_valid_until,
                                               "previous_secret": None if data.overlap_hours == 0 else kept})
    return key, f"{key.prefix}.{secret}"


async def list_api_keys(ctx: Ctx) -> list[ApiKey]:
    return list((await ctx.session.scalars(sa.select(ApiKey).where(
        ApiKey.tenant_id == ctx.principal.tenant_id).order_by(ApiKey.created_at))).all())


async def revoke_api_key(ctx: Ctx, key_id: uuid.UUID) -> None:
    """Both secrets stop at once; tokens already issued live until they expire (``integration_token_minutes``)."""
    async with ctx.session.begin():
        key = await _get_key(ctx, key_id, for_update=True)
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            key.version += 1
            ctx.audit.record(ctx.session, ctx.principal, "revoke", "api_key", key.id, tenant_id=key.tenant_id,
                             store_id=None, after={"revoked_at": key.revoked_at})
            _announce(ctx, key)


async def list_calls(ctx: Ctx, key_id: uuid.UUID, params: PageParams) -> dict:
    """The key's calls to customer_svc (each service records and serves its own: ``/integration-calls``)."""
    async with ctx.session.begin():
        await _get_key(ctx, key_id)
        return await query_calls(ctx.session, ctx.runtime.call_audit.table, ctx.principal.tenant_id, key_id, params)


def principal_view(p: Principal) -> dict:
    return {"subject": p.subject, "tenant_id": p.tenant_id, "store_ids": sorted(p.store_ids),
            "roles": sorted(p.roles), "scopes": sorted(p.scopes), "kind": p.kind}
