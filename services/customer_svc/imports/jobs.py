"""Import jobs: the upload stored in chunks, then a worker reads it back as a stream and applies it batch by batch.

Each batch (its records, their report rows and the job's counters) commits as one transaction, so progress is
exact and a worker that dies mid-file loses nothing: the job's lease runs out, another worker takes it over and
skips the records already reported. A batch a database conflict fails (another writer got there first) is
applied again record by record, each with its report row, so one record's conflict never refuses its neighbours
and a pass cut short is taken over where it stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import asyncpg
import sqlalchemy as sa
import structlog
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from customer_svc.imports.columns import first_error
from customer_svc.imports.reader import FileError, FileReader, Raw
from customer_svc.imports.records import RECORDS, RowResult
from customer_svc.imports.scope import IntakeScope, Reject
from customer_svc.imports.upsert import Claims, Intake, batch_keys, identity_locks
from customer_svc.models import (ApiKey, Customer, CustomerPhone, ImportChunk, ImportJob, ImportRow, ServiceVisit,
                                 Vehicle)
from customer_svc.settings import CustomerSettings
from shared.auth import Principal, Role
from shared.db.base import advisory_locks, utcnow
from shared.db.bulk import EncodedRows, encode_rows, write_rows
from shared.ids import new_id
from shared.messaging.outbox import Outbox
from shared.pacing import paced

log = structlog.get_logger("imports")
RECORDS_DONE = Counter("import_records_total", "Import records committed, by kind and outcome", ["kind", "outcome"])
REDONE = Counter("import_batches_redone_total", "Import batches a database conflict sent record by record", ["kind"])
JOBS = Counter("import_jobs_finished_total", "Import jobs finished, by kind and status (done | failed)",
               ["kind", "status"])
LEASES_LOST = Counter("import_leases_lost_total", "Import jobs this worker stalled on and another took over")
CHUNK_BYTES = 1 << 20
#: The columns whose lookups an import of each kind depends on (their statistics alone are refreshed as it grows
#: the tables: sampling every column cost a tenth of Postgres's work; autovacuum sees to the rest).
_CUSTOMER = (Customer.__table__, ("tenant_id", "external_id", "customer_no", "id"))
_PHONE = (CustomerPhone.__table__, ("tenant_id", "e164", "customer_id"))
_VEHICLE = (Vehicle.__table__, ("tenant_id", "vin", "customer_id"))
ANALYZED = {"customers": [_CUSTOMER, _PHONE, _VEHICLE], "deliveries": [_VEHICLE],
            "visits": [(ServiceVisit.__table__, ("tenant_id", "external_id")), _VEHICLE]}
COUNTERS = ("accepted", "updated", "unchanged", "rejected")
#: An upload still unfinished after this long was abandoned (the API process died mid-file); swept this often.
ABANDONED_UPLOAD = timedelta(hours=6)
SWEEP_SECONDS = 600


async def store_upload(session: AsyncSession, job_id: uuid.UUID, body: AsyncIterator[bytes],
                       max_bytes: int) -> tuple[int, str]:
    """Write the request body into ``import_chunk`` rows of 1 MiB as it arrives (never the whole file in memory),
    each chunk in its own short transaction; returns the size and SHA-256. Raises ``ValueError`` past
    ``max_bytes``."""
    digest, buffer, seq, size = hashlib.sha256(), bytearray(), 0, 0

    async def flush() -> None:
        nonlocal seq
        async with session.begin():
            session.add(ImportChunk(job_id=job_id, seq=seq, data=bytes(buffer[:CHUNK_BYTES])))
        seq += 1
        del buffer[:CHUNK_BYTES]

    async for piece in body:
        size += len(piece)
        if size > max_bytes:
            raise ValueError(f"the file is larger than {max_bytes >> 20} MiB")
        digest.update(piece)
        buffer += piece
        while len(buffer) >= CHUNK_BYTES:
            await flush()
    if buffer:
        await flush()
    return size, digest.hexdigest()


def job_principal(job: ImportJob) -> Principal:
    """The uploader as the worker acts for them: their dealer group and the stores they could write."""
    stores = job.scope_store_ids
    return Principal(subject=job.created_by, tenant_id=job.tenant_id,
                     store_ids=frozenset(uuid.UUID(s) for s in stores or []),
                     roles=frozenset({Role.ADMIN} if stores is None else {Role.INTEGRATION}),
                     kind=job.created_by_kind)


#: What an integration key needs, besides ``imports:write``, to import each kind (as the REST upserts need it).
KIND_SCOPES = {"customers": "customers:write", "deliveries": "vehicles:write", "visits": "visits:write"}


async def acting_for(session: AsyncSession, job: ImportJob) -> Principal | str:
    """The uploader as the worker acts for them now, or why it no longer may. An integration key revoked, or without
    ``imports:write`` or the kind's write scope, since the upload stops its job (failed, at the next claim); one
    narrowed since writes only the stores it still has, and vehicles only with ``vehicles:write`` (its scopes come
    along). A key not on file (tokens minted without one, as tests do) acts as at upload."""
    principal = job_principal(job)
    if job.created_by_kind != "integration":
        return principal
    key = await _key_state(session, job.created_by, job.kind)
    if key is None:
        return principal
    if not key.usable:
        return (f"the integration key that uploaded the file was revoked, or lost imports:write or "
                f"{KIND_SCOPES[job.kind]}, before it was done")
    return replace(principal, store_ids=principal.store_ids & key.store_ids, scopes=key.scopes)


@dataclass(frozen=True)
class _KeyState:
    usable: bool
    store_ids: frozenset[uuid.UUID]
    scopes: frozenset[str]


async def _key_state(session: AsyncSession, key_id: uuid.UUID, kind: str) -> _KeyState | None:
    """An integration key's state as an import job of ``kind`` needs it (None: not on file)."""
    row = (await session.execute(sa.select(ApiKey.revoked_at, ApiKey.scopes, ApiKey.store_ids).where(
        ApiKey.id == key_id))).first()
    if row is None:
        return None
    return _KeyState(row.revoked_at is None and {"imports:write", KIND_SCOPES[kind]} <= set(row.scopes),
                     frozenset(uuid.UUID(s) for s in row.store_ids), frozenset(row.scopes))


