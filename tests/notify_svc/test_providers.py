"""Provider adapters against the provider sandbox (served by uvicorn on a real socket), the sandbox itself, and
the push parsers on real-shaped payloads. Postgres is needed only for the WeChat token store."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from structlog.testing import capture_logs

from notify_svc.channels import aliyun, tencent
from notify_svc.channels.aliyun import AliyunSms, acs3_sign, canonical_query
from notify_svc.channels.base import Outcome, Outgoing, Receipt, new_batch_out_id
from notify_svc.channels.console import ConsoleChannel
from notify_svc.channels.registry import build_providers
from notify_svc.channels.tencent import TencentSms, tc3_sign
from notify_svc.channels.wechat import WechatOfficialAccount, parse_push, verify_signature
from notify_svc.models.provider import WechatToken
from notify_svc.sandbox import SandboxState, create_sandbox_app
from notify_svc.sandbox import aliyun as sandbox_aliyun
from notify_svc.sandbox import tencent as sandbox_tencent
from notify_svc.settings import NotifySettings

# Made-up credentials: the sandbox accepts exactly these.
ALIYUN_ID, ALIYUN_SECRET = "LTAIsandboxKeyId01", "aliyun-made-up-secret-7f3a91"
TENCENT_ID, TENCENT_KEY = "AKIDsandboxSecretId01", "tencent-made-up-key-c0ffee42"
TENCENT_APP = "1400000001"
WECHAT_SECRET = "wechat-made-up-secret-5e1d"
SECRETS = (ALIYUN_SECRET, TENCENT_KEY, WECHAT_SECRET)
CLIENT_TIMEOUT = 0.5
FAULT_DELAY = 1.5

Sessions = async_sessionmaker[AsyncSession]
_numbers = iter(range(100_000))


def new_phone() -> str:
    """A made-up mainland mobile number, unique in this module."""
    return f"+86139000{next(_numbers):05d}"


def new_openid() -> str:
    return "oSandbox" + uuid.uuid4().hex[:20]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # leave pytest's signal handlers alone
        yield


@dataclass
class Sandbox:
    state: SandboxState
    url: str
    var_dir: Path

    def settings(self, **overrides: object) -> NotifySettings:
        values: dict[str, object] = dict(
            environment="test", log_json=False, var_dir=self.var_dir, provider_timeout_seconds=CLIENT_TIMEOUT,
            aliyun_endpoint=f"{self.url}/aliyun/", aliyun_access_key_id=ALIYUN_ID,
            aliyun_access_key_secret=ALIYUN_SECRET, tencent_endpoint=f"{self.url}/tencent/",
            tencent_secret_id=TENCENT_ID, tencent_secret_key=TENCENT_KEY, tencent_sdk_app_id=TENCENT_APP,
            wechat_api_base=f"{self.url}/wechat", wechat_appid=None, wechat_secret=WECHAT_SECRET)
        values.update(overrides)
        return NotifySettings(**values)  # type: ignore[arg-type]

    def new_wechat_app(self) -> str:
        """A WeChat app of its own (its own token row), known to the sandbox."""
        appid = "wx" + uuid.uuid4().hex[:16]
        self.state.wechat_apps[appid] = WECHAT_SECRET
        return appid

    async def get(self, path: str, **params: object) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url) as client:
            return await client.get(path, params=params)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[SandboxState, str, Path]]:
    """The sandbox app served by uvicorn (httptools) on a free port, for the whole module."""
    state = SandboxState(aliyun_keys={ALIYUN_ID: ALIYUN_SECRET}, tencent_keys={TENCENT_ID: TENCENT_KEY},
                         tencent_app_ids={TENCENT_APP}, fault_delay=FAULT_DELAY)
    config = uvicorn.Config(create_sandbox_app(state), host="127.0.0.1", port=0, http="httptools", lifespan="off",
                            log_level="warning", access_log=False, timeout_graceful_shutdown=1)
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield state, f"http://127.0.0.1:{port}", tmp_path_factory.mktemp("notify_var")
    server.should_exit = True
    await task


@pytest.fixture
def sandbox(sandbox_server: tuple[SandboxState, str, Path]) -> Sandbox:
    state, url, var_dir = sandbox_server
    state.reset()
    state.fault_delay = FAULT_DELAY
    state.aliyun_daily_limit, state.tencent_daily_limit, state.tencent_same_content_seconds = 50, 10, 30.0
    return Sandbox(state, url, var_dir)


@pytest.fixture(scope="module")
async def token_sessionmaker(infra_env: Any) -> AsyncIterator[Sessions]:
    """Sessions on the test database for ``notify.wechat_token``; when the notify schema is not migrated (yet),
    the table is created in a private schema that only this module sees."""
    engine = create_async_engine(infra_env.database_url)
    async with engine.connect() as conn:
        migrated = await conn.scalar(sa.text("SELECT to_regclass('notify.wechat_token') IS NOT NULL"))
    schema = None
    if not migrated:
        await engine.dispose()
        schema = f"notify_providers_{uuid.uuid4().hex[:8]}"
        engine = create_async_engine(infra_env.database_url,
                                     execution_options={"schema_translate_map": {"notify": schema}})
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            await conn.run_sync(lambda sync: WechatToken.__table__.create(sync))
    yield async_sessionmaker(engine, expire_on_commit=False)
    if schema is not None:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    await engine.dispose()


def sms(phone: str | None = None, **overrides: object) -> Outgoing:
    values: dict[str, object] = dict(
        message_id=uuid.uuid4(), channel="sms", to=phone or new_phone(), text="【测试车行】您的爱车保养已到期。",
        template_code="SMS_900001", sign_name="测试车行", params={"name": "张先生", "plate": "粤B·12345"},
        ordered_params=["张先生", "粤B·12345"])
    values.update(overrides)
    return Outgoing(**values)  # type: ignore[arg-type]


def wx(openid: str | None = None, **overrides: object) -> Outgoing:
    values: dict[str, object] = dict(
        message_id=uuid.uuid4(), channel="wechat", to=openid or new_openid(), text="保养提醒",
        template_code="TPL_sandbox_maintenance", fields={"thing1": "保养提醒", "time2": "2026-12-01 10:00"},
        url="https://example.com/booking")
    values.update(overrides)
    return Outgoing(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def sms_adapter(sandbox: Sandbox, provider: str, **overrides: object) -> AsyncIterator[AliyunSms | TencentSms]:
    settings = sandbox.settings(**overrides)
    adapter = AliyunSms.from_settings(settings) if provider == "aliyun" else TencentSms.from_settings(settings)
    try:
        yield adapter
    finally:
        await adapter.aclose()


@contextlib.asynccontextmanager
async def wechat_adapter(sandbox: Sandbox, sessionmaker: async_sessionmaker[AsyncSession],
                         appid: str | None = None, **overrides: object) -> AsyncIterator[WechatOfficialAccount]:
    adapter = WechatOfficialAccount(sandbox.settings(wechat_appid=appid or sandbox.new_wechat_app(), **overrides),
                                    sessionmaker)
    try:
        yield adapter
    finally:
        await adapter.aclose()


# --- signatures --------------------------------------------------------------------------------------------------


def test_signers_reproduce_the_providers_published_examples() -> None:
    """Aliyun's V3 and Tencent's TC3 documentation examples, by the adapters' signers and the sandbox's verifiers."""
    query = canonical_query({"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
                             "RegionId": "cn-shanghai"})
    headers = acs3_sign(method="POST", host="ecs.cn-shanghai.aliyuncs.com", path="/", query=query, body=b"",
                        action="RunInstances", version="2014-05-26", access_key_id="YourAccessKeyId",
                        access_key_secret="YourAccessKeySecret", date="2023-10-26T10:22:32Z",
                        nonce="3156853299f313e23d1673dc12e1703d")
    aliyun_signature = "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    assert headers["authorization"] == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;"
        f"x-acs-date;x-acs-signature-nonce;x-acs-version,Signature={aliyun_signature}")
    names = ["host", "x-acs-action", "x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce", "x-acs-version"]
    to_sign = sandbox_aliyun.string_to_sign("POST", "/", query, headers, names, b"")
    assert to_sign == "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"

    body = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    tencent_signature = "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    headers = tc3_sign(method="POST", host="cvm.tencentcloudapi.com", path="/", query="", body=body,
                       action="DescribeInstances", version="2017-03-12", region="ap-guangzhou", timestamp=1551113065,
                       secret_id="AKIDEXAMPLE", secret_key="Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", service="cvm",
                       signed_names=("content-type", "host"))
    assert headers["authorization"] == ("TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2019-02-25/cvm/tc3_request, "
                                        f"SignedHeaders=content-type;host, Signature={tencent_signature}")
    to_sign = sandbox_tencent.string_to_sign("POST", "/", "", headers, ["content-type", "host"], body, "1551113065",
                                             "2019-02-25/cvm/tc3_request")
    assert to_sign.endswith("5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031")
    assert sandbox_tencent.signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", "2019-02-25", "cvm", to_sign) \
        == tencent_signature


# --- happy paths -------------------------------------------------------------------------------------------------


async def test_aliyun_send_reaches_the_provider_in_its_format(sandbox: Sandbox) -> None:
    out = sms(params={"name": "张 先生*", "code": "a+b&c=d~"})
    async with sms_adapter(sandbox, "aliyun") as adapter:
        result = await adapter.send(out)
    assert result.outcome is Outcome.SENT and result.code == "OK"
    [recorded] = sandbox.state.messages_for("aliyun")
    assert recorded.to == out.to.removeprefix("+86")  # mainland numbers without +86
    assert (recorded.sign, recorded.template, recorded.params) == ("测试车行", "SMS_900001", out.params)
    assert recorded.our_id == str(out.message_id)
    assert result.provider_message_id == recorded.provider_id


async def test_tencent_send_reaches_the_provider_in_its_format(sandbox: Sandbox) -> None:
    out = sms()
    async with sms_adapter(sandbox, "tencent") as adapter:
        result = await adapter.send(out)
    assert result.outcome is Outcome.SENT and result.code == "Ok"
    [recorded] = sandbox.state.messages_for("tencent")
    assert recorded.to == out.to  # E.164 with +86
    assert (recorded.sign, recorded.template, recorded.params) == ("测试车行", "SMS_900001", ["张先生", "粤B·12345"])
    assert recorded.our_id == str(out.message_id)
    assert result.provider_message_id == recorded.provider_id


async def test_an_injected_transport_works_without_a_socket(sandbox: Sandbox) -> None:
    """Adapters take an httpx transport, so a test can run the sandbox app in-process through ASGI."""
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox.state))
    adapter = AliyunSms(endpoint="http://sandbox.test/aliyun/", access_key_id=ALIYUN_ID,
                        access_key_secret=SecretStr(ALIYUN_SECRET), transport=transport)
    try:
        assert (await adapter.send(sms())).outcome is Outcome.SENT
    finally:
        await adapter.aclose()
    assert len(sandbox.state.messages_for("aliyun")) == 1


async def test_wechat_template_and_subscription_notices(sandbox: Sandbox, token_sessionmaker: Sessions) -> None:
    template, notice = wx(), wx(wechat_kind="subscribe", url="https://example.com/survey")
    async with wechat_adapter(sandbox, token_sessionmaker) as adapter:
        sent = [await adapter.send(template), await adapter.send(notice)]
        assert await adapter.lookup(template, datetime.now(UTC)) is None  # WeChat has no status query
    assert [r.outcome for r in sent] == [Outcome.SENT, Outcome.SENT]
    first, second = sandbox.state.messages_for("wechat")
    assert (first.kind, first.to, first.template, first.params, first.url) == (
        "template", template.to, template.template_code, template.fields, template.url)
    assert first.our_id == str(template.message_id)  # client_msg_id
    assert (second.kind, second.url) == ("subscribe", "https://example.com/survey")
    assert [r.provider_message_id for r in sent] == [first.provider_id, second.provider_id]


# --- refusals and faults -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider, overrides, code", [
    ("aliyun", {"aliyun_access_key_secret": "not-the-secret"}, "SignatureDoesNotMatch"),
    ("aliyun", {"aliyun_access_key_id": "LTAIunknownKey"}, "InvalidAccessKeyId.NotFound"),
    ("tencent", {"tencent_secret_key": "not-the-key"}, "AuthFailure.SignatureFailure"),
    ("tencent", {"tencent_secret_id": "AKIDunknown"}, "AuthFailure.SecretIdNotFound"),
])
async def test_bad_credentials_are_permanent(sandbox: Sandbox, provider: str, overrides: dict, code: str) -> None:
    async with sms_adapter(sandbox, provider, **overrides) as adapter:
        result = await adapter.send(sms())
    assert (result.outcome, result.code) == (Outcome.PERMANENT, code)
    assert sandbox.state.messages == []


async def test_wechat_bad_secret_is_permanent(sandbox: Sandbox, token_sessionmaker: Sessions) -> None:
    async with wechat_adapter(sandbox, token_sessionmaker, wechat_secret="not-the-secret") as adapter:
        result = await adapter.send(wx())
    assert (result.outcome, result.code) == (Outcome.PERMANENT, "token:40125")


SMS_FAULTS = [
    ("timeout", Outcome.UNKNOWN, False),
    ("accept_then_timeout", Outcome.UNKNOWN, True),
    ("http_500", Outcome.RETRYABLE, False),
    ("outage", Outcome.RETRYABLE, False),
    ("system_error", Outcome.RETRYABLE, False),
    ("rate_limit", Outcome.RATE_LIMITED, False),
    ("invalid_number", Outcome.PERMANENT, False),
]


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
@pytest.mark.parametrize("mode, outcome, recorded", SMS_FAULTS)
async def test_sms_faults_map_to_outcomes(sandbox: Sandbox, provider: str, mode: str, outcome: Outcome,
                                          recorded: bool) -> None:
    sandbox.state.add_fault(provider, mode, count=1)
    async with sms_adapter(sandbox, provider) as adapter:
        result = await adapter.send(sms())
        assert result.outcome is outcome, result
        assert len(sandbox.state.messages_for(provider)) == int(recorded)
        assert (await adapter.send(sms())).outcome is Outcome.SENT  # the fault was for one request only


@pytest.mark.parametrize("mode, outcome, recorded", SMS_FAULTS)
async def test_wechat_faults_map_to_outcomes(sandbox: Sandbox, token_sessionmaker: Sessions, mode: str,
                                             outcome: Outcome, recorded: bool) -> None:
    async with wechat_adapter(sandbox, token_sessionmaker) as adapter:
        await adapter.tokens.get()
        sandbox.state.add_fault("wechat", mode, count=1)
        result = await adapter.send(wx())
        assert result.outcome is outcome, result
        assert len(sandbox.state.messages_for("wechat")) == int(recorded)


async def test_refused_connection_is_retryable(sandbox: Sandbox) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the send: nothing listens there
    async with sms_adapter(sandbox, "aliyun", aliyun_endpoint=f"http://127.0.0.1:{port}/aliyun/") as adapter:
        result = await adapter.send(sms())
    assert (result.outcome, result.code) == (Outcome.RETRYABLE, "ConnectError")


@pytest.mark.parametrize("provider, parse", [("aliyun", aliyun.parse_receipts), ("tencent", tencent.parse_receipts)])
async def test_unknown_send_is_resolved_by_lookup_not_resent(sandbox: Sandbox, provider: str,
                                                             parse: Callable[[bytes], list[Receipt]]) -> None:
    """Accepted, then the answer timed out: unknown. Lookup knows nothing until the provider has a receipt, then
    finds the message by our id; the provider holds exactly one message."""
    delivered, failed = sms(), sms()
    sandbox.state.add_fault(provider, "accept_then_timeout", count=2)
    async with sms_adapter(sandbox, provider) as adapter:
        sent_at = datetime.now(UTC)
        assert (await adapter.send(delivered)).outcome is Outcome.UNKNOWN
        assert (await adapter.send(failed)).outcome is Outcome.UNKNOWN
        assert await adapter.lookup(delivered, sent_at) is None

        push = await sandbox.get(f"/_sandbox/receipts/{provider}", fail=failed.to)
        receipts = {r.message_id: r for r in parse(push.content)}
        assert receipts[delivered.message_id].delivered and not receipts[failed.message_id].delivered

        found = await adapter.lookup(delivered, sent_at)
        assert found is not None and found.delivered and found.message_id == delivered.message_id
        lost = await adapter.lookup(failed, sent_at)
        assert lost is not None and not lost.delivered
    assert len(sandbox.state.messages_for(provider)) == 2
    assert (await sandbox.get(f"/_sandbox/receipts/{provider}")).json() == []  # each message reported once


async def test_aliyun_per_number_limit(sandbox: Sandbox) -> None:
    sandbox.state.aliyun_daily_limit = 3
    phone = new_phone()
    async with sms_adapter(sandbox, "aliyun") as adapter:
        outcomes = [(await adapter.send(sms(phone))).outcome for _ in range(3)]
        limited = await adapter.send(sms(phone))
        other_template = await adapter.send(sms(phone, template_code="SMS_900002"))
    assert outcomes == [Outcome.SENT] * 3
    assert (limited.outcome, limited.code, limited.retry_after) == (
        Outcome.RATE_LIMITED, "isv.BUSINESS_LIMIT_CONTROL", 86400.0)
    assert other_template.outcome is Outcome.SENT  # the limit is per sign + template


async def test_tencent_same_content_limit(sandbox: Sandbox) -> None:
    phone = new_phone()
    async with sms_adapter(sandbox, "tencent") as adapter:
        first = await adapter.send(sms(phone))
        again = await adapter.send(sms(phone))
    assert first.outcome is Outcome.SENT
    assert (again.outcome, again.code, again.retry_after) == (
        Outcome.RATE_LIMITED, "LimitExceeded.PhoneNumberThirtySecondLimit", 30.0)


async def test_aliyun_sandbox_refuses_a_replayed_request(sandbox: Sandbox) -> None:
    query = canonical_query({"PhoneNumbers": "13900099999", "SignName": "测试车行", "TemplateCode": "SMS_1"})
    host = sandbox.url.removeprefix("http://")
    headers = acs3_sign(method="POST", host=host, path="/aliyun/", query=query, body=b"", action="SendSms",
                        version="2017-05-25", access_key_id=ALIYUN_ID, access_key_secret=ALIYUN_SECRET,
                        date=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), nonce=uuid.uuid4().hex)
    async with httpx.AsyncClient() as client:
        codes = [(await client.post(f"{sandbox.url}/aliyun/?{query}", headers=headers)).json()["Code"]
                 for _ in range(2)]
    assert codes == ["OK", "SignatureNonceUsed"]


# --- Aliyun SendBatchSms ------------------------------------------------------------------------------------------


async def test_aliyun_batch_reaches_the_provider_in_its_shape(sandbox: Sandbox) -> None:
    """One SendBatchSms request: a number, a sign and parameters per message, one template, one OutId; the
    sandbox checks the V3 signature and records each number as its own message under the batch's one BizId."""
    outs = [sms(), sms(sign_name="另一车行"), sms(params={"name": "李 女士*", "plate": "a+b&c=d~"})]
    out_id = new_batch_out_id()
    async with sms_adapter(sandbox, "aliyun") as adapter:
        result = await adapter.send_batch(outs, out_id)
    assert result.outcome is Outcome.SENT and result.code == "OK" and result.provider_message_id
    recorded = sandbox.state.messages_for("aliyun")
    assert [(m.to, m.sign, m.template, m.params) for m in recorded] == [
        (o.to.removeprefix("+86"), o.sign_name, "SMS_900001", o.params) for o in outs]
    assert {(m.our_id, m.provider_id) for m in recorded} == {(out_id, result.provider_message_id)}
    assert (sandbox.state.requests["aliyun"], sandbox.state.batches) == (1, 1)


