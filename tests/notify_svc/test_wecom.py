"""WeCom (企业微信) work notices: escalations reach the staff member's WeCom as an app message through the real
broker, dispatcher and the provider sandbox (a real socket), falling back to SMS; the adapter's token handling
(one fetch for all workers, one refresh after a rejection) and error mapping; secrets kept out of sight."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from structlog.testing import capture_logs

from notify_svc.app import NotifyRuntime
from notify_svc.channels import wecom
from notify_svc.channels.base import Outcome, Outgoing
from notify_svc.channels.registry import build_providers
from notify_svc.channels.wechat_token import KEY_LENGTH, WecomTokenStore
from notify_svc.channels.wecom import WecomApp
from notify_svc.consumers import escalation_channels
from notify_svc.models import CustomerView, Message, StaffView, Template
from notify_svc.models.provider import WechatToken
from notify_svc.recipients import Recipient
from notify_svc.settings import NotifySettings
from notify_svc.templates.defaults import DEFAULTS, LOCALE
from shared.auth.roles import Role
from shared.db.base import dialect_insert
from shared.testing.waiting import eventually
from tests.conftest import Group, new_phone
from tests.notify_svc.conftest import FixedClock, messages, set_provider_code
from tests.notify_svc.sandbox_env import WECOM_AGENT_ID, WECOM_CORP, Sandbox
from tests.notify_svc.test_dispatch import customer, trail
from tests.notify_svc.test_history_and_bulk import escalation, publish, staff_id
from tests.notify_svc.test_policy_api import pin

SECRET = WECOM_CORP[1]


def wecom_settings(runtime: NotifyRuntime, **overrides: Any) -> NotifySettings:
    """The session's settings with WeCom on (they carry the sandbox's corp id, secret and agent id)."""
    if isinstance(overrides.get("wecom_secret"), str):
        overrides["wecom_secret"] = SecretStr(overrides["wecom_secret"])
    return runtime.settings.model_copy(update={"wecom_enabled": True, **overrides})


async def forget_token(runtime: NotifyRuntime, settings: NotifySettings) -> None:
    """Drop the app's stored token, so the next send starts from nothing."""
    async with runtime.sessionmaker() as s, s.begin():
        await s.execute(sa.delete(WechatToken).where(
            WechatToken.appid == f"wecom:{settings.wecom_corp_id}:{settings.wecom_agent_id}"))


@contextlib.asynccontextmanager
async def adapter(runtime: NotifyRuntime, transport: httpx.AsyncBaseTransport | None = None,
                  **overrides: Any) -> AsyncIterator[WecomApp]:
    """A WeCom adapter of its own: an agent id no other test uses (its own token row), unless given."""
    settings = wecom_settings(runtime, **{"wecom_agent_id": random.randint(2_000_000, 9_999_999), **overrides})
    app = WecomApp(settings, runtime.sessionmaker, transport)
    try:
        yield app
    finally:
        await app.aclose()


def notice(to: str | None = None, text: str | None = None) -> Outgoing:
    mid = uuid.uuid4()
    return Outgoing(message_id=mid, channel="wecom", to=to or f"S{mid.hex[:8]}",
                    text=text or f"广本天河店任务升级提醒:“首保回访”已超时,现升级至第1级。#{mid.hex[:6]}")


# --- notices through the broker, the dispatcher and the sandbox -------------------------------------------------


@pytest.fixture
async def wecom_on(notify_runtime: NotifyRuntime, box: Sandbox) -> AsyncIterator[WecomApp]:
    """The worker with the group's WeCom app for one test (escalations then ask for WeCom first), from a stored
    token of none; without it again afterwards."""
    settings = wecom_settings(notify_runtime)
    await forget_token(notify_runtime, settings)
    app = build_providers(settings, notify_runtime.sessionmaker)["wecom"]
    assert isinstance(app, WecomApp)
    notify_runtime.providers["wecom"] = app
    try:
        yield app
    finally:
        del notify_runtime.providers["wecom"]
        await app.aclose()


