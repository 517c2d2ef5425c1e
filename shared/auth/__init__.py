"""Authentication and authorisation: JWT (Ed25519) verification, principals, roles, tenant/store scoping."""

from shared.auth.deps import CurrentPrincipal, get_principal, require_roles
from shared.auth.principal import Principal
from shared.auth.roles import Role
from shared.auth.scoping import ensure_store, get_scoped, scoped

__all__ = ["CurrentPrincipal", "Principal", "Role", "ensure_store", "get_principal", "get_scoped", "require_roles", "scoped"]