def validate(kind: str, raw: Raw) -> tuple[Any | None, RowResult | None]:
    """A file record as a typed record, or its rejection naming the field."""
    model = RECORDS[kind]
    key = None
    if raw.values is not None:
        key = raw.values.get("external_id") if kind != "deliveries" else raw.values.get("vin")
        key = str(key).replace("\x00", "\\x00")[:64] if key not in (None, "") else None  # as the report can hold it
    if raw.error is not None:
        return None, RowResult(row=raw.row, status="rejected", key=key, field="row", reason=raw.error)
    nul = next((name for name, value in raw.values.items() if type(value) is str and "\x00" in value), None)
    if nul is not None:  # Postgres text cannot hold it (API bodies are refused the same way)
        return None, RowResult(row=raw.row, status="rejected", key=key, field=nul,
                               reason="must not contain the NUL character (U+0000)")
    try:
        return model.model_validate(raw.values), None
    except ValidationError as exc:
        field, reason = first_error(exc)
        return None, RowResult(row=raw.row, status="rejected", key=key, field=field, reason=reason[:500])


def _identity_locks(kind: str, scope: IntakeScope, groups: list[list[tuple[int, Any]]]) -> list[str]:
    """The identity locks a batch of customers holds from its lookups to its commit (its numbers' buckets per
    store; none for the kinds that give out no phone or ID number)."""
    if kind != "customers":
        return []
    located = []
    for group in groups:
        for _, record in group:
            try:
                located.append((record, scope.store_of(record)))
            except Reject:
                continue  # refused at decide, writes nothing
    return identity_locks(located)