async def test_aliyun_sandbox_checks_the_batch_signature(sandbox: Sandbox) -> None:
    """The body is signed through its hash: a batch whose numbers changed after signing is refused, as is one
    signed with the wrong secret."""
    params = {"PhoneNumberJson": json.dumps(["13900011111", "13900022222"]),
              "SignNameJson": json.dumps(["测试车行", "测试车行"]), "TemplateCode": "SMS_900001",
              "TemplateParamJson": json.dumps([{"name": "a"}, {"name": "b"}]), "OutId": new_batch_out_id()}
    body = canonical_query(params).encode()
    host = sandbox.url.removeprefix("http://")
    headers = acs3_sign(method="POST", host=host, path="/aliyun/", query="", body=body, action="SendBatchSms",
                        version="2017-05-25", access_key_id=ALIYUN_ID, access_key_secret=ALIYUN_SECRET,
                        date=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), nonce=uuid.uuid4().hex)
    headers["content-type"] = "application/x-www-form-urlencoded"
    tampered = canonical_query({**params, "PhoneNumberJson": json.dumps(["13900011111", "13900033333"])}).encode()
    async with httpx.AsyncClient() as client:
        refused = await client.post(f"{sandbox.url}/aliyun/", headers=headers, content=tampered)
        taken = await client.post(f"{sandbox.url}/aliyun/", headers=headers, content=body)
    assert (refused.status_code, refused.json()["Code"]) == (400, "SignatureDoesNotMatch")
    assert taken.json()["Code"] == "OK"
    assert sorted(m.to for m in sandbox.state.messages_for("aliyun")) == ["13900011111", "13900022222"]
    async with sms_adapter(sandbox, "aliyun", aliyun_access_key_secret="not-the-secret") as adapter:
        wrong = await adapter.send_batch([sms(), sms()], new_batch_out_id())
        assert (wrong.outcome, wrong.code) == (Outcome.PERMANENT, "SignatureDoesNotMatch")
        assert not adapter.refusal_may_concern_some(wrong)  # each message alone would be refused alike
    assert len(sandbox.state.messages_for("aliyun")) == 2


