"""Provider pushes: SMS receipts and replies (Aliyun, Tencent) and the WeChat Official Account's server pushes.

Public endpoints (providers have no JWT), so each is authenticated the provider's way: Aliyun and Tencent do not
sign their pushes, so the callback URL configured with them carries a shared secret (``?token=``, compared in
constant time); WeChat signs every push with the account's server token (sha1 of token, timestamp and nonce).
Bodies are parsed strictly; a malformed push is a 400, never a 500, and a push that matches nothing is
acknowledged (the provider would only re-push it).
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from notify_svc.callbacks import service
from notify_svc.channels import aliyun, tencent, wechat
from notify_svc.deps import RuntimeDep
from shared.errors import InvalidField, Unauthorized, problem_responses

log = structlog.get_logger("callbacks")
router = APIRouter(prefix="/api/v1/notify/callbacks", tags=["provider callbacks"],
                   responses=problem_responses(400, 401, 422))
Token = Annotated[str, Query(max_length=200, description="The shared secret configured in the callback URL.")]
MAX_BODY = 1024 * 1024


def _check_token(runtime: Any, token: str) -> None:
    expected = runtime.settings.callback_token
    secret = expected.get_secret_value().encode() if expected is not None else b""
    if not secret or not hmac.compare_digest(token.encode(), secret):
        raise Unauthorized("Invalid callback token.")


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidField("body", "push too large")
    return body


def _parsed(parse: Any, body: bytes) -> Any:
    try:
        return parse(body)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidField("body", f"not a valid push: {exc}") from None


def _ack(body: bytes) -> Response:
    return Response(body, media_type="application/json")


async def _sms_push(request: Request, runtime: Any, token: str, parse: Any, record: Any, ack: bytes) -> Response:
    """One SMS provider push: authenticate, parse strictly, record (receipts or replies), answer as it expects."""
    _check_token(runtime, token)
    items = _parsed(parse, await _body(request))
    await record(runtime.sessionmaker, runtime.outbox, items)
    return _ack(ack)


@router.post("/aliyun/receipts", response_class=Response)
async def aliyun_receipts(request: Request, runtime: RuntimeDep, token: Token) -> Response:
    """Aliyun SmsReport HTTP batch push: delivery receipts (repeats are harmless)."""
    return await _sms_push(request, runtime, token, aliyun.parse_receipts, service.record_receipts,
                           aliyun.PUSH_ACK_BODY)


@router.post("/aliyun/replies", response_class=Response)
async def aliyun_replies(request: Request, runtime: RuntimeDep, token: Token) -> Response:
    """Aliyun SmsUp push: texts customers sent back; opt-outs ("TD", "退订"...) revoke marketing consent."""
    return await _sms_push(request, runtime, token, aliyun.parse_replies, service.record_replies,
                           aliyun.PUSH_ACK_BODY)


@router.post("/tencent/receipts", response_class=Response)
async def tencent_receipts(request: Request, runtime: RuntimeDep, token: Token) -> Response:
    """Tencent Cloud SMS status callback (up to 100 receipts per push)."""
    return await _sms_push(request, runtime, token, tencent.parse_receipts, service.record_receipts,
                           tencent.PUSH_ACK_BODY)


@router.post("/tencent/replies", response_class=Response)
async def tencent_replies(request: Request, runtime: RuntimeDep, token: Token) -> Response:
    """Tencent Cloud SMS reply callback: opt-outs revoke marketing consent."""
    return await _sms_push(request, runtime, token, tencent.parse_replies, service.record_replies,
                           tencent.PUSH_ACK_BODY)


#: WeChat's signature covers the token, timestamp and nonce, not the body: a signed query string seen once (in an
#: access log) would otherwise carry any forged body for ever. WeChat pushes at once and retries within 15 s.
MAX_PUSH_AGE_SECONDS = 300


def _check_wechat(runtime: Any, signature: str, timestamp: str, nonce: str) -> None:
    token = runtime.settings.wechat_callback_token
    secret = token.get_secret_value() if token is not None else ""
    if not secret or not wechat.verify_signature(secret, signature, timestamp, nonce):
        raise Unauthorized("Invalid WeChat signature.")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_PUSH_AGE_SECONDS:
        raise Unauthorized("The WeChat signature's timestamp is more than 5 minutes from now.")


Sig = Annotated[str, Query(max_length=100, description="WeChat's signature of token, timestamp and nonce.")]
Stamp = Annotated[str, Query(max_length=20, description="Timestamp WeChat signed.")]
Nonce = Annotated[str, Query(max_length=100, description="Nonce WeChat signed.")]


@router.get("/wechat", response_class=PlainTextResponse)
async def wechat_verify(runtime: RuntimeDep, signature: Sig, timestamp: Stamp, nonce: Nonce,
                        echostr: Annotated[str, Query(max_length=200, description="Echoed back when valid.")]
                        ) -> PlainTextResponse:
    """The Official Account's server URL check: echo `echostr` when the signature is ours."""
    _check_wechat(runtime, signature, timestamp, nonce)
    return PlainTextResponse(echostr)


@router.post("/wechat", response_class=PlainTextResponse)
async def wechat_push(request: Request, runtime: RuntimeDep, signature: Sig, timestamp: Stamp,
                      nonce: Nonce) -> PlainTextResponse:
    """WeChat server pushes: template / subscription send receipts, one-time subscription authorisations,
    and unfollows (WeChat consent withdrawn). Other pushes (texts, menu clicks) are acknowledged and logged."""
    _check_wechat(runtime, signature, timestamp, nonce)
    push = _parsed(wechat.parse_push, await _body(request))
    if push.kind == "receipt":
        await service.record_receipts(runtime.sessionmaker, runtime.outbox, push.receipts)
    elif push.kind == "subscription":
        await service.grant_subscriptions(runtime.sessionmaker, runtime.messaging.inbox.__table__, push.openid,
                                          [s.template_id for s in push.subscriptions if s.accepted], push.at)
    elif push.kind == "unfollow":
        await service.unfollowed(runtime.sessionmaker, runtime.outbox, push.openid)
    else:
        log.info("wechat_push_ignored", kind=push.kind, wechat_event=push.event)
    return PlainTextResponse("success")
