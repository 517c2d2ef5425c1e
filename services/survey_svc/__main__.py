"""``python -m survey_svc api|worker|migrate|downgrade|parked``."""

from __future__ import annotations

from survey_svc.app import MIGRATIONS, build_runtime, create_service_app
from survey_svc.settings import SurveySettings
from shared.cli import service_main

if __name__ == "__main__":
    service_main(SurveySettings, build_runtime, create_service_app, MIGRATIONS)
