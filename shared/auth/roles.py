"""Roles from DOMAIN.md §3 and what each may see beyond its own stores."""

import uuid
from collections.abc import Iterable
from enum import StrEnum
from typing import TypeVar


class Role(StrEnum):
    SALES_CONSULTANT = "sales_consultant"
    SERVICE_ADVISOR = "service_advisor"
    CS_AGENT = "cs_agent"
    SHOWROOM_MANAGER = "showroom_manager"
    SALES_MANAGER = "sales_manager"
    SERVICE_MANAGER = "service_manager"
    CS_MANAGER = "cs_manager"
    CS_DIRECTOR = "cs_director"
    ADMIN = "admin"
    INTEGRATION = "integration"


T = TypeVar("T")

#: Roles that see every store of their dealer group (group-level quality and administration).
TENANT_WIDE = frozenset({Role.CS_DIRECTOR, Role.ADMIN})
#: Roles that read phone numbers, ID numbers and addresses unmasked.
PII_ROLES = frozenset({
    Role.SALES_CONSULTANT, Role.SERVICE_ADVISOR, Role.SHOWROOM_MANAGER, Role.SALES_MANAGER,
    Role.SERVICE_MANAGER, Role.CS_MANAGER, Role.CS_DIRECTOR, Role.ADMIN,
})
MANAGERS = frozenset({Role.SHOWROOM_MANAGER, Role.SALES_MANAGER, Role.SERVICE_MANAGER, Role.CS_MANAGER,
                      Role.CS_DIRECTOR, Role.ADMIN})
#: Every role except integrations may work customer records.
STAFF = frozenset(Role) - {Role.INTEGRATION}


def eligible_staff(staff: Iterable[T], store_id: uuid.UUID, roles: Iterable[str]) -> list[T]:
    """Active staff (read-model rows with ``active``, ``roles`` and ``store_ids``) holding any of ``roles`` for
    the store: by being staff of it, or through a group-wide role (a CS director's staff record may list only the
    head office)."""
    wanted = {str(r) for r in roles}
    wide = {str(r) for r in TENANT_WIDE}
    return [s for s in staff if s.active and set(s.roles) & wanted  # type: ignore[attr-defined]
            and (str(store_id) in s.store_ids or set(s.roles) & wanted & wide)]  # type: ignore[attr-defined]
