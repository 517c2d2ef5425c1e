"""Made-up, valid vehicle identifiers and small API helpers for the isolation, bad-input and auth tests."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from shared.auth.roles import Role
from shared.validation import vin_check_digit
from tests.conftest import Group, customer_body

_CHARS = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"  # no I, O, Q: valid in VINs and plates alike
_rng = random.Random()


def new_vin() -> str:
    """17 characters with a correct ISO 3779 check digit (9th character)."""
    vin = "".join(_rng.choice(_CHARS) for _ in range(17))
    return vin[:8] + vin_check_digit(vin) + vin[9:]


def with_wrong_check_digit(vin: str) -> str:
    return vin[:8] + next(d for d in "0123456789X" if d != vin[8]) + vin[9:]


def new_plate() -> str:
    """An ordinary 7-character Guangdong plate, e.g. 粤B7K2Q9."""
    return "粤B" + "".join(_rng.choice(_CHARS) for _ in range(5))


async def create_customer(client: httpx.AsyncClient, group: Group, store: uuid.UUID, role: Role = Role.ADMIN,
                          role_store: str = "A", **fields: Any) -> dict:
    resp = await client.post("/api/v1/customers", json=customer_body(store, **fields),
                             headers=group.headers(role, role_store))
    assert resp.status_code == 201, resp.text
    return resp.json()


async def create_vehicle(client: httpx.AsyncClient, group: Group, customer_id: str, role: Role = Role.ADMIN,
                         role_store: str = "A", **fields: Any) -> dict:
    body = {"customer_id": customer_id, "vin": new_vin(), "plate": new_plate(), **fields}
    resp = await client.post("/api/v1/vehicles", json=body, headers=group.headers(role, role_store))
    assert resp.status_code == 201, resp.text
    return resp.json()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll an asynchronous condition (events travel through RabbitMQ before they show up)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
