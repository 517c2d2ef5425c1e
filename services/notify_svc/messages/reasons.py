"""What each status reason means, in the words staff read when they ask "why wasn't this customer contacted?"."""

from __future__ import annotations

REASONS: dict[str, str] = {
    "expired": "The message was no longer relevant when it could have been sent (past its expiry).",
    "recipient_unknown": "The customer or staff member is not known to the notification service (yet).",
    "recipient_inactive": "The staff member is no longer active.",
    "channel_unavailable": "No provider is configured for the requested channel.",
    "no_phone": "The customer has no mobile number on file.",
    "no_openid": "The customer has not linked WeChat (no openid).",
    "consent": "The customer has not consented to, or has withdrawn consent for, this channel and purpose.",
    "template_not_approved": "The message template is not approved or has no provider template code yet.",
    "template_variables": "The message data did not fit the template (a variable is missing or invalid).",
    "opt_out_text_missing": "A marketing SMS must carry opt-out text and this one did not.",
    "no_subscription": "The customer has no WeChat one-time subscription left for this template.",
    "wechat_template_not_for_marketing": "WeChat template messages are for service notices only; marketing goes "
                                         "there as a subscription notice, or by the next channel.",
    "quiet_hours": "Held until the end of quiet hours in the store's local time.",
    "marketing_window": "Marketing is only sent inside the marketing window (store-local time).",
    "holiday_peak": "Marketing is held over statutory holidays.",
    "daily_cap": "The recipient already had the maximum number of messages today.",
    "template_cap": "The recipient already had this template the maximum number of times in 24 hours.",
    "contact_budget": "The dealer group's weekly contact budget for this person and purpose is used up "
                      "(counted across all stores).",
    "rate_limited": "Held briefly: the provider's request rate is shared by all workers.",
    "provider_retry": "The provider had a temporary failure; retrying with back-off.",
    "provider_rate_limited": "The provider refused for flow control; retrying later.",
    "fallback": "The preferred channel failed for good; trying the next channel.",
    "awaiting_receipt": "The provider's answer was lost (e.g. a timeout); waiting for its receipt before deciding, "
                        "never re-sending blindly.",
    "provider_rejected": "Every channel's provider rejected the message permanently.",
    "dead_lettered": "The provider kept failing; retries were exhausted.",
    "unknown_outcome": "The provider never confirmed or denied the send; check before replaying.",
    "receipt_failed": "The provider's receipt reported the message as not delivered.",
    "replayed": "Sent again by staff.",
}

#: Outcomes a replay can fix (a template approved since, a provider back up); never consent, expiry or caps.
REPLAYABLE = frozenset({"dead_lettered", "provider_rejected", "unknown_outcome", "receipt_failed",
                        "template_not_approved", "template_variables", "recipient_unknown", "channel_unavailable",
                        "no_phone", "no_openid", "no_subscription", "opt_out_text_missing",
                        "wechat_template_not_for_marketing"})


def explain(reason: str | None) -> str | None:
    if reason is None:
        return None
    if reason.startswith(("sent", "retryable", "rate_limited", "permanent", "unknown")) and reason not in REASONS:
        return f"Provider answer: {reason}."
    return REASONS.get(reason, reason)
