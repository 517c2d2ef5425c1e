"""Use cases behind the import and upsert routes: start a job from an upload, read jobs and their reports, and
apply one record through the same intake as the files."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from customer_svc.deps import Ctx
from customer_svc.imports.jobs import store_upload
from customer_svc.imports.records import RowResult
from customer_svc.imports.schemas import ImportRowRead
from customer_svc.imports.scope import IntakeScope
from customer_svc.imports.upsert import Intake
from customer_svc.models import ImportJob, ImportRow
from shared.audit import snapshot
from shared.errors import Duplicate, InvalidField, NotFound, PayloadTooLarge
from shared.http.export import stream_rows
from shared.http.pagination import PageParams, paginate
from shared.ids import new_id


async def start_import(ctx: Ctx, kind: str, fmt: str, encoding: str, filename: str | None,
                       body: AsyncIterator[bytes]) -> ImportJob:
    """Store the upload and queue its job; a file over the size limit leaves nothing behind."""
    p = ctx.principal
    job_id = new_id()
    async with ctx.session.begin():
        ctx.session.add(ImportJob(
            id=job_id, tenant_id=p.tenant_id, kind=kind, format=fmt, encoding=encoding, filename=filename,
            status="uploading", created_by=p.subject, created_by_kind=p.kind, warnings=[],
            scope_store_ids=None if p.tenant_wide else sorted(str(s) for s in p.store_ids)))
    try:
        size, sha256 = await store_upload(ctx.session, job_id, body, ctx.runtime.settings.import_max_mb << 20)
        if size == 0:
            raise InvalidField("body", "the file is empty")
    except BaseException as exc:
        async with ctx.session.begin():
            await ctx.session.execute(sa.delete(ImportJob).where(ImportJob.id == job_id))
        if isinstance(exc, ValueError):
            raise PayloadTooLarge(str(exc)) from None
        raise
    async with ctx.session.begin():
        job = await ctx.session.get(ImportJob, job_id, with_for_update=True)
        assert job is not None
        job.size_bytes, job.sha256, job.status = size, sha256, "queued"
        ctx.audit.record(ctx.session, p, "create", "import_job", job.id, tenant_id=job.tenant_id, store_id=None,
                         after=snapshot(job))
    ctx.runtime.import_runner_wakeup()  # type: ignore[attr-defined]
    return job


def _visible_jobs(ctx: Ctx) -> sa.Select[Any]:
    """An integration sees the jobs its key started; staff admins see the dealer group's."""
    stmt = sa.select(ImportJob).where(ImportJob.tenant_id == ctx.principal.tenant_id)
    if ctx.principal.kind == "integration":
        stmt = stmt.where(ImportJob.created_by == ctx.principal.subject)
    return stmt


async def list_jobs(ctx: Ctx, params: PageParams) -> list[ImportJob]:
    return list((await ctx.session.scalars(paginate(_visible_jobs(ctx), ImportJob.id, params))).all())


async def get_job(ctx: Ctx, job_id: uuid.UUID) -> ImportJob:
    job = await ctx.session.scalar(_visible_jobs(ctx).where(ImportJob.id == job_id))
    if job is None:
        raise NotFound("Import job not found.")
    return job


async def job_rows(ctx: Ctx, job_id: uuid.UUID, status: str | None, after: int, limit: int) -> list[ImportRow]:
    await get_job(ctx, job_id)
    stmt = sa.select(ImportRow).where(ImportRow.job_id == job_id, ImportRow.row > after)
    if status is not None:
        stmt = stmt.where(ImportRow.status == status)
    return list((await ctx.session.scalars(stmt.order_by(ImportRow.row).limit(limit))).all())


def report_rows(ctx: Ctx, job_id: uuid.UUID, status: str | None) -> AsyncIterator[Any]:
    """Every report row in file order, streamed from a server-side cursor (memory flat whatever the file's size)."""
    stmt = sa.select(ImportRow).where(ImportRow.job_id == job_id)
    if status is not None:
        stmt = stmt.where(ImportRow.status == status)
    return stream_rows(ctx.runtime.sessionmaker, stmt.order_by(ImportRow.row),
                       lambda r: ImportRowRead.model_validate(r[0]))


#: The record's key in each upsert's path (a refusal about it names ``path.<field>``; the rest are the body's).
PATH_FIELDS = {"customers": "external_id", "deliveries": "vin", "visits": "external_id"}
#: Postgres's answers to a concurrent writer (a deadlock, a serialization failure, a lock not granted in time):
#: retried once, then a 409 to send again. Any other database error is the server's (500), not the caller's.
_CONCURRENT = frozenset({"40P01", "40001", "55P03"})


def _concurrent(exc: DBAPIError) -> bool:
    return isinstance(exc, IntegrityError) or getattr(exc.orig, "sqlstate", None) in _CONCURRENT


async def upsert_one(ctx: Ctx, kind: str, record: Any) -> RowResult:
    """One record through the bulk path: a refusal is a 422 naming the field; a concurrent writer of the same
    record makes this one retry once and find what the other did."""
    for attempt in range(2):
        try:
            async with ctx.session.begin():
                scope = await IntakeScope.load(ctx.session, ctx.principal)
                intake = Intake(ctx.session, scope, ctx.outbox, lock_identities=True)
                result = (await intake.apply(kind, [(1, record)]))[0]
                if result.status == "rejected":
                    where = "path" if result.field == PATH_FIELDS[kind] else "body"
                    raise InvalidField(f"{where}.{result.field}", result.reason or "refused")
            return result
        except DBAPIError as exc:
            if not _concurrent(exc):
                raise
            if attempt:
                raise Duplicate("Another request changed this record at the same time; send it again.") from None
    raise AssertionError("unreachable")
