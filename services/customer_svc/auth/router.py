from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from customer_svc.auth import service
from customer_svc.auth.schemas import (ApiKeyCreate, ApiKeyCreated, ApiKeyRead, ApiKeyRotate, ApiKeyUpdate,
                                       ClientCredentials, LoginRequest, Me, RefreshRequest, TokenPair)
from customer_svc.deps import CtxDep, IfMatch, RuntimeDep, SessionDep
from shared.auth import CurrentPrincipal, Role, require_roles
from shared.auth.deps import audit_as
from shared.errors import problem_responses
from shared.http.etag import tagged
from shared.http.integration_calls import IntegrationCall
from shared.http.pagination import Page, PageParams, page_params

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=problem_responses(401, 422))
keys_router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"], responses=problem_responses(401, 403, 422),
                        dependencies=[require_roles(Role.ADMIN)])


def get_auth_service(session: SessionDep, runtime: RuntimeDep) -> service.AuthService:
    return service.AuthService(session, runtime.issuer, runtime.settings)  # type: ignore[attr-defined]  # CustomerRuntime


AuthDep = Annotated[service.AuthService, Depends(get_auth_service)]


@router.post("/login", response_model=TokenPair, responses=problem_responses(429))
async def login(body: LoginRequest, auth: AuthDep) -> TokenPair:
    """Staff login: a short-lived access token and a rotating refresh token. Repeated failures lock the account briefly."""
    return await auth.login(body.tenant, body.employee_no, body.password)


@router.post("/refresh", response_model=TokenPair)
async def refresh(body: RefreshRequest, auth: AuthDep) -> TokenPair:
    """Trade a refresh token for a new pair; the old refresh token stops working."""
    return await auth.refresh(body.refresh_token)


@router.post("/logout", status_code=204)
async def logout(body: RefreshRequest, auth: AuthDep) -> Response:
    await auth.logout(body.refresh_token)
    return Response(status_code=204)


@router.post("/token", response_model=TokenPair)
async def integration_token(body: ClientCredentials, auth: AuthDep, request: Request) -> TokenPair:
    """Client-credentials exchange for integrations: an API key for a short-lived token with the key's scopes.

    During a rotation's overlap both the new and the previous secret work. A revoked key is refused at once;
    tokens it already got stay valid until they expire (`expires_in`, 15 minutes by default). Every exchange for
    a known key is in its call log, refused ones too (a rotated-out or leaked secret being tried)."""
    return await auth.exchange_api_key(body.api_key, seen=lambda key: audit_as(request, key))


@router.get("/me", response_model=Me)
async def me(principal: CurrentPrincipal) -> dict:
    """Who the access token says you are."""
    return service.principal_view(principal)


@keys_router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(ctx: CtxDep, body: ApiKeyCreate) -> dict:
    """Create an integration key (admins). The secret is in this response only.

    Deliberately not idempotent: replaying a stored response would mean storing the secret. A retry after a lost
    response makes a second key; list the keys and revoke the spare."""
    key, secret = await service.create_api_key(ctx, body)
    return {**ApiKeyRead.model_validate(key).model_dump(), "api_key": secret}


@keys_router.get("", response_model=list[ApiKeyRead])
async def list_api_keys(ctx: CtxDep) -> list:
    """The dealer group's keys with their last use and rotation state (never a secret or hash)."""
    return await service.list_api_keys(ctx)


@keys_router.get("/{key_id}", response_model=ApiKeyRead, responses=problem_responses(404))
async def get_api_key(ctx: CtxDep, key_id: uuid.UUID, response: Response):  # type: ignore[no-untyped-def]
    """One key (admins), with its ETag for a change."""
    return tagged(response, await service.get_api_key(ctx, key_id))


@keys_router.patch("/{key_id}", response_model=ApiKeyRead, responses=problem_responses(404, 409, 412, 428))
async def update_api_key(ctx: CtxDep, key_id: uuid.UUID, body: ApiKeyUpdate, response: Response,
                         if_match: IfMatch = None):  # type: ignore[no-untyped-def]
    """Change a key's name, scopes or stores (admins; `If-Match`). The key's next token exchange gets them; tokens
    issued before keep theirs until they expire."""
    return tagged(response, await service.update_api_key(ctx, key_id, body, if_match))


@keys_router.post("/{key_id}/rotate", response_model=ApiKeyCreated, responses=problem_responses(404, 409))
async def rotate_api_key(ctx: CtxDep, key_id: uuid.UUID, body: ApiKeyRotate | None = None) -> dict:
    """A new secret for the key (same id and prefix), shown in this response only. The secret it replaces keeps
    working for `overlap_hours` (default 24), so the partner can deploy the new one without downtime; watch
    `previous_last_used_at` to see when it has switched. Rotating again during an overlap keeps only two secrets
    valid: the one in use and the newest."""
    key, secret = await service.rotate_api_key(ctx, key_id, body or ApiKeyRotate())
    return {**ApiKeyRead.model_validate(key).model_dump(), "api_key": secret}


@keys_router.get("/{key_id}/calls", response_model=Page[IntegrationCall], responses=problem_responses(404))
async def list_api_key_calls(ctx: CtxDep, key_id: uuid.UUID,
                             params: Annotated[PageParams, Depends(page_params)]) -> dict:
    """Every call the key made to this service, newest first. Calls to the other services are in their own
    audit logs: `GET /api/v1/{followups,notify,surveys}/integration-calls?api_key_id=`."""
    return await service.list_calls(ctx, key_id, params)


@keys_router.delete("/{key_id}", status_code=204, responses=problem_responses(404))
async def revoke_api_key(ctx: CtxDep, key_id: uuid.UUID) -> Response:
    """Revoke the key: every secret of it is refused from now on; tokens already issued live until they expire."""
    await service.revoke_api_key(ctx, key_id)
    return Response(status_code=204)
