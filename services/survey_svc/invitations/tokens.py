"""Answer-link tokens: 192 bits derived from the invitation id with the service's key (so a reminder can repeat
the link without the token ever being stored); the database keeps only its SHA-256 to find the invitation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid

TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")


def token_for(secret: bytes, invitation_id: uuid.UUID) -> str:
    digest = hmac.new(secret, b"survey-link:" + invitation_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    return bool(TOKEN.fullmatch(token))


def device_hash(secret: bytes, ip: str | None, user_agent: str | None) -> str:
    """The answering device, salted so the stored value says nothing about the address."""
    return hmac.new(secret, f"{ip or '-'}|{user_agent or '-'}".encode(), hashlib.sha256).hexdigest()