class Restart(Exception):
    """The batch before failed while this one held locks its record-by-record pass may need: roll back, redo."""


class _Turn:
    """A batch's place in the pipeline: when it holds its locks (``looked_up``: the next batch may look up and lock),
    whether it failed after that (``failed``), when it is done (``task``), and the numbers it claimed."""

    def __init__(self, before: _Turn | None) -> None:
        self.before = before
        self.looked_up = asyncio.Event()
        self.failed = asyncio.Event()
        self.claims: Claims = {}
        self.task: asyncio.Task[None]

    def earlier_claims(self) -> list[Claims]:
        """The claims of the batches before this one still in flight (a finished one has let go of ``before``)."""
        out, turn = [], self.before
        while turn is not None:
            out.append(turn.claims)
            turn = turn.before
        return out

    async def after_lookups(self) -> None:
        if self.before is not None:
            await self.before.looked_up.wait()

    async def after_commit(self) -> None:
        """Wait for the batch before to finish; its failure is this batch's too (nothing commits past a gap). If it
        fails first (and redoes its records one by one, needing rows this batch may have locked), raise
        :class:`Restart`."""
        before = self.before
        if before is None:
            return
        failed = asyncio.ensure_future(before.failed.wait())
        try:
            await asyncio.wait({before.task, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            failed.cancel()
        if not before.task.done():
            raise Restart
        await asyncio.shield(before.task)


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a job: its batches commit only while the job's ``lease_owner`` is still ``owner``, and,
    for an integration key's job (``key_id``), while the key still lets it write the ``stores`` the run began with."""

    job_id: uuid.UUID
    owner: uuid.UUID
    key_id: uuid.UUID | None = None
    stores: frozenset[uuid.UUID] = frozenset()
    kind: str = "customers"


class HandedBack(Exception):
    """The worker is stopping: the job's batches so far are committed and its lease released for another worker."""


class KeyChanged(Exception):
    """The integration key the job acts for was revoked or narrowed mid-file: the batch under way rolls back, the job
    is handed back, and the next claim acts for the key as it is then (failing the job, or writing fewer stores)."""


def _poison(exc: BaseException) -> bool:
    """An error a worker taking the job over would meet again (not the database's or the network's, nor the run's
    own signals): the job fails, naming it, instead of being taken over and failing again for ever."""
    return isinstance(exc, Exception) and not isinstance(exc, (
        SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, LeaseLost, HandedBack, KeyChanged))


class LeaseLost(Exception):
    """Another worker took the job over (this one stalled past its lease): stop, committing nothing more."""


@dataclass(frozen=True)
class _Report:
    """A batch's per-row report, encoded, and what it adds to the job's counters."""

    rows: EncodedRows | None
    counts: dict[str, int]
    records: int
    bytes_read: int


def _count(kind: str, report: _Report) -> None:
    """A committed batch in the worker's metrics."""
    for outcome, n in report.counts.items():
        if n:
            RECORDS_DONE.labels(kind, outcome).inc(n)


class ImportRunner:
    """The worker side: claims a waiting job and works it to the end (one per step of the worker loop)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], outbox: Outbox,
                 settings: CustomerSettings) -> None:
        self.sessionmaker = sessionmaker
        self.outbox = outbox
        self.batch = settings.import_batch_rows
        self.in_flight = settings.import_batches_in_flight
        self.lease = timedelta(seconds=settings.import_lease_seconds)
        self._swept = 0.0
        #: Called whenever the job moves on (each transaction that renews its lease): a job is one step of the
        #: worker's import loop however long its file, and the worker's liveness heartbeat follows this.
        self.progress: Callable[[], None] = lambda: None
        #: Set when the worker stops (SIGTERM): the job is handed back between batches (see :meth:`run`).
        self.stop: asyncio.Event | None = None

    async def run_once(self) -> int:
        if time.monotonic() - self._swept > SWEEP_SECONDS:
            await self._sweep()
        claim = await self._claim()
        if claim is None:
            return 0
        try:
            await self.run(claim)
        except HandedBack:
            log.info("import_handed_back", job_id=str(claim.job_id))
        except KeyChanged:
            log.info("import_key_changed", job_id=str(claim.job_id))
        except LeaseLost:
            LEASES_LOST.inc()
            log.warning("import_lease_lost", job_id=str(claim.job_id))
        return 1

    async def _sweep(self) -> None:
        """Uploads that never finished (the API process died mid-file) are removed with their chunks."""
        self._swept = time.monotonic()
        async with self.sessionmaker() as session, session.begin():
            await session.execute(sa.delete(ImportJob).where(
                ImportJob.status == "uploading", ImportJob.created_at < utcnow() - ABANDONED_UPLOAD))

    async def _claim(self) -> Claim | None:
        async with self.sessionmaker() as session, session.begin():
            now = utcnow()
            job = await session.scalar(
                sa.select(ImportJob).where(ImportJob.status.in_(("queued", "running")),
                                           sa.or_(ImportJob.lease_until.is_(None), ImportJob.lease_until < now))
                .order_by(ImportJob.created_at).limit(1).with_for_update(skip_locked=True))
            if job is None:
                return None
            job.status, job.lease_until, job.lease_owner = "running", now + self.lease, new_id()
            job.started_at = job.started_at or now
            return Claim(job.id, job.lease_owner)

    async def _chunks(self, job_id: uuid.UUID) -> AsyncIterator[bytes]:
        seq = 0
        while True:
            async with self.sessionmaker() as session:
                data = await session.scalar(sa.select(ImportChunk.data).where(
                    ImportChunk.job_id == job_id, ImportChunk.seq == seq))
            if data is None:
                return
            yield data
            seq += 1

    async def run(self, claim: Claim) -> None:
        """Work the claimed job to its end; raises :class:`LeaseLost` once another worker took it over, and
        :class:`KeyChanged` (the job handed back) once the key it acts for no longer allows what the run began with."""
        job_id = claim.job_id
        async with self.sessionmaker() as session:
            job = await session.get(ImportJob, job_id)
            assert job is not None
            kind, skip = job.kind, job.rows_done
            reader = FileReader(kind, job.format, job.encoding, slice_lines=self.batch)
            acting = await acting_for(session, job)
            if isinstance(acting, str):
                await session.commit()
                await self._finish(session, claim, reader, acting)
                return
            scope = await IntakeScope.load(session, acting)
            await session.commit()
            if job.created_by_kind == "integration":
                claim = replace(claim, key_id=job.created_by, stores=acting.store_ids, kind=kind)
            # Batches in flight (see :meth:`_batch`): one in Python while the others wait on Postgres.
            inflight: list[_Turn] = []
            done, analyzed = 0, 2_500

            async def submit(batch: list[Raw]) -> None:
                nonlocal done, analyzed
                turn = _Turn(inflight[-1] if inflight else None)
                turn.task = asyncio.create_task(self._batch(claim, scope, kind, batch, reader.bytes_read, turn))
                inflight.append(turn)
                if len(inflight) >= self.in_flight:
                    await inflight.pop(0).task
                    done += self.batch
                    if done >= analyzed * 2:
                        await self._analyze(kind)
                        analyzed = done

            try:
                waiting: list[Raw] = []  # the reader's slices regrouped into batches of ``self.batch`` records
                async for raws in reader.records(self._chunks(job_id)):
                    if skip >= len(raws):
                        skip -= len(raws)
                        continue
                    waiting += raws[skip:]
                    skip = 0
                    while len(waiting) >= self.batch:
                        if self.stop is not None and self.stop.is_set():
                            await self._hand_back(claim, inflight)
                        await submit(waiting[:self.batch])
                        del waiting[:self.batch]
                if waiting:
                    await submit(waiting)
                for turn in inflight:
                    await turn.task
                await self._finish(session, claim, reader, None)
            except FileError as exc:
                await asyncio.gather(*(t.task for t in inflight), return_exceptions=True)
                await self._finish(session, claim, reader, str(exc))
            except BaseException as exc:
                for turn in inflight:
                    turn.task.cancel()
                await asyncio.gather(*(t.task for t in inflight), return_exceptions=True)
                if isinstance(exc, KeyChanged):
                    await self._release(claim)
                elif _poison(exc):
                    log.exception("import_failed_unexpectedly", job_id=str(job_id))
                    await self._finish(session, claim, reader, f"stopped at an unexpected error "
                                       f"({type(exc).__name__}), logged with the job's id; the rows reported "
                                       "before it stand")
                    return
                raise

    async def _hand_back(self, claim: Claim, inflight: list[_Turn]) -> None:
        """A stopping worker lets the batches in flight commit, then releases the lease, so another worker goes on
        from there at once (its rolling deploy or scale-down does not leave the job waiting out the lease)."""
        for turn in inflight:
            await turn.task
        await self._release(claim)
        raise HandedBack(claim.job_id)

    async def _release(self, claim: Claim) -> None:
        """Give the job up, lease released, for the next claim to go on from its last committed batch."""
        async with self.sessionmaker() as session, session.begin():
            await session.execute(sa.update(ImportJob).where(
                ImportJob.id == claim.job_id, ImportJob.lease_owner == claim.owner).values(
                lease_owner=None, lease_until=None, updated_at=utcnow()))

    async def _analyze(self, kind: str) -> None:
        """Fresh planner statistics for the tables a big import is growing: with the counts of an emptier table,
        Postgres looks keys up by the dealer group alone and filters, and each batch gets slower than the last.
        Run each time the job doubles what it has written (a few times per file; autovacuum is far slower)."""
        async with self.sessionmaker() as session:
            if session.bind.dialect.name != "postgresql":
                return
            tables = ANALYZED[kind]
            async with session.begin():
                await session.execute(sa.text("ANALYZE " + ", ".join(f"{t.schema}.{t.name} ({', '.join(columns)})"
                                                                     for t, columns in tables)))

    async def _grouped(self, kind: str, raws: list[Raw]) -> tuple[list[RowResult], list[list[tuple[int, Any]]]]:
        """Validated records in groups with no key twice (a repeated key starts a new group, which then sees what
        the earlier one did), and the rejections of records that did not validate."""
        results: list[RowResult] = []
        groups: list[list[tuple[int, Any]]] = [[]]
        keys: set[str] = set()
        async for raw in paced(raws):
            record, rejected = validate(kind, raw)
            if rejected is not None:
                results.append(rejected)
                continue
            mine = batch_keys(kind, record)
            if keys & mine:
                groups.append([])
                keys = set()
            keys |= mine
            groups[-1].append((raw.row, record))
        return results, groups

    async def _batch(self, claim: Claim, scope: IntakeScope, kind: str, raws: list[Raw], bytes_read: int,
                     turn: _Turn) -> None:
        """One batch in its own transaction, overlapping the batches before it without ever waiting in a cycle:
        it validates while they work; looks up (and locks) what exists once the batch before has decided, and
        decides and encodes its rows while that one writes; writes, reports and commits once the batch before
        committed (file order, and no unique index wait on rows it has not committed). A key the uncommitted
        batch before created looks new here; the insert then fails and the batch is redone record by record,
        finding it. Should the batch before fail meanwhile, this one rolls back (its locks may be what that one's
        record-by-record pass needs) and is redone once that one is done."""
        try:
            while True:
                try:
                    await self._batch_in_turn(claim, scope, kind, raws, bytes_read, turn)
                    return
                except Restart:
                    # Rolled back: the batch before gets the rows it needs; later batches holding locks restart
                    # too. Once it is done, this batch is redone from its lookups.
                    turn.failed.set()
                    turn.looked_up.clear()
                    turn.claims.clear()
                    assert turn.before is not None
                    await asyncio.shield(turn.before.task)
        finally:
            turn.looked_up.set()
            turn.before = None  # the chain of finished batches is not kept

    async def _batch_in_turn(self, claim: Claim, scope: IntakeScope, kind: str, raws: list[Raw],
                             bytes_read: int, turn: _Turn) -> None:
        results, groups = await self._grouped(kind, raws)
        locks = _identity_locks(kind, scope, groups)
        async with self.sessionmaker() as session:
            try:
                async with session.begin():
                    await turn.after_lookups()
                    # Shared: the job's pipelined batches hold them together; a staff create or a REST upsert of
                    # one of these numbers waits (exclusive) until the batches holding them now commit, and
                    # batches after it wait for it. Taken before any row lock, as every writer takes them, and
                    # after the batch before looked up: should that one fail, its record-by-record pass (which
                    # locks exclusively) is not kept waiting by a batch that waits for it.
                    await advisory_locks(session, locks, shared=True)
                    intake = Intake(session, scope, self.outbox, audit_creates=False, claims=turn.claims,
                                    earlier_claims=turn.earlier_claims())
                    pending = None
                    for group in (g for g in groups if g):
                        if pending is not None:  # a later group must see the earlier group's rows
                            await turn.after_commit()
                            await intake.write(pending)
                        decided, pending = await intake.decide(kind, group)
                        results += decided
                    # Now the next batch may look up (and lock). Should this one then fail, its record-by-record
                    # pass may need those rows: ``failed`` makes the next one roll back and wait (see after_commit).
                    turn.looked_up.set()
                    if pending is not None:
                        await intake.prepare(pending)  # while the batch before writes
                    report = self._report_of(session, claim.job_id, results, len(raws), bytes_read)
                    await turn.after_commit()
                    if pending is not None:
                        await intake.write(pending)
                    await self._report(session, claim, report)
                _count(kind, report)
                return
            except (IntegrityError, DBAPIError) as exc:
                REDONE.labels(kind).inc()
                log.warning("import_batch_conflict", job_id=str(claim.job_id), error=type(exc).__name__)
            turn.failed.set()
            turn.looked_up.clear()  # the next batch looks up once this one is done
            turn.claims.clear()  # claimed again record by record (a refused record gives its numbers up)
            await turn.after_commit()
            # One at a time: a conflicting record is refused alone (or, retried, finds what the other writer did).
            # Each record commits with its report row, so a worker taking the batch over after a stop midway
            # skips the records reported and reports the rest as they are, not "unchanged" as it would find them.
            grouped = {row for g in groups for row, _ in g}
            async with session.begin():
                reported = set(await session.scalars(sa.select(ImportRow.row).where(
                    ImportRow.job_id == claim.job_id, ImportRow.row.in_(grouped)))) if grouped else set()
            for group in groups:
                for item in group:
                    if item[0] not in reported:
                        _count(kind, await self._one(session, claim, turn, scope, kind, item, bytes_read))
            # Then the batch's progress, with the records that did not validate.
            report = self._report_of(session, claim.job_id, [r for r in results if r.row not in grouped],
                                     len(raws), bytes_read)
            async with session.begin():
                await self._report(session, claim, report)
            _count(kind, report)

    async def _one(self, session: AsyncSession, claim: Claim, turn: _Turn, scope: IntakeScope, kind: str,
                   item: tuple[int, Any], bytes_read: int) -> _Report:
        """One record and its report row (and counter) in one transaction; a record the database refuses is
        reported in a transaction of its own. Answers what it reported, once committed."""
        for attempt in range(2):
            try:
                async with session.begin():
                    intake = Intake(session, scope, self.outbox, audit_creates=False, claims=turn.claims,
                                    lock_identities=True)
                    report = await self._report_one(session, claim, (await intake.apply(kind, [item]))[0],
                                                    bytes_read)
                return report
            except (IntegrityError, DBAPIError) as exc:
                key = item[1].vin if kind == "deliveries" else item[1].external_id
                if str(getattr(exc.orig, "sqlstate", "")).startswith("22"):  # a data exception: no retry mends it
                    result = RowResult(row=item[0], status="rejected", key=key, field="row",
                                       reason="holds a value the database cannot store")
                    break
                if attempt:
                    result = RowResult(row=item[0], status="rejected", key=key, field="row",
                                       reason=f"conflicts with another change to the same record "
                                              f"({type(exc).__name__}); send it again")
        async with session.begin():
            return await self._report_one(session, claim, result, bytes_read)

    async def _report_one(self, session: AsyncSession, claim: Claim, result: RowResult, bytes_read: int) -> _Report:
        report = self._report_of(session, claim.job_id, [result], 0, bytes_read)
        await self._report(session, claim, report)
        return report

    async def _hold(self, session: AsyncSession, claim: Claim, **counters: Any) -> None:
        """Renew the lease in the caller's transaction (with ``counters``: the job's progress), which may commit
        only while this worker still holds the job (else :class:`LeaseLost` rolls it back) and the key it acts for
        still allows what the run began with (else :class:`KeyChanged`)."""
        renewed = await session.execute(sa.update(ImportJob).where(
            ImportJob.id == claim.job_id, ImportJob.lease_owner == claim.owner).values(
            lease_until=utcnow() + self.lease, updated_at=utcnow(), **counters))
        if renewed.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(claim.job_id)
        if claim.key_id is not None:
            key = await _key_state(session, claim.key_id, claim.kind)
            if key is not None and not (key.usable and claim.stores <= key.store_ids):
                raise KeyChanged(claim.job_id)
        self.progress()

    def _report_of(self, session: AsyncSession, job_id: uuid.UUID, results: list[RowResult], rows: int,
                   bytes_read: int) -> _Report:
        encoded = encode_rows(session.bind.dialect, ImportRow.__table__, [
            {"job_id": job_id, "row": r.row, "status": r.status, "key": r.key,
             "customer_id": r.customer_id, "vehicle_id": r.vehicle_id, "visit_id": r.visit_id,
             "field": r.field, "reason": r.reason} for r in results])
        return _Report(encoded, {c: sum(r.status == c for r in results) for c in COUNTERS}, rows, bytes_read)

    async def _report(self, session: AsyncSession, claim: Claim, report: _Report) -> None:
        """The batch's report rows and the job's counters, in the batch's transaction, which commits only while
        this worker still holds the job (else :class:`LeaseLost` rolls the batch back: the new holder redoes it)."""
        await self._hold(session, claim, rows_done=ImportJob.rows_done + report.records, bytes_done=report.bytes_read,
                         **{c: getattr(ImportJob, c) + n for c, n in report.counts.items()})
        await write_rows(session, report.rows)

    async def _finish(self, session: AsyncSession, claim: Claim, reader: FileReader, error: str | None) -> None:
        async with session.begin():
            # Read again under the lock (the session still holds the job as loaded when the run began).
            job = await session.get(ImportJob, claim.job_id, with_for_update=True, populate_existing=True)
            assert job is not None
            if job.lease_owner != claim.owner:
                raise LeaseLost(claim.job_id)
            job.status = "failed" if error else "done"
            job.error = error
            job.finished_at = job.updated_at = utcnow()
            job.lease_until = job.lease_owner = None
            job.encoding = reader.found_encoding or job.encoding
            job.warnings = reader.warnings[:50]
            if not error:
                job.bytes_done = job.size_bytes
        JOBS.labels(job.kind, job.status).inc()
        log.info("import_finished", job_id=str(claim.job_id), status=job.status, rows=job.rows_done,
                 rejected=job.rejected)