async def test_aliyun_batch_is_taken_or_refused_as_a_whole(sandbox: Sandbox) -> None:
    sandbox.state.aliyun_daily_limit = 1
    at_limit = new_phone()
    async with sms_adapter(sandbox, "aliyun") as adapter:
        assert (await adapter.send(sms(at_limit))).outcome is Outcome.SENT
        limited = await adapter.send_batch([sms(), sms(at_limit), sms()], new_batch_out_id())
        illegal = await adapter.send_batch([sms(), sms("+8612345")], new_batch_out_id())
        too_many = await adapter.send_batch([sms() for _ in range(101)], new_batch_out_id())
        uneven = await adapter._call("SendBatchSms", {
            "PhoneNumberJson": json.dumps(["13900044444", "13900055555"]), "SignNameJson": json.dumps(["测试车行"]),
            "TemplateCode": "SMS_900001", "OutId": new_batch_out_id()})
        for result, code in [(limited, "isv.BUSINESS_LIMIT_CONTROL"), (illegal, "isv.MOBILE_NUMBER_ILLEGAL"),
                             (too_many, "isv.MOBILE_COUNT_OVER_LIMIT")]:
            assert result.outcome is not Outcome.SENT and result.code == code
            assert adapter.refusal_may_concern_some(result)  # worth sending one by one
    assert uneven.json()["Code"] == "isv.INVALID_PARAMETERS"
    assert [m.to for m in sandbox.state.messages_for("aliyun")] == [at_limit.removeprefix("+86")]  # nothing else
    assert sandbox.state.batches == 0