async def with_wecom_notice_template(runtime: NotifyRuntime, group: Group) -> None:
    """The group's WeCom variant of the escalation notice, as the defaults define it (seeded here in case the
    group's seeding did not add it)."""
    tpl = DEFAULTS["escalation_notice"]
    assert "wecom" in tpl.channels
    async with runtime.sessionmaker() as s, s.begin():
        await s.execute(dialect_insert(s)(Template.__table__).values(
            id=uuid.uuid4(), tenant_id=group.tenant_id, store_id=None, key="escalation_notice", channel="wecom",
            locale=LOCALE, purpose=tpl.purpose, title=tpl.title, body=tpl.body("wecom"),
            variables=list(tpl.variables), sign_name=None, provider_codes={},
            provider_params=tpl.provider_params("wecom"), status="approved", version=1,
        ).on_conflict_do_nothing())


async def member(client: httpx.AsyncClient, runtime: NotifyRuntime, group: Group, role: Role,
                 phone: str | None = None) -> tuple[str, str]:
    """A staff member of store A as notify_svc knows them (with ``phone`` when given): id and employee number."""
    sid = await staff_id(client, group, role)
    if phone is not None:
        current = await client.get(f"/api/v1/staff/{sid}", headers=group.headers(Role.ADMIN))
        patched = await client.patch(f"/api/v1/staff/{sid}", json={"phone": phone},
                                     headers=group.headers(Role.ADMIN, **{"If-Match": current.headers["ETag"]}))
        assert patched.status_code == 200, patched.text

    async def known() -> StaffView | None:
        async with runtime.sessionmaker() as s:
            row = await s.get(StaffView, uuid.UUID(sid))
        return row if row is not None and row.employee_no and (phone is None or row.phone == phone) else None

    row = await eventually(known)
    assert row.employee_no == f"{role.value}-A"  # customer_svc's employee number, copied by the staff consumer
    return sid, row.employee_no


async def notice_for(runtime: NotifyRuntime, group: Group, sid: str, task_id: uuid.UUID,
                     *statuses: str) -> Message:
    async def found() -> Message | None:
        rows = await messages(runtime, group.tenant_id, source="escalation", staff_id=uuid.UUID(sid))
        mine = [m for m in rows if m.idempotency_key.startswith(f"escalation:{task_id}:")]
        return mine[0] if mine and mine[0].status in statuses else None

    return await eventually(found, timeout=20)


async def test_an_escalation_notice_reaches_the_members_wecom_as_an_app_message(
        client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox, wecom_on: WecomApp) -> None:
    sid, userid = await member(client, notify_runtime, ngroup, Role.CS_MANAGER)  # no phone: WeCom only
    c = await customer(client, notify_runtime, ngroup, name="李测试")
    await with_wecom_notice_template(notify_runtime, ngroup)
    pin(clock, 10)
    task_id = uuid.uuid4()
    await publish(notify_runtime, escalation(ngroup, [sid], task_id=task_id, title="首保回访", customer_id=c["id"]))

    told = await notice_for(notify_runtime, ngroup, sid, task_id, "sent", "failed", "suppressed")
    assert (told.status, told.channel, told.provider, told.channels) == ("sent", "wecom", "wecom", ["wecom", "sms"])
    [app_message] = box.state.messages_for("wecom", userid)
    assert (app_message.kind, app_message.params["agentid"]) == ("text", WECOM_AGENT_ID)
    assert app_message.params["content"] == told.body
    assert "首保回访" in told.body and "第1级" in told.body and "李测试" in told.body  # type: ignore[operator]
    assert told.provider_message_id == app_message.provider_id
    assert told.recipient_masked == userid[:4] + "…"
    assert box.state.wecom_token_requests == 1 and wecom_on.tokens.fetches == 1
    assert box.state.messages_for("aliyun") == []


async def test_a_member_wecom_does_not_know_gets_the_notice_by_sms(
        client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox, wecom_on: WecomApp) -> None:
    phone = new_phone()
    sid, userid = await member(client, notify_runtime, ngroup, Role.SERVICE_MANAGER, phone=phone)
    box.state.wecom_unknown_users.add(userid)  # not in the corp's directory (or outside the app's visible range)
    await with_wecom_notice_template(notify_runtime, ngroup)
    await set_provider_code(notify_runtime, ngroup, "escalation_notice", "sms", aliyun="SMS_400004")
    pin(clock, 10)
    task_id = uuid.uuid4()
    await publish(notify_runtime, escalation(ngroup, [sid], task_id=task_id, title="续保回访"))

    told = await notice_for(notify_runtime, ngroup, sid, task_id, "sent", "failed", "suppressed")
    assert (told.status, told.channel, told.provider, told.failed_channels) == ("sent", "sms", "aliyun", ["wecom"])
    assert box.state.messages_for("wecom") == []
    [sms] = box.state.messages_for("aliyun", phone.removeprefix("+86"))
    assert sms.our_id == str(told.id) and sms.params["task_title"] == "续保回访"
    steps = [(e.status, e.reason, e.channel, e.code) for e in await trail(notify_runtime, told.id)]
    assert ("failed", "permanent", "wecom", "81013") in steps
    assert steps[-1] == ("sent", "sent", "sms", "OK")


