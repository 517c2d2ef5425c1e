"""survey_svc settings (env prefix ``SURVEY_``; ``AFTERCARE_*`` fills the rest)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SurveySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SURVEY_", env_file=".env", extra="ignore")
    service_name: ClassVar[str] = "survey_svc"
    schema_name: ClassVar[str] = "survey"

    #: Where customers open their answer links (the gateway's public address): links are ``<base>/s/<token>``.
    public_base_url: str = "http://127.0.0.1:8000"
    #: Key the answer-link tokens are derived with (HMAC of the invitation id) and device hashes are salted with.
    #: Required in production; rotating it invalidates the links of open invitations.
    token_key: SecretStr | None = None

    #: Invitations, reminders and the complaint SLA watch look for due work this often.
    reminder_poll_seconds: float = 30.0
    sla_poll_seconds: float = 30.0

    @model_validator(mode="after")
    def _production_rules(self) -> SurveySettings:
        if self.environment == "prod" and self.token_key is None:
            raise ValueError("SURVEY_TOKEN_KEY is required in production")
        return self

    @property
    def token_secret(self) -> bytes:
        return (self.token_key.get_secret_value() if self.token_key else "aftercare-dev-only-survey").encode()

    def answer_link(self, token: str) -> str:
        return f"{self.public_base_url.rstrip('/')}/s/{token}"
