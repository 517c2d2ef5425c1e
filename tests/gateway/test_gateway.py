"""The nginx gateway for real: customer_svc and survey_svc served by ``python -m <service> api`` (uvicorn, production
settings: the session's Postgres database and RabbitMQ vhost), nginx rendered from deploy/gateway/nginx.conf in front,
real HTTP through it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from aftercare.gateway import ROOT, Gateway, free_port, render
from customer_svc.app import CustomerRuntime
from survey_svc.app import SurveyRuntime
from survey_svc.invitations.tokens import token_for
from shared.testing.waiting import eventually
from tests.conftest import PASSWORD, Infra, customer_body, make_group, new_phone
from tests.survey_svc.conftest import survey_knows, visited

PROBLEM = "application/problem+json"
GATEWAY_404 = "No service serves this path."


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited: {log.read_text()[-3000:] if log else ''}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s: {log.read_text()[-3000:] if log else ''}")


@contextmanager
def service_api(service: str, infra_env: Infra, workdir: Path, **settings: str) -> Iterator[str]:
    """``python -m <service> api`` in its own process, configured only through the environment like in production;
    yields its host:port."""
    port = free_port()
    prefix = service.removesuffix("_svc").upper() + "_"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AFTERCARE_", prefix))}
    env.update({
        "AFTERCARE_ENVIRONMENT": "prod",
        f"{prefix}DATABASE_URL": infra_env.database_url,
        "AFTERCARE_AMQP_URL": infra_env.amqp_url,
        "AFTERCARE_EXCHANGE": infra_env.exchange,
        "AFTERCARE_JWT_PUBLIC_KEY": infra_env.public_key,  # a PEM inline (customer_svc signs with a key file)
        "AFTERCARE_VAR_DIR": str(workdir / "var"),
        **{f"{prefix}{k.upper()}": v for k, v in settings.items()},
    })
    log = workdir / "api.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", service, "api", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, log=log)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def api(infra_env: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """customer_svc's API in its own process."""
    workdir = tmp_path_factory.mktemp("customer_api")
    (workdir / "jwt.pem").write_text(infra_env.private_key)
    with service_api("customer_svc", infra_env, workdir, jwt_private_key=str(workdir / "jwt.pem")) as address:
        yield address