async def test_a_timed_out_batch_is_resolved_per_number_by_receipt_and_lookup(sandbox: Sandbox) -> None:
    """Accepted, then the answer timed out: unknown for every message. The receipts name the batch (BizId and
    OutId) and the number; the status query finds each message by the batch's OutId and its number."""
    delivered, failed = sms(), sms()
    sandbox.state.add_fault("aliyun", "accept_then_timeout")
    out_id = new_batch_out_id()
    async with sms_adapter(sandbox, "aliyun") as adapter:
        sent_at = datetime.now(UTC)
        assert (await adapter.send_batch([delivered, failed], out_id)).outcome is Outcome.UNKNOWN
        mine = [replace(o, batch_out_id=out_id) for o in (delivered, failed)]
        assert await adapter.lookup(mine[0], sent_at) is None  # waiting for the carrier
        push = await sandbox.get("/_sandbox/receipts/aliyun", fail=failed.to)
        receipts = {r.to: r for r in aliyun.parse_receipts(push.content)}
        [biz_id] = {m.provider_id for m in sandbox.state.messages_for("aliyun")}
        assert {(r.message_id, r.batch_out_id, r.provider_message_id) for r in receipts.values()} == {
            (None, out_id, biz_id)}
        assert receipts[delivered.to].delivered and not receipts[failed.to].delivered
        found, lost = [await adapter.lookup(o, sent_at) for o in mine]
        assert await adapter.lookup(delivered, sent_at) is None  # its own id alone is not what the batch carried
    assert found is not None and found.delivered and found.message_id == delivered.message_id
    assert lost is not None and not lost.delivered and lost.message_id == failed.message_id
    assert len(sandbox.state.messages_for("aliyun")) == 2


