"""Request and response bodies of the webhook API. Secrets appear in exactly two responses (creation and
rotation); payloads only in a single delivery's detail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from notify_svc.webhooks.fanout import PARTNER_EVENT_TYPES

EventType = Literal[PARTNER_EVENT_TYPES]  # type: ignore[valid-type]
DeliveryStatus = Literal["pending", "delivered", "failed"]
URL_FIELD = Field(min_length=8, max_length=2000, examples=["https://oem.example.com/aftercare/webhooks"],
                  description="Where deliveries are POSTed. https only (plain http only where the deployment allows "
                              "private targets); no user name or password; the host must resolve to public "
                              "addresses. Redirects are not followed.")


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    partner: str = Field(min_length=1, max_length=100, examples=["OEM DMS"],
                         description="Who receives these webhooks (the integration partner's name).")
    url: str = URL_FIELD
    event_types: list[EventType] = Field(min_length=1, max_length=50,
                                         examples=[["customer.vehicle.delivered.v1", "customer.visit.completed.v1"]],
                                         description="Event types to deliver (the partner event catalog).")
    store_ids: list[uuid.UUID] = Field(default_factory=list, max_length=200,
                                       description="Only events of these stores of your dealer group; empty: all. "
                                                   "With an integration key: stores of the key only; empty: all of "
                                                   "the key's (stored as that list).")

    @field_validator("event_types", "store_ids")
    @classmethod
    def _dedupe(cls, values: list[Any]) -> list[Any]:
        return _unique(values)


class EndpointUpdate(BaseModel):
    """Fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")
    partner: str | None = Field(default=None, min_length=1, max_length=100, description="The partner's name.")
    url: str | None = Field(default=None, min_length=8, max_length=2000,
                            description="A new target (checked like at creation).")
    event_types: list[EventType] | None = Field(default=None, min_length=1, max_length=50,
                                                description="Replaces the subscribed event types.")
    store_ids: list[uuid.UUID] | None = Field(default=None, max_length=200,
                                              description="Replaces the store filter; empty: all stores (all of "
                                                          "the key's, with an integration key). A key's endpoint "
                                                          "can be narrowed by staff, never widened.")
    active: bool | None = Field(default=None, description="false pauses the endpoint: nothing new is queued and "
                                                          "its pending deliveries fail as `endpoint disabled`.")

    @field_validator("event_types", "store_ids")
    @classmethod
    def _dedupe(cls, values: list[Any] | None) -> list[Any] | None:
        return None if values is None else _unique(values)


class EndpointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID = Field(description="The endpoint's id.")
    api_key_id: uuid.UUID | None = Field(description="The integration key that created and owns the endpoint "
                                                     "(only it, admins and CS directors see it); null when staff "
                                                     "set it up.")
    partner: str = Field(description="The partner's name.")
    url: str = Field(description="Where deliveries go.")
    event_types: list[str] = Field(description="Subscribed event types.")
    store_ids: list[uuid.UUID] = Field(description="Stores whose events are delivered; empty: all stores (never "
                                                   "empty for a key's endpoint).")
    active: bool = Field(description="false: paused by an admin, or disabled after the partner answered 410 Gone.")
    created_at: datetime = Field(description="When it was created.")
    updated_at: datetime = Field(description="When it last changed.")


class EndpointCreated(EndpointRead):
    secret: str = Field(examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                        description="The signing secret (Standard Webhooks `whsec_…`). Shown only in this response: "
                                    "store it now. Each request's `webhook-signature` is `v1,` + base64 "
                                    "HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` keyed with it.")


class SecretRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_hours: int = Field(default=24, ge=0, le=168, examples=[24],
                               description="How long requests are signed with the old secret as well (two "
                                           "signatures), so you can deploy the new one without rejecting "
                                           "deliveries. 0 ends the old secret at once (it leaked).")


class SecretRotated(BaseModel):
    id: uuid.UUID = Field(description="The endpoint's id.")
    secret: str = Field(examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                        description="The new signing secret, shown only in this response. Every request from now "
                                    "on, retries included, is signed with it, and with the previous one until "
                                    "`previous_secret_until`.")
    previous_secret_until: datetime | None = Field(
        description="Until when requests also carry a signature with the previous secret; null: not at all.")


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID = Field(description="The delivery's id, sent as `webhook-id` on every attempt and replay (the "
                                      "partner's idempotency key).")
    endpoint_id: uuid.UUID = Field(description="The endpoint it goes to.")
    event_id: uuid.UUID = Field(description="The CloudEvent's id (the body's `id`).")
    event_type: str = Field(description="The CloudEvent's type, e.g. `customer.vehicle.delivered.v1`, or "
                                        "`webhook.ping`.")
    status: DeliveryStatus = Field(description="`pending` (due at `next_attempt_at`), `delivered` or `failed` "
                                               "(dead after the retry cap, refused, or the endpoint was disabled).")
    attempts: int = Field(description="Attempts made since it was queued or last replayed.")
    next_attempt_at: datetime | None = Field(description="When the next attempt is due (pending only).")
    last_status_code: int | None = Field(description="The HTTP status of the last attempt; null when none came "
                                                     "back (timeout, connection error, refused target).")
    last_error: str | None = Field(description="Why the last attempt failed.")
    delivered_at: datetime | None = Field(description="When the partner acknowledged it (2xx).")
    created_at: datetime = Field(description="When it was queued.")
    updated_at: datetime = Field(description="When it last changed.")


class DeliveryDetail(DeliveryRead):
    payload: dict[str, Any] = Field(description="The request body: the CloudEvent as JSON (`id`, `type`, `source`, "
                                                "`time`, `subject`, `tenantid`, `storeid`, `data` …).")