@pytest.fixture(scope="module")
def survey_api(infra_env: Infra, survey_runtime: SurveyRuntime,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """survey_svc's API in its own process, with the token key of the in-test runtime that makes the invitations
    (its worker keeps survey_svc's copies of stores and staff)."""
    with service_api("survey_svc", infra_env, tmp_path_factory.mktemp("survey_api"),
                     token_key=survey_runtime.settings.token_secret.decode(),
                     public_base_url="https://survey.test") as address:
        yield address


def start_gateway(workdir: Path, upstream: str | None, survey: str | None = None,
                  **render_kw: object) -> tuple[Gateway, str]:
    port = free_port()
    upstreams = {name: [address] for name, address in (("customer_svc", upstream), ("survey_svc", survey)) if address}
    conf = render(upstreams, port, workdir, access_log=False, others_down=True, **render_kw)  # type: ignore[arg-type]
    return Gateway(conf, port).start(), f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
async def gw(api: str, survey_api: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway as committed (rate and burst included) in front of the APIs."""
    gateway, base = start_gateway(tmp_path_factory.mktemp("gateway"), api, survey_api)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield client
    finally:
        gateway.stop()


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"].startswith("https://")
    assert body["request_id"] == resp.headers["x-request-id"]
    return body


def served_by_service(resp: httpx.Response) -> bool:
    """Anything but the gateway's own 404 came from the service behind it."""
    if resp.status_code != 404:
        return True
    return resp.json().get("detail") != GATEWAY_404


async def test_every_resource_of_the_service_is_routed(gw: httpx.AsyncClient, api: str) -> None:
    """Each /api/v1/<resource> in customer_svc's OpenAPI reaches it through the gateway (nothing is left unrouted)."""
    async with httpx.AsyncClient(base_url=f"http://{api}") as direct:
        paths = (await direct.get("/openapi.json")).json()["paths"]
    resources = {p.split("/")[3] for p in paths if p.startswith("/api/v1/")}
    assert {"auth", "api-keys", "stores", "staff", "customers", "vehicles", "audit"} <= resources
    for resource in sorted(resources):
        for path in (f"/api/v1/{resource}", f"/api/v1/{resource}/{uuid.uuid4()}"):
            resp = await gw.get(path)
            assert served_by_service(resp), f"{path} is not routed to customer_svc"
            assert resp.status_code in (401, 404, 405), (path, resp.status_code, resp.text)
            assert resp.headers["content-type"].startswith(PROBLEM)


async def test_login_and_work_through_the_gateway(gw: httpx.AsyncClient, customer_runtime: CustomerRuntime) -> None:
    group = await make_group(customer_runtime)
    login = await gw.post("/api/v1/auth/login", json={"tenant": group.code, "employee_no": "admin-A",
                                                       "password": PASSWORD})
    assert login.status_code == 200, login.text
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    stores = await gw.get("/api/v1/stores", headers=auth)
    assert stores.status_code == 200, stores.text
    created = await gw.post("/api/v1/customers", headers=auth, json=customer_body(group.store_a))
    assert created.status_code == 201, created.text
    assert created.headers.get("etag") and created.headers.get("location")
    fetched = await gw.get(f"/api/v1/customers/{created.json()['id']}", headers=auth)
    assert fetched.status_code == 200 and fetched.json()["id"] == created.json()["id"]
    wrong = await gw.post("/api/v1/auth/login", json={"tenant": group.code, "employee_no": "admin-A", "password": "x" * 12})
    assert wrong.status_code == 401 and served_by_service(wrong)


@pytest.mark.parametrize("path", ["/api/v1/no-such-resource", "/api/v2/customers", "/", "/customer_svc/readyz"])
async def test_unknown_path_is_a_problem_404(gw: httpx.AsyncClient, path: str) -> None:
    body = assert_problem(await gw.get(path), 404, "not_found")
    assert body["detail"] == GATEWAY_404


async def test_request_id_is_generated_once_and_reaches_the_service(gw: httpx.AsyncClient) -> None:
    resp = await gw.get("/api/v1/stores")  # 401 from the service: its problem body names the request id it saw
    ids = resp.headers.get_list("x-request-id")
    assert len(ids) == 1 and len(ids[0]) == 32, ids
    assert served_by_service(resp)
    assert resp.json()["request_id"] == ids[0]
    other = await gw.get("/api/v1/stores")
    assert other.headers["x-request-id"] != ids[0]


async def test_request_id_sent_by_the_caller_is_kept(gw: httpx.AsyncClient) -> None:
    rid = f"frontend-{uuid.uuid4().hex[:12]}"
    resp = await gw.get("/api/v1/customers", headers={"X-Request-ID": rid})
    assert resp.headers.get_list("x-request-id") == [rid]
    assert resp.json()["request_id"] == rid  # the service saw the same id
    missing = await gw.get("/api/v1/nothing-here", headers={"X-Request-ID": rid})
    assert missing.headers["x-request-id"] == rid and missing.json()["request_id"] == rid


async def test_an_import_file_of_several_mib_streams_through(gw: httpx.AsyncClient,
                                                            customer_runtime: CustomerRuntime) -> None:
    """Bulk import files are not held to the 1 MiB of ordinary bodies: a 3 MiB file reaches customer_svc (and its
    worker imports it)."""
    group = await make_group(customer_runtime)
    login = await gw.post("/api/v1/auth/login", json={"tenant": group.code, "employee_no": "admin-A",
                                                       "password": PASSWORD})
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    # Few records, big cells: every imported customer is an event the other services' consumers work through,
    # and later tests should not wait behind them.
    rows = [f"GW-{i},客户{i},{new_phone()},A,{'备注' * 10_000}" for i in range(60)]
    body = ("external_id,name,phone,store_code,remarks\n" + "\n".join(rows) + "\n").encode()
    assert len(body) > 3 * 1024 * 1024
    resp = await gw.post("/api/v1/imports", params={"kind": "customers"}, content=body,
                         headers={**auth, "Content-Type": "text/csv"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["size_bytes"] == len(body)

    async def done() -> dict | None:
        job = (await gw.get(resp.headers["location"], headers=auth)).json()
        return job if job["status"] == "done" else None

    job = await eventually(done, timeout=30)
    assert (job["accepted"], job["rejected"]) == (60, 0) and job["warnings"] == [
        "column 'remarks' is not used for customers"]


async def test_body_over_one_mib_is_413(gw: httpx.AsyncClient) -> None:
    big = json.dumps({"name": "x" * (1024 * 1024)}).encode()
    origin = "http://localhost:3000"
    resp = await gw.post("/api/v1/customers", content=big,
                         headers={"Content-Type": "application/json", "Origin": origin})
    body = assert_problem(resp, 413, "payload_too_large")
    assert "1 MiB" in body["detail"]
    # The gateway's own error carries the CORS grant: a browser front end can read it.
    assert resp.headers["access-control-allow-origin"] == origin
    # just under the limit passes the gateway (and the service answers: no token)
    small = json.dumps({"name": "x" * (1000 * 1000)}).encode()
    resp = await gw.post("/api/v1/customers", content=small, headers={"Content-Type": "application/json"})
    assert resp.status_code == 401 and served_by_service(resp)


async def test_cors_preflight_from_a_front_end(gw: httpx.AsyncClient) -> None:
    origin = "http://localhost:3000"
    resp = await gw.options("/api/v1/customers", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key"})
    assert resp.status_code == 204
    assert resp.headers["access-control-allow-origin"] == origin
    assert resp.headers["access-control-allow-credentials"] == "true"
    assert "POST" in resp.headers["access-control-allow-methods"]
    allowed = resp.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "idempotency-key", "if-match"} <= {h.strip() for h in allowed.split(",")}
    # a real request from that origin carries the CORS headers too (and exposes the ones a front end reads)
    resp = await gw.get("/api/v1/stores", headers={"Origin": origin})
    assert resp.headers["access-control-allow-origin"] == origin
    assert "X-Request-ID" in resp.headers["access-control-expose-headers"]
    assert "access-control-allow-methods" not in resp.headers
    # an origin not on the list gets no CORS grant
    resp = await gw.options("/api/v1/customers", headers={"Origin": "https://evil.example",
                                                         "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in resp.headers


async def test_gateway_health_and_service_readiness(gw: httpx.AsyncClient) -> None:
    assert (await gw.get("/healthz")).json() == {"status": "ok", "component": "gateway"}
    ready = await gw.get("/readyz/customer_svc")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


async def test_rate_limit_answers_429_problem_with_retry_after(api: str, tmp_path: Path) -> None:
    # One request a minute (and the burst): nothing refills while the test runs, however slow the machine.
    gateway, base = start_gateway(tmp_path, api, rate="1r/m", burst=3)
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            responses = await asyncio.gather(*(client.get("/api/v1/stores") for _ in range(20)))
            statuses = [r.status_code for r in responses]
            assert statuses.count(401) == 4 and statuses.count(429) == 16, statuses  # 1 + burst pass
            limited = next(r for r in responses if r.status_code == 429)
            assert_problem(limited, 429, "too_many_requests")
            assert int(limited.headers["retry-after"]) >= 1
            # the limit is per client address: a made-up bearer token does not buy a fresh budget
            other = await client.get("/api/v1/stores", headers={"Authorization": "Bearer someone-else"})
            assert other.status_code == 429
    finally:
        gateway.stop()


async def test_upstream_down_is_a_problem_503(tmp_path: Path) -> None:
    gateway, base = start_gateway(tmp_path, f"127.0.0.1:{free_port()}")  # nothing listens there
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            resp = await client.get("/api/v1/customers", headers={"X-Request-ID": "down-1"})
            body = assert_problem(resp, 503, "service_unavailable")
            assert body["request_id"] == "down-1"
            assert resp.headers["retry-after"] == "5"
    finally:
        gateway.stop()


async def test_password_guessing_meets_the_credentials_budget(api: str, tmp_path: Path) -> None:
    gateway, base = start_gateway(tmp_path, api)  # committed limits: logins 2r/s with a burst of 20 per address
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            body = {"tenant": "nobody", "employee_no": "x", "password": "guess"}
            responses = await asyncio.gather(*(client.post("/api/v1/auth/login", json=body) for _ in range(40)))
            statuses = [r.status_code for r in responses]
            assert statuses.count(429) >= 15, statuses
            assert (await client.get("/api/v1/stores")).status_code == 401  # other paths keep their own budget
    finally:
        gateway.stop()


# ---- survey_svc: staff endpoints, the public answer links (HTML page and JSON), their stricter per-address budget ----

SURVEY_ANSWERS = {"q1": "satisfied", "q2": "very_satisfied", "q3": "satisfied", "q4": "satisfied", "q5": "satisfied",
                  "q6": "yes"}


async def test_every_survey_path_is_routed(gw: httpx.AsyncClient, survey_api: str) -> None:
    """Each path in survey_svc's OpenAPI (staff and public) reaches it through the gateway."""
    async with httpx.AsyncClient(base_url=f"http://{survey_api}") as direct:
        paths = (await direct.get("/openapi.json")).json()["paths"]
    assert {p.split("/")[3] for p in paths if p.startswith("/api/v1/")} >= {"surveys", "public"}
    for template in sorted(p for p in paths if p.startswith("/api/v1/")):
        path = "/".join(str(uuid.uuid4()) if part.startswith("{") else part for part in template.split("/"))
        resp = await gw.get(path)
        assert served_by_service(resp), f"{path} is not routed to survey_svc"
        assert resp.status_code in (401, 404, 405), (path, resp.status_code, resp.text)
    ready = await gw.get("/readyz/survey_svc")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}


async def test_a_customer_answers_through_the_gateway(gw: httpx.AsyncClient, customer_runtime: CustomerRuntime,
                                                      survey_runtime: SurveyRuntime) -> None:
    """Staff invite through /api/v1/surveys; the customer's link /s/<token> and its JSON twin
    /api/v1/public/surveys/<token> reach survey_svc; its own HTML pages (404 / already answered) come through as the
    service made them, not replaced by the gateway's problem+json."""
    group = await make_group(customer_runtime)
    await survey_knows(survey_runtime, group)
    created = await gw.post("/api/v1/customers", headers=group.headers(), json=customer_body(group.store_a))
    assert created.status_code == 201, created.text
    visit = await visited(gw, survey_runtime, group, created.json()["id"])
    body = {"survey": "service_satisfaction", "store_id": str(group.store_a), "customer_id": created.json()["id"],
            "about_type": "visit", "about_id": visit}
    invited = await gw.post("/api/v1/surveys/invitations", headers=group.headers(), json=body)
    assert invited.status_code == 201, invited.text
    token = token_for(survey_runtime.settings.token_secret, uuid.UUID(invited.json()["id"]))

    page = await gw.get(f"/s/{token}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text
    assert "<form" in page.text and page.headers["cache-control"] == "no-store"
    assert len(page.headers.get_list("x-request-id")) == 1
    survey = await gw.get(f"/api/v1/public/surveys/{token}")
    assert survey.status_code == 200 and survey.json()["state"] == "open", survey.text

    wrong = await gw.post(f"/api/v1/public/surveys/{token}/responses",
                          json={"answers": {**SURVEY_ANSWERS, "q1": "great"}})
    assert wrong.status_code == 422 and wrong.headers["content-type"].startswith(PROBLEM), wrong.text
    assert "body.answers.q1" in wrong.text
    done = await gw.post(f"/s/{token}", data=SURVEY_ANSWERS)
    assert done.status_code == 200 and "提交成功" in done.text, done.text
    twice = await gw.post(f"/api/v1/public/surveys/{token}/responses", json={"answers": SURVEY_ANSWERS})
    assert twice.status_code == 409 and served_by_service(twice)
    again = await gw.get(f"/s/{token}")
    assert again.status_code == 200 and "您已完成调查" in again.text

    unknown = await gw.get(f"/s/{token_for(b'another key', uuid.uuid4())}")
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")
    assert "链接无效" in unknown.text and GATEWAY_404 not in unknown.text

    staff_view = await gw.get(f"/api/v1/surveys/invitations/{invited.json()['id']}", headers=group.headers())
    assert staff_view.status_code == 200 and staff_view.json()["status"] == "answered", staff_view.text


async def test_public_answers_meet_the_per_address_budget(survey_api: str, tmp_path: Path) -> None:
    """Posted answers (JSON and the page's form) share a stricter budget per address (committed: 5r/s, burst 20);
    opening links does not use it up, and the page's 429 is an HTML page."""
    gateway, base = start_gateway(tmp_path, None, survey_api)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            bogus = token_for(b"another key", uuid.uuid4())
            api = await asyncio.gather(*(client.post(f"/api/v1/public/surveys/{bogus}/responses",
                                                     json={"answers": SURVEY_ANSWERS}) for _ in range(40)))
            statuses = [r.status_code for r in api]
            assert statuses.count(429) >= 10 and statuses.count(404) >= 15, statuses
            assert_problem(next(r for r in api if r.status_code == 429), 429, "too_many_requests")

            pages = await asyncio.gather(*(client.post(f"/s/{bogus}", data=SURVEY_ANSWERS) for _ in range(10)))
            limited = next(r for r in pages if r.status_code == 429)
            assert limited.headers["content-type"].startswith("text/html") and "请稍后再试" in limited.text
            assert int(limited.headers["retry-after"]) >= 1

            opened = await asyncio.gather(*(client.get(f"/s/{bogus}") for _ in range(30)))
            assert [r.status_code for r in opened] == [404] * 30  # the service's "link not valid" page
    finally:
        gateway.stop()


async def test_answer_page_says_unavailable_in_html_when_survey_svc_is_down(tmp_path: Path) -> None:
    gateway, base = start_gateway(tmp_path, None, f"127.0.0.1:{free_port()}")  # nothing listens there
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            page = await client.get("/s/some-token")
            assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
            assert "服务暂时不可用" in page.text and page.headers["retry-after"] == "5"
            assert_problem(await client.get("/api/v1/surveys/templates"), 503, "service_unavailable")
    finally:
        gateway.stop()
