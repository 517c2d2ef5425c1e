"""The verified caller: a staff member (from a login) or an integration (from an API-key exchange)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from shared.auth.roles import PII_ROLES, TENANT_WIDE, Role


@dataclass(frozen=True)
class Principal:
    subject: uuid.UUID
    tenant_id: uuid.UUID
    store_ids: frozenset[uuid.UUID]
    roles: frozenset[Role]
    scopes: frozenset[str] = field(default_factory=frozenset)
    kind: str = "staff"

    def has_any(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def tenant_wide(self) -> bool:
        return bool(self.roles & TENANT_WIDE)

    def can_access_store(self, store_id: uuid.UUID) -> bool:
        return self.tenant_wide or store_id in self.store_ids

    @property
    def sees_pii(self) -> bool:
        return bool(self.roles & PII_ROLES) or "pii:read" in self.scopes
