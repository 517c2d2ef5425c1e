"""Delivering queued webhooks: claim, POST (signed), record; retries with back-off; dead after the cap.

A worker keeps up to ``BATCH_SIZE`` attempts in flight, at most ``webhook_endpoint_concurrency`` of them to one
endpoint, and claims more as each one ends (:meth:`WebhookDeliverer.step`): a partner slow to answer holds only
its own share, never the other partners' deliveries. A claim takes due deliveries with ``FOR UPDATE SKIP LOCKED``
in a short transaction and pushes their ``next_attempt_at`` a lease ahead (the request timeout + 30 s): a second
worker skips them meanwhile, and a worker that dies mid-attempt leaves them due again once the lease runs out, so
nothing is lost. The claim counts the attempt, so a delivery that keeps killing its worker still reaches the cap.
The POSTs run concurrently outside any transaction; each outcome is recorded as it comes, in a short transaction
of its own, guarded by the attempt count it claimed, so a late answer never overwrites a newer attempt's.

An endpoint whose attempts keep failing cools down: after ``n`` failures in a row its deliveries wait
``min(5 s * 2^(n-1), 30 min)``, and then one of them is tried (a probe, alone in flight) before the others. So a
partner that is down, however long its backlog, never takes every delivery slot from the others; its first success
ends it.

Outcomes (Standard Webhooks' status handling): 2xx delivered; 410 Gone disables the endpoint and fails the
delivery; anything else (3xx included: redirects are not followed), a timeout, a connection error or an SSRF
refusal is retried after the spec's schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, then daily; plus up
to 10 % jitter, or later when the partner sends ``Retry-After``) until ``webhook_max_attempts``, then failed with
the last error (dead-lettered; the API can replay it). Pending deliveries of a disabled endpoint fail when
claimed ("endpoint disabled"), and so do those of an integration key's endpoint once the key is known revoked or
without ``webhooks:manage``, or their event's store was taken from the key (queued before the change, they must
not go out after it), or the key no longer holds the read scope of the event's type. A key without ``pii:read``
(as last heard of) gets its free text masked again when sent, even if it was queued before the key lost it.
Secrets and payloads are never logged, and only the host of the URL (partners put tokens in query strings).
Responses are read uncompressed (``Accept-Encoding: identity``) and only ``SNIPPET`` bytes of them.

Receivers: deliveries are concurrent and retried one by one, so their order is not guaranteed (a
``complaint.closed`` may arrive before a retried ``complaint.opened``); order by the body's ``time`` and drop
repeats by ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notify_svc.deps import audit_log
from notify_svc.models import ApiKeyView, WebhookDelivery, WebhookEndpoint
from notify_svc.settings import NotifySettings
from notify_svc.webhooks.fanout import EVENT_SCOPES, key_allows, masked_payload, sees_pii
from notify_svc.webhooks.keys import refusal
from notify_svc.webhooks.signing import signed_headers
from notify_svc.webhooks.ssrf import UnsafeTarget, check_target, guarded_transport
from shared.db.base import utcnow

log = structlog.get_logger("webhooks")
ATTEMPTS = Counter("webhook_attempts_total", "Webhook delivery attempts by outcome", ["outcome"])

#: Attempts one worker keeps in flight.
BATCH_SIZE = 50
USER_AGENT = "Aftercare-Webhooks/1"
#: Seconds to wait after the n-th failed attempt (the Standard Webhooks example schedule); the last one repeats.
RETRY_SCHEDULE: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
JITTER = 0.1
#: A partner's ``Retry-After`` is honoured up to this many seconds.
MAX_RETRY_AFTER = 86400
#: Characters of a failed response's body kept in ``last_error`` (the partner's own words help them debug).
SNIPPET = 200
ERROR_LENGTH = 500


def retry_delay(failed_attempts: int) -> float:
    """Seconds until the next attempt after ``failed_attempts`` failures (jittered up to +10 %)."""
    base = RETRY_SCHEDULE[min(max(failed_attempts, 1), len(RETRY_SCHEDULE)) - 1]
    return base * (1 + random.uniform(0, JITTER))  # noqa: S311 - jitter, not cryptography


def _retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max((parsedate_to_datetime(value) - now).total_seconds(), 0.0)
    except (TypeError, ValueError, IndexError):
        return None


def _host(url: str) -> str:
    """The URL's host, for logs (the full URL may carry the partner's tokens)."""
    try:
        return httpx.URL(url).host
    except (httpx.InvalidURL, TypeError, ValueError):
        return "?"


#: Cooling of an endpoint after ``n`` failures in a row: 5 s doubling, at most 30 min.
COOL_BASE, COOL_MAX = 5.0, 1800.0


def cooling(failures: int) -> float:
    return min(COOL_BASE * 2 ** (max(failures, 1) - 1), COOL_MAX)


def _refused(row: Any) -> str | None:
    """Why a due delivery must not go out any more (its endpoint, or its key as last heard of), None if it may."""
    if not row.active:
        return "endpoint disabled"
    why = refusal(row, row.key_store_ids, row.payload.get("storeid"))
    if why is None and row.api_key_id is not None and row.revoked is not None \
            and not key_allows(row.event_type, row.scopes):
        why = f"the integration key no longer holds `{EVENT_SCOPES[row.event_type]}`"
    return why


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker holds for one attempt (``attempts`` counts it already)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_type: str
    payload: dict[str, Any]
    attempts: int
    url: str
    secret: str
    #: The secret before a rotation whose overlap still runs (it signs as well), else None.
    previous: str | None = None
    #: When it was claimed, on the deliverer's clock (its failure counts only if the endpoint was not cooling then).
    claimed_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    delivered: bool = False
    gone: bool = False
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    label: str = "error"  # the metric's outcome: delivered, gone, refused, timeout, connection, http, error


class WebhookDeliverer:
    """Delivers due webhooks, a batch per :meth:`run_once` (run it in a ``shared.periodic.Periodic`` loop)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: NotifySettings,
                 client: httpx.AsyncClient | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        """``client`` replaces the guarded HTTP client (which re-checks every connection against SSRF); ``clock``
        decides what is due and when the next attempt is (``next_attempt_at``; tests move it instead of sleeping).
        Recorded times and the signed ``webhook-timestamp`` come from the real clock (the partner checks the
        timestamp against theirs)."""
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.clock = clock
        self.timeout = settings.webhook_timeout_seconds
        self.lease = timedelta(seconds=self.timeout + 30)
        self.per_endpoint = settings.webhook_endpoint_concurrency
        self._owns_client = client is None
        self.client = client or httpx.AsyncClient(transport=guarded_transport(settings.webhook_allow_private),
                                                  follow_redirects=False, timeout=self.timeout)
        self._inflight: set[asyncio.Task[None]] = set()
        #: Attempts in flight per endpoint, and the endpoints a claim left out for being at their share (or
        #: failing, with their probe in flight): the next claims skip them in the query until one of theirs ends.
        self._busy: Tally[uuid.UUID] = Tally()
        self._held: set[uuid.UUID] = set()
        #: Called when an attempt of an endpoint held back ends (the worker loop's nudge): its next delivery is
        #: claimed at once instead of at the next poll.
        self.wake: Callable[[], None] = lambda: None

    async def aclose(self) -> None:
        """Let the attempts in flight finish and be recorded (a stopping worker), then close the client."""
        if self._inflight:
            _, late = await asyncio.wait(self._inflight, timeout=self.timeout + 10)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._owns_client:
            await self.client.aclose()

    async def step(self) -> int:
        """The worker loop's step: wait for a free slot if all are taken, claim as many due deliveries as there are
        free slots and start them. Answers ``BATCH_SIZE`` when more may be due (the loop goes on at once), else how
        many it started (the loop then pauses; the attempts go on meanwhile)."""
        if len(self._inflight) >= BATCH_SIZE:
            await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
        started, more = await self._fill()
        return BATCH_SIZE if more else started

    async def run_once(self) -> int:
        """Claim what fits, attempt it and wait until every attempt in flight is recorded; answers how many this
        claim started. Cancelled, it cancels its attempts too (as a worker dying mid-request would)."""
        started, _ = await self._fill()
        try:
            await asyncio.gather(*self._inflight)
        except asyncio.CancelledError:
            for task in self._inflight:
                task.cancel()
            raise
        return started

    async def _fill(self) -> tuple[int, bool]:
        """Claim due deliveries for the free slots and start them: how many started, and whether more may be due."""
        claimed, more = await self._claim(BATCH_SIZE - len(self._inflight))
        for c in claimed:
            self._start(c)
        return len(claimed), more

    def _start(self, c: Claimed) -> None:
        task = asyncio.create_task(self._deliver(c))
        self._busy[c.endpoint_id] += 1
        self._inflight.add(task)

        def ended(_: asyncio.Task[None]) -> None:
            self._inflight.discard(task)
            self._busy[c.endpoint_id] -= 1
            if self._busy[c.endpoint_id] <= 0:
                del self._busy[c.endpoint_id]
            if c.endpoint_id in self._held:
                self._held.discard(c.endpoint_id)
                self.wake()

        task.add_done_callback(ended)

    async def _deliver(self, c: Claimed) -> None:
        outcome = await self._attempt(c)
        try:
            await self._record(c, outcome)
        except Exception:  # noqa: BLE001 - the lease runs out and the delivery is tried again
            log.exception("webhook_record_failed", delivery_id=str(c.id), endpoint_id=str(c.endpoint_id))

    # --- claim --------------------------------------------------------------------------------------------

    async def _claim(self, room: int) -> tuple[list[Claimed], bool]:
        """Up to ``room`` due deliveries for this worker, and whether more may be due."""
        d, e, k = WebhookDelivery, WebhookEndpoint, ApiKeyView
        now = self.clock()
        if room <= 0:
            return [], True
        self._held &= set(self._busy)  # held back for attempts in flight only
        skipped = self._held | {ep for ep, n in self._busy.items() if n >= self.per_endpoint}
        held: set[uuid.UUID] = set()
        async with self.sessionmaker() as session, session.begin():
            rows = (await session.execute(
                sa.select(d.id, d.tenant_id, d.endpoint_id, d.event_type, d.payload, d.attempts, e.url, e.secret,
                          e.previous_secret, e.previous_secret_until, e.failures, e.active, e.api_key_id,
                          k.revoked, k.scopes, k.store_ids.label("key_store_ids"))
                .join(e, e.id == d.endpoint_id)
                .outerjoin(k, sa.and_(k.tenant_id == e.tenant_id, k.id == e.api_key_id))
                .where(d.status == "pending", d.next_attempt_at <= now,
                       sa.or_(e.cool_until.is_(None), e.cool_until <= now),
                       d.endpoint_id.not_in(skipped) if skipped else sa.true())
                .order_by(d.next_attempt_at).limit(room)
                .with_for_update(of=d, skip_locked=True))).all()
            refused = {r.id: why for r in rows if (why := _refused(r)) is not None}
            busy = Tally(self._busy)
            live = []
            for r in rows:
                if r.id in refused:
                    continue
                # A failing endpoint gets one attempt in flight (a probe); any other, its share.
                if busy[r.endpoint_id] >= (1 if r.failures else self.per_endpoint):
                    held.add(r.endpoint_id)
                    continue
                busy[r.endpoint_id] += 1
                live.append(r)
            for why in set(refused.values()):
                await session.execute(sa.update(d).where(d.id.in_([i for i, w in refused.items() if w == why]))
                                      .values(status="failed", last_error=why, next_attempt_at=None,
                                              updated_at=utcnow()))
            if live:
                await session.execute(sa.update(d).where(d.id.in_([r.id for r in live])).values(
                    attempts=d.attempts + 1, next_attempt_at=now + self.lease, updated_at=utcnow()))
        self._held |= held  # once the claim committed: its attempts start now, and their ends release it
        wall = utcnow()
        return ([Claimed(r.id, r.tenant_id, r.endpoint_id, r.event_type, masked_payload(r.payload, sees_pii(r)),
                        r.attempts + 1, r.url, r.secret,
                        r.previous_secret if r.previous_secret_until and r.previous_secret_until > wall else None,
                        now)
                 for r in live], len(rows) == room)

    # --- attempt ------------------------------------------------------------------------------------------

    async def _attempt(self, c: Claimed) -> Outcome:
        try:
            async with asyncio.timeout(self.timeout + 5):  # one deadline for DNS, connect, upload and answer
                return await self._post(c)
        except UnsafeTarget as exc:
            return Outcome(error=f"refused: {exc.reason}", label="refused")
        except (TimeoutError, httpx.TimeoutException):
            return Outcome(error=f"no answer within {self.timeout:g} s", label="timeout")
        except httpx.HTTPError as exc:
            return Outcome(error=f"request failed: {type(exc).__name__}: {exc}"[:ERROR_LENGTH], label="connection")
        except Exception as exc:  # noqa: BLE001 - one bad delivery must not sink the batch (it still hits the cap)
            log.exception("webhook_attempt_crashed", delivery_id=str(c.id), endpoint_id=str(c.endpoint_id))
            return Outcome(error=f"internal error: {type(exc).__name__}")

    async def _post(self, c: Claimed) -> Outcome:
        await check_target(c.url, self.settings.webhook_allow_private)
        body = orjson.dumps(c.payload)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Accept-Encoding": "identity",
                   **signed_headers(c.secret, str(c.id), int(time.time()), body, c.previous)}
        async with self.client.stream("POST", c.url, content=body, headers=headers, follow_redirects=False,
                                      timeout=self.timeout) as response:
            code = response.status_code
            if 200 <= code < 300:
                return Outcome(delivered=True, status_code=code, label="delivered")
            if code == 410:
                return Outcome(gone=True, status_code=code, label="gone")
            snippet = b""
            async for chunk in response.aiter_raw():  # as sent: never inflated, whatever it claims to be
                snippet += chunk
                if len(snippet) >= SNIPPET:
                    break
        text = snippet[:SNIPPET].decode("utf-8", "replace").strip()
        why = f"HTTP {code}"
        if 300 <= code < 400:
            why += " (redirects are not followed: point the endpoint at the final URL)"
        return Outcome(status_code=code, error=f"{why}: {text}" if text else why, label="http",
                       retry_after=_retry_after(response.headers.get("retry-after"), utcnow()))

    # --- record -------------------------------------------------------------------------------------------

    async def _record(self, c: Claimed, o: Outcome) -> None:
        """One attempt's outcome, in its own transaction: the endpoint's row first (its failures in a row, a 410's
        disabling), then the delivery's, the order every writer of both follows."""
        d = WebhookDelivery
        due_from, now = self.clock(), utcnow()
        max_attempts = self.settings.webhook_max_attempts
        async with self.sessionmaker() as session, session.begin():
            await self._endpoint_outcome(session, c, o, now)
            # Only the attempt this worker claimed: a lease that ran out let another worker take over.
            mine = sa.update(d).where(d.id == c.id, d.status == "pending", d.attempts == c.attempts)
            common = {"last_status_code": o.status_code, "updated_at": now}
            fields = {"delivery_id": str(c.id), "endpoint_id": str(c.endpoint_id), "event_type": c.event_type,
                      "host": _host(c.url), "attempt": c.attempts, "status_code": o.status_code}
            if o.delivered:
                await session.execute(mine.values(status="delivered", delivered_at=now, last_error=None,
                                                  next_attempt_at=None, **common))
                log.info("webhook_delivered", **fields)
            elif o.gone:
                await session.execute(mine.values(
                    status="failed", next_attempt_at=None,
                    last_error="410 Gone: the partner asked to stop; the endpoint was disabled", **common))
                log.warning("webhook_endpoint_gone", **fields)
            elif c.attempts >= max_attempts:
                error = f"dead after {c.attempts} attempts; last: {o.error}"[:ERROR_LENGTH]
                await session.execute(mine.values(status="failed", next_attempt_at=None, last_error=error,
                                                  **common))
                log.error("webhook_dead_lettered", error=o.error, **fields)
            else:
                delay = retry_delay(c.attempts)
                if o.retry_after is not None:
                    delay = max(delay, min(o.retry_after, MAX_RETRY_AFTER))
                await session.execute(mine.values(next_attempt_at=due_from + timedelta(seconds=delay),
                                                  last_error=(o.error or "")[:ERROR_LENGTH], **common))
                log.warning("webhook_attempt_failed", error=o.error, retry_in_s=round(delay, 1), **fields)
            ATTEMPTS.labels(o.label).inc()

    async def _endpoint_outcome(self, session: AsyncSession, c: Claimed, o: Outcome, now: datetime) -> None:
        """A delivery ends the endpoint's failures in a row; a failure adds one and cools the endpoint; a 410
        disables it. Only disabling changes ``updated_at`` (the endpoint's ETag): a partner fixing its failing
        endpoint must not have its ``If-Match`` go stale at each failed attempt."""
        e = WebhookEndpoint
        kept = {"updated_at": e.updated_at}
        if o.gone:
            await self._disable(session, c, now)
        elif o.delivered:
            await session.execute(sa.update(e).where(e.id == c.endpoint_id, e.failures > 0)
                                  .values(failures=0, cool_until=None, **kept))
        else:
            # Attempts claimed together fail together: the first of them counts, the others find the endpoint
            # cooling since after their claim and leave it as it is (a partner down for two seconds while twelve
            # were in flight has one failure, not twelve).
            failures = (await session.execute(
                sa.update(e).where(e.id == c.endpoint_id,
                                   sa.or_(e.cool_until.is_(None), e.cool_until <= (c.claimed_at or self.clock())))
                .values(failures=e.failures + 1, **kept).returning(e.failures))).scalar()
            if failures is not None:
                await session.execute(sa.update(e).where(e.id == c.endpoint_id).values(
                    cool_until=self.clock() + timedelta(seconds=cooling(failures)), **kept))

    async def _disable(self, session: AsyncSession, c: Claimed, now: datetime) -> None:
        e = WebhookEndpoint
        changed = (await session.execute(sa.update(e).where(e.id == c.endpoint_id, e.active.is_(True))
                                         .values(active=False, updated_at=now).returning(e.id))).first()
        if changed is not None:
            audit_log.record(session, None, "disable", "webhook_endpoint", c.endpoint_id, tenant_id=c.tenant_id,
                             store_id=None, before={"active": True}, after={"active": False})
