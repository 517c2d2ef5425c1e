"""Request and response bodies of the template API. Shapes are checked here; how the parts fit together
(placeholders declared, opt-out text, provider parameters) is checked by ``rendering.check_definition``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from notify_svc.templates.rendering import NAME, VARIABLE_TYPES

KEY_PATTERN = r"^[a-z][a-z0-9_]{1,59}$"
Channel = Literal["sms", "wechat", "wecom", "console"]
Purpose = Literal["service", "marketing"]
Status = Literal["draft", "approved", "disabled"]
Provider = Literal["aliyun", "tencent", "wechat", "wecom"]
VariableType = Literal[VARIABLE_TYPES]  # type: ignore[valid-type]
ProviderCode = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]

_MAINTENANCE_BODY = "{store_name}温馨提示:您的爱车{plate}本次保养的预计时间是{date},请您确认里程并及时保养,谢谢!"


class VariableSpec(BaseModel):
    """One variable a template takes, checked when a message is rendered."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME.pattern, examples=["plate"],
                      description="Placeholder name used in the body as `{name}`: a letter, then letters, digits, _.")
    type: VariableType = Field(  # type: ignore[valid-type]
        default="text", description="text; int; date (ISO in, shown 5月1日); datetime (ISO with zone in, shown in the "
                                    "store's zone); plate (Chinese plate, normalised); phone (shown masked, "
                                    "138****5678); money (shown 1280元); list (texts, joined with 、); url (http/https).")
    required: bool = Field(default=True, description="A message without it is not sent (recorded as suppressed).")
    max_length: int | None = Field(default=None, ge=1, le=1000,
                                   description="Longest formatted value. SMS: at most 35 and 35 when left out "
                                               "(Aliyun's limit), except url. Lists are shortened with 等 to fit.")


class ProviderParams(BaseModel):
    """How providers that take parameters by position or by field receive the variables."""

    model_config = ConfigDict(extra="forbid")
    tencent: list[str] | None = Field(default=None, max_length=20, examples=[["store_name", "plate", "date"]],
                                      description="Tencent SMS: variable names in the order of the approved "
                                                  "template's {1}, {2}, ...")
    wechat: dict[str, str] | None = Field(default=None, examples=[{"thing1": "store_name", "car_number2": "plate"}],
                                          description="WeChat: data key of the approved template -> variable name.")
    wechat_kind: Literal["template", "subscribe"] | None = Field(
        default=None, description="WeChat: a template message (模板消息, the default) or a one-time subscription "
                                  "message (订阅通知, sent only while the user has an authorisation left).")


class TemplateWrite(BaseModel):
    """The editable part of a template (PUT replaces all of it)."""

    model_config = ConfigDict(extra="forbid")
    purpose: Purpose = Field(default="service", description="marketing needs marketing consent and, by SMS, an "
                                                            "opt-out phrase such as 拒收请回复R in the body.")
    title: str = Field(min_length=1, max_length=100, examples=["保养提醒"], description="Name staff see in lists.")
    body: str = Field(min_length=1, max_length=1000, examples=[_MAINTENANCE_BODY],
                      description="The text with `{variable}` placeholders (`{{` and `}}` for literal braces); it "
                                  "mirrors the text approved by the SMS provider.")
    variables: list[VariableSpec] = Field(default_factory=list, max_length=30,
                                          description="Every placeholder of the body, typed.")
    sign_name: str | None = Field(default=None, min_length=1, max_length=40, examples=["广本天河店"],
                                  description="SMS signature (签名) the provider approved for this template.")
    provider_codes: dict[Provider, ProviderCode] = Field(  # type: ignore[valid-type]
        default_factory=dict, examples=[{"aliyun": "SMS_276180002", "tencent": "1843107"}],
        description="Template ids the providers approved (Aliyun SMS_…, Tencent numeric id, WeChat template id).")
    provider_params: ProviderParams = Field(default_factory=ProviderParams,
                                            description="Parameter order (Tencent) and field mapping (WeChat).")
    status: Status = Field(default="approved", description="draft: not yet approved by the provider, not sent; "
                                                           "approved: sent; disabled: retired, not sent.")

    def provider_params_dict(self) -> dict[str, Any]:
        return self.provider_params.model_dump(exclude_none=True)


class TemplateCreate(TemplateWrite):
    key: str = Field(pattern=KEY_PATTERN, examples=["maintenance_reminder"],
                     description="The key rules and senders name; with channel, locale and store it is unique.")
    channel: Channel = Field(description="The channel it is for.")
    locale: str = Field(default="zh-CN", pattern=r"^[a-z]{2}(-[A-Z]{2})?$", description="Language, e.g. zh-CN.")
    store_id: uuid.UUID | None = Field(default=None, description="A store of yours: an override used in that store "
                                                                 "instead of the group-wide template of the key.")


class TemplateUpdate(TemplateWrite):
    """Key, channel, locale and store are the template's identity: create another template to change them."""


class TemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID = Field(description="Template id.")
    key: str = Field(description="The key rules and senders name.")
    channel: Channel = Field(description="The channel it is for.")
    locale: str = Field(description="Language, e.g. zh-CN.")
    store_id: uuid.UUID | None = Field(description="The store it overrides for; null: the whole dealer group.")
    purpose: Purpose = Field(description="service or marketing.")
    title: str = Field(description="Name staff see in lists.")
    body: str = Field(description="The text with `{variable}` placeholders.")
    variables: list[VariableSpec] = Field(description="The typed variables.")
    sign_name: str | None = Field(description="SMS signature (签名).")
    provider_codes: dict[str, str] = Field(description="Template ids the providers approved.")
    provider_params: ProviderParams = Field(description="Parameter order (Tencent) and field mapping (WeChat).")
    status: Status = Field(description="draft, approved or disabled.")
    version: int = Field(description="Bumped by every change; the ETag.")
    created_at: datetime = Field(description="When it was created.")
    updated_at: datetime = Field(description="When it last changed.")


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variables: dict[str, Any] = Field(default_factory=dict, examples=[{
        "store_name": "广本天河店", "plate": "粤B12345", "date": "2026-05-01"}],
                                      description="Values by variable name, as a sender would pass them.")


class PreviewRead(BaseModel):
    text: str = Field(description="What the recipient reads (without the SMS signature).")
    params: dict[str, str] = Field(description="Formatted values by variable name (Aliyun TemplateParam).")
    ordered_params: list[str] = Field(description="Values in Tencent's parameter order.")
    fields: dict[str, str] = Field(description="WeChat data fields.")
    provider_codes: dict[str, str] = Field(description="Template ids the providers approved.")
    sign_name: str | None = Field(description="SMS signature (签名).")
    characters: int = Field(description="Characters as the carrier counts them (SMS: 【signature】 included).")
    sms_parts: int = Field(description="SMS parts billed (70 characters in one, 67 per part beyond).")