# --- WeChat tokens -----------------------------------------------------------------------------------------------


async def test_wechat_token_is_fetched_once_for_concurrent_sends_and_workers(sandbox: Sandbox,
                                                                             token_sessionmaker: Sessions) -> None:
    appid = sandbox.new_wechat_app()
    async with wechat_adapter(sandbox, token_sessionmaker, appid) as one, \
            wechat_adapter(sandbox, token_sessionmaker, appid) as other:  # a second worker, same table
        results = await asyncio.gather(*[(one if i % 2 else other).send(wx()) for i in range(20)])
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert sandbox.state.token_requests == 1
    assert len(sandbox.state.messages_for("wechat")) == 20


async def test_wechat_token_is_refreshed_once_after_40001(sandbox: Sandbox, token_sessionmaker: Sessions) -> None:
    async with wechat_adapter(sandbox, token_sessionmaker) as adapter:
        assert (await adapter.send(wx())).outcome is Outcome.SENT
        sandbox.state.revoke_wechat_tokens()  # every token held anywhere is now rejected with 40001
        results = await asyncio.gather(*[adapter.send(wx()) for _ in range(10)])
        assert {r.outcome for r in results} == {Outcome.SENT}
        assert sandbox.state.token_requests == 2

        sandbox.state.add_fault("wechat", "invalid_token", count=1)
        assert (await adapter.send(wx())).outcome is Outcome.SENT
        assert sandbox.state.token_requests == 3

        sandbox.state.add_fault("wechat", "invalid_token", count=2)  # rejected again after the refresh
        twice = await adapter.send(wx())
    assert (twice.outcome, twice.code) == (Outcome.RETRYABLE, "40001")
    assert len(sandbox.state.messages_for("wechat")) == 12


