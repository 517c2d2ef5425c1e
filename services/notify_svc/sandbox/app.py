"""The sandbox ASGI app: the fake providers (Aliyun, Tencent, WeChat, WeCom) plus ``/_sandbox/*`` to read and
steer them.

Plain Starlette (no validation or OpenAPI layer): the benchmark pushes 1,000+ sends/s through one process.
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from notify_svc.sandbox import aliyun, formats, tencent, wechat, wecom
from notify_svc.sandbox._http import json
from notify_svc.sandbox.state import PROVIDERS, SandboxState


def _control_routes(state: SandboxState) -> list[Route]:
    async def messages(request: Request) -> Response:
        provider, to = request.query_params.get("provider"), request.query_params.get("to")
        return json([m.as_dict() for m in state.messages_for(provider, to)])

    async def reset(request: Request) -> Response:
        state.reset()
        return json({"ok": True})

    async def faults(request: Request) -> Response:
        if request.method == "GET":
            return json(state.pending_faults())
        try:
            body = orjson.loads(await request.body())
            state.add_fault(body["provider"], body["mode"], int(body.get("count", 1)),
                            float(body["delay"]) if body.get("delay") is not None else None)
        except (ValueError, KeyError, TypeError) as exc:
            return json({"error": str(exc)}, 400)
        return json(state.pending_faults())

    async def receipts(request: Request) -> Response:
        provider = request.path_params["provider"]
        if provider not in PROVIDERS:
            return json({"error": f"unknown provider {provider!r}"}, 404)
        if provider == "wecom":
            return json({"error": "WeCom app messages have no delivery receipts"}, 404)
        reported = state.report(provider, frozenset(request.query_params.getlist("fail")))
        if provider == "aliyun":
            return Response(formats.aliyun_receipts(reported), media_type="application/json")
        if provider == "tencent":
            return Response(formats.tencent_receipts(reported), media_type="application/json")
        return json(formats.wechat_receipts(reported))

    async def replies(request: Request) -> Response:
        """The push a customer's reply would cause: ``{"phone" (openid for WeChat), "content", "sign"}``."""
        provider = request.path_params["provider"]
        try:
            body = orjson.loads(await request.body())
            phone, content, sign = str(body["phone"]), str(body["content"]), body.get("sign")
        except (ValueError, KeyError, TypeError) as exc:
            return json({"error": str(exc)}, 400)
        if provider == "aliyun":
            return Response(formats.aliyun_reply(phone, content, sign), media_type="application/json")
        if provider == "tencent":
            return Response(formats.tencent_reply(phone, content, sign), media_type="application/json")
        if provider == "wechat":
            return Response(formats.wechat_text(phone, content, state.next_id()), media_type="application/xml")
        return json({"error": f"unknown provider {provider!r}"}, 404)

    async def stats(request: Request) -> Response:
        return json(state.stats())

    return [
        Route("/_sandbox/messages", messages, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST"]),
        Route("/_sandbox/receipts/{provider}", receipts, methods=["GET"]),
        Route("/_sandbox/replies/{provider}", replies, methods=["POST"]),
        Route("/_sandbox/stats", stats, methods=["GET"]),
    ]


def create_sandbox_app(state: SandboxState | None = None) -> Starlette:
    """The app over ``state`` (a fresh one with no key pairs when not given); ``app.state.sandbox`` holds it."""
    state = state if state is not None else SandboxState()
    aliyun_endpoint, tencent_endpoint = aliyun.endpoint(state), tencent.endpoint(state)
    routes = [
        Route("/aliyun/", aliyun_endpoint, methods=["POST", "GET"]),
        Route("/aliyun", aliyun_endpoint, methods=["POST", "GET"]),
        Route("/tencent/", tencent_endpoint, methods=["POST"]),
        Route("/tencent", tencent_endpoint, methods=["POST"]),
        Route("/wechat/cgi-bin/message/template/send", wechat.send_endpoint(state, "template"), methods=["POST"]),
        Route("/wechat/cgi-bin/message/subscribe/bizsend", wechat.send_endpoint(state, "subscribe"), methods=["POST"]),
        Route("/wechat/cgi-bin/token", wechat.token_endpoint(state), methods=["GET"]),
        Route("/wecom/cgi-bin/gettoken", wecom.token_endpoint(state), methods=["GET"]),
        Route("/wecom/cgi-bin/message/send", wecom.send_endpoint(state), methods=["POST"]),
        *_control_routes(state),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = state
    return app
