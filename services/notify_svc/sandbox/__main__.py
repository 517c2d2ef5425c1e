"""``python -m notify_svc.sandbox --host 127.0.0.1 --port 9100``: the provider sandbox for staging and benchmarks.

Key pairs come from ``--aliyun-key ID:SECRET`` (``--tencent-key``, ``--wechat-app``, ``--wecom-app CORPID:SECRET``,
repeatable), else from the same variables notify_svc reads (``NOTIFY_ALIYUN_ACCESS_KEY_ID`` … or their
``AFTERCARE_`` forms), so a service and a sandbox started from one environment agree. Point the service at it with
``NOTIFY_ALIYUN_ENDPOINT=http://127.0.0.1:9100/aliyun/``, ``NOTIFY_TENCENT_ENDPOINT=http://127.0.0.1:9100/tencent/``,
``NOTIFY_WECHAT_API_BASE=http://127.0.0.1:9100/wechat`` and ``NOTIFY_WECOM_API_BASE=http://127.0.0.1:9100/wecom``.
One process only: the state lives in memory.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from notify_svc.sandbox import SandboxState, create_sandbox_app


def _env(name: str) -> str | None:
    return os.environ.get(f"NOTIFY_{name}") or os.environ.get(f"AFTERCARE_{name}")


def _pairs(given: list[str], id_var: str, secret_var: str) -> dict[str, str]:
    pairs = dict(item.split(":", 1) for item in given)
    if not pairs and (key := _env(id_var)) and (secret := _env(secret_var)):
        pairs[key] = secret
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m notify_svc.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--aliyun-key", action="append", default=[], metavar="ID:SECRET")
    parser.add_argument("--tencent-key", action="append", default=[], metavar="ID:KEY")
    parser.add_argument("--tencent-app-id", action="append", default=[], help="accepted SmsSdkAppIds (default: any)")
    parser.add_argument("--wechat-app", action="append", default=[], metavar="APPID:SECRET")
    parser.add_argument("--wecom-app", action="append", default=[], metavar="CORPID:SECRET")
    parser.add_argument("--aliyun-daily-limit", type=int, default=50, help="sign+template to one number per 24 h")
    parser.add_argument("--tencent-daily-limit", type=int, default=10, help="messages to one number per day")
    parser.add_argument("--tencent-same-content-seconds", type=float, default=30.0)
    parser.add_argument("--wecom-member-minute-limit", type=int, default=30, help="app messages to one member a minute")
    parser.add_argument("--fault-delay", type=float, default=10.0, help="seconds a timeout fault holds the answer")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()

    state = SandboxState(
        aliyun_keys=_pairs(args.aliyun_key, "ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET"),
        tencent_keys=_pairs(args.tencent_key, "TENCENT_SECRET_ID", "TENCENT_SECRET_KEY"),
        wechat_apps=_pairs(args.wechat_app, "WECHAT_APPID", "WECHAT_SECRET"),
        wecom_apps=_pairs(args.wecom_app, "WECOM_CORP_ID", "WECOM_SECRET"),
        wecom_member_minute_limit=args.wecom_member_minute_limit,
        tencent_app_ids=set(args.tencent_app_id) or None,
        aliyun_daily_limit=args.aliyun_daily_limit, tencent_daily_limit=args.tencent_daily_limit,
        tencent_same_content_seconds=args.tencent_same_content_seconds, fault_delay=args.fault_delay,
    )
    print(f"notify sandbox on http://{args.host}:{args.port} — aliyun keys {sorted(state.aliyun_keys)}, "
          f"tencent keys {sorted(state.tencent_keys)}, wechat apps {sorted(state.wechat_apps)}, "
          f"wecom corps {sorted(state.wecom_apps)}", flush=True)
    uvicorn.run(create_sandbox_app(state), host=args.host, port=args.port, http="httptools", access_log=False,
                log_level=args.log_level, timeout_keep_alive=75, backlog=4096, lifespan="off")


if __name__ == "__main__":
    main()
