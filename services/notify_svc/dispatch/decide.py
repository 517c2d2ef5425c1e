"""The policy check before every send: one pure function from a message and its batch context to a decision.

Order matters and is the order staff read in "why wasn't this customer contacted?": expiry, recipient, channel
(address, consent, template, WeChat authorisation, variables, opt-out text), local time (quiet hours,
marketing window, holiday peaks), then caps and the group-wide budget. The first channel in the message's
preference order that passes every channel check is used; the others are the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from notify_svc.channels.base import Outgoing, Provider
from notify_svc.dispatch.context import BatchContext
from notify_svc.policy.caps import Send
from notify_svc.policy.windows import next_allowed
from notify_svc.recipients import Recipient, masked
from notify_svc.templates.rendering import OPT_OUT_MARKERS, TemplateVariableError, render
from shared.calendar import zone

#: How long a message waits for a template to be approved (or a recipient to appear in the read model).
TEMPLATE_WAIT = timedelta(days=7)
TEMPLATE_RETRY = timedelta(hours=1)
RECIPIENT_WAIT = timedelta(hours=1)
RECIPIENT_RETRY = timedelta(minutes=1)
#: Reasons that mean "not yet" rather than "never".
WAITING_REASONS = frozenset({"template_not_approved"})


@dataclass
class Decision:
    message: Any
    action: str  # send | hold | suppress
    reason: str | None = None
    until: datetime | None = None
    detail: str | None = None
    channel: str | None = None
    provider: Provider | None = None
    outgoing: Outgoing | None = None
    recipient_masked: str | None = None
    recipient_key: str | None = None
    skipped: list[str] = field(default_factory=list)
    #: The ``OutId`` of the batch request this send goes in (None: a request of its own).
    batch_out_id: str | None = None
    #: The purpose the message was decided under, when its templates made it marketing (recorded on it).
    purpose: str | None = None


def decide(message: Any, ctx: BatchContext, providers: dict[str, Provider]) -> Decision:
    purpose = ctx.templates.purpose(message)
    decision = _decide(message, purpose, ctx, providers)
    if purpose != message.purpose:
        decision.purpose = purpose
    return decision


def _decide(message: Any, purpose: str, ctx: BatchContext, providers: dict[str, Provider]) -> Decision:
    now = ctx.now
    if message.expires_at is not None and now >= message.expires_at:
        return Decision(message, "suppress", "expired", detail="past its expiry before it could be sent")
    recipient = ctx.recipient(message)
    if recipient is None:
        if now - message.created_at < RECIPIENT_WAIT:
            return Decision(message, "hold", "recipient_unknown", now + RECIPIENT_RETRY)
        return Decision(message, "suppress", "recipient_unknown", detail="no such customer or active staff member")
    decision = _choose_channel(message, purpose, recipient, ctx, providers)
    if decision.action != "send":
        return decision
    policy = ctx.policies.for_store(message.tenant_id, message.store_id)
    timezone = ctx.timezone(message.store_id)
    allowed = next_allowed(now, timezone, policy, purpose, message.avoid_holidays)
    if allowed > now:
        quiet, marketing = policy.calendars(timezone)
        reason = "quiet_hours" if quiet.next_message_time(now) > now else \
            "marketing_window" if marketing.next_message_time(now) > now else "holiday_peak"
        if purpose == "marketing" and policy.marketing_quiet == "drop":
            return Decision(message, "suppress", reason, detail="marketing outside its window is dropped by policy")
        return _hold_or_expire(message, reason, allowed)
    key = decision.recipient_key
    if key is not None:
        quiet = policy.calendars(timezone)[0]
        capped = ctx.history.check(key, now, policy, quiet, purpose, message.template_key)
        if capped is not None:
            return _hold_or_expire(message, capped[0], quiet.next_message_time(capped[1]))
        ctx.history.add(key, Send(now, purpose, message.template_key))
    return decision


def _hold_or_expire(message: Any, reason: str, until: datetime) -> Decision:
    if message.expires_at is not None and until >= message.expires_at:
        return Decision(message, "suppress", reason, detail=f"held by {reason} past its expiry")
    return Decision(message, "hold", reason, until)


def _choose_channel(message: Any, purpose: str, recipient: Recipient, ctx: BatchContext,
                    providers: dict[str, Provider]) -> Decision:
    skipped: list[tuple[str, str, str | None]] = []
    failed = set(message.failed_channels or ())
    for channel in message.channels:
        if channel in failed:
            skipped.append((channel, "provider_failed", None))
            continue
        outcome = _try_channel(message, purpose, recipient, ctx, providers, channel)
        if isinstance(outcome, Decision):
            outcome.skipped = [f"{c}: {r}" for c, r, _ in skipped]
            return outcome
        skipped.append((channel, *outcome))
    notes = [f"{c}: {r}" + (f" ({d})" if d else "") for c, r, d in skipped]
    reason, detail = (skipped[0][1], skipped[0][2]) if skipped else ("no_channel", None)
    if any(r in WAITING_REASONS for _, r, _ in skipped) and message.created_at + TEMPLATE_WAIT > ctx.now:
        return Decision(message, "hold", "template_not_approved", ctx.now + TEMPLATE_RETRY, "; ".join(notes))
    return Decision(message, "suppress", reason, detail="; ".join(notes) if len(notes) > 1 else detail)


def _try_channel(message: Any, purpose: str, recipient: Recipient, ctx: BatchContext,
                 providers: dict[str, Provider], channel: str) -> Decision | tuple[str, str | None]:
    provider = providers.get(channel)
    if provider is None:
        return "channel_unavailable", None
    address = recipient.address(channel)
    if not address:
        return ("no_openid" if channel == "wechat" else "no_phone"), None
    if not recipient.consents_to(channel, purpose):
        return "consent", f"no {purpose} consent for {channel}"
    template = ctx.templates.find(message.tenant_id, message.store_id, message.template_key,
                                  "sms" if channel == "console" else channel)
    if template is None or template.status != "approved":
        return "template_not_approved", f"{message.template_key}/{channel}"
    code = template.provider_codes.get(provider.name) if provider.name not in ("console", "wecom") else template.key
    if not code:
        return "template_not_approved", f"no {provider.name} template code for {message.template_key}"
    kind = (template.provider_params or {}).get("wechat_kind", "template")
    if channel == "wechat" and kind == "template" and purpose == "marketing":
        # WeChat allows template messages for service notices only: marketing there is a subscription notice.
        return "wechat_template_not_for_marketing", f"{message.template_key} is marketing"
    if channel == "wechat" and kind == "subscribe":
        if ctx.quotas.get((address, code), 0) <= 0:
            return "no_subscription", "no one-time subscription authorisation left"
        ctx.quotas[(address, code)] -= 1  # a second notice in the same batch needs a second authorisation
    try:
        rendered = render(template, _variables(message, recipient, ctx), tz=zone(ctx.timezone(message.store_id)))
    except TemplateVariableError as exc:
        return "template_variables", f"{exc.field}: {exc.message}"
    marketing_sms = purpose == "marketing" and channel in ("sms", "console")
    if marketing_sms and not _has_opt_out(rendered.text, ctx, message):
        return "opt_out_text_missing", None
    outgoing = Outgoing(message_id=message.id, channel=channel, to=address, text=rendered.text,
                        template_code=code, sign_name=template.sign_name, params=rendered.params,
                        ordered_params=rendered.ordered_params, fields=rendered.fields,
                        url=message.variables.get("url") or message.variables.get("survey_link"), wechat_kind=kind)
    return Decision(message, "send", channel=channel, provider=provider, outgoing=outgoing,
                    recipient_masked=masked(channel, address), recipient_key=recipient.key)


def _has_opt_out(text: str, ctx: BatchContext, message: Any) -> bool:
    own = ctx.policies.for_store(message.tenant_id, message.store_id).opt_out_text
    return own in text or any(marker in text for marker in OPT_OUT_MARKERS)


def _variables(message: Any, recipient: Recipient, ctx: BatchContext) -> dict[str, Any]:
    store = ctx.stores.get(message.store_id)
    values: dict[str, Any] = {f"{recipient.kind}_name": recipient.name}
    if store is not None:
        values["store_name"] = store.name
    values.update(message.variables or {})
    return values

