"""Property-based fuzzing of every service's OpenAPI document with schemathesis.

Each service in ``aftercare.services.services()`` is built the way the test fixtures build customer_svc (its own
runtime on the session's Postgres database and RabbitMQ vhost), loaded with ``schemathesis.openapi.from_asgi`` and
called in-process twice: as a group admin (every code path) and as an integration holding only ``customers:read``
(the refusals). Every response must be no server error, carry a documented status code and content type and
match the documented schema; data that breaks the schema must be rejected.

Valid cases alternate between random values and real ones (seeded rows, valid phones, VINs and plates), so they
reach the code that stores data instead of stopping at a 404 or a domain check.

schemathesis drives the app from its own event-loop thread, so the app under test gets its own runtime (engine
and pool) created there; it shares the database with the session fixtures.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

from aftercare.services import ServiceEntry, services
from shared.auth.roles import Role
from shared.db import migrations
from shared.validation import vin_check_digit
from tests.conftest import Group, Infra, customer_body

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
#: Who calls, and how many fuzzed examples per operation (the examples and coverage phases add their own,
#: deterministic cases): a group admin reaches every code path; an integration holding only `customers:read`
#: checks that refusals (403) are documented too.
PRINCIPALS = {"admin": 25, "integration": 5}


def _config(max_examples: int) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "generation": {"mode": "all", "deterministic": True, "database": "none", "max-examples": max_examples},
        "phases": {"stateful": {"enabled": False}},
    })


def _app_for(entry: ServiceEntry, infra_env: Infra) -> Any:
    """The service's own app on a fresh runtime, built like the fixtures build customer_svc's. schemathesis
    calls it from its own event-loop thread, so it must not share the session runtime's connection pool."""
    module = entry.app
    if entry.name == "customer_svc":
        return module.create_service_app(module.build_runtime(infra_env.customer_settings(db_pool_size=4)))
    needed = ("settings_class", "build_runtime", "create_service_app", "MIGRATIONS")
    missing = [a for a in needed if not hasattr(module, a)]
    if missing:
        pytest.skip(f"{entry.name}.app lacks {', '.join(missing)}: no way to build it for fuzzing yet")
    settings_ = module.settings_class(database_url=infra_env.database_url, amqp_url=infra_env.amqp_url,
                                      exchange=infra_env.exchange, jwt_public_key=infra_env.public_key,
                                      environment="test", log_json=False, db_pool_size=4)
    migrations.upgrade(settings_, module.MIGRATIONS)
    return module.create_service_app(module.build_runtime(settings_))


def _realistic(body: dict[str, Any], ids: dict[str, str], rng: random.Random) -> None:
    """Swap the values a schema cannot describe (phones, VINs, plates, ids of real rows) for valid ones, so valid
    cases get past the domain checks into the code that stores them."""
    for name in ("store_id", "customer_id"):
        if isinstance(body.get(name), str):
            body[name] = ids[name]
    for name in ("assigned_sales_id", "assigned_advisor_id", "selling_consultant_id"):
        if isinstance(body.get(name), str):
            body[name] = ids["staff_id"]
    if isinstance(body.get("store_ids"), list):
        body["store_ids"] = [ids["store_id"]]
    if isinstance(body.get("phones"), list):
        for i, phone in enumerate(body["phones"]):
            if isinstance(phone, dict):
                phone["number"] = f"+86139{rng.randrange(10**8):08d}"
                phone["primary"] = i == 0
    if isinstance(body.get("phone"), str):
        body["phone"] = f"+86138{rng.randrange(10**8):08d}"
    if isinstance(body.get("vin"), str):
        vin = "".join(rng.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(17))
        body["vin"] = vin[:8] + vin_check_digit(vin) + vin[9:]
    if isinstance(body.get("plate"), str):
        body["plate"] = "粤B" + "".join(rng.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(5))
    if isinstance(body.get("id_number"), str):
        body["id_number"] = "11010519491231002X"
    if isinstance(body.get("timezone"), str):
        body["timezone"] = rng.choice(["Asia/Shanghai", "Asia/Urumqi", "Asia/Hong_Kong"])
    if isinstance(body.get("scopes"), list):
        body["scopes"] = ["customers:read"]


@pytest.fixture
async def seeded(client: httpx.AsyncClient, group: Group) -> dict[str, Any]:
    """Real records, so fuzzed paths sometimes hit existing rows instead of always answering 404, and the
    credentials of each principal."""
    admin = group.headers(Role.ADMIN)
    customer = (await client.post("/api/v1/customers", json=customer_body(group.store_a), headers=admin)).json()
    vehicle = (await client.post("/api/v1/vehicles", headers=admin, json={
        "customer_id": customer["id"], "vin": "LSVAU218XN2183294", "plate": "粤B12345"})).json()
    staff = (await client.get("/api/v1/staff", params={"q": "cs_agent-A"}, headers=admin)).json()["items"][0]
    key = (await client.post("/api/v1/api-keys", headers=admin, json={
        "name": "fuzz", "scopes": ["customers:read"], "store_ids": [str(group.store_a)]})).json()
    token = (await client.post("/api/v1/auth/token", json={"api_key": key["api_key"]})).json()["access_token"]
    return {
        "ids": {"customer_id": customer["id"], "vehicle_id": vehicle["id"], "store_id": str(group.store_a),
                "staff_id": staff["id"], "key_id": key["id"]},
        "headers": {"admin": admin, "integration": {"Authorization": f"Bearer {token}"}},
    }


@pytest.fixture(params=[(entry, who) for entry in services() for who in PRINCIPALS],
                ids=lambda p: f"{p[0].name}-{p[1]}")
def service_schema(request: pytest.FixtureRequest, infra_env: Infra, seeded: dict[str, Any]) -> Any:
    # schemathesis 4.32's lazy loader renames the test node through `_nodeid`, which pytest 9.2 dropped.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    entry, who = request.param
    app = _app_for(entry, infra_env)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=_config(PRINCIPALS[who]))
    schema.config.update(headers=seeded["headers"][who])
    ids: dict[str, str] = seeded["ids"]

    @schema.hook
    def map_case(context: Any, case: schemathesis.Case) -> schemathesis.Case:
        # Valid cases alternate between random ids (404 paths) and the seeded rows (the real code paths).
        if case.meta is None or not case.meta.generation.mode.is_positive:
            return case
        if zlib.crc32(repr((case.body, case.query, case.path_parameters)).encode()) % 2:  # deterministic per case
            for name in case.path_parameters or {}:
                if name in ids:
                    case.path_parameters[name] = ids[name]
            if isinstance(case.body, dict):
                _realistic(case.body, ids, random.Random(zlib.crc32(repr(case.body).encode())))
            if case.method.upper() == "PATCH":
                case.headers = {**(case.headers or {}), "If-Match": "*"}
        return case

    yield schema
    schemathesis_asgi.shutdown_lifespans()


lazy_schema = schemathesis.pytest.from_fixture("service_schema")


@lazy_schema.parametrize()
@settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_openapi_conformance(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)