async def test_wechat_refusals(sandbox: Sandbox, token_sessionmaker: Sessions) -> None:
    unfollowed, refused = new_openid(), new_openid()
    sandbox.state.wechat_not_following.add(unfollowed)
    sandbox.state.wechat_refused.add(refused)
    async with wechat_adapter(sandbox, token_sessionmaker) as adapter:
        results = [await adapter.send(wx(unfollowed)), await adapter.send(wx(refused, wechat_kind="subscribe")),
                   await adapter.send(wx("not an openid")), await adapter.send(wx(template_code="")),
                   await adapter.send(wx(wechat_kind="broadcast"))]
    assert [(r.outcome, r.code) for r in results] == [
        (Outcome.PERMANENT, "43004"), (Outcome.PERMANENT, "43101"), (Outcome.PERMANENT, "40003"),
        (Outcome.PERMANENT, "missing_template"), (Outcome.PERMANENT, "unknown_kind")]


async def test_wechat_receipt_pushes_match_sends(sandbox: Sandbox, token_sessionmaker: Sessions) -> None:
    blocked = new_openid()
    async with wechat_adapter(sandbox, token_sessionmaker) as adapter:
        ok = await adapter.send(wx())
        no = await adapter.send(wx(blocked))
        notice = await adapter.send(wx(wechat_kind="subscribe"))
    pushes = [parse_push(xml.encode()) for xml in (await sandbox.get("/_sandbox/receipts/wechat", fail=blocked)).json()]
    by_id = {p.receipt.provider_message_id: p for p in pushes if p.receipt}
    assert by_id[ok.provider_message_id].receipt.delivered
    assert by_id[no.provider_message_id].receipt.code == "failed:user block"
    assert not by_id[no.provider_message_id].receipt.delivered and by_id[no.provider_message_id].openid == blocked
    assert by_id[notice.provider_message_id].event == "subscribe_msg_sent_event"


