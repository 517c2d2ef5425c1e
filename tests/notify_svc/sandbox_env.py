"""The local provider sandbox for the notify tests: one per test session, served by uvicorn on a free port (real
sockets, real signatures), with the made-up key pairs notify_svc is configured with."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from notify_svc.sandbox import SandboxState, create_sandbox_app

ALIYUN_KEY = ("LTAI5tTestKeyId0001", "aliyun-test-secret-not-real")
TENCENT_KEY = ("AKIDtestsecretid0001", "tencent-test-secret-not-real")
TENCENT_APP = "1400000001"
WECHAT_APP = ("wx00000000test0001", "wechat-test-secret-not-real")
WECOM_CORP = ("ww00000000test0001", "wecom-test-secret-not-real")
WECOM_AGENT_ID = 1000002
CALLBACK_TOKEN = "callback-test-token"
WECHAT_TOKEN = "wechat-push-test-token"


class Sandbox:
    def __init__(self) -> None:
        self.state = SandboxState(aliyun_keys={ALIYUN_KEY[0]: ALIYUN_KEY[1]},
                                  tencent_keys={TENCENT_KEY[0]: TENCENT_KEY[1]},
                                  wechat_apps={WECHAT_APP[0]: WECHAT_APP[1]},
                                  wecom_apps={WECOM_CORP[0]: WECOM_CORP[1]}, fault_delay=3.0)
        self.port = 0
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Sandbox:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(create_sandbox_app(self.state), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.02)
        return self


_sandbox: Sandbox | None = None


async def sandbox() -> Sandbox:
    global _sandbox
    if _sandbox is None:
        _sandbox = await Sandbox().start()
    return _sandbox


async def sandbox_settings() -> dict[str, Any]:
    """notify_svc settings that point every provider at the sandbox (SMS through Aliyun, WeChat enabled).

    WeCom is configured but not enabled: with it, every escalation notice would go by WeCom (each staff member has
    an employee number) and the SMS notice tests would test nothing. ``test_wecom`` turns it on for its tests."""
    box = await sandbox()
    return dict(sms_provider="aliyun", aliyun_endpoint=f"{box.url}/aliyun/", aliyun_access_key_id=ALIYUN_KEY[0],
                aliyun_access_key_secret=ALIYUN_KEY[1], tencent_endpoint=f"{box.url}/tencent/",
                tencent_secret_id=TENCENT_KEY[0], tencent_secret_key=TENCENT_KEY[1], tencent_sdk_app_id=TENCENT_APP,
                wechat_enabled=True, wechat_api_base=f"{box.url}/wechat", wechat_appid=WECHAT_APP[0],
                wechat_secret=WECHAT_APP[1], wechat_callback_token=WECHAT_TOKEN, callback_token=CALLBACK_TOKEN,
                wecom_enabled=False, wecom_api_base=f"{box.url}/wecom", wecom_corp_id=WECOM_CORP[0],
                wecom_secret=WECOM_CORP[1], wecom_agent_id=WECOM_AGENT_ID,
                provider_timeout_seconds=1.0, receipt_wait_seconds=600.0)