async def test_the_per_member_limit_holds_a_notice_that_is_sent_later(
        client, notify_runtime, ngroup, clock: FixedClock, box: Sandbox, wecom_on: WecomApp) -> None:
    sid, userid = await member(client, notify_runtime, ngroup, Role.CS_MANAGER)
    await with_wecom_notice_template(notify_runtime, ngroup)
    box.state.wecom_member_minute_limit = 1
    pin(clock, 10)
    first, second = uuid.uuid4(), uuid.uuid4()
    await publish(notify_runtime, escalation(ngroup, [sid], task_id=first, title="首保回访"))
    assert (await notice_for(notify_runtime, ngroup, sid, first, "sent", "failed")).status == "sent"

    await publish(notify_runtime, escalation(ngroup, [sid], task_id=second, title="续保回访"))
    held = await notice_for(notify_runtime, ngroup, sid, second, "held", "sent", "failed")
    assert (held.status, held.reason, held.detail, held.channel) == ("held", "provider_rate_limited", "45033",
                                                                     "wecom")
    assert held.next_attempt_at is not None and held.next_attempt_at >= clock.now + timedelta(seconds=59)
    assert held.failed_channels == []  # not a failure: WeCom is tried again, no SMS instead
    assert len(box.state.messages_for("wecom", userid)) == 1

    box.state.wecom_member_minute_limit = 30  # the minute has passed
    clock.advance(timedelta(seconds=61))
    sent = await notice_for(notify_runtime, ngroup, sid, second, "sent", "failed")
    assert (sent.status, sent.channel, sent.attempts) == ("sent", "wecom", 2)
    assert [m.params["content"] for m in box.state.messages_for("wecom", userid)] == [
        (await notice_for(notify_runtime, ngroup, sid, first, "sent")).body, sent.body]


async def test_without_wecom_an_escalation_asks_for_sms_only(notify_runtime: NotifyRuntime) -> None:
    assert "wecom" not in notify_runtime.providers
    assert escalation_channels(notify_runtime) == ["sms"]


def test_staff_have_a_wecom_address_and_customers_none() -> None:
    tenant = uuid.uuid4()
    staff = StaffView(id=uuid.uuid4(), tenant_id=tenant, name="王经理", phone=None, employee_no="S1001",
                      roles=["cs_manager"], store_ids=[], active=True)
    someone = Recipient.of_staff(staff, b"k")
    assert (someone.address("wecom"), someone.address("sms"), someone.address("wechat")) == ("S1001", None, None)
    assert someone.key is not None  # capped by the employee number when there is no phone
    buyer = CustomerView(id=uuid.uuid4(), tenant_id=tenant, store_id=uuid.uuid4(), name="张先生",
                         phone="+8613900012345", wechat_openid="oSandbox00000000000000001", consents={})
    assert Recipient.of_customer(buyer, b"k").address("wecom") is None


# --- tokens --------------------------------------------------------------------------------------------------------


async def test_the_token_is_fetched_once_for_concurrent_sends_and_workers(notify_runtime, box: Sandbox) -> None:
    agent = random.randint(2_000_000, 9_999_999)
    async with adapter(notify_runtime, wecom_agent_id=agent) as one, \
            adapter(notify_runtime, wecom_agent_id=agent) as other:  # a second worker, same token row
        results = await asyncio.gather(*[(one if i % 2 else other).send(notice()) for i in range(20)])
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert box.state.wecom_token_requests == 1 and one.tokens.fetches + other.tokens.fetches == 1
    assert len(box.state.messages_for("wecom")) == 20


