"""Fake WeCom (企业微信) API: ``cgi-bin/gettoken`` and app messages (``cgi-bin/message/send``, text only).

Only tokens this sandbox issued (and did not revoke) are accepted, so a client that invents, caches too long or
shares a stale token sees WeCom's own 40014 / 42001. Recipients follow WeCom's rules: unknown userids are listed
in ``invaliduser`` (lower-cased), all of them unknown is 81013; more than the per-member limit is 45033 (the real
WeCom drops the excess without a word); a request identical to one accepted within ``duplicate_check_interval``
is answered as sent but delivered once (``enable_duplicate_check``).
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

#: A WeCom userid: 1 to 64 letters, digits and ``_ - . @``.
USERID = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MAX_CONTENT_BYTES = 2048
DEFAULT_DUPLICATE_INTERVAL, MAX_DUPLICATE_INTERVAL = 1800, 4 * 3600
ERRMSG = {
    -1: "system busy",
    40001: "invalid credential",
    40008: "invalid message type",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40056: "invalid agentid",
    41001: "access_token missing",
    42001: "access_token expired",
    44004: "empty content",
    45002: "content size out of limit",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
    47001: "data format error",
    81013: "user & party & tag all invalid",
    82001: "All touser & toparty & totag invalid",
}


def _error(errcode: int, **extra: Any) -> Response:
    return json({"errcode": errcode, "errmsg": f"{ERRMSG.get(errcode, 'error')}, hint: [sandbox]", **extra})


def token_endpoint(state: SandboxState):  # type: ignore[no-untyped-def]
    async def gettoken(request: Request) -> Response:
        state.wecom_token_requests += 1
        corp_id = request.query_params.get("corpid", "")
        if corp_id not in state.wecom_apps:
            return _error(40013)
        if request.query_params.get("corpsecret") != state.wecom_apps[corp_id]:
            return _error(40001)
        return json({"errcode": 0, "errmsg": "ok", "access_token": state.issue_wecom_token(corp_id),
                     "expires_in": state.wecom_token_ttl})

    return gettoken


def _check(payload: Any) -> int | None:
    if not isinstance(payload, dict):
        return 47001
    if payload.get("msgtype") != "text":
        return 40008
    agent = payload.get("agentid")
    if isinstance(agent, bool) or not isinstance(agent, int) or agent <= 0:
        return 40056
    text = payload.get("text")
    content = text.get("content") if isinstance(text, dict) else None
    if not isinstance(content, str) or not content.strip():
        return 44004
    if len(content.encode()) > MAX_CONTENT_BYTES:
        return 45002
    touser = payload.get("touser")
    if not isinstance(touser, str) or not touser.strip("|"):
        return 82001
    return None


def send_endpoint(state: SandboxState):  # type: ignore[no-untyped-def]
    async def send(request: Request) -> Response:
        state.requests["wecom"] += 1
        body = await request.body()
        fault = state.take_fault("wecom")
        if (failed := await network_fault(fault)) is not None:
            return failed
        if (token_error := state.wecom_token_error(request.query_params.get("access_token"))) is not None:
            return _error(token_error)
        mode = fault.mode if fault else None
        if mode == "invalid_token":
            return _error(40014)
        try:
            payload = orjson.loads(body)
        except ValueError:
            return _error(47001)
        if (refused := _check(payload)) is not None:
            return _error(refused)
        users = [u for u in payload["touser"].split("|") if u]
        unknown = {u.lower() for u in state.wecom_unknown_users}
        invalid = [u.lower() for u in users if not USERID.match(u) or u.lower() in unknown]
        valid = [u for u in users if u.lower() not in invalid]
        if mode == "invalid_number":
            invalid, valid = [u.lower() for u in users], []
        if not valid:
            return _error(81013, invaliduser="|".join(invalid))
        if mode == "system_error":
            return _error(-1)
        if mode == "rate_limit":
            return _error(45009)
        duplicate_key = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
        interval = payload.get("duplicate_check_interval", DEFAULT_DUPLICATE_INTERVAL)
        interval = min(interval, MAX_DUPLICATE_INTERVAL) if isinstance(interval, int) else DEFAULT_DUPLICATE_INTERVAL
        if payload.get("enable_duplicate_check") == 1 and \
                (msgid := state.wecom_duplicate(duplicate_key, interval)) is not None:
            state.wecom_duplicates += 1
            return json({"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid), "msgid": msgid})
        if not state.wecom_take(valid):
            return _error(45033)
        msgid = str(state.next_id())
        now = datetime.now(UTC)
        for user in valid:
            state.record(SandboxMessage(provider="wecom", to=user, sign=None, template="text",
                                        params={"agentid": payload["agentid"], "content": payload["text"]["content"]},
                                        our_id=None, provider_id=msgid, at=now, kind="text"))
        state.wecom_remember(duplicate_key, msgid)
        await hold(fault)
        return json({"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid), "msgid": msgid})

    return send
