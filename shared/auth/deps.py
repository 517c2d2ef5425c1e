"""FastAPI dependencies: the verified principal, and role requirements per route.

The bearer token is read straight from the header (one dependency node instead of three: on a hot read,
FastAPI's dependency solving costs more than the database) and the principal is kept on the request
scope, so a role check and the route's own ``CurrentPrincipal`` verify the token once. The OpenAPI
document still declares bearer auth on every operation that uses these (``document_bearer_auth``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute

from shared.auth.principal import Principal
from shared.auth.roles import Role
from shared.errors import Forbidden, Unauthorized

_SCOPE_KEY = "aftercare.principal"
SECURITY_SCHEME = "bearerAuth"


def authenticate(request: Request) -> Principal:
    cached = request.scope.get(_SCOPE_KEY)
    if cached is not None:
        return cached
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send `Authorization: Bearer <access token>`.")
    principal = request.app.state.token_verifier.verify(token.strip())
    request.scope[_SCOPE_KEY] = principal
    return principal


def audit_as(request: Request, key: Principal) -> None:
    """Record this request in ``key``'s call log (the token exchange: the caller has no token yet, but names the
    key). Only the call audit reads it: routes that authenticate have a token of their own."""
    request.scope[_SCOPE_KEY] = key


async def get_principal(request: Request) -> Principal:
    return authenticate(request)


get_principal.requires_bearer = True  # type: ignore[attr-defined]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: Role, scope: str | None = None):  # type: ignore[no-untyped-def]
    """Dependency: the caller needs one of ``roles`` (integrations: the ``scope`` instead)."""
    allowed = frozenset(roles)

    async def check(request: Request) -> Principal:
        principal = authenticate(request)
        if principal.roles & allowed:
            return principal
        if scope is not None and principal.kind == "integration" and scope in principal.scopes:
            return principal
        raise Forbidden("Your role does not allow this action.")

    check.requires_bearer = True  # type: ignore[attr-defined]
    return Depends(check)


def _needs_bearer(dependant: Any) -> bool:
    return any(getattr(d.call, "requires_bearer", False) or _needs_bearer(d) for d in dependant.dependencies)


def document_bearer_auth(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Declare the bearer scheme in the OpenAPI document, on exactly the operations that authenticate."""
    security = [{SECURITY_SCHEME: []}]
    for router in routers:
        router_wide = any(getattr(d.dependency, "requires_bearer", False) for d in router.dependencies)
        for route in router.routes:
            if isinstance(route, APIRoute) and (router_wide or _needs_bearer(route.dependant)):
                route.openapi_extra = {**(route.openapi_extra or {}), "security": security}
    original = app.openapi

    def openapi() -> dict[str, Any]:
        schema = original()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "Access token from `POST /api/v1/auth/login` (staff) or `/api/v1/auth/token` (integrations).",
        }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
