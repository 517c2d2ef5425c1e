"""JWT with Ed25519 keys: customer_svc signs, every service verifies with the public key alone."""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.auth.principal import Principal
from shared.auth.roles import Role
from shared.db.base import utcnow
from shared.errors import Unauthorized

ALGORITHM = "EdDSA"


def generate_keypair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def load_or_create_dev_keys(var_dir: Path) -> tuple[str, str]:
    """Embedded mode only: a key pair kept under ``var/keys`` so tokens survive restarts."""
    keys = var_dir / "keys"
    priv, pub = keys / "jwt_private.pem", keys / "jwt_public.pem"
    if not priv.exists():
        keys.mkdir(parents=True, exist_ok=True)
        private, public = generate_keypair()
        priv.write_text(private)
        priv.chmod(0o600)
        pub.write_text(public)
    return priv.read_text(), pub.read_text()


def read_key(value: str) -> str:
    """A PEM given inline or as a path to a file."""
    return value if "-----BEGIN" in value else Path(value).read_text()


class TokenIssuer:
    def __init__(self, private_key_pem: str, issuer: str, audience: str, ttl: timedelta = timedelta(minutes=15)) -> None:
        self.key = private_key_pem
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl

    def issue(self, *, subject: uuid.UUID, tenant_id: uuid.UUID, store_ids: list[uuid.UUID], roles: list[str],
              scopes: list[str] | None = None, kind: str = "staff", ttl: timedelta | None = None) -> tuple[str, int]:
        now = utcnow()
        lifetime = ttl or self.ttl
        claims: dict[str, Any] = {
            "sub": str(subject), "tenant": str(tenant_id), "stores": [str(s) for s in store_ids],
            "roles": list(roles), "scope": " ".join(scopes or []), "kind": kind,
            "iss": self.issuer, "aud": self.audience, "iat": int(now.timestamp()),
            "exp": int((now + lifetime).timestamp()), "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.key, algorithm=ALGORITHM), int(lifetime.total_seconds())


class TokenVerifier:
    """Verifies access tokens. A token that verified once is remembered (bounded, first in first out) with its
    ``exp``, so repeat requests with it skip the signature check and claim parsing (~0.1 ms of CPU each); the
    expiry is still checked on every use, exactly as PyJWT does (expired once ``exp <= now``)."""

    def __init__(self, public_key_pem: str, issuer: str, audience: str, cache_size: int = 4096) -> None:
        self.issuer = issuer
        self.audience = audience
        self._public_key = serialization.load_pem_public_key(public_key_pem.encode())
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._cache_size = cache_size

    def verify(self, token: str) -> Principal:
        hit = self._cache.get(token)
        if hit is not None:
            if hit[0] > time.time():
                return hit[1]
            self._cache.pop(token, None)
            raise Unauthorized("The access token has expired.")
        try:
            # Not ``iat``: the issuing pod's clock may run a little ahead of this one's, and a fresh token would
            # be refused for those seconds; ``exp`` is what limits a token's life.
            claims = jwt.decode(token, self._public_key, algorithms=[ALGORITHM], audience=self.audience,
                                issuer=self.issuer, options={"require": ["exp", "sub", "iss", "aud"],
                                                             "verify_iat": False})
            principal = Principal(
                subject=uuid.UUID(claims["sub"]),
                tenant_id=uuid.UUID(claims["tenant"]),
                store_ids=frozenset(uuid.UUID(s) for s in claims.get("stores", [])),
                roles=frozenset(Role(r) for r in claims.get("roles", []) if r in Role._value2member_map_),
                scopes=frozenset(claims.get("scope", "").split()),
                kind=claims.get("kind", "staff"),
            )
            exp = int(claims["exp"])
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The access token has expired.") from exc
        except (jwt.InvalidTokenError, KeyError, ValueError) as exc:
            raise Unauthorized("The access token is not valid.") from exc
        if len(self._cache) >= self._cache_size:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del self._cache[next(iter(self._cache))]
        self._cache[token] = (exp, principal)
        return principal
