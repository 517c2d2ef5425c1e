"""Fake WeChat Official Account API: ``cgi-bin/token``, template messages and one-time subscription notices.

Only tokens this sandbox issued (and did not revoke) are accepted, so a client that invents, caches too long or
shares a stale token sees WeChat's own 40001 / 42001.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from notify_svc.sandbox._http import hold, json, network_fault
from notify_svc.sandbox.state import SandboxMessage, SandboxState

OPENID = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    41001: "access_token missing",
    42001: "access_token expired",
    43004: "require subscribe",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
    47001: "data format error",
    47003: "argument invalid!",
}


def _error(errcode: int) -> Response:
    return json({"errcode": errcode, "errmsg": f"{ERRMSG.get(errcode, 'error')} rid: sandbox"})


def token_endpoint(state: SandboxState):  # type: ignore[no-untyped-def]
    async def token(request: Request) -> Response:
        state.token_requests += 1
        query = request.query_params
        if query.get("grant_type") != "client_credential":
            return _error(40002)
        appid = query.get("appid", "")
        if appid not in state.wechat_apps:
            return _error(40013)
        if query.get("secret") != state.wechat_apps[appid]:
            return _error(40125)
        return json({"access_token": state.issue_wechat_token(appid), "expires_in": state.wechat_token_ttl})

    return token


def _check(state: SandboxState, payload: Any, kind: str) -> int | None:
    if not isinstance(payload, dict):
        return 47001
    touser = payload.get("touser")
    if not isinstance(touser, str) or not OPENID.match(touser):
        return 40003
    if not isinstance(payload.get("template_id"), str) or not payload["template_id"]:
        return 40037
    data = payload.get("data")
    if not isinstance(data, dict) or not all(isinstance(v, dict) and isinstance(v.get("value"), str)
                                             for v in data.values()):
        return 47003
    if kind == "template" and touser in state.wechat_not_following:
        return 43004
    if kind == "subscribe" and touser in state.wechat_refused:
        return 43101
    return None


def send_endpoint(state: SandboxState, kind: str):  # type: ignore[no-untyped-def]
    async def send(request: Request) -> Response:
        state.requests["wechat"] += 1
        body = await request.body()
        if (failed := await network_fault(state.take_fault("wechat", business=False))) is not None:
            return failed
        if (token_error := state.wechat_token_error(request.query_params.get("access_token"))) is not None:
            return _error(token_error)
        fault = state.take_fault("wechat", business=True)
        mode = fault.mode if fault else None
        if mode == "invalid_token":
            return _error(40001)
        try:
            payload = orjson.loads(body)
        except ValueError:
            return _error(47001)
        if (refused := _check(state, payload, kind)) is not None:
            return _error(refused)
        if mode == "invalid_number":
            return _error(40003)
        if mode == "system_error":
            return _error(-1)
        if mode == "rate_limit":
            return _error(45009)
        msgid = state.next_id()
        fields = {name: value["value"] for name, value in payload["data"].items()}
        state.record(SandboxMessage(provider="wechat", to=payload["touser"], sign=None,
                                    template=payload["template_id"], params=fields,
                                    our_id=payload.get("client_msg_id"), provider_id=str(msgid),
                                    at=datetime.now(UTC), kind=kind, url=payload.get("url") or payload.get("page")))
        await hold(fault)
        return json({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    return send
