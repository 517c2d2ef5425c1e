"""The webhook API: partner endpoints and their deliveries, dead letters and replays. Admins and CS directors
manage the dealer group's; a partner with an integration key holding ``webhooks:manage`` manages its own."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from notify_svc.deps import CtxDep, IdempotencyKey, IfMatch
from notify_svc.models import WebhookDelivery, WebhookEndpoint
from notify_svc.webhooks import service
from notify_svc.webhooks.schemas import (DeliveryDetail, DeliveryRead, DeliveryStatus, EndpointCreate,
                                         EndpointCreated, EndpointRead, EndpointUpdate, SecretRotate, SecretRotated)
from shared.auth import require_roles
from shared.auth.roles import Role
from shared.errors import problem_responses
from shared.http.pagination import Page, PageParams, make_page, page_params

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], responses=problem_responses(401, 403, 422),
                   dependencies=[require_roles(Role.ADMIN, Role.CS_DIRECTOR, scope="webhooks:manage")])
ENDPOINTS = "/api/v1/webhooks/endpoints"
EndpointId = Annotated[uuid.UUID, Path(description="The endpoint's id.")]
DeliveryId = Annotated[uuid.UUID, Path(description="The delivery's id (its `webhook-id`).")]
Params = Annotated[PageParams, Depends(page_params)]


def _tagged(response: Response, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    response.headers["ETag"] = service.etag_of(endpoint)
    return endpoint


def _delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    return DeliveryRead.model_validate(delivery).model_dump(mode="json")


@router.post("/endpoints", status_code=201, response_model=EndpointCreated, responses=problem_responses(409))
async def create_endpoint(ctx: CtxDep, body: EndpointCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """Register a partner's webhook endpoint (admin, CS director, or the partner's integration key with scope
    `webhooks:manage`, which then owns it). The answer carries the signing `secret`, the only time it is shown.
    Every delivery is a POST of the CloudEvent as JSON, signed per Standard Webhooks (`webhook-id`,
    `webhook-timestamp`, `webhook-signature`). The URL must be https and resolve to public addresses only (422 on
    `body.url`); `store_ids` must be stores of your dealer group (of your key, for an integration; empty: all of
    the key's, as notify_svc last heard of it). A key revoked or without `webhooks:manage` since its token was issued
    is refused (403) even while the token is valid. Honours `Idempotency-Key` (a repeat answers the first response,
    secret included, to the same caller only)."""

    async def created() -> tuple[dict[str, Any], dict[str, str]]:
        endpoint = await service.create_endpoint(ctx, body)
        return (EndpointCreated.model_validate(endpoint).model_dump(mode="json"),
                {"ETag": service.etag_of(endpoint), "Location": f"{ENDPOINTS}/{endpoint.id}"})

    return await ctx.runtime.idempotency.run(ctx.principal, idempotency_key, "POST /webhooks/endpoints",
                                             body.model_dump(mode="json"), created)


@router.get("/endpoints", response_model=Page[EndpointRead])
async def list_endpoints(ctx: CtxDep, params: Params,
                         active: Annotated[bool | None, Query(description="Only active (or only disabled) ones.")]
                         = None) -> dict[str, Any]:
    """Your dealer group's webhook endpoints (an integration key: its own), newest first (secrets are never shown
    again)."""
    return make_page(await service.list_endpoints(ctx, params, active), params)


@router.get("/endpoints/{endpoint_id}", response_model=EndpointRead, responses=problem_responses(404))
async def get_endpoint(ctx: CtxDep, endpoint_id: EndpointId, response: Response) -> WebhookEndpoint:
    """One endpoint, with its ETag (the secret is never shown again: rotate it if it was lost)."""
    return _tagged(response, await service.get_endpoint(ctx, endpoint_id))


@router.patch("/endpoints/{endpoint_id}", response_model=EndpointRead,
              responses=problem_responses(404, 412, 428))
async def update_endpoint(ctx: CtxDep, endpoint_id: EndpointId, body: EndpointUpdate, response: Response,
                          if_match: IfMatch = None) -> WebhookEndpoint:
    """Change the URL (checked like at creation), event types, store filter, partner name or `active`. A key's
    endpoint stays within the key's stores: staff may narrow its store filter, not widen it. Pausing
    (`active` false) fails its pending deliveries as `endpoint disabled` (replay them after re-activating). An
    endpoint the partner answered 410 Gone is disabled the same way. A key revoked or without `webhooks:manage`
    changes nothing with a token still valid (403), and its endpoints cannot be re-activated by staff either (422
    on `active`). Requires `If-Match`."""
    return _tagged(response, await service.update_endpoint(ctx, endpoint_id, body, if_match))


@router.post("/endpoints/{endpoint_id}/rotate-secret", response_model=SecretRotated,
             responses=problem_responses(404, 412, 428))
async def rotate_secret(ctx: CtxDep, endpoint_id: EndpointId, response: Response, if_match: IfMatch = None,
                        body: SecretRotate | None = None) -> dict[str, Any]:
    """Replace the signing secret; the new one is in this answer only and signs every request from now on
    (retries of earlier deliveries included). During `overlap_hours` (default 24) requests carry a second
    signature with the previous secret, so the receiver may switch whenever it deploys. Requires `If-Match`, so a
    repeated call answers 412 instead of rotating twice."""
    endpoint = await service.rotate_secret(ctx, endpoint_id, if_match, (body or SecretRotate()).overlap_hours)
    response.headers["ETag"] = service.etag_of(endpoint)
    return {"id": endpoint.id, "secret": endpoint.secret, "previous_secret_until": endpoint.previous_secret_until}


@router.delete("/endpoints/{endpoint_id}", status_code=204, responses=problem_responses(404, 412))
async def delete_endpoint(ctx: CtxDep, endpoint_id: EndpointId, if_match: IfMatch = None) -> Response:
    """Remove an endpoint with its delivery history (`If-Match` checked when sent). A repeat answers 404."""
    await service.delete_endpoint(ctx, endpoint_id, if_match)
    return Response(status_code=204)


@router.post("/endpoints/{endpoint_id}/ping", status_code=202, response_model=DeliveryRead,
             responses=problem_responses(404, 409))
async def ping_endpoint(ctx: CtxDep, endpoint_id: EndpointId, idempotency_key: IdempotencyKey = None) -> Response:
    """Queue a `webhook.ping` delivery to the endpoint (signed and retried like any other) so the partner can
    check their receiver; follow it under `/webhooks/deliveries`. 422 when the endpoint is disabled. Honours
    `Idempotency-Key` (without one, each call queues another ping)."""

    async def queued() -> tuple[dict[str, Any], dict[str, str]]:
        delivery = await service.ping(ctx, endpoint_id)
        return _delivery_json(delivery), {"Location": f"/api/v1/webhooks/deliveries/{delivery.id}"}

    return await ctx.runtime.idempotency.run(ctx.principal, idempotency_key, "POST /webhooks/endpoints/ping",
                                             {"endpoint_id": str(endpoint_id)}, queued, status_code=202)


@router.get("/deliveries", response_model=Page[DeliveryRead], responses=problem_responses(404))
async def list_deliveries(
        ctx: CtxDep, params: Params,
        endpoint_id: Annotated[uuid.UUID | None, Query(description="Only deliveries to this endpoint.")] = None,
        status: Annotated[DeliveryStatus | None, Query(description="Only deliveries in this state.")] = None,
) -> dict[str, Any]:
    """Deliveries of your dealer group (an integration key: to its own endpoints), newest first, without payloads;
    `failed` ones are the dead letters."""
    return make_page(await service.list_deliveries(ctx, params, endpoint_id, status), params)


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail, responses=problem_responses(404))
async def get_delivery(ctx: CtxDep, delivery_id: DeliveryId) -> DeliveryDetail:
    """One delivery with its payload (the JSON each attempt POSTs; free text masked as for the endpoint's key
    without `pii:read`, and for a reader without it)."""
    delivery, payload = await service.get_delivery(ctx, delivery_id)
    return DeliveryDetail(**DeliveryRead.model_validate(delivery).model_dump(), payload=payload)


@router.post("/deliveries/{delivery_id}/replay", status_code=202, response_model=DeliveryRead,
             responses=problem_responses(404))
async def replay_delivery(ctx: CtxDep, delivery_id: DeliveryId) -> WebhookDelivery:
    """Send a delivered or failed delivery again: pending now, attempts from zero, the same `webhook-id` (so
    the partner can tell it is a repeat). Replaying a pending delivery changes nothing. 422 when its endpoint
    is disabled."""
    return await service.replay(ctx, delivery_id)
