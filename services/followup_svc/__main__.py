"""``python -m followup_svc api|worker|migrate|downgrade|parked``."""

from __future__ import annotations

from followup_svc.app import MIGRATIONS, build_runtime, create_service_app
from followup_svc.settings import FollowupSettings
from shared.cli import service_main

if __name__ == "__main__":
    service_main(FollowupSettings, build_runtime, create_service_app, MIGRATIONS)
