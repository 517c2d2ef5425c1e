"""Integration intake over HTTP: bulk import jobs (`/api/v1/imports`) and REST upserts by external id
(`/api/v1/integration/...`). Staff admins or integration keys with the matching scope."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from customer_svc.deps import CtxDep
from customer_svc.imports import service
from customer_svc.imports.columns import first_error
from customer_svc.imports.jobs import KIND_SCOPES
from customer_svc.imports.records import CustomerRecord, DeliveryRecord, Kind, VisitRecord
from customer_svc.imports.schemas import (CustomerUpsert, DeliveryUpsert, ImportJobRead, ImportRowRead,
                                          UpsertResult, VisitUpsert)
from shared.auth import Role, require_roles
from shared.errors import Forbidden, InvalidField, problem_responses
from shared.http.export import FormatParam, export_responses, stream_export
from shared.http.pagination import Page, PageParams, make_page, page_params
from shared.validation import normalize_vin

imports_router = APIRouter(prefix="/api/v1/imports", tags=["imports"], responses=problem_responses(401, 403, 422),
                           dependencies=[require_roles(Role.ADMIN, scope="imports:write")])
upserts_router = APIRouter(prefix="/api/v1/integration", tags=["integration upserts"],
                           responses=problem_responses(401, 403, 409, 422))
JobId = Annotated[uuid.UUID, Path(description="The import job's id.")]
RowStatus = Literal["accepted", "updated", "unchanged", "rejected"]
_FORMATS = {"text/csv": "csv", "application/csv": "csv", "application/x-ndjson": "jsonl",
            "application/jsonl": "jsonl", "application/json-lines": "jsonl"}
_CSV_OR_JSONL = {"content": {"text/csv": {"schema": {"type": "string", "format": "binary"}},
                             "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}}},
                 "required": True}


@imports_router.post("", status_code=202, response_model=ImportJobRead, responses=problem_responses(413),
                     openapi_extra={"requestBody": _CSV_OR_JSONL})
async def upload(
        ctx: CtxDep, request: Request, response: Response,
        kind: Annotated[Kind, Query(
            description="customers: a customer per row, optionally with the vehicle bought and its delivery; "
                        "deliveries: handovers of vehicles on file, by VIN; visits: settled repair orders.")],
        format: Annotated[Literal["csv", "jsonl"] | None, Query(
            description="Default: from Content-Type (text/csv or application/x-ndjson).")] = None,
        encoding: Annotated[Literal["auto", "utf-8", "gbk"], Query(
            description="auto: UTF-8 (BOM or not), else GBK/GB18030 as Excel on Chinese Windows saves.")] = "auto",
        filename: Annotated[str | None, Query(max_length=255)] = None,
) -> Any:
    """Upload a file as the request body (`curl --data-binary @file.csv -H 'Content-Type: text/csv'`) and get its
    job (202); follow it at `Location`. CSV has a header row, in English (the field names of the upsert
    routes) or Chinese (客户编号, 姓名, 手机, 门店编码, 车架号, 交车日期, 工单号, 结算时间 ...); JSON Lines has one object
    per line with the same names. Each record is accepted (created), updated, unchanged or rejected with the
    field and the reason (`/rows`, `/report.csv`): a bad record never stops the others, and records are matched
    by the source system's ids (customer external id, VIN, repair-order id), so sending a file again changes
    nothing. Records for stores outside your key, or another dealer group, are rejected. History (a delivery two
    years ago) is recorded as history: the follow-ups it would have caused are not sent late.

    Not idempotent per request (a retried upload is a second job), idempotent per record (that job changes nothing)."""
    p = ctx.principal
    if p.kind == "integration" and KIND_SCOPES[kind] not in p.scopes:  # as the upserts of the same records need
        raise Forbidden(f"Importing {kind} needs the {KIND_SCOPES[kind]} scope as well as imports:write.")
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    fmt = format or _FORMATS.get(media)
    if fmt is None:
        raise InvalidField("query.format", "give format=csv or format=jsonl, or a text/csv or application/x-ndjson "
                                           "Content-Type")
    job = await service.start_import(ctx, kind, fmt, encoding, filename, request.stream())
    response.headers["Location"] = f"/api/v1/imports/{job.id}"
    return job


@imports_router.get("", response_model=Page[ImportJobRead])
async def list_imports(ctx: CtxDep, params: Annotated[PageParams, Depends(page_params)]) -> dict[str, Any]:
    """Import jobs, newest first (an integration key sees its own)."""
    return make_page(await service.list_jobs(ctx, params), params)


@imports_router.get("/{job_id}", response_model=ImportJobRead, responses=problem_responses(404))
async def get_import(ctx: CtxDep, job_id: JobId) -> Any:
    """A job's status and progress: counts so far, share of the file done, and why it failed if it did."""
    return await service.get_job(ctx, job_id)