async def test_the_token_is_refreshed_once_after_it_is_rejected(notify_runtime, box: Sandbox) -> None:
    async with adapter(notify_runtime) as app:
        assert (await app.send(notice())).outcome is Outcome.SENT
        box.state.revoke_wecom_tokens()  # WeCom ended every token early: 40014 for all
        results = await asyncio.gather(*[app.send(notice()) for _ in range(10)])
        assert {r.outcome for r in results} == {Outcome.SENT}
        assert box.state.wecom_token_requests == 2

        box.state.add_fault("wecom", "invalid_token", count=1)
        assert (await app.send(notice())).outcome is Outcome.SENT
        assert box.state.wecom_token_requests == 3

        box.state.add_fault("wecom", "invalid_token", count=2)  # rejected again after the refresh
        twice = await app.send(notice())
    assert (twice.outcome, twice.code) == (Outcome.RETRYABLE, "40014")
    assert len(box.state.messages_for("wecom")) == 12


async def test_wrong_credentials_are_permanent_and_send_nothing(notify_runtime, box: Sandbox) -> None:
    async with adapter(notify_runtime, wecom_secret="not-the-secret") as wrong_secret, \
            adapter(notify_runtime, wecom_corp_id="ww0000000000unknown") as wrong_corp:
        results = [await wrong_secret.send(notice()), await wrong_corp.send(notice())]
    assert [(r.outcome, r.code) for r in results] == [(Outcome.PERMANENT, "token:40001"),
                                                      (Outcome.PERMANENT, "token:40013")]
    assert box.state.requests["wecom"] == 0


def test_the_token_row_key_must_fit_and_the_settings_must_be_complete(notify_runtime: NotifyRuntime) -> None:
    with pytest.raises(ValueError, match="token key"):
        WecomTokenStore(notify_runtime.sessionmaker, httpx.AsyncClient(),
                        wecom_settings(notify_runtime, wecom_corp_id="ww" + "0" * KEY_LENGTH))
    with pytest.raises(ValueError, match="NOTIFY_WECOM_AGENT_ID"):
        NotifySettings(environment="test", wecom_enabled=True, wecom_corp_id="ww00000000test0001",
                       wecom_secret="x")  # type: ignore[arg-type]


# --- error mapping -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("errcode, outcome", [
    (0, Outcome.SENT),
    (45033, Outcome.RATE_LIMITED), (45009, Outcome.RATE_LIMITED),
    (-1, Outcome.RETRYABLE), (6000, Outcome.RETRYABLE),
    (81013, Outcome.PERMANENT), (60020, Outcome.PERMANENT), (60011, Outcome.PERMANENT), (40003, Outcome.PERMANENT),
    (301002, Outcome.PERMANENT), (88888, Outcome.PERMANENT),
])
def test_errcodes_map_to_outcomes(errcode: int, outcome: Outcome) -> None:
    assert wecom.classify(errcode) is outcome


FAULTS = [
    ("timeout", Outcome.UNKNOWN, None, False),
    ("accept_then_timeout", Outcome.UNKNOWN, None, True),
    ("http_500", Outcome.RETRYABLE, "HTTP 500", False),
    ("outage", Outcome.RETRYABLE, "HTTP 503", False),
    ("system_error", Outcome.RETRYABLE, "-1", False),
    ("rate_limit", Outcome.RATE_LIMITED, "45009", False),
    ("invalid_number", Outcome.PERMANENT, "81013", False),
]


@pytest.mark.parametrize("mode, outcome, code, recorded", FAULTS)
async def test_sandbox_faults_map_to_outcomes(notify_runtime, box: Sandbox, mode: str, outcome: Outcome,
                                              code: str | None, recorded: bool) -> None:
    async with adapter(notify_runtime, provider_timeout_seconds=0.5) as app:
        await app.tokens.get()
        box.state.add_fault("wecom", mode, count=1, delay=1.0)
        result = await app.send(notice())
        assert result.outcome is outcome, result
        if code is not None:
            assert result.code == code
        assert len(box.state.messages_for("wecom")) == int(recorded)
        assert (await app.send(notice())).outcome is Outcome.SENT  # the fault was for one request only
    if mode == "rate_limit":
        assert result.retry_after == 60.0


