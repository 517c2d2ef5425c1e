"""Settings: one pydantic-settings class per service, sharing this base.

Each service has its own env prefix (``CUSTOMER_``, ``FOLLOWUP_`` ...). Platform-wide values
(``AFTERCARE_DATABASE_URL``, ``AFTERCARE_AMQP_URL``, keys) fill any field the service-specific
variable leaves unset, so one variable configures every service and one can override per service.
Embedded vs production is chosen here only: no database URL means SQLite under ``var/``, no AMQP
URL means the in-process bus.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLATFORM_PREFIX = "AFTERCARE_"


class ServiceSettings(BaseSettings):
    #: An empty variable is an unset one (compose passes ``${X:-}`` as ""; an optional number must not fail on it).
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    service_name: ClassVar[str]
    schema_name: ClassVar[str]

    environment: Literal["dev", "test", "prod"] = "dev"
    database_url: str | None = None
    amqp_url: str | None = None
    exchange: str = "aftercare.events"
    var_dir: Path = Path("var")
    log_level: str = "INFO"
    log_json: bool = True

    jwt_public_key: str | None = None
    jwt_issuer: str = "aftercare"
    jwt_audience: str = "aftercare-api"

    db_pool_size: int = 10
    db_max_overflow: int = 10
    relay_batch_size: int = 200
    relay_poll_seconds: float = 0.25
    consumer_prefetch: int = 100
    retry_delays_ms: list[int] = [1000, 10000, 60000]
    cors_origins: list[str] = []
    worker_heartbeat_file: Path | None = None
    #: Where a worker process serves ``/metrics`` (it has no API); none: not served.
    worker_metrics_port: int | None = None
    worker_metrics_host: str = "127.0.0.1"
    otel: bool = False

    @model_validator(mode="before")
    @classmethod
    def _platform_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in cls.model_fields:
            if name in data:
                continue
            own = f"{cls.model_config.get('env_prefix', '')}{name}".upper()
            if os.environ.get(own):
                continue
            shared = os.environ.get(f"{PLATFORM_PREFIX}{name.upper()}")
            if shared:
                data[name] = shared
        return data

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: events travel over the in-process bus."""
        return self.amqp_url is None

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.var_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{(self.var_dir / f'{self.service_name}.db').resolve()}"
