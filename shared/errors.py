"""RFC 9457 problem details for every error, with a stable ``type`` per error class.

Services raise :class:`AppError` subclasses; :func:`install_error_handlers` renders them, request
validation errors (422, each naming its field) and framework HTTP errors as ``application/problem+json``;
unexpected exceptions become a bare 500 problem in ``RequestContextMiddleware`` (it knows the request id).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.observability.context import request_id_var

PROBLEM_BASE = "https://aftercare.dev/problems/"
PROBLEM_JSON = "application/problem+json"


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `body.phones.0.number`.")
    message: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(description="URI naming the kind of problem; stable across releases.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str = Field(description="Short machine code, the last segment of `type`.")
    request_id: str | None = None
    errors: list[FieldError] | None = Field(default=None, description="Per-field validation errors.")
    existing_id: str | None = Field(default=None, description="On duplicate conflicts: the record that already exists.")


class AppError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extensions = extensions
        self.headers: dict[str, str] = {}


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class Duplicate(Conflict):
    code, title = "duplicate", "Already exists"


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Forbidden"


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **ext: Any) -> None:
        super().__init__(detail, **ext)
        self.headers["WWW-Authenticate"] = "Bearer"


class TooManyRequests(AppError):
    status, code, title = 429, "too_many_requests", "Too many requests"

    def __init__(self, detail: str | None = None, retry_after: int = 60, **ext: Any) -> None:
        super().__init__(detail, **ext)
        self.headers["Retry-After"] = str(retry_after)


class Unavailable(AppError):
    """503: a dependency (the database) could not serve the request now; the same request may succeed later."""

    status, code, title = 503, "unavailable", "Service unavailable"

    def __init__(self, detail: str | None = None, retry_after: int = 30, **ext: Any) -> None:
        super().__init__(detail, **ext)
        self.headers["Retry-After"] = str(retry_after)


class PreconditionFailed(AppError):
    status, code, title = 412, "precondition_failed", "The record changed since you read it"


class PreconditionRequired(AppError):
    status, code, title = 428, "precondition_required", "If-Match header required"


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload_too_large", "Request body too large"


class BusinessRuleViolation(AppError):
    status, code, title = 422, "business_rule", "Request breaks a business rule"


class InvalidField(AppError):
    """422 for a single field that failed a check the schema could not express."""

    status, code, title = 422, "validation_error", "Request validation failed"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field_errors = [FieldError(field=field, message=message, type="value_error")]


class InvalidFields(InvalidField):
    """422 naming several fields at once (e.g. every bad answer of a survey form)."""

    def __init__(self, errors: dict[str, str]) -> None:
        AppError.__init__(self, "; ".join(f"{f}: {m}" for f, m in list(errors.items())[:5]))
        self.field_errors = [FieldError(field=f, message=m, type="value_error") for f, m in errors.items()]


def reject_nulls(changes: dict[str, Any], fields: Any = None) -> None:
    """PATCH bodies: a field may be left out, but these (default: all) may not be sent as null."""
    for key in changes if fields is None else fields:
        if key in changes and changes[key] is None:
            raise InvalidField(f"body.{key}", "cannot be null")


def problem_response(status: int, code: str, title: str, request: Request, detail: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = Problem(
        type=PROBLEM_BASE + code.replace("_", "-"),
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        code=code,
        request_id=request_id_var.get(),
        **extra,
    ).model_dump(exclude_none=True, mode="json")
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


_NAMED = re.compile(r"^(?:Value error, )?([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*): (.+)$", re.S)


def named_field(path: str, message: str) -> tuple[str, str]:
    """A model-level check (which pydantic reports at the model's own path) names its field as ``field: message``:
    report it at ``path.field``, so the caller learns which field to fix."""
    m = _NAMED.match(message)
    if m is None:
        return path, message.removeprefix("Value error, ")
    return (f"{path}.{m[1]}" if path else m[1]), m[2]


def _field_error(e: dict[str, Any]) -> FieldError:
    if e["type"] == "value_error":
        field, message = named_field(_field_path(e["loc"]), e["msg"])
        return FieldError(field=field, message=message, type=e["type"])
    if e["type"] == "json_invalid":  # loc is ("body", <character offset>): the body as a whole is malformed
        where = f" at character {e['loc'][1]}" if len(e["loc"]) > 1 else ""
        reason = (e.get("ctx") or {}).get("error")
        return FieldError(field="body", message=f"{e['msg']}{': ' + reason if reason else ''}{where}", type=e["type"])
    return FieldError(field=_field_path(e["loc"]), message=e["msg"], type=e["type"])


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        extra: dict[str, Any] = {k: str(v) for k, v in exc.extensions.items() if k == "existing_id"}
        if isinstance(exc, InvalidField):
            extra["errors"] = exc.field_errors
        return problem_response(exc.status, exc.code, exc.title, request, exc.detail, exc.headers, **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_field_error(e) for e in exc.errors()]
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        return problem_response(422, "validation_error", "Request validation failed", request, detail, errors=errors)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        # Uniqueness is checked before writing; a request racing another one with the same key still meets the
        # database's constraint here. That is a conflict to retry, never a 500.
        return problem_response(409, "conflict", "Conflict", request,
                                "The request conflicts with a record written at the same moment; read it and retry.")

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # A deadlock or serialization failure: Postgres chose this transaction to roll back so that another could go
        # on. Nothing was written, and the same request succeeds when sent again: a conflict to retry, not a 500.
        if getattr(exc.orig, "sqlstate", None) in ("40P01", "40001"):
            return problem_response(409, "conflict", "Conflict", request,
                                    "The request met another one changing the same records; send it again.")
        raise exc

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden",
                413: "payload_too_large", 406: "not_acceptable", 415: "unsupported_media_type"}.get(exc.status_code, "http_error")
        title = str(exc.detail) if exc.detail else code.replace("_", " ").capitalize()
        return problem_response(exc.status_code, code, title, request, headers=getattr(exc, "headers", None))


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting problem+json errors."""
    names = {400: "Bad request", 401: "Not authenticated", 403: "Not allowed", 404: "Not found",
             409: "Conflict", 412: "Stale If-Match", 422: "Validation failed", 428: "If-Match required",
             413: "Payload too large", 429: "Too many requests", 503: "Unavailable now; retry after Retry-After"}
    return {
        s: {"model": Problem, "description": names.get(s, "Error"), "content": {PROBLEM_JSON: {}}}
        for s in statuses
    }
