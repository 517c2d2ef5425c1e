"""notify_svc settings (env prefix ``NOTIFY_``; ``AFTERCARE_*`` fills the rest).

Every provider's base URL is a setting, so staging (and the tests) can point at the local provider sandbox
(``python -m notify_svc.sandbox``), which speaks each provider's real formats and checks their signatures.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", env_file=".env", extra="ignore")
    service_name: ClassVar[str] = "notify_svc"
    schema_name: ClassVar[str] = "notify"

    #: Which SMS provider sends; ``console`` writes what would be sent to ``var/messages.jsonl`` (embedded, demos).
    sms_provider: Literal["console", "aliyun", "tencent"] = "console"
    #: WeChat Official Account messages; off without an app id (the message falls back to the next channel).
    wechat_enabled: bool = False
    #: WeCom (企业微信) app messages to staff (escalation notices), for groups whose stores use WeCom; off without a
    #: corp id, app secret and agent id (the notice then goes by SMS).
    wecom_enabled: bool = False

    aliyun_endpoint: str = "https://dysmsapi.aliyuncs.com"
    aliyun_access_key_id: str | None = None
    aliyun_access_key_secret: SecretStr | None = None

    tencent_endpoint: str = "https://sms.tencentcloudapi.com"
    tencent_secret_id: str | None = None
    tencent_secret_key: SecretStr | None = None
    tencent_sdk_app_id: str | None = None
    tencent_region: str = "ap-guangzhou"

    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_appid: str | None = None
    wechat_secret: SecretStr | None = None
    #: The token configured in the Official Account's server settings: inbound pushes are signed with it.
    wechat_callback_token: SecretStr | None = None

    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    #: The enterprise's corp id (``ww…``), the self-built app's secret and its agent id; a staff member's WeCom
    #: userid is their employee number (the convention the dealer groups' WeCom directories follow).
    wecom_corp_id: str | None = None
    wecom_secret: SecretStr | None = None
    wecom_agent_id: int | None = None

    #: Key of the hash that identifies a person across stores for caps and budgets (phone numbers are not used in
    #: clear beside messages). Required in production; rotating it restarts the counting windows.
    pii_hash_key: SecretStr | None = None

    #: Shared secret in the receipt / reply callback URLs given to Aliyun and Tencent (they do not sign pushes).
    callback_token: SecretStr | None = None

    #: Seconds to wait for a provider's answer. Aliyun asks for at least 1 s; a timeout is "unknown", never a resend.
    provider_timeout_seconds: float = 5.0
    #: Requests per second each provider accepts from all workers together (a token bucket in Postgres).
    #: WeCom allows 10,000 calls a minute per enterprise and API.
    provider_qps: dict[str, float] = {"aliyun": 500.0, "tencent": 500.0, "wechat": 200.0, "wecom": 150.0}

    dispatcher_batch_size: int = 200
    dispatcher_poll_seconds: float = 0.5
    #: Dispatcher loops per worker process: while one batch waits for the providers, another is decided and
    #: recorded (they share the work like separate workers do: SKIP LOCKED claims, per-recipient locks).
    dispatcher_loops: int = 2
    #: Provider calls in flight per worker.
    dispatcher_concurrency: int = 64
    #: Retryable failures are retried this many times (back-off doubling from ``retry_base_seconds``), then
    #: the message is failed as dead-lettered.
    max_attempts: int = 6
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    #: A send whose outcome is unknown (timeout) waits this long for a receipt before its status is queried.
    receipt_wait_seconds: float = 600.0

    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 8
    #: Private and loopback webhook targets are refused in production; dev and test may allow them.
    webhook_allow_private: bool = False
    webhook_poll_seconds: float = 1.0
    #: Attempts one worker keeps in flight to one endpoint (of its 50): a partner slow to answer holds only these.
    webhook_endpoint_concurrency: int = Field(default=10, ge=1, le=50)

    @model_validator(mode="after")
    def _production_rules(self) -> NotifySettings:
        if self.environment == "prod" and self.pii_hash_key is None:
            raise ValueError("NOTIFY_PII_HASH_KEY is required in production")
        if self.environment == "prod" and self.webhook_allow_private:
            raise ValueError("NOTIFY_WEBHOOK_ALLOW_PRIVATE cannot be enabled in production")
        if self.sms_provider == "aliyun" and not (self.aliyun_access_key_id and self.aliyun_access_key_secret):
            raise ValueError("NOTIFY_SMS_PROVIDER=aliyun needs NOTIFY_ALIYUN_ACCESS_KEY_ID and _SECRET")
        if self.sms_provider == "tencent" and not (self.tencent_secret_id and self.tencent_secret_key
                                                   and self.tencent_sdk_app_id):
            raise ValueError("NOTIFY_SMS_PROVIDER=tencent needs NOTIFY_TENCENT_SECRET_ID, _SECRET_KEY, _SDK_APP_ID")
        if self.wechat_enabled and not (self.wechat_appid and self.wechat_secret):
            raise ValueError("NOTIFY_WECHAT_ENABLED needs NOTIFY_WECHAT_APPID and NOTIFY_WECHAT_SECRET")
        if self.wecom_enabled and not (self.wecom_corp_id and self.wecom_secret and self.wecom_agent_id is not None):
            raise ValueError("NOTIFY_WECOM_ENABLED needs NOTIFY_WECOM_CORP_ID, NOTIFY_WECOM_SECRET and "
                             "NOTIFY_WECOM_AGENT_ID")
        return self

    @property
    def person_key_secret(self) -> bytes:
        return (self.pii_hash_key.get_secret_value() if self.pii_hash_key else "aftercare-dev-only").encode()
