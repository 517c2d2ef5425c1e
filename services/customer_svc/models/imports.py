"""Bulk import jobs (OEM / DMS files): the uploaded file in chunks, the job's progress and its per-row report."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from customer_svc.models import Base
from shared.db.base import TimestampMixin
from shared.ids import new_id


class ImportJob(TimestampMixin, Base):
    """One uploaded file. ``queued`` -> ``running`` -> ``done`` (rows may still be rejected) or ``failed`` (the file
    as a whole could not be read: bad encoding, no header, missing columns). Workers claim a job by lease, so a
    worker that dies mid-file is replaced by another one, which skips the rows already reported."""

    __tablename__ = "import_job"
    __table_args__ = (
        sa.Index("ix_import_job_tenant_created", "tenant_id", "created_at"),
        sa.Index("ix_import_job_waiting", "created_at", postgresql_where=sa.text("status IN ('queued', 'running')"),
                 sqlite_where=sa.text("status IN ('queued', 'running')")),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(sa.String(20), comment="customers | deliveries | visits")
    format: Mapped[str] = mapped_column(sa.String(10), comment="csv | jsonl")
    encoding: Mapped[str] = mapped_column(sa.String(20), comment="auto | utf-8 | gbk (the one found once read)")
    filename: Mapped[str | None] = mapped_column(sa.String(255))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger(), default=0)
    sha256: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(10), default="queued")
    rows_done: Mapped[int] = mapped_column(default=0)
    bytes_done: Mapped[int] = mapped_column(sa.BigInteger(), default=0)
    accepted: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.String(1000))
    warnings: Mapped[list[str]] = mapped_column(default=list)
    #: Who uploaded it, and the stores they may write (None: the whole dealer group); the worker acts as them.
    created_by: Mapped[uuid.UUID]
    created_by_kind: Mapped[str] = mapped_column(sa.String(20))
    scope_store_ids: Mapped[list[str] | None]
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[uuid.UUID | None] = mapped_column(
        comment="The claim of the worker holding the job; its batches commit only while it still holds it")
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class ImportChunk(Base):
    """The uploaded bytes, 1 MiB per row, so any worker replica can read the file back as a stream."""

    __tablename__ = "import_chunk"
    job_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("import_job.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary())


class ImportRow(Base):
    """What happened to one record of the file (``row``: its line in the file, the header being line 1)."""

    __tablename__ = "import_row"
    job_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("import_job.id", ondelete="CASCADE"), primary_key=True)
    row: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(10), comment="accepted | updated | unchanged | rejected")
    key: Mapped[str | None] = mapped_column(sa.String(64), comment="The row's external id or VIN")
    customer_id: Mapped[uuid.UUID | None]
    vehicle_id: Mapped[uuid.UUID | None]
    visit_id: Mapped[uuid.UUID | None]
    field: Mapped[str | None] = mapped_column(sa.String(100))
    reason: Mapped[str | None] = mapped_column(sa.String(500))
