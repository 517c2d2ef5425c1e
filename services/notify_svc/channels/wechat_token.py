"""The Official Account's access token, shared by every worker through ``notify.wechat_token``.

WeChat allows about 2,000 token fetches a day and each fetch starts replacing the previous token, so workers
must not fetch on their own: the one that finds the token missing or about to expire locks the row
(``SELECT … FOR UPDATE``), checks again (another worker may have refreshed it while it waited), fetches and
stores. The HTTP call happens while the row lock is held; that is the point (the others wait for the new
token instead of fetching their own) and is bounded by the provider timeout. Each process also keeps the
token in memory, so a send costs no database read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notify_svc.channels._transport import http_status_outcome, redact, transport_failure
from notify_svc.channels.base import Outcome, SendResult
from notify_svc.models.provider import WechatToken
from notify_svc.settings import NotifySettings
from shared.db.base import dialect_insert

log = structlog.get_logger("notify.wechat")

#: A token expiring sooner than this is refreshed (WeChat tokens live 7,200 s).
REFRESH_MARGIN = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RATE_LIMITED = {45009, 45011}


class WechatTokenError(Exception):
    """No token could be had; ``result`` is what the send that needed it reports (nothing was sent)."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(f"WeChat access token unavailable: {result.code}")
        self.result = result


class WechatTokenStore:
    """``get()`` a valid token (cached, else from the table, else fetched once for all workers);
    ``invalidate(token)`` after WeChat rejected it, so the next ``get()`` fetches a new one."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession],
                 http: httpx.AsyncClient | Callable[[], httpx.AsyncClient], settings: NotifySettings) -> None:
        if not (settings.wechat_appid and settings.wechat_secret):
            raise ValueError("the WeChat token store needs NOTIFY_WECHAT_APPID and NOTIFY_WECHAT_SECRET")
        self._sessionmaker = sessionmaker
        self._http = http
        self._url = f"{settings.wechat_api_base.rstrip('/')}/cgi-bin/token"
        self._appid = settings.wechat_appid
        self._secret = settings.wechat_secret
        self._cached: tuple[str, datetime] | None = None
        self._lock = asyncio.Lock()
        #: Tokens this process fetched from WeChat (for metrics and tests).
        self.fetches = 0

    def __repr__(self) -> str:
        return f"WechatTokenStore(appid={self._appid!r})"

    @staticmethod
    def _fresh(expires_at: datetime | None) -> bool:
        return expires_at is not None and expires_at - datetime.now(UTC) > REFRESH_MARGIN

    async def get(self) -> str:
        cached = self._cached
        if cached is not None and self._fresh(cached[1]):
            return cached[0]
        async with self._lock:  # one database round (and at most one fetch) per process at a time
            cached = self._cached
            if cached is not None and self._fresh(cached[1]):
                return cached[0]
            self._cached = await self._load_or_refresh()
            return self._cached[0]

    async def invalidate(self, token: str) -> None:
        """Forget ``token`` here and in the table, unless another worker has already replaced it."""
        if self._cached is not None and self._cached[0] == token:
            self._cached = None
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                sa.update(WechatToken)
                .where(WechatToken.appid == self._appid, WechatToken.access_token == token)
                .values(expires_at=_EPOCH)
            )

    async def _load_or_refresh(self) -> tuple[str, datetime]:
        columns = (WechatToken.access_token, WechatToken.expires_at)
        async with self._sessionmaker() as session, session.begin():
            row = (await session.execute(sa.select(*columns).where(WechatToken.appid == self._appid))).first()
            if row is not None and self._fresh(row.expires_at):
                return row.access_token, row.expires_at
            insert = dialect_insert(session)(WechatToken).values(appid=self._appid, access_token="", expires_at=_EPOCH)
            await session.execute(insert.on_conflict_do_nothing(index_elements=["appid"]))
            row = (await session.execute(
                sa.select(*columns).where(WechatToken.appid == self._appid).with_for_update())).one()
            if self._fresh(row.expires_at):  # refreshed by another worker while this one waited for the lock
                return row.access_token, row.expires_at
            token, expires_at = await self._fetch()
            await session.execute(sa.update(WechatToken).where(WechatToken.appid == self._appid)
                                  .values(access_token=token, expires_at=expires_at))
        return token, expires_at

    async def _fetch(self) -> tuple[str, datetime]:
        client = self._http if isinstance(self._http, httpx.AsyncClient) else self._http()
        params = {"grant_type": "client_credential", "appid": self._appid, "secret": self._secret.get_secret_value()}
        self.fetches += 1
        try:
            response = await client.get(self._url, params=params)
        except httpx.HTTPError as exc:
            failed = transport_failure(exc)  # a token fetch sends nothing: safe to retry whatever happened
            raise WechatTokenError(SendResult(Outcome.RETRYABLE, code=f"token:{failed.code}")) from None
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            outcome = http_status_outcome(response.status_code)
            outcome = Outcome.RETRYABLE if outcome is Outcome.UNKNOWN else outcome
            raise WechatTokenError(SendResult(outcome, code=f"token:HTTP {response.status_code}")) from None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not token:
            errcode = int(data.get("errcode", -1)) if isinstance(data, dict) else -1
            # A wrong appid/secret or a missing IP allow-list entry will not fix itself: the message may fall
            # back to another channel. Busy (-1) and quota errors pass.
            outcome = (Outcome.RETRYABLE if errcode == -1 else
                       Outcome.RATE_LIMITED if errcode in _RATE_LIMITED else Outcome.PERMANENT)
            log.warning("wechat_token_refused", errcode=errcode)
            raise WechatTokenError(SendResult(outcome, code=f"token:{errcode}",
                                              detail=redact(str(data.get("errmsg", "")), 200)))
        expires_in = int(data.get("expires_in") or 7200)
        log.info("wechat_token_fetched", expires_in=expires_in)
        return str(token), datetime.now(UTC) + timedelta(seconds=expires_in)
