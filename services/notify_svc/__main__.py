"""``python -m notify_svc api|worker|migrate|downgrade|parked``."""

from __future__ import annotations

from notify_svc.app import MIGRATIONS, build_runtime, create_service_app
from notify_svc.settings import NotifySettings
from shared.cli import service_main

if __name__ == "__main__":
    service_main(NotifySettings, build_runtime, create_service_app, MIGRATIONS)
