"""API shapes of import jobs and REST upserts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from customer_svc.imports.records import CustomerRecord, DeliveryFields, VisitRecord


class ImportJobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    kind: str
    format: str
    encoding: str
    filename: str | None
    size_bytes: int
    sha256: str | None
    status: Literal["uploading", "queued", "running", "done", "failed"]
    rows_done: int = Field(description="Records read so far (each is accepted, updated, unchanged or rejected).")
    bytes_done: int
    accepted: int = Field(description="Records that created a customer (or visit).")
    updated: int = Field(description="Records that changed what was on file.")
    unchanged: int = Field(description="Records already on file as sent (a re-sent file is all unchanged).")
    rejected: int
    error: str | None = Field(description="Why a failed job could not read the file.")
    warnings: list[str]
    created_by: uuid.UUID
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def progress(self) -> float:
        """Share of the file's bytes worked through, 0 to 1."""
        if self.status == "done":
            return 1.0
        return round(self.bytes_done / self.size_bytes, 4) if self.size_bytes else 0.0


class ImportRowRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    row: int = Field(description="The record's line in the file; the header is line 1.")
    status: Literal["accepted", "updated", "unchanged", "rejected"]
    key: str | None
    customer_id: uuid.UUID | None
    vehicle_id: uuid.UUID | None
    visit_id: uuid.UUID | None
    field: str | None
    reason: str | None


class CustomerUpsert(CustomerRecord):
    """A customer by the source system's id (the path), with an optional vehicle and its delivery."""

    external_id: str | None = Field(  # type: ignore[assignment]
        default=None, description="Taken from the path; if given it must match.")


class VisitUpsert(VisitRecord):
    external_id: str | None = Field(  # type: ignore[assignment]
        default=None, description="Taken from the path; if given it must match.")


class DeliveryUpsert(DeliveryFields):
    """A handover of the vehicle in the path."""


class UpsertResult(BaseModel):
    status: Literal["accepted", "updated", "unchanged"] = Field(
        description="accepted: created (201); updated: changed; unchanged: already so.")
    key: str | None
    customer_id: uuid.UUID | None
    vehicle_id: uuid.UUID | None = None
    visit_id: uuid.UUID | None = None
