"""Roles from DOMAIN.md §3 and what each may see beyond its own stores."""

from enum import StrEnum


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
