"""Server-side request forgery guard for webhook targets.

A partner chooses the URL our workers call, so a URL must never reach into our own network: loopback, private
ranges, link-local (the cloud metadata service at 169.254.169.254), multicast, reserved, unspecified, the
carrier-grade NAT range 100.64.0.0/10, and the same addresses hidden inside IPv6 forms (IPv4-mapped, 6to4,
Teredo, NAT64). The host is resolved and every address it resolves to must pass. Checked when an endpoint is
saved and again before every delivery (DNS may have changed since).

Between that check and the connection DNS could still change (rebinding), so the deliverer's own HTTP client
(:func:`guarded_transport`) resolves and vets the host once more when it opens each connection and connects to
the vetted address itself. Redirects are never followed (a 3xx is a failed attempt). Development and test may
allow private targets (``NOTIFY_WEBHOOK_ALLOW_PRIVATE``; refused in production).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from shared.errors import InvalidField

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
FIELD = "body.url"
#: A name that does not resolve in this time is refused (the check runs inside API requests and deliveries).
RESOLVE_TIMEOUT_SECONDS = 5.0
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class UnsafeTarget(InvalidField):
    """A webhook URL that may not be called (422 naming ``body.url`` when it comes from a request)."""

    def __init__(self, message: str) -> None:
        super().__init__(FIELD, message)
        self.reason = message


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal(ip: IPAddress) -> str | None:
    """What kind of non-public address ``ip`` is (``"loopback"``, ``"private"``...), None for public unicast."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and (kind := refusal(inner)) is not None:
            return f"{kind} (IPv4 {inner} inside IPv6)"
    checks = ((ip.is_unspecified, "unspecified"), (ip.is_loopback, "loopback"),
              (ip.is_link_local, "link-local (cloud metadata lives there)"), (ip.is_multicast, "multicast"),
              (ip.version == 4 and ip in _CGNAT, "carrier-grade NAT"), (ip.is_reserved, "reserved"),
              (ip.is_private, "private"), (not ip.is_global, "non-public"))
    return next((kind for hit, kind in checks if hit), None)


def _parse(url: str, allow_private: bool) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
        parsed.host  # noqa: B018 - decoded lazily: an invalid IDNA host (xn--zz) raises here
    except (httpx.InvalidURL, TypeError, ValueError):  # idna.IDNAError is a UnicodeError, a ValueError
        raise UnsafeTarget("not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeTarget("must be an http(s) URL")
    if parsed.scheme != "https" and not allow_private:
        raise UnsafeTarget("must use https")
    if parsed.userinfo:
        raise UnsafeTarget("must not carry a user name or password; authenticate with the signature")
    if not parsed.host:
        raise UnsafeTarget("has no host")
    return parsed


async def resolve(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses ``host`` resolves to, each vetted (all must pass unless ``allow_private``)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM),
                                       RESOLVE_TIMEOUT_SECONDS)
    except (OSError, TimeoutError, UnicodeError):
        raise UnsafeTarget(f"the host {host} does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    if not addresses:
        raise UnsafeTarget(f"the host {host} does not resolve")
    if not allow_private:
        for address in addresses:
            kind = refusal(ipaddress.ip_address(address))
            if kind is not None:
                what = address if address == host else f"{host} resolves to {address}, which"
                raise UnsafeTarget(f"{what} is a {kind} address; webhooks go to public addresses only")
    return addresses


async def check_target(url: str, allow_private: bool) -> None:
    """Raise :class:`UnsafeTarget` (a 422 naming ``body.url``) unless ``url`` may be called: http(s) only,
    https unless private targets are allowed, no user info, and a host resolving to public addresses only."""
    parsed = _parse(url, allow_private)
    await resolve(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80), allow_private)


class _VettingBackend(httpcore.AsyncNetworkBackend):
    """Opens every connection itself: resolves the host, vets each address, connects to a vetted one (so a
    DNS answer changed after :func:`check_target` cannot redirect the request). TLS still verifies the
    certificate against the URL's host name."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        error: Exception | None = None
        for address in await resolve(host, port, self.allow_private):
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:  # nothing was sent: try the next one
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise UnsafeTarget("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_transport(allow_private: bool, limits: httpx.Limits | None = None) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go only to vetted addresses; no proxy from the environment (a proxy
    would connect on our behalf, unvetted)."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    transport = httpx.AsyncHTTPTransport(trust_env=False, limits=limits)
    # httpx does not take a network backend, its connection pool does: rebuild the pool with ours.
    transport._pool = httpcore.AsyncConnectionPool(  # noqa: SLF001
        ssl_context=httpx.create_ssl_context(trust_env=False), max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        network_backend=_VettingBackend(allow_private))
    return transport
