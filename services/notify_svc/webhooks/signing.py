"""Standard Webhooks signatures (https://www.standardwebhooks.com, symmetric scheme ``v1``).

Every delivery carries ``webhook-id`` (stable across retries and replays: the partner's idempotency key),
``webhook-timestamp`` (integer Unix seconds of this attempt) and ``webhook-signature``: ``v1,`` followed by the
base64 HMAC-SHA256, keyed with the endpoint's secret, of ``{webhook-id}.{webhook-timestamp}.{raw body}``.
The header may list several space-separated signatures (the spec's zero-downtime key rotation); a receiver
accepts the request when any ``v1`` signature matches.

Secrets read ``whsec_<base64 of 32 random bytes>``. This module uses the standard library only, so an
integration partner can copy it as is to check our requests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
#: The spec asks for 24 to 64 random bytes.
SECRET_BYTES = 32
#: How far a request's timestamp may be from the receiver's clock (the spec's replay window).
TOLERANCE_SECONDS = 300
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = "webhook-id", "webhook-timestamp", "webhook-signature"


class WebhookVerificationError(ValueError):
    """The request is not ours, was altered, or is too old (or too new) to accept."""


def new_secret() -> str:
    """A fresh endpoint secret, ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) of one request."""
    if not msg_id or "." in msg_id:
        raise ValueError("a webhook id is non-empty and has no '.' (it delimits the signed content)")
    mac = hmac.new(_key(secret), f"{msg_id}.{int(timestamp)}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes,
                   previous: str | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers of one request; during a rotation's overlap signed with the ``previous``
    secret as well (a receiver still holding it accepts the request, one holding the new secret too)."""
    signatures = [sign(s, msg_id, timestamp, body) for s in (secret, previous) if s]
    return {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(int(timestamp)), SIGNATURE_HEADER: " ".join(signatures)}


def verify(secret: str, headers: Mapping[str, str], body: bytes | str, tolerance: int = TOLERANCE_SECONDS,
           now: float | None = None) -> None:
    """Check one received request; raises :class:`WebhookVerificationError` unless it is authentic and fresh.

    ``body`` must be the raw bytes received (a re-serialised JSON body will not match). Remember the
    ``webhook-id`` of requests you accepted: a retry or a replay repeats it.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lowered.get(h) for h in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("webhook-timestamp is too new")
    try:
        expected = base64.b64decode(sign(secret, msg_id, timestamp,
                                         body.encode() if isinstance(body, str) else body)[3:])
    except ValueError as exc:
        raise WebhookVerificationError(str(exc)) from None
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(given, expected):
            return
    raise WebhookVerificationError("no matching v1 signature")