# --- parsers -----------------------------------------------------------------------------------------------------


def test_aliyun_push_parsers() -> None:
    our_id = uuid.uuid4()
    receipts = aliyun.parse_receipts(json.dumps([
        {"phone_number": "13900012345", "send_time": "2026-01-02 10:00:00", "report_time": "2026-01-02 10:00:05",
         "success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1",
         "biz_id": "900619746936498440^0", "out_id": str(our_id)},
        {"phone_number": "1390001****", "send_time": "2026-01-02 10:00:00", "report_time": "2026-01-02 10:01:00",
         "success": False, "err_code": "MK:0001", "err_msg": "用户接收失败", "sms_size": "1", "biz_id": "12345",
         "out_id": "not-ours"},
    ]).encode())
    assert [(r.delivered, r.message_id, r.provider_message_id, r.code) for r in receipts] == [
        (True, our_id, "900619746936498440^0", "DELIVERED"), (False, None, "12345", "MK:0001")]
    assert receipts[0].at == datetime(2026, 1, 2, 2, 0, 5, tzinfo=UTC)  # Beijing time
    [reply] = aliyun.parse_replies(json.dumps([
        {"phone_number": "13900012345", "send_time": "2026-01-02 10:00:00", "content": "TD",
         "sign_name": "【测试车行】", "dest_code": "1234", "sequence_id": 1234567890}]).encode())
    assert (reply.phone, reply.content, reply.sign_name) == ("+8613900012345", "TD", "测试车行")
    assert aliyun.PUSH_ACK == {"code": 0, "msg": "接收成功"}


def test_tencent_push_parsers() -> None:
    our_id = uuid.uuid4()
    receipts = tencent.parse_receipts(json.dumps([
        {"user_receive_time": "2026-01-02 10:00:05", "nationcode": "86", "mobile": "13900012345",
         "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功", "sid": "2433:1",
         "ext": str(our_id)},
        {"user_receive_time": "2026-01-02 10:00:05", "nationcode": "86", "mobile": "13900012346",
         "report_status": "FAIL", "errmsg": "UNDELIV", "description": "用户短信未送达", "sid": "2433:2"},
    ]).encode())
    assert [(r.delivered, r.message_id, r.provider_message_id, r.code) for r in receipts] == [
        (True, our_id, "2433:1", "DELIVRD"), (False, None, "2433:2", "UNDELIV")]
    [reply] = tencent.parse_replies(json.dumps({"extend": "", "mobile": "13900012345", "nationcode": "86",
                                                "sign": "测试车行", "text": "退订", "time": 1767319200}).encode())
    assert (reply.phone, reply.content, reply.at) == ("+8613900012345", "退订", datetime(2026, 1, 2, 2, tzinfo=UTC))
    assert tencent.PUSH_ACK == {"result": 0, "errmsg": "OK"}


def _xml(inner: str, msg_type: str = "event") -> bytes:
    return (f"<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName><FromUserName><![CDATA[oUser0000000000000000"
            f"0001]]></FromUserName><CreateTime>1767319200</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>"
            f"{inner}</xml>").encode()


