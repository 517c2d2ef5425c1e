"""The providers a notify worker sends through, keyed by channel, as the settings choose them."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notify_svc.channels.aliyun import AliyunSms
from notify_svc.channels.base import Provider
from notify_svc.channels.console import ConsoleChannel
from notify_svc.channels.tencent import TencentSms
from notify_svc.channels.wechat import WechatOfficialAccount
from notify_svc.channels.wecom import WecomApp
from notify_svc.settings import NotifySettings


def build_providers(settings: NotifySettings, sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Provider]:
    """``sms`` (Aliyun, Tencent, or the console file), ``wechat`` and ``wecom`` only when enabled (otherwise a
    message for them falls back to its next channel), and always ``console``. Callers ``aclose()`` each provider
    on shutdown."""
    messages = settings.var_dir / "messages.jsonl"
    providers: dict[str, Provider] = {}
    if settings.sms_provider == "aliyun":
        providers["sms"] = AliyunSms.from_settings(settings)
    elif settings.sms_provider == "tencent":
        providers["sms"] = TencentSms.from_settings(settings)
    else:
        providers["sms"] = ConsoleChannel(messages, channel="sms")
    if settings.wechat_enabled:
        providers["wechat"] = WechatOfficialAccount(settings, sessionmaker)
    if settings.wecom_enabled:
        providers["wecom"] = WecomApp(settings, sessionmaker)
    providers["console"] = ConsoleChannel(messages, channel="console")
    return providers
