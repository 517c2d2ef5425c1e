"""An httpx transport on aiohttp's connection pool, for the provider calls on the send path.

httpcore's pool costs about 1.5 ms of CPU per request with 64 calls in flight (encode/httpx#3215: it rescans
every connection and waiting request on each request); aiohttp's does the same job for a fraction of that, and a
worker's send rate is bounded by that CPU. The adapters keep httpx's API (requests, responses, exceptions).

Exceptions map so that ``_transport.transport_failure`` can tell "never reached the provider" (retryable) from
"may have been sent" (unknown): only failures before the request was written become connect errors; a timeout
or a dropped connection afterwards is a read error. aiohttp never retries a POST by itself, and decompression
and redirects are left to httpx (off here), so what the adapter sees is what the provider sent.
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_connections: int, keepalive_seconds: float) -> None:
        self._limit = max_connections
        self._keepalive = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop (adapters are built before the loop starts).
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=self._keepalive,
                                             enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False,
                                                  skip_auto_headers=("User-Agent",))
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        limits = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=limits.get("connect"),
                                        sock_read=limits.get("read"), connect=limits.get("pool"))
        body = await request.aread()
        try:
            # Raw header bytes decoded once: httpx's ``Headers`` views re-derive their encoding on every access.
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
            async with self._client().request(request.method, str(request.url), headers=headers,
                                              data=body or None, allow_redirects=False, timeout=timeout,
                                              compress=None) as resp:
                content = await resp.read()
                return httpx.Response(resp.status, headers=resp.raw_headers, content=content, request=request)
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timeout", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc) or "cannot connect", request=request) from exc
        except (aiohttp.SocketTimeoutError, asyncio.TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timeout", request=request) from exc
        except aiohttp.ClientError as exc:  # disconnected, reset, bad payload: after the request went out
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