def test_wechat_push_parser() -> None:
    finished = parse_push(_xml("<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID>"
                               "<Status><![CDATA[failed: system failed]]></Status>"))
    assert (finished.kind, finished.receipt.provider_message_id, finished.receipt.delivered) == (
        "receipt", "200163836", False)
    popup = parse_push(_xml(
        "<Event><![CDATA[subscribe_msg_popup_event]]></Event><SubscribeMsgPopupEvent>"
        "<List><TemplateId><![CDATA[TPL_a]]></TemplateId><SubscribeStatusString><![CDATA[accept]]>"
        "</SubscribeStatusString><PopupScene>2</PopupScene></List>"
        "<List><TemplateId><![CDATA[TPL_b]]></TemplateId><SubscribeStatusString><![CDATA[reject]]>"
        "</SubscribeStatusString><PopupScene>2</PopupScene></List></SubscribeMsgPopupEvent>"))
    assert popup.kind == "subscription"
    assert [(s.template_id, s.accepted) for s in popup.subscriptions] == [("TPL_a", True), ("TPL_b", False)]
    change = parse_push(_xml("<Event><![CDATA[subscribe_msg_change_event]]></Event><SubscribeMsgChangeEvent><List>"
                             "<TemplateId><![CDATA[TPL_a]]></TemplateId><SubscribeStatusString><![CDATA[reject]]>"
                             "</SubscribeStatusString></List></SubscribeMsgChangeEvent>"))
    assert [(s.template_id, s.accepted) for s in change.subscriptions] == [("TPL_a", False)]
    unfollow = parse_push(_xml("<Event><![CDATA[unsubscribe]]></Event>"))
    assert (unfollow.kind, unfollow.openid) == ("unfollow", "oUser00000000000000000001")
    text = parse_push(_xml("<Content><![CDATA[退订]]></Content><MsgId>1234567890123456</MsgId>", "text"))
    assert (text.kind, text.text, text.msg_id, text.at) == (
        "text", "退订", "1234567890123456", datetime(2026, 1, 2, 2, tzinfo=UTC))


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    b"<xml><Content>&b;</Content></xml>",
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "a">]><xml>&a;</xml>'.encode("utf-16"),
    b"<xml><unclosed></xml>",
    b"<xml>" + b"x" * 70_000 + b"</xml>",
])
def test_wechat_push_parser_refuses_entities_and_garbage(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_push(body)


def test_wechat_signature() -> None:
    token, timestamp, nonce = "callback-token", "1767319200", "123456"
    good = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
    assert verify_signature(token, good, timestamp, nonce)
    assert not verify_signature(token, good, timestamp, "654321")


# --- console and registry ----------------------------------------------------------------------------------------


async def test_console_channel_writes_and_delivers(tmp_path: Path) -> None:
    channel = ConsoleChannel(tmp_path / "messages.jsonl", channel="sms")
    out = sms(phone="+8613900012345")
    result = await channel.send(out)
    assert (result.outcome, result.provider_message_id) == (Outcome.SENT, f"console-{out.message_id}")
    [line] = [json.loads(raw) for raw in (tmp_path / "messages.jsonl").read_text().splitlines()]
    assert (line["channel"], line["to"], line["template"], line["text"]) == (
        "sms", "139****2345", "SMS_900001", out.text)
    receipt = await channel.lookup(out, datetime.now(UTC))
    assert receipt is not None and receipt.delivered and receipt.message_id == out.message_id


async def test_registry_builds_what_the_settings_choose(sandbox: Sandbox) -> None:
    default = build_providers(sandbox.settings(), sessionmaker=None)  # type: ignore[arg-type]
    assert set(default) == {"sms", "console"}
    assert isinstance(default["sms"], ConsoleChannel) and default["sms"].channel == "sms"
    assert default["console"].path == sandbox.var_dir / "messages.jsonl"
    full = build_providers(sandbox.settings(sms_provider="tencent", wechat_enabled=True, wechat_appid="wxabc"),
                           sessionmaker=None)  # type: ignore[arg-type]
    aliyun_only = build_providers(sandbox.settings(sms_provider="aliyun"), None)  # type: ignore[arg-type]
    assert isinstance(full["sms"], TencentSms) and isinstance(full["wechat"], WechatOfficialAccount)
    assert isinstance(aliyun_only["sms"], AliyunSms) and "wechat" not in aliyun_only
    for provider in [*full.values(), *aliyun_only.values()]:
        await provider.aclose()


# --- secrets -----------------------------------------------------------------------------------------------------


async def test_secrets_stay_out_of_reprs_results_and_logs(sandbox: Sandbox, token_sessionmaker: Sessions,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="httpcore")
    out = sms(phone="+8613900077777")
    with capture_logs() as events:
        results = []
        async with sms_adapter(sandbox, "aliyun") as good, \
                sms_adapter(sandbox, "aliyun", aliyun_access_key_secret="wrong-" + ALIYUN_SECRET) as bad, \
                sms_adapter(sandbox, "tencent", tencent_secret_key="wrong-" + TENCENT_KEY) as bad_tencent, \
                wechat_adapter(sandbox, token_sessionmaker) as wechat_ok:
            results += [await good.send(out), await bad.send(out), await bad_tencent.send(out),
                        await wechat_ok.send(wx())]
            reprs = [repr(a) for a in (good, bad, bad_tencent, wechat_ok)] + [repr(sandbox.settings())]
        sandbox.state.add_fault("aliyun", "timeout")
        async with sms_adapter(sandbox, "aliyun") as timing_out:
            results.append(await timing_out.send(out))
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.PERMANENT, Outcome.PERMANENT, Outcome.SENT,
                                            Outcome.UNKNOWN]
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)  # httpx did log the requests …
    logged = caplog.text + repr(events) + repr(results) + "".join(reprs)
    for secret in SECRETS:
        assert secret not in logged
    assert "13900077777" not in caplog.text  # … without their query strings (phone numbers, tokens)
    assert "access_token=" not in caplog.text and "secret=" not in caplog.text
