"""customer_svc settings (env prefix ``CUSTOMER_``; ``AFTERCARE_*`` fills the rest)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class CustomerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMER_", env_file=".env", extra="ignore")
    service_name: ClassVar[str] = "customer_svc"
    schema_name: ClassVar[str] = "customer"

    jwt_private_key: str | None = None
    access_token_minutes: int = 15
    refresh_token_days: int = 14
    login_max_failures: int = 5
    login_lock_minutes: int = 15
