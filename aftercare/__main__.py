"""``python -m aftercare run`` (embedded platform), ``migrate`` (every service's schema)."""

from __future__ import annotations

import argparse
import os

import uvicorn

from aftercare.services import services
from shared.db import migrations
from shared.observability.logging import configure_logging


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m aftercare")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="the whole platform in one process (embedded mode)")
    run.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    sub.add_parser("migrate", help="migrate every service's schema (production mode)")
    args = parser.parse_args()
    if args.cmd == "run":
        configure_logging("aftercare", os.environ.get("AFTERCARE_LOG_LEVEL", "INFO"),
                          os.environ.get("AFTERCARE_LOG_JSON", "false").lower() == "true")
        os.environ["HOST"], os.environ["PORT"] = args.host, str(args.port)  # the greeting and survey links use them
        uvicorn.run("aftercare.embedded:create_embedded_app", factory=True, host=args.host, port=args.port,
                    log_config=None, access_log=False)
    else:
        for entry in services():
            settings = entry.app.settings_class()
            migrations.upgrade(settings, entry.app.MIGRATIONS)
            print(f"migrated {entry.name}")


if __name__ == "__main__":
    main()
