"""customer_svc settings (env prefix ``CUSTOMER_``; ``AFTERCARE_*`` fills the rest)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class CustomerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMER_", env_file=".env", extra="ignore")
    service_name: ClassVar[str] = "customer_svc"
    schema_name: ClassVar[str] = "customer"

    jwt_private_key: str | None = None
    access_token_minutes: int = 15
    #: Lifetime of a token an API key is exchanged for. Revoking the key (or taking a scope or store away) stops
    #: new exchanges at once; tokens already issued keep working until they expire, so keep this short.
    integration_token_minutes: int = 15
    refresh_token_days: int = 14
    login_max_failures: int = 5
    login_lock_minutes: int = 15
    #: Bulk imports: largest file accepted, records per transaction, how often an idle worker looks for jobs, and
    #: how long a worker's claim on a job lasts without progress (then another worker takes the job over).
    import_max_mb: int = 512
    import_batch_rows: int = 1000
    #: Batches of one job worked at a time: one in Python while the others wait on Postgres (see ImportRunner).
    import_batches_in_flight: int = Field(default=2, ge=1, le=8)
    import_poll_seconds: float = 1.0
    import_lease_seconds: int = 120
