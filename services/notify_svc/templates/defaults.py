"""The message templates every dealer group starts with: one per key for SMS and for WeChat, zh-CN, approved,
and a WeCom variant of the notices that go to staff (``escalation_notice``).

Keys are the templates the default playbook names (``shared.events.catalog.followup.DEFAULT_TEMPLATES``) plus
those survey_svc and the escalation notices use. Texts follow DOMAIN.md §7.4 (the maintenance SMS is the
seeds' own wording) and use the variables followup_svc sends (store_name, customer_name, plate, model,
declined_items, date); survey messages add ``survey_link``, staff notices ``task_title`` and ``level``.
Greetings, monthly care and win-back are marketing (DOMAIN §7.2, and the playbook's rules send them as
marketing), so their SMS carries the opt-out phrase; reminders, thanks and surveys are service.

Provider codes are left empty: a group fills in the codes Aliyun, Tencent and WeChat approved for its own
account. Tencent's parameter order is the order of the placeholders in the SMS text, so only the code is
missing; WeChat fields follow the subscription-message keyword style (thing1, time2, car_number3). WeCom app
messages are plain text with no provider template, so a WeCom variant needs no code at all and is sendable as
seeded; customers have no WeCom address, so only staff notices have one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from notify_svc.templates.rendering import check_definition, placeholders
from shared.events.catalog.followup import DEFAULT_TEMPLATES

LOCALE = "zh-CN"
CHANNELS = ("sms", "wechat")
#: Channels only some defaults have: the staff-facing ones (see ``DefaultTemplate.channels``).
STAFF_CHANNELS = ("wecom",)
OPT_OUT = "拒收请回复R"


def _var(name: str, kind: str = "text", required: bool = True, max_length: int | None = None) -> dict[str, Any]:
    return {"name": name, "type": kind, "required": required, "max_length": max_length}


STORE = _var("store_name", max_length=30)
CUSTOMER = _var("customer_name", max_length=20)
PLATE = _var("plate", "plate")
DATE = _var("date", "date")
LINK = _var("survey_link", "url", max_length=200)


@dataclass(frozen=True)
class DefaultTemplate:
    purpose: str
    title: str
    sms: str
    variables: tuple[dict[str, Any], ...]
    wechat_fields: dict[str, str] = field(default_factory=dict)
    #: Channels beyond ``CHANNELS`` this default exists on (``wecom`` for notices to staff).
    extra_channels: tuple[str, ...] = ()

    @property
    def channels(self) -> tuple[str, ...]:
        """Every channel a dealer group gets this default on."""
        return (*CHANNELS, *self.extra_channels)

    @property
    def wechat(self) -> str:
        """WeChat carries no opt-out text (a follower unsubscribes in WeChat itself)."""
        return self.sms.replace(OPT_OUT, "").rstrip()

    def body(self, channel: str) -> str:
        """The SMS text; WeChat's and WeCom's without the opt-out phrase (neither is an SMS)."""
        return self.sms if channel == "sms" else self.wechat

    def provider_params(self, channel: str) -> dict[str, Any]:
        if channel == "sms":
            return {"tencent": placeholders(self.sms)}
        if channel == "wechat":
            return {"wechat": dict(self.wechat_fields)}
        return {}  # WeCom: the rendered text is the message


def _service(title: str, sms: str, variables: tuple[dict[str, Any], ...], fields: dict[str, str]) -> DefaultTemplate:
    return DefaultTemplate("service", title, sms, variables, fields)


def _marketing(title: str, sms: str, variables: tuple[dict[str, Any], ...],
               fields: dict[str, str]) -> DefaultTemplate:
    return DefaultTemplate("marketing", title, f"{sms}{OPT_OUT}", variables, fields)


GREETING_FIELDS = {"name1": "customer_name", "thing2": "store_name"}
VEHICLE_FIELDS = {"thing1": "store_name", "car_number2": "plate", "time3": "date"}

DEFAULTS: dict[str, DefaultTemplate] = {
    # --- prospects and buyers (§6.1, §6.2, T-05/T-06/T-21) ----------------------------------------------------
    "showroom_thanks": _service(
        "到店感谢", "{customer_name}您好,感谢您今天光临{store_name}。如有任何疑问,欢迎随时联系您的销售顾问,"
                    "期待再次为您服务!", (CUSTOMER, STORE), GREETING_FIELDS),
    "visit_recap": _service(
        "到店回顾", "{customer_name}您好,{store_name}已为您整理今天关注的车型资料,您的销售顾问将尽快与您联系。"
                    "如需试驾,欢迎随时预约,谢谢!", (CUSTOMER, STORE), GREETING_FIELDS),
    "purchase_thanks": _service(
        "购车感谢", "{customer_name}您好,感谢您选择{store_name}!祝您用车愉快、行车平安。用车中有任何问题,"
                    "欢迎随时联系我们。", (CUSTOMER, STORE), GREETING_FIELDS),
    "first_maintenance_notice": _service(
        "首保通知", "{store_name}温馨提示:您的爱车{plate}即将到首次保养时间,请携带《保养手册》回店,"
                    "提前预约可走绿色通道,谢谢!", (STORE, PLATE), {"thing1": "store_name", "car_number2": "plate"}),
    "monthly_care": _marketing(
        "用车关怀", "{customer_name}您好,{store_name}祝您用车愉快!天气多变,请注意行车安全,爱车如有需要"
                    "欢迎随时回店检查。", (CUSTOMER, STORE), GREETING_FIELDS),
    # --- service reminders (§6.3, §7.4) ---------------------------------------------------------------------
    "maintenance_reminder": _service(
        "保养提醒", "{store_name}温馨提示:您的爱车{plate}本次保养的预计时间是{date},请您确认里程并及时保养,"
                    "或提前预约,谢谢!如已保养请忽略此信息。", (STORE, PLATE, DATE), VEHICLE_FIELDS),
    "insurance_renewal": _service(
        "续保提醒", "{store_name}温馨提示:您的爱车{plate}保险将于{date}到期,请及时办理续保,如需协助请联系我们,"
                    "谢谢!", (STORE, PLATE, DATE), VEHICLE_FIELDS),
    "annual_inspection": _service(
        "年检提醒", "{store_name}温馨提示:您的爱车{plate}需在{date}前完成年检,我店可代办年检,欢迎预约,谢谢!",
        (STORE, PLATE, DATE), VEHICLE_FIELDS),
    "warranty_expiry": _service(
        "质保到期提醒", "{store_name}温馨提示:您的爱车{plate}整车质保将于{date}到期,建议到期前回店做一次"
                        "全面检查,谢谢!", (STORE, PLATE, DATE), VEHICLE_FIELDS),
    "appointment_reminder": _service(
        "预约提醒", "{customer_name}您好,您已预约{appointment_time}到{store_name}为爱车服务,请准时到店;"
                    "如需改期请提前告知,谢谢!", (CUSTOMER, _var("appointment_time", "datetime"), STORE),
        {"name1": "customer_name", "time2": "appointment_time", "thing3": "store_name"}),
    "service_thanks": _service(
        "服务感谢", "{customer_name}您好,感谢您今天到{store_name}为爱车服务,祝您行车平安!对本次服务有任何意见,"
                    "欢迎随时联系我们。", (CUSTOMER, STORE), GREETING_FIELDS),
    "win_back": _marketing(
        "回店关怀", "{customer_name}您好,{store_name}好久不见!您的爱车{plate}已有一段时间未回店,欢迎回店免费检测。",
        (CUSTOMER, STORE, PLATE), {"name1": "customer_name", "thing2": "store_name", "car_number3": "plate"}),
    # --- personal dates and festivals (§6.4, §7.2) ----------------------------------------------------------
    "birthday_greeting": _marketing(
        "生日祝福", "{customer_name}您好,今天是您的生日,{store_name}全体同事祝您生日快乐,幸福安康!",
        (CUSTOMER, STORE), GREETING_FIELDS),
    "wedding_anniversary": _marketing(
        "纪念日祝福", "{customer_name}您好,{store_name}祝您结婚纪念日快乐,家庭美满,幸福长久!",
        (CUSTOMER, STORE), GREETING_FIELDS),
    "festival_greeting": _marketing(
        "节日祝福", "{customer_name}您好,{store_name}恭祝您节日快乐,阖家幸福!出行请注意安全。",
        (CUSTOMER, STORE), GREETING_FIELDS),
    # --- surveys (survey_svc) and staff notices (escalations) -----------------------------------------------
    "survey_invitation": _service(
        "满意度调查邀请", "{customer_name}您好,感谢您选择{store_name}。诚邀您花1分钟评价本次服务:{survey_link} 谢谢!",
        (CUSTOMER, STORE, LINK), GREETING_FIELDS),
    "survey_reminder": _service(
        "满意度调查提醒", "{customer_name}您好,{store_name}的服务评价还在等您,您的意见对我们很重要:{survey_link} "
                          "谢谢!", (CUSTOMER, STORE, LINK), GREETING_FIELDS),
    "escalation_notice": DefaultTemplate(
        "service", "任务升级提醒", "{store_name}任务升级提醒:“{task_title}”已超时,现升级至第{level}级"
                                   "(客户:{customer_name}),请尽快处理。",
        (STORE, _var("task_title"), _var("level", "int"), CUSTOMER),
        {"thing1": "task_title", "number2": "level", "name3": "customer_name"}, extra_channels=STAFF_CHANNELS),
}
#: Keys the playbooks, survey_svc and escalations send by name: never deleted without a replacement.
DEFAULT_KEYS = frozenset(DEFAULTS)


def _check() -> None:
    """A broken default is a bug that must fail at import, not in every dealer group's messages."""
    missing = DEFAULT_TEMPLATES - DEFAULT_KEYS
    if missing:
        raise RuntimeError(f"no default template for {sorted(missing)}")
    for key, tpl in DEFAULTS.items():
        for channel in tpl.channels:
            try:
                check_definition(channel=channel, purpose=tpl.purpose, body=tpl.body(channel),
                                 variables=list(tpl.variables), provider_params=tpl.provider_params(channel))
            except ValueError as exc:
                raise RuntimeError(f"default template {key}/{channel}: {exc}") from exc


_check()
