"""Provider access tokens (the WeChat Official Account's and the WeCom app's), shared by every worker through
``notify.wechat_token``.

WeChat allows about 2,000 token fetches a day and each fetch starts replacing the previous token; WeCom's
``gettoken`` is rate limited too and asks every caller to cache the token for its lifetime (7,200 s, possibly
ended early). So workers must not fetch on their own: the one that finds the token missing or about to expire
locks the row (``SELECT … FOR UPDATE``), checks again (another worker may have refreshed it while it waited),
fetches and stores. The HTTP call happens while the row lock is held; that is the point (the others wait for the
new token instead of fetching their own) and is bounded by the provider timeout. Each process also keeps the
token in memory, so a send costs no database read.

One table serves both: a WeChat row is keyed by its appid (``wx…``), a WeCom row by ``wecom:<corpid>:<agentid>``
(each WeCom app has its own secret, hence its own token), so the two can never meet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import sqlalchemy as sa
import structlog
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notify_svc.channels._transport import http_status_outcome, redact, transport_failure
from notify_svc.channels.base import Outcome, SendResult
from notify_svc.models.provider import WechatToken
from notify_svc.settings import NotifySettings
from shared.db.base import dialect_insert

log = structlog.get_logger("notify.tokens")

#: A token expiring sooner than this is refreshed (WeChat and WeCom tokens live 7,200 s).
REFRESH_MARGIN = timedelta(minutes=5)
#: The length of ``wechat_token.appid``, which holds the row key.
KEY_LENGTH = 40
#: The codes both APIs answer for a token that is invalid (40001 / 40014), not the latest, or expired (42001).
TOKEN_REJECTED = frozenset({40001, 40014, 42001})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: What a send does with a token: the provider's answer and its errcode (None when there was no errcode).
TokenCall = Callable[[str], Awaitable[tuple[SendResult, int | None]]]


class AccessTokenError(Exception):
    """No token could be had; ``result`` is what the send that needed it reports (nothing was sent)."""

    def __init__(self, provider: str, result: SendResult) -> None:
        super().__init__(f"{provider} access token unavailable: {result.code}")
        self.result = result


class AccessTokenStore:
    """``get()`` a valid token (cached, else from the table, else fetched once for all workers);
    ``invalidate(token)`` after the provider rejected it, so the next ``get()`` fetches a new one; ``call(send)``
    does both around one request.

    ``params`` are the token request's plain query parameters, ``secret`` the one that carries the credential
    (it is read only to build that request); ``rate_limited`` the errcodes that mean "fetching too often"."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession],
                 http: httpx.AsyncClient | Callable[[], httpx.AsyncClient], *, provider: str, key: str, url: str,
                 params: dict[str, str], secret: tuple[str, SecretStr], rate_limited: frozenset[int]) -> None:
        if not key or len(key) > KEY_LENGTH:
            raise ValueError(f"a {provider} token key is 1 to {KEY_LENGTH} characters, not {len(key)}")
        self.provider = provider
        self._sessionmaker = sessionmaker
        self._http = http
        self._key = key
        self._url = url
        self._params = params
        self._secret = secret
        self._rate_limited = rate_limited
        self._cached: tuple[str, datetime] | None = None
        self._lock = asyncio.Lock()
        #: Tokens this process fetched from the provider (for metrics and tests).
        self.fetches = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self._key!r})"

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
                .where(WechatToken.appid == self._key, WechatToken.access_token == token)
                .values(expires_at=_EPOCH)
            )

    async def call(self, send: TokenCall) -> SendResult:
        """``send(token)``; when the provider rejects the token, once more with a fresh one. Nothing is sent while
        no token can be had, so every failure to get one is retryable (or what the token endpoint said)."""
        errcode: int | None = None
        for attempt in (1, 2):
            try:
                token = await self.get()
            except AccessTokenError as exc:
                return exc.result
            except Exception as exc:  # the token table is unreachable: nothing was sent
                log.warning(f"{self.provider}_token_store_failed", error=type(exc).__name__)
                return SendResult(Outcome.RETRYABLE, code="token_store", detail=type(exc).__name__)
            result, errcode = await send(token)
            if errcode not in TOKEN_REJECTED:
                return result
            try:
                await self.invalidate(token)
            except Exception as exc:  # rejected, so nothing was sent
                log.warning(f"{self.provider}_token_store_failed", error=type(exc).__name__)
                return SendResult(Outcome.RETRYABLE, code=str(errcode), detail="access token rejected")
            if attempt == 1:
                log.info(f"{self.provider}_token_rejected", errcode=errcode)
        return SendResult(Outcome.RETRYABLE, code=str(errcode), detail="access token rejected twice")

    async def _load_or_refresh(self) -> tuple[str, datetime]:
        columns = (WechatToken.access_token, WechatToken.expires_at)
        async with self._sessionmaker() as session, session.begin():
            row = (await session.execute(sa.select(*columns).where(WechatToken.appid == self._key))).first()
            if row is not None and self._fresh(row.expires_at):
                return row.access_token, row.expires_at
            insert = dialect_insert(session)(WechatToken).values(appid=self._key, access_token="", expires_at=_EPOCH)
            await session.execute(insert.on_conflict_do_nothing(index_elements=["appid"]))
            row = (await session.execute(
                sa.select(*columns).where(WechatToken.appid == self._key).with_for_update())).one()
            if self._fresh(row.expires_at):  # refreshed by another worker while this one waited for the lock
                return row.access_token, row.expires_at
            token, expires_at = await self._fetch()
            await session.execute(sa.update(WechatToken).where(WechatToken.appid == self._key)
                                  .values(access_token=token, expires_at=expires_at))
        return token, expires_at

    async def _fetch(self) -> tuple[str, datetime]:
        client = self._http if isinstance(self._http, httpx.AsyncClient) else self._http()
        name, secret = self._secret
        params = {**self._params, name: secret.get_secret_value()}
        self.fetches += 1
        try:
            response = await client.get(self._url, params=params)
        except httpx.HTTPError as exc:
            failed = transport_failure(exc)  # a token fetch sends nothing: safe to retry whatever happened
            raise AccessTokenError(self.provider, SendResult(Outcome.RETRYABLE, code=f"token:{failed.code}")) from None
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            outcome = http_status_outcome(response.status_code)
            outcome = Outcome.RETRYABLE if outcome is Outcome.UNKNOWN else outcome
            raise AccessTokenError(self.provider, SendResult(outcome, code=f"token:HTTP {response.status_code}")) \
                from None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not token:
            errcode = int(data.get("errcode", -1)) if isinstance(data, dict) else -1
            # A wrong id/secret or a missing IP allow-list entry will not fix itself: the message may fall back to
            # another channel. Busy (-1) and quota errors pass.
            outcome = (Outcome.RETRYABLE if errcode == -1 else
                       Outcome.RATE_LIMITED if errcode in self._rate_limited else Outcome.PERMANENT)
            log.warning(f"{self.provider}_token_refused", errcode=errcode)
            errmsg = data.get("errmsg", "") if isinstance(data, dict) else ""
            raise AccessTokenError(self.provider, SendResult(outcome, code=f"token:{errcode}",
                                                             detail=redact(str(errmsg), 200)))
        expires_in = int(data.get("expires_in") or 7200)
        log.info(f"{self.provider}_token_fetched", expires_in=expires_in)
        return str(token), datetime.now(UTC) + timedelta(seconds=expires_in)


