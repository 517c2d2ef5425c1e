"""Records the visit, membership and merge tests build through the API (made-up data only)."""

from __future__ import annotations

import random
import uuid

import httpx

from shared.auth.roles import Role
from shared.validation import vin_check_digit
from tests.conftest import Group, customer_body

_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def new_vin() -> str:
    """A random VIN with a correct check digit (the 9th character)."""
    vin = "LSV" + "".join(random.choice(_VIN_CHARS) for _ in range(14))
    return vin[:8] + vin_check_digit(vin) + vin[9:]


async def new_customer(client: httpx.AsyncClient, group: Group, store: str = "A", **fields: object) -> dict:
    resp = await client.post("/api/v1/customers", json=customer_body(group.stores[store], **fields),
                             headers=group.headers(Role.ADMIN))
    assert resp.status_code == 201, resp.text
    return resp.json()


async def new_vehicle(client: httpx.AsyncClient, group: Group, customer_id: str | None = None, store: str = "A",
                      **fields: object) -> dict:
    if customer_id is None:
        customer_id = (await new_customer(client, group, store))["id"]
    resp = await client.post("/api/v1/vehicles", json={"customer_id": customer_id, "vin": new_vin(), **fields},
                             headers=group.headers(Role.ADMIN))
    assert resp.status_code == 201, resp.text
    return resp.json()


async def staff_id(client: httpx.AsyncClient, group: Group, role: Role, store: str = "A") -> str:
    """The id of the fixture's user for ``role`` in ``store`` (employee number ``<role>-<store>``)."""
    page = (await client.get("/api/v1/staff", params={"q": f"{role.value}-{store}"},
                             headers=group.headers(Role.ADMIN))).json()
    return page["items"][0]["id"]


async def audit_actions(client: httpx.AsyncClient, group: Group, record_id: str) -> list[str]:
    log = await client.get("/api/v1/audit", params={"record_id": record_id}, headers=group.headers(Role.ADMIN))
    assert log.status_code == 200, log.text
    return [e["action"] for e in log.json()["items"]]


def integration_headers(group: Group, scopes: list[str], store: str = "A") -> dict[str, str]:
    """A DMS integration's token, as `POST /auth/token` would issue it for an API key."""
    token, _ = group.runtime.issuer.issue(subject=uuid.uuid4(), tenant_id=group.tenant_id,
                                          store_ids=[group.stores[store]], roles=["integration"], scopes=scopes,
                                          kind="integration")
    return {"Authorization": f"Bearer {token}"}
