from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from customer_svc.customers import repository as repo
from customer_svc.customers import merge as merge_service
from customer_svc.customers import service
from customer_svc.customers.schemas import (ConsentIn, CustomerCreate, CustomerRead, CustomerUpdate, DuplicateRead,
                                            LostRequest, MergeRequest, TimelineItem)
from customer_svc.customers.views import timeline_view, customer_view, duplicate_view
from customer_svc.deps import CtxDep, IdempotencyKey, IfMatch, get_runtime_of
from shared.auth import Principal, Role, require_roles
from shared.auth.roles import MANAGERS
from shared.errors import InvalidField, problem_responses
from shared.http.etag import etag_for, tagged
from shared.http.responses import json_response
from shared.http.pagination import Page, PageParams, make_page, page_params
from shared.validation import IsoDate, IsoDateTime, normalize_phone, normalize_plate, normalize_vin

router = APIRouter(prefix="/api/v1/customers", tags=["customers"], responses=problem_responses(401, 422))
can_read = require_roles(*service.WRITERS, scope="customers:read")
can_write = require_roles(*service.WRITERS, scope="customers:write")


def _normalized(field: str, value: str | None, fn) -> str | None:  # type: ignore[no-untyped-def]
    if value is None:
        return None
    try:
        return fn(value)
    except ValueError as exc:
        raise InvalidField(f"query.{field}", str(exc)) from exc


@router.post("", status_code=201, response_model=CustomerRead, dependencies=[can_write],
             responses=problem_responses(403, 404, 409))
