"""FastAPI dependencies: the verified principal, and role requirements per route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth.principal import Principal
from shared.auth.roles import Role
from shared.auth.tokens import TokenVerifier
from shared.errors import Forbidden, Unauthorized

_bearer = HTTPBearer(auto_error=False, description="Access token from `POST /api/v1/auth/login` or `/auth/token`.")


async def get_principal(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Send `Authorization: Bearer <access token>`.")
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier.verify(credentials.credentials)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: Role, scope: str | None = None):  # type: ignore[no-untyped-def]
    """Dependency: the caller needs one of ``roles`` (integrations: the ``scope`` instead)."""
    allowed = frozenset(roles)

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.roles & allowed:
            return principal
        if scope is not None and principal.kind == "integration" and scope in principal.scopes:
            return principal
        raise Forbidden("Your role does not allow this action.")

    return Depends(check)