class WechatTokenStore(AccessTokenStore):
    """The Official Account's token (``cgi-bin/token`` with the appid and AppSecret)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession],
                 http: httpx.AsyncClient | Callable[[], httpx.AsyncClient], settings: NotifySettings) -> None:
        if not (settings.wechat_appid and settings.wechat_secret):
            raise ValueError("the WeChat token store needs NOTIFY_WECHAT_APPID and NOTIFY_WECHAT_SECRET")
        super().__init__(sessionmaker, http, provider="wechat", key=settings.wechat_appid,
                         url=f"{settings.wechat_api_base.rstrip('/')}/cgi-bin/token",
                         params={"grant_type": "client_credential", "appid": settings.wechat_appid},
                         secret=("secret", settings.wechat_secret), rate_limited=frozenset({45009, 45011}))


class WecomTokenStore(AccessTokenStore):
    """A WeCom self-built app's token (``cgi-bin/gettoken`` with the corp id and the app's secret)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession],
                 http: httpx.AsyncClient | Callable[[], httpx.AsyncClient], settings: NotifySettings) -> None:
        if not (settings.wecom_corp_id and settings.wecom_secret and settings.wecom_agent_id is not None):
            raise ValueError("the WeCom token store needs NOTIFY_WECOM_CORP_ID, NOTIFY_WECOM_SECRET and "
                             "NOTIFY_WECOM_AGENT_ID")
        super().__init__(sessionmaker, http, provider="wecom",
                         key=f"wecom:{settings.wecom_corp_id}:{settings.wecom_agent_id}",
                         url=f"{settings.wecom_api_base.rstrip('/')}/cgi-bin/gettoken",
                         params={"corpid": settings.wecom_corp_id}, secret=("corpsecret", settings.wecom_secret),
                         rate_limited=frozenset({45009, 45033}))