@imports_router.get("/{job_id}/rows", response_model=Page[ImportRowRead], responses=problem_responses(404))
async def import_rows(ctx: CtxDep, job_id: JobId,
                      status: Annotated[RowStatus | None, Query(description="Only rows with this outcome.")] = None,
                      cursor: Annotated[str | None, Query(max_length=12, pattern=r"^\d+$",
                                                          description="`next_cursor` of the previous page.")] = None,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
    """The per-row report in file order: each record's outcome, ids, and for rejections the field and reason."""
    rows = await service.job_rows(ctx, job_id, status, int(cursor or 0), limit + 1)
    return {"items": rows[:limit], "next_cursor": str(rows[limit - 1].row) if len(rows) > limit else None}


@imports_router.get("/{job_id}/report", response_class=StreamingResponse,
                    responses={**problem_responses(404), **export_responses("The per-row report, streamed.")})
async def import_report(ctx: CtxDep, job_id: JobId, fmt: FormatParam = "csv",
                        status: Annotated[RowStatus | None, Query(description="Only rows with this outcome.")] = None,
                        ) -> StreamingResponse:
    """The whole per-row report as one download (CSV opens in Excel), streamed whatever the file's size."""
    job = await service.get_job(ctx, job_id)
    return await stream_export(f"import-{job.id}-report", fmt, service.report_rows(ctx, job.id, status),
                         columns=list(ImportRowRead.model_fields))


# --- REST upserts -------------------------------------------------------------------------------------------


def _record(model: type[BaseModel], data: dict[str, Any], where: str = "body") -> Any:
    """The path's key and the body as the intake's record; a check only the record makes names its field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field, message = first_error(exc)
        raise InvalidField(f"{'path' if field == 'vin' and where == 'path' else 'body'}.{field}", message) from None


def _answer(response: Response, result: Any) -> Any:
    response.status_code = 201 if result.status == "accepted" else 200
    return result


def _same(path_value: str, body_value: str | None, field: str) -> None:
    if body_value is not None and body_value != path_value:
        raise InvalidField(f"body.{field}", "differs from the id in the path")


@upserts_router.put("/customers/{external_id}", response_model=UpsertResult,
                    dependencies=[require_roles(Role.ADMIN, scope="customers:write")],
                    responses={201: {"model": UpsertResult, "description": "Created"}})
async def upsert_customer(ctx: CtxDep, response: Response, body: CustomerUpsert,
                          external_id: Annotated[str, Path(max_length=64, pattern=r"^[^\s/\x00]+$")]) -> Any:
    """Create or update a customer by the source system's id, with the vehicle bought (by VIN) and its delivery
    when given: 201 when created, 200 when updated or already so (repeat-safe). Only what the body says is
    changed. A customer created here counts as imported history: give `since` (when the relationship began)
    for the new-contact follow-ups to be planned from then."""
    _same(external_id, body.external_id, "external_id")
    record = _record(CustomerRecord, {**body.model_dump(exclude={"external_id"}), "external_id": external_id})
    p = ctx.principal
    if record.vin is not None and p.kind == "integration" and "vehicles:write" not in p.scopes:
        raise Forbidden("A vehicle (vin) in the body needs the vehicles:write scope.")
    return _answer(response, await service.upsert_one(ctx, "customers", record))


@upserts_router.put("/vehicles/{vin}/delivery", response_model=UpsertResult,
                    dependencies=[require_roles(Role.ADMIN, scope="vehicles:write")])
async def upsert_delivery(ctx: CtxDep, response: Response, body: DeliveryUpsert,
                          vin: Annotated[str, Path(min_length=17, max_length=17)]) -> Any:
    """Record the handover of a vehicle on file (repeat-safe; a different date than the recorded one is 422)."""
    try:
        vin = normalize_vin(vin)
    except ValueError as exc:
        raise InvalidField("path.vin", str(exc)) from None
    record = _record(DeliveryRecord, {**body.model_dump(), "vin": vin}, where="path")
    return _answer(response, await service.upsert_one(ctx, "deliveries", record))


@upserts_router.put("/visits/{external_id}", response_model=UpsertResult,
                    dependencies=[require_roles(Role.ADMIN, scope="visits:write")],
                    responses={201: {"model": UpsertResult, "description": "Created"}})
async def upsert_visit(ctx: CtxDep, response: Response, body: VisitUpsert,
                       external_id: Annotated[str, Path(max_length=64, pattern=r"^[^\s/\x00]+$")]) -> Any:
    """Record a settled repair order by its DMS id (201), or find it recorded (200; repair orders are
    append-only, so a changed body does not alter the one on file)."""
    _same(external_id, body.external_id, "external_id")
    record = _record(VisitRecord, {**body.model_dump(exclude={"external_id"}), "external_id": external_id})
    return _answer(response, await service.upsert_one(ctx, "visits", record))
