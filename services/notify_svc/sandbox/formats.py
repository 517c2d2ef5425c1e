"""The bodies each provider pushes to us: delivery receipts and customer replies, in their real shapes."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson

from notify_svc.sandbox.state import SandboxMessage, beijing

SANDBOX_ACCOUNT = "gh_sandbox00000"


def aliyun_receipts(messages: list[SandboxMessage]) -> bytes:
    """An SmsReport HTTP batch push (JSON array)."""
    return orjson.dumps([
        {"phone_number": m.to, "send_time": beijing(m.at), "report_time": beijing(m.reported_at or m.at),
         "success": m.status == "delivered", "err_code": "DELIVERED" if m.status == "delivered" else "UNDELIV",
         "err_msg": "用户接收成功" if m.status == "delivered" else "用户接收失败", "sms_size": "1",
         "biz_id": m.provider_id, "out_id": m.our_id or ""}
        for m in messages
    ])


def tencent_receipts(messages: list[SandboxMessage]) -> bytes:
    """A status callback (JSON array); ``ext`` carries the send's SessionContext."""
    body = []
    for m in messages:
        ok = m.status == "delivered"
        nationcode, mobile = ("86", m.to[3:]) if m.to.startswith("+86") else ("", m.to.lstrip("+"))
        body.append({"user_receive_time": beijing(m.reported_at or m.at), "nationcode": nationcode, "mobile": mobile,
                     "report_status": "SUCCESS" if ok else "FAIL", "errmsg": "DELIVRD" if ok else "UNDELIV",
                     "description": "用户短信送达成功" if ok else "用户短信未送达", "sid": m.provider_id,
                     "ext": m.our_id or ""})
    return orjson.dumps(body)


def cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _event(openid: str, created: int, event: str, inner: str) -> str:
    return (f"<xml><ToUserName>{cdata(SANDBOX_ACCOUNT)}</ToUserName><FromUserName>{cdata(openid)}</FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType>{cdata('event')}</MsgType><Event>{cdata(event)}</Event>"
            f"{inner}</xml>")


def wechat_receipts(messages: list[SandboxMessage]) -> list[str]:
    """One XML push per message: TEMPLATESENDJOBFINISH for template messages, subscribe_msg_sent_event for
    subscription notices."""
    pushes = []
    for m in messages:
        created = int((m.reported_at or m.at).timestamp())
        ok = m.status == "delivered"
        if m.kind == "subscribe":
            inner = (f"<SubscribeMsgSentEvent><List><TemplateId>{cdata(m.template)}</TemplateId>"
                     f"<MsgID>{m.provider_id}</MsgID><ErrorCode>{0 if ok else 43101}</ErrorCode>"
                     f"<ErrorStatus>{cdata('success' if ok else 'failed:user block')}</ErrorStatus></List>"
                     f"</SubscribeMsgSentEvent>")
            pushes.append(_event(m.to, created, "subscribe_msg_sent_event", inner))
        else:
            inner = f"<MsgID>{m.provider_id}</MsgID><Status>{cdata('success' if ok else 'failed:user block')}</Status>"
            pushes.append(_event(m.to, created, "TEMPLATESENDJOBFINISH", inner))
    return pushes


def aliyun_reply(phone: str, content: str, sign: str | None) -> bytes:
    local = phone[3:] if phone.startswith("+86") else phone.lstrip("+")
    return orjson.dumps([{"phone_number": local, "send_time": beijing(datetime.now(UTC)), "content": content,
                          "sign_name": sign or "", "dest_code": "1234", "sequence_id": time.time_ns() // 1000}])


def tencent_reply(phone: str, content: str, sign: str | None) -> bytes:
    nationcode, mobile = ("86", phone[3:]) if phone.startswith("+86") else ("86", phone.lstrip("+"))
    return orjson.dumps({"extend": "", "mobile": mobile, "nationcode": nationcode, "sign": sign or "",
                         "text": content, "time": int(time.time())})


def wechat_text(openid: str, content: str, msg_id: int) -> bytes:
    return (f"<xml><ToUserName>{cdata(SANDBOX_ACCOUNT)}</ToUserName><FromUserName>{cdata(openid)}</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType>{cdata('text')}</MsgType>"
            f"<Content>{cdata(content)}</Content><MsgId>{msg_id}</MsgId></xml>").encode()
