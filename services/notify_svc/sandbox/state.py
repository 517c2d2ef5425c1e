"""What the sandbox knows: its key pairs, the messages it accepted, per-number (and per WeCom member) counters,
issued WeChat and WeCom tokens, and the faults queued for the next requests. Plain synchronous methods (the app
runs on one event loop), so in-process tests can read and steer it directly."""

from __future__ import annotations

import itertools
import secrets
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

BEIJING = ZoneInfo("Asia/Shanghai")
PROVIDERS = ("aliyun", "tencent", "wechat", "wecom")
#: Network faults act before the signature check, business faults after it (as at the real provider).
NETWORK_FAULTS = frozenset({"timeout", "http_500", "outage"})
BUSINESS_FAULTS = frozenset({"system_error", "rate_limit", "invalid_number", "accept_then_timeout", "invalid_token"})
FAULT_MODES = NETWORK_FAULTS | BUSINESS_FAULTS
DAY = 86400.0
MINUTE, HOUR = 60.0, 3600.0


@dataclass(slots=True)
class SandboxMessage:
    """One accepted message, as the provider received it (``to`` in the provider's own phone format)."""

    provider: str
    to: str
    sign: str | None
    template: str
    params: Any  # Aliyun: dict by name; Tencent: list by position; WeChat: {field: value}; WeCom: agentid, content
    our_id: str | None  # OutId / SessionContext / client_msg_id
    provider_id: str  # BizId / SerialNo / msgid
    at: datetime
    kind: str = "sms"  # sms | template | subscribe | text (WeCom)
    url: str | None = None
    status: str = "accepted"  # accepted | delivered | failed
    reported_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        data["reported_at"] = self.reported_at.isoformat() if self.reported_at else None
        return data


@dataclass(slots=True)
class Fault:
    mode: str
    remaining: int
    delay: float


