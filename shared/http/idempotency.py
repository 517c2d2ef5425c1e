"""``Idempotency-Key`` for creating POSTs: the first response is stored and replayed for repeats.

The key is claimed first (a row without a response), so two concurrent requests with one key cannot
both create; the second gets 409 while the first runs. A create that fails releases the key. A claim
left behind by a process that died mid-request is taken over after ``LEASE`` (the create's own
uniqueness checks then answer 409 with the existing id if the first attempt had committed). A key
belongs to its caller: the caller is part of the request fingerprint, so nobody replays another
user's response. Keys are pruned after a day by the housekeeping job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.auth.principal import Principal
from shared.db.base import dialect_insert, utcnow
from shared.errors import Conflict, InvalidField
from shared.http.etag import etag_for

Created = tuple[dict[str, Any], dict[str, str]]  # body, headers
LEASE = timedelta(seconds=60)


class Idempotency:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], model: type) -> None:
        self.sessionmaker = sessionmaker
        self.table = model.__table__

    async def run(self, principal: Principal, key: str | None, endpoint: str, request: Any,
                  create: Callable[[], Awaitable[Created]], status_code: int = 201) -> JSONResponse:
        if key is None:
            body, headers = await create()
            return JSONResponse(body, status_code=status_code, headers=headers)
        if not key.strip():
            raise InvalidField("header.Idempotency-Key", "must not be blank")
        digest = hashlib.sha256(json.dumps([str(principal.subject), endpoint, request], sort_keys=True,
                                           default=str).encode()).hexdigest()
        t = self.table
        where = (t.c.tenant_id == principal.tenant_id) & (t.c.key == key)
        async with self.sessionmaker() as session, session.begin():
            insert = dialect_insert(session)
            claimed = (await session.execute(
                insert(t).values(tenant_id=principal.tenant_id, key=key, request_hash=digest)
                .on_conflict_do_nothing().returning(t.c.key))).first()
            if claimed is None:
                row = (await session.execute(sa.select(t).where(where))).one()
                if row.request_hash != digest:
                    raise InvalidField("header.Idempotency-Key", "was already used for a different request")
                if row.status_code is None:
                    if row.created_at > utcnow() - LEASE:
                        raise Conflict("A request with this Idempotency-Key is still being processed.")
                    # The first attempt died mid-request: take the key over, once (of two retries arriving
                    # together only the first moves the claim on; the other sees it in progress).
                    taken = await session.execute(sa.update(t).where(
                        where, t.c.status_code.is_(None), t.c.created_at == row.created_at).values(created_at=utcnow()))
                    if taken.rowcount != 1:  # type: ignore[attr-defined]
                        raise Conflict("A request with this Idempotency-Key is still being processed.")
                else:
                    return JSONResponse(row.response, status_code=row.status_code,
                                        headers={**(row.headers or {}), "Idempotent-Replayed": "true"})
        try:
            body, headers = await create()
        except Exception:
            async with self.sessionmaker() as session, session.begin():
                await session.execute(sa.delete(t).where(where))
            raise
        async with self.sessionmaker() as session, session.begin():
            await session.execute(sa.update(t).where(where).values(status_code=status_code, response=body, headers=headers))
        return JSONResponse(body, status_code=status_code, headers=headers)

    async def create(self, principal: Principal, key: str | None, endpoint: str, body: BaseModel,
                     make: Callable[[], Awaitable[Any]], schema: type[BaseModel], location: str,
                     view: Callable[[Any], Any] | None = None, secret: frozenset[str] = frozenset()) -> JSONResponse:
        """The usual creating POST: ``make()`` the record, answer 201 with it, its ETag and its Location.

        ``secret`` names body fields (passwords) kept out of the stored request fingerprint.
        """

        async def created() -> Created:
            obj = await make()
            dumped = schema.model_validate(view(obj) if view else obj).model_dump(mode="json")
            return dumped, {"ETag": etag_for(obj.version), "Location": f"{location}/{obj.id}"}

        return await self.run(principal, key, endpoint, body.model_dump(mode="json", exclude=set(secret)), created)