def answering(send: Callable[[dict[str, Any]], httpx.Response],
              token: Callable[[], httpx.Response] | None = None) -> httpx.MockTransport:
    """WeCom as a function of the request (for answers the sandbox does not give)."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/gettoken"):
            return token() if token else httpx.Response(200, json={"errcode": 0, "errmsg": "ok",
                                                                   "access_token": "tok-" + uuid.uuid4().hex,
                                                                   "expires_in": 7200})
        return send(orjson.loads(request.content))

    return httpx.MockTransport(handle)


async def test_answers_the_sandbox_does_not_give(notify_runtime) -> None:
    cases: list[tuple[Callable[[dict[str, Any]], httpx.Response], Outcome, str]] = [
        (lambda body: httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "msgid": "m1",
                                                "invaliduser": body["touser"].lower()}), Outcome.PERMANENT,
         "invaliduser"),
        (lambda body: httpx.Response(200, json={"errcode": 60020, "errmsg": "not allow to access from your ip"}),
         Outcome.PERMANENT, "60020"),
        (lambda body: httpx.Response(200, json={"errcode": 45033, "errmsg": "api concurrent out of limit"}),
         Outcome.RATE_LIMITED, "45033"),
        (lambda body: httpx.Response(502, text="<html>Bad Gateway</html>"), Outcome.RETRYABLE, "HTTP 502"),
        (lambda body: httpx.Response(504, text="gateway timeout"), Outcome.UNKNOWN, "HTTP 504"),
        (lambda body: httpx.Response(200, text="<html>?</html>"), Outcome.UNKNOWN, "HTTP 200"),
    ]
    for send, outcome, code in cases:
        async with adapter(notify_runtime, transport=answering(send)) as app:
            result = await app.send(notice(to="S1001"))
        assert (result.outcome, result.code) == (outcome, code), result

    refusals = [({"errcode": 60020, "errmsg": "not allow to access from your ip"}, Outcome.PERMANENT),
                ({"errcode": 45009, "errmsg": "api freq out of limit"}, Outcome.RATE_LIMITED),
                ({"errcode": -1, "errmsg": "system busy"}, Outcome.RETRYABLE)]
    for answer, outcome in refusals:
        never = answering(lambda body: pytest.fail("sent without a token"),  # type: ignore[arg-type,return-value]
                          token=lambda: httpx.Response(200, json=answer))
        async with adapter(notify_runtime, transport=never) as app:
            result = await app.send(notice())
        assert (result.outcome, result.code) == (outcome, f"token:{answer['errcode']}")


async def test_what_the_request_carries_and_what_is_refused_before_sending(notify_runtime, box: Sandbox) -> None:
    seen: list[dict[str, Any]] = []

    def send(body: dict[str, Any]) -> httpx.Response:
        seen.append(body)
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": "m1"})

    async with adapter(notify_runtime, transport=answering(send), wecom_agent_id=1000007) as app:
        out = notice(to="S1001", text="任务升级提醒")
        assert (await app.send(out)).provider_message_id == "m1"
        refused = [await app.send(notice(text="  ")), await app.send(notice(text="提" * 700))]
    assert seen == [{"touser": "S1001", "msgtype": "text", "agentid": 1000007, "text": {"content": "任务升级提醒"},
                     "safe": 0, "enable_duplicate_check": 1, "duplicate_check_interval": 1800}]
    assert [(r.outcome, r.code) for r in refused] == [(Outcome.PERMANENT, "empty_text"),
                                                      (Outcome.PERMANENT, "text_too_long")]

    async with adapter(notify_runtime) as app:  # the sandbox's duplicate check: the same request delivers once
        same = notice()
        first, again = await app.send(same), await app.send(same)
    assert first.outcome is again.outcome is Outcome.SENT and first.provider_message_id == again.provider_message_id
    assert len(box.state.messages_for("wecom")) == 1 and box.state.wecom_duplicates == 1


# --- secrets ---------------------------------------------------------------------------------------------------


async def test_the_secret_stays_out_of_reprs_results_and_logs(notify_runtime, box: Sandbox,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="httpcore")
    with capture_logs() as events:
        async with adapter(notify_runtime) as good, \
                adapter(notify_runtime, wecom_secret="wrong-" + SECRET) as bad:
            results = [await good.send(notice()), await bad.send(notice())]
            box.state.revoke_wecom_tokens()
            results.append(await good.send(notice()))  # rejected, refreshed, sent
            reprs = [repr(good), repr(bad), repr(good.tokens), repr(wecom_settings(notify_runtime))]
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.PERMANENT, Outcome.SENT]
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)  # httpx did log the requests …
    logged = caplog.text + repr(events) + repr(results) + "".join(reprs)
    assert SECRET not in logged
    assert "corpsecret=" not in caplog.text and "access_token=" not in caplog.text  # … without their query strings
    assert any(e["event"] == "wecom_token_rejected" for e in events)