@dataclass(eq=False)
class SandboxState:
    """Key pairs the sandbox accepts (id -> secret), optional allow-lists, the per-number limits, and timings.

    ``fault_delay`` is how long "timeout" and "accept_then_timeout" hold the answer: set it above the client's
    timeout. ``tencent_app_ids`` / ``aliyun_signs`` / ``aliyun_templates``: None accepts any value.
    """

    aliyun_keys: dict[str, str] = field(default_factory=dict, repr=False)
    tencent_keys: dict[str, str] = field(default_factory=dict, repr=False)
    wechat_apps: dict[str, str] = field(default_factory=dict, repr=False)
    #: WeCom corp id -> the app secret (one self-built app per corp here; any agent id is accepted).
    wecom_apps: dict[str, str] = field(default_factory=dict, repr=False)
    tencent_app_ids: set[str] | None = None
    aliyun_signs: set[str] | None = None
    aliyun_templates: set[str] | None = None
    #: Aliyun: one sign + template to one number, at most this many per rolling 24 h.
    aliyun_daily_limit: int = 50
    #: Tencent: messages to one number per calendar day (Beijing), and the same content to one number once per …
    tencent_daily_limit: int = 10
    tencent_same_content_seconds: float = 30.0
    wechat_token_ttl: int = 7200
    #: Openids that do not follow the account (template sends: 43004) or refused notices (subscribe: 43101).
    wechat_not_following: set[str] = field(default_factory=set)
    wechat_refused: set[str] = field(default_factory=set)
    wecom_token_ttl: int = 7200
    #: WeCom userids the corp does not have (or outside the app's visible range): 81013.
    wecom_unknown_users: set[str] = field(default_factory=set)
    #: WeCom app messages to one member per minute and per hour (the real WeCom drops the excess silently; the
    #: sandbox answers 45033 so a test can see the limit).
    wecom_member_minute_limit: int = 30
    wecom_member_hour_limit: int = 1000
    fault_delay: float = 10.0
    #: Aliyun refuses a signature nonce seen in the last 15 minutes.
    nonce_window: float = 900.0

    def __post_init__(self) -> None:
        # Provider ids never repeat, not even across resets or sandbox restarts (a receipt must not match an
        # older message): microseconds since the epoch, then counting.
        self._ids = itertools.count(time.time_ns() // 1000)
        self.reset()

    def reset(self) -> None:
        """Forget messages, counters, tokens and faults (key pairs and settings stay)."""
        self.messages: list[SandboxMessage] = []
        self._by_recipient: dict[tuple[str, str], list[SandboxMessage]] = defaultdict(list)
        self._faults: dict[str, deque[Fault]] = {p: deque() for p in PROVIDERS}
        self.requests: dict[str, int] = {p: 0 for p in PROVIDERS}
        self.token_requests = 0
        #: Aliyun ``SendBatchSms`` requests accepted.
        self.batches = 0
        self._aliyun_sends: dict[tuple[str, str, str], deque[float]] = defaultdict(deque)
        self._tencent_daily: dict[tuple[str, str], int] = defaultdict(int)
        self._tencent_content: dict[tuple[str, str, tuple[str, ...]], float] = {}
        self._nonces: dict[str, float] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (appid, expires at, epoch seconds)
        self.wecom_token_requests = 0
        self._wecom_tokens: dict[str, tuple[str, float]] = {}  # token -> (corp id, expires at)
        self._wecom_sends: dict[str, deque[float]] = defaultdict(deque)  # member -> send times (last hour)
        self._wecom_recent: dict[bytes, tuple[float, str]] = {}  # request body -> (when, msgid): duplicate check
        #: WeCom requests its duplicate check answered without sending again.
        self.wecom_duplicates = 0

    # --- faults -------------------------------------------------------------------------------------------

    def add_fault(self, provider: str, mode: str, count: int = 1, delay: float | None = None) -> None:
        """The next ``count`` message sends to ``provider`` fail with ``mode`` (token fetches and status
        queries are not affected). Faults queue up in the order added."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}")
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}")
        if count < 1:
            raise ValueError("count must be at least 1")
        self._faults[provider].append(Fault(mode, count, self.fault_delay if delay is None else delay))

    def take_fault(self, provider: str, business: bool | None = None) -> Fault | None:
        """The next fault, used up; ``business``: only if it is one of that kind (network faults act before the
        provider authenticates the request, business faults after: a request refused for its token uses none)."""
        queue = self._faults[provider]
        if not queue or (business is not None and (queue[0].mode in BUSINESS_FAULTS) != business):
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    def pending_faults(self) -> dict[str, list[dict[str, Any]]]:
        return {p: [{"mode": f.mode, "remaining": f.remaining, "delay": f.delay} for f in q]
                for p, q in self._faults.items()}

    # --- messages -----------------------------------------------------------------------------------------

    def next_id(self) -> int:
        """A fresh number for provider ids (BizId, SerialNo, msgid)."""
        return next(self._ids)

    def record(self, message: SandboxMessage) -> SandboxMessage:
        self.messages.append(message)
        self._by_recipient[(message.provider, message.to)].append(message)
        return message

    def messages_for(self, provider: str | None = None, to: str | None = None) -> list[SandboxMessage]:
        if provider is not None and to is not None:
            return list(self._by_recipient.get((provider, to), ()))
        return [m for m in self.messages if (provider is None or m.provider == provider) and (to is None or m.to == to)]

    def report(self, provider: str, fail: set[str] | frozenset[str] = frozenset()) -> list[SandboxMessage]:
        """Mark every accepted, not yet reported message of ``provider`` delivered (or failed, when its recipient
        is in ``fail``) and return them: the content of the provider's next receipt push."""
        now = datetime.now(UTC)
        failing = {_local(phone) for phone in fail}
        reported = []
        for message in self.messages:
            if message.provider == provider and message.status == "accepted":
                message.status = "failed" if _local(message.to) in failing else "delivered"
                message.reported_at = now
                reported.append(message)
        return reported

    # --- limits -------------------------------------------------------------------------------------------

    def aliyun_take(self, phones: list[str], sign: str, template: str) -> bool:
        """Count one send of sign + template to each number; False (nothing counted) when one is at its limit."""
        now = time.time()
        windows = []
        for phone in phones:
            window = self._aliyun_sends[(phone, sign, template)]
            while window and window[0] <= now - DAY:
                window.popleft()
            if len(window) >= self.aliyun_daily_limit:
                return False
            windows.append(window)
        for window in windows:
            window.append(now)
        return True

    def aliyun_take_each(self, pairs: list[tuple[str, str]], template: str) -> bool:
        """``aliyun_take`` for a batch of (number, sign): all counted, or none when one would pass its limit."""
        now = time.time()
        needed: dict[tuple[str, str, str], int] = defaultdict(int)
        for phone, sign in pairs:
            needed[(phone, sign, template)] += 1
        for key, count in needed.items():
            window = self._aliyun_sends[key]
            while window and window[0] <= now - DAY:
                window.popleft()
            if len(window) + count > self.aliyun_daily_limit:
                return False
        for key, count in needed.items():
            self._aliyun_sends[key].extend([now] * count)
        return True

    def tencent_take(self, phone: str, template: str, params: tuple[str, ...]) -> str | None:
        """The limit code one more message to ``phone`` would hit, or None (and the message is counted)."""
        now = time.time()
        day = datetime.now(BEIJING).strftime("%Y%m%d")
        if self._tencent_daily[(phone, day)] >= self.tencent_daily_limit:
            return "LimitExceeded.PhoneNumberDailyLimit"
        last = self._tencent_content.get((phone, template, params))
        if last is not None and now - last < self.tencent_same_content_seconds:
            return "LimitExceeded.PhoneNumberThirtySecondLimit"
        self._tencent_daily[(phone, day)] += 1
        self._tencent_content[(phone, template, params)] = now
        return None

    def nonce_seen(self, nonce: str) -> bool:
        """Remember ``nonce``; True when it was used inside the window (a replayed request)."""
        now = time.time()
        if nonce in self._nonces and now - self._nonces[nonce] < self.nonce_window:
            return True
        self._nonces[nonce] = now
        if len(self._nonces) % 1024 == 0:  # prune from the oldest (dicts keep insertion order)
            for old in list(itertools.islice(self._nonces, 1024)):
                if now - self._nonces[old] >= self.nonce_window:
                    del self._nonces[old]
        return False

    # --- WeChat tokens ------------------------------------------------------------------------------------

    def issue_wechat_token(self, appid: str) -> str:
        token = secrets.token_urlsafe(96)
        self._tokens[token] = (appid, time.time() + self.wechat_token_ttl)
        return token

    def wechat_token_error(self, token: str | None) -> int | None:
        """40001 for a token the sandbox never issued (or revoked), 42001 for an expired one, else None."""
        if not token:
            return 41001
        issued = self._tokens.get(token)
        if issued is None:
            return 40001
        return 42001 if issued[1] <= time.time() else None

    def revoke_wechat_tokens(self) -> None:
        """Every issued token becomes invalid (as when some other system fetched a new one long ago)."""
        self._tokens.clear()

    # --- WeCom ------------------------------------------------------------------------------------------------

    def issue_wecom_token(self, corp_id: str) -> str:
        token = secrets.token_urlsafe(96)
        self._wecom_tokens[token] = (corp_id, time.time() + self.wecom_token_ttl)
        return token

    def wecom_token_error(self, token: str | None) -> int | None:
        """41001 without a token, 40014 for one the sandbox never issued (or revoked), 42001 for an expired one."""
        if not token:
            return 41001
        issued = self._wecom_tokens.get(token)
        if issued is None:
            return 40014
        return 42001 if issued[1] <= time.time() else None

    def revoke_wecom_tokens(self) -> None:
        """Every issued WeCom token becomes invalid (WeCom may end a token early)."""
        self._wecom_tokens.clear()

    def wecom_take(self, members: list[str]) -> bool:
        """Count one app message to each member; False (nothing counted) when one is at the minute or hour limit."""
        now = time.time()
        windows = []
        for member in members:
            window = self._wecom_sends[member.lower()]
            while window and window[0] <= now - HOUR:
                window.popleft()
            last_minute = sum(1 for t in window if t > now - MINUTE)
            if last_minute >= self.wecom_member_minute_limit or len(window) >= self.wecom_member_hour_limit:
                return False
            windows.append(window)
        for window in windows:
            window.append(now)
        return True

    def wecom_duplicate(self, body: bytes, interval: float) -> str | None:
        """The msgid of the same request accepted within ``interval`` seconds (WeCom's duplicate check), else None."""
        seen = self._wecom_recent.get(body)
        return seen[1] if seen is not None and time.time() - seen[0] < interval else None

    def wecom_remember(self, body: bytes, msgid: str) -> None:
        now = time.time()
        self._wecom_recent[body] = (now, msgid)
        if len(self._wecom_recent) % 1024 == 0:  # prune from the oldest: WeCom remembers at most 4 hours
            for old in list(itertools.islice(self._wecom_recent, 1024)):
                if now - self._wecom_recent[old][0] >= 4 * HOUR:
                    del self._wecom_recent[old]

    def stats(self) -> dict[str, Any]:
        counts: dict[str, int] = defaultdict(int)
        for m in self.messages:
            counts[m.provider] += 1
        return {"requests": dict(self.requests), "aliyun_batches": self.batches, "token_requests": self.token_requests,
                "wecom_token_requests": self.wecom_token_requests, "wecom_duplicates": self.wecom_duplicates,
                "messages": dict(counts), "faults": self.pending_faults()}


def _local(phone: str) -> str:
    return phone[3:] if phone.startswith("+86") else phone


def beijing(dt: datetime) -> str:
    return dt.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