async def create_customer(ctx: CtxDep, body: CustomerCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """Create a customer in one of your stores. A phone or ID number already known in that store answers 409
    with `existing_id`. Honours `Idempotency-Key`."""
    return await ctx.runtime.idempotency.create(ctx.principal, idempotency_key, "POST /customers", body,
                                                lambda: service.create_customer(ctx, body), CustomerRead,
                                                "/api/v1/customers", view=lambda c: customer_view(c, ctx.principal))


@router.get("", response_model=Page[CustomerRead], dependencies=[can_read])
async def search_customers(
    ctx: CtxDep,
    params: Annotated[PageParams, Depends(page_params)],
    q: Annotated[str | None, Query(min_length=1, max_length=100, description="Part of the name, or the customer number.")] = None,
    phone: Annotated[str | None, Query(max_length=32, description="Any common format: 138 0013 8000, +86-138...")] = None,
    plate: Annotated[str | None, Query(max_length=12)] = None,
    vin: Annotated[str | None, Query(max_length=17)] = None,
    customer_no: Annotated[str | None, Query(max_length=40)] = None,
    tag: Annotated[str | None, Query(max_length=50)] = None,
    store_id: uuid.UUID | None = None,
    relationship_type: Literal["prospect", "owner", "lost"] | None = None,
    intent_level: Literal["O", "H", "A", "B", "C"] | None = None,
    assigned_to: uuid.UUID | None = None,
    created_from: IsoDateTime | None = None,
    created_to: IsoDateTime | None = None,
    birthday_from: Annotated[IsoDate | None, Query(description="With birthday_to: birthdays (solar or lunar) falling in this date range.")] = None,
    birthday_to: IsoDate | None = None,
) -> dict:
    """Search customers of your stores; newest first, cursor-paginated."""
    if (birthday_from is None) != (birthday_to is None):
        raise InvalidField("query.birthday_to" if birthday_to is None else "query.birthday_from",
                           "give both birthday_from and birthday_to")
    if birthday_from and birthday_to and not (0 <= (birthday_to - birthday_from).days <= 366):
        raise InvalidField("query.birthday_to", "must be on or after birthday_from and at most 366 days later")
    rows = await repo.search(
        ctx.session, ctx.principal, params, q=q, phone=_normalized("phone", phone, normalize_phone),
        plate=_normalized("plate", plate, normalize_plate), vin=_normalized("vin", vin, normalize_vin),
        customer_no=customer_no, tag=tag, store_id=store_id, relationship_type=relationship_type,
        intent_level=intent_level, assigned_to=assigned_to, created_from=created_from, created_to=created_to,
        birthday_from=birthday_from, birthday_to=birthday_to)
    return make_page(rows, params, lambda c: customer_view(c, ctx.principal))


@router.get("/{customer_id}", response_model=CustomerRead, responses=problem_responses(403, 404))
async def get_customer(request: Request, principal: Annotated[Principal, can_read], customer_id: uuid.UUID) -> Response:
    """One customer, with name, phones, ID number and address masked unless your role reads personal data."""
    # The hot read: one dependency, the runtime taken off the app, one prepared statement, orjson out.
    runtime = get_runtime_of(request)
    customer = await service.read_customer(runtime, principal, customer_id)
    return json_response(customer_view(customer, principal), headers={"ETag": etag_for(customer.version)})


@router.patch("/{customer_id}", response_model=CustomerRead, dependencies=[can_write],
              responses=problem_responses(403, 404, 409, 412, 428))
async def update_customer(ctx: CtxDep, customer_id: uuid.UUID, body: CustomerUpdate, response: Response,
                          if_match: IfMatch = None) -> dict:
    """Change fields (only those sent). Requires `If-Match`; a stale ETag answers 412."""
    customer = tagged(response, await service.update_customer(ctx, customer_id, body, if_match))
    return customer_view(customer, ctx.principal)


@router.put("/{customer_id}/consents", response_model=CustomerRead, dependencies=[can_write],
            responses=problem_responses(403, 404))
async def set_consent(ctx: CtxDep, customer_id: uuid.UUID, body: ConsentIn, response: Response) -> dict:
    """Grant or withdraw consent for one channel and purpose (service or marketing), recording its source."""
    customer = tagged(response, await service.set_consent(ctx, customer_id, body))
    return customer_view(customer, ctx.principal)


@router.post("/{customer_id}/lost", response_model=CustomerRead, dependencies=[require_roles(Role.SALES_MANAGER)],
             responses=problem_responses(403, 404))
async def mark_lost(ctx: CtxDep, customer_id: uuid.UUID, body: LostRequest, response: Response) -> dict:
    """A sales manager confirms a prospect lost (战败 / 失控) with the reason."""
    customer = tagged(response, await service.mark_lost(ctx, customer_id, body))
    return customer_view(customer, ctx.principal)


@router.get("/{customer_id}/timeline", response_model=Page[TimelineItem], dependencies=[can_read],
            responses=problem_responses(404))
async def timeline(ctx: CtxDep, customer_id: uuid.UUID, params: Annotated[PageParams, Depends(page_params)]) -> dict:
    """Everything that happened with this customer (data changes, vehicles, calls, messages, surveys, cases),
    newest first, as the services published it."""
    return make_page(await service.timeline(ctx, customer_id, params), params,
                     lambda entry: timeline_view(entry, ctx.principal))


@router.get("/{customer_id}/duplicates", response_model=list[DuplicateRead], dependencies=[can_read],
            responses=problem_responses(404))
async def duplicates(ctx: CtxDep, customer_id: uuid.UUID) -> list:
    """The same person (same phone or ID number) in other stores of your dealer group, oldest first. Each store
    keeps its own relationship; this tells you the group already knows the person. Records outside your stores
    show only their id, store, the matched keys and when they were created."""
    found = await merge_service.find_duplicates(ctx, customer_id)
    return [duplicate_view(c, matched, ctx.principal) for c, matched in found]


@router.post("/{customer_id}/merge", response_model=CustomerRead, dependencies=[require_roles(*MANAGERS)],
             responses=problem_responses(403, 404, 412, 428))
async def merge(ctx: CtxDep, customer_id: uuid.UUID, body: MergeRequest, response: Response,
                if_match: IfMatch = None) -> dict:
    """Fold a duplicate record of the same store into this one (managers; `If-Match` of this customer): phones,
    tags and consents are unioned (the latest consent wins), vehicles, memberships and visits move here, and empty
    fields are filled from the duplicate, which then answers 404. Repeating a done merge answers 200."""
    customer = tagged(response, await merge_service.merge(ctx, customer_id, body, if_match))
    return customer_view(customer, ctx.principal)
