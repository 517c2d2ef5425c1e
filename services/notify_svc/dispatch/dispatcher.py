"""The dispatcher: claims due messages, runs the policy check, calls the providers, records what happened.

Two short transactions per batch and no transaction open during provider calls:

1. *Decide*: claim due rows (``FOR UPDATE SKIP LOCKED``, so N workers share the work), lock their recipients,
   decide each (send / hold / suppress), take provider rate tokens, and commit the decisions. Rows to send are
   committed as ``sending`` with a lease: if the worker dies during the call, the row comes back after the
   lease as an *unknown outcome* and is checked with the provider, never sent blindly a second time.
2. *Record*: each provider answer moves its row on (sent, retry later, fall back to the next channel, failed),
   with its trail entry and event.

Non-urgent sends of one template and sign go to a provider that takes batches (Aliyun ``SendBatchSms``) as one
request of up to ``max_batch`` distinct numbers, planned while deciding: each message is still decided on its own
(consent, windows, caps, budget), a batch takes one rate token like any request, and its messages are committed
``sending`` with the batch's ``OutId`` as their provider id, so an unknown outcome (timeout, a worker gone) is
looked up by that ``OutId`` and the number, never sent again blindly. Urgent sends (notices to staff) and lone
messages keep their own ``SendSms``. A batch the provider refuses as a whole for something that may concern only
some of its numbers (one invalid number, one number over its flow control) is sent again one message per request,
each with its own outcome.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notify_svc.channels.base import (
    BATCH_PREFIX, BatchProvider, Outcome, Outgoing, Provider, Receipt, SendResult, is_batch_out_id, new_batch_out_id,
)
from notify_svc.dispatch.context import load_context, load_quotas
from notify_svc.dispatch.decide import Decision, decide
from notify_svc.dispatch import ratelimit
from notify_svc.messages.events import event_for
from notify_svc.messages.receipts import apply_receipt
from notify_svc.models import Message, MessageEvent, WechatQuota
from notify_svc.policy.caps import load_history, lock_recipients
from notify_svc.settings import NotifySettings
from shared.db.base import utcnow
from shared.ids import new_id
from shared.messaging.outbox import Outbox

log = structlog.get_logger("dispatcher")
DECISIONS = Counter("notify_decisions_total", "Policy decisions", ["action", "reason"])
SENDS = Counter("notify_provider_results_total", "Provider answers", ["provider", "outcome"])
BATCHES = Counter("notify_provider_batches_total", "Batch requests and what became of them",
                  ["provider", "outcome"])

M = Message.__table__
E = MessageEvent.__table__
Q = WechatQuota.__table__
#: A row handed to a provider comes back this long after if its worker never recorded the answer.
SEND_LEASE = timedelta(minutes=2)
#: An unknown outcome nobody could confirm within this time is failed for staff to check (and replay).
UNKNOWN_GIVE_UP = timedelta(hours=24)
#: Sources whose messages never wait in a batch (the provider may deliver batches a little later).
URGENT_SOURCES = frozenset({"escalation"})


@dataclass
class SendRequest:
    """One provider request: a message of its own, or a batch (``out_id`` set) of one template and sign."""

    decisions: list[Decision]
    out_id: str | None = None

    @property
    def provider(self) -> Provider:
        assert self.decisions[0].provider is not None
        return self.decisions[0].provider


class Dispatcher:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], outbox: Outbox,
                 providers: dict[str, Provider], settings: NotifySettings,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.sessionmaker = sessionmaker
        self.outbox = outbox
        self.providers = providers
        self.settings = settings
        self.clock = clock
        self.batch_size = settings.dispatcher_batch_size
        self._calls = asyncio.Semaphore(settings.dispatcher_concurrency)
        #: SQLite (embedded) has no row locks: its loops take turns claiming and deciding.
        self._claiming = asyncio.Lock() if sessionmaker.kw["bind"].dialect.name != "postgresql" else None

    async def run_once(self) -> int:
        if self._claiming is not None:
            async with self._claiming:
                return await self._run_once()
        return await self._run_once()

    async def _run_once(self) -> int:
        now = self.clock()
        async with self.sessionmaker() as session, session.begin():
            rows = await self._claim(session, now)
            if not rows:
                return 0
            waiting = [r for r in rows if r.status != "sending"]
            unknown = [r for r in rows if r.status == "sending"]
            ctx = await load_context(session, rows, now, self.settings.person_key_secret)
            keys = {(r.tenant_id, rec.key) for r in waiting if (rec := ctx.recipient(r)) is not None and rec.key}
            await lock_recipients(session, [k for _, k in keys])
            ctx.history = await load_history(session, keys, now)
            await load_quotas(session, ctx)
            decisions = [self._decide(r, ctx, now) for r in waiting]
            requests = plan_requests(decisions)
            await self._apply_rate_limits(session, requests, now)
            requests = [q for q in requests if q.decisions[0].action == "send"]
            lookups = [(r, ctx.recipient(r)) for r in unknown]
            await self._write_decisions(session, decisions, now)
            if unknown:
                await session.execute(sa.update(M).where(M.c.id.in_([r.id for r in unknown]))
                                      .values(next_attempt_at=now + SEND_LEASE))
        answers, receipts = await asyncio.gather(asyncio.gather(*(self._send(q) for q in requests)),
                                                 asyncio.gather(*(self._lookup(r, rec) for r, rec in lookups)))
        async with self.sessionmaker() as session, session.begin():
            await self._record(session, [a for answer in answers for a in answer], self.clock())
            await self._record_lookups(session, list(zip(unknown, receipts, strict=True)), self.clock())
        return len(rows)

    # --- decide -----------------------------------------------------------------------------------------------

    def _decide(self, row: Any, ctx: Any, now: datetime) -> Decision:
        """One row's decision; a row whose check itself fails (bad data, a bug) is held with a back-off instead of
        failing the batch, so one message never stops the others."""
        try:
            return decide(row, ctx, self.providers)
        except Exception as exc:  # noqa: BLE001
            log.exception("decision_failed", message_id=str(row.id))
            return Decision(row, "hold", "decision_error", now + timedelta(minutes=5), detail=type(exc).__name__)

    async def _claim(self, session: AsyncSession, now: datetime) -> list[Any]:
        due = (sa.select(M.c.id).where(M.c.status.in_(("queued", "held", "sending")), M.c.next_attempt_at <= now)
               .order_by(M.c.next_attempt_at).limit(self.batch_size).with_for_update(skip_locked=True))
        ids = list((await session.scalars(due)).all())
        if not ids:
            return []
        return list((await session.execute(sa.select(M).where(M.c.id.in_(ids)))).all())

    async def _apply_rate_limits(self, session: AsyncSession, requests: list[SendRequest], now: datetime) -> None:
        """A provider's rate counts requests: a batch takes one token for all its messages."""
        by_provider: dict[str, list[SendRequest]] = defaultdict(list)
        for q in requests:
            if q.provider.name in self.settings.provider_qps:
                by_provider[q.provider.name].append(q)
        for name, group in sorted(by_provider.items()):  # one lock order for every worker: no deadlocks
            rate = self.settings.provider_qps[name]
            granted = await ratelimit.take(session, name, len(group), rate, now)
            for i, q in enumerate(group[granted:]):
                for d in q.decisions:
                    d.action, d.reason, d.batch_out_id = "hold", "rate_limited", None
                    d.until = now + timedelta(seconds=(i + 1) / rate)
                    d.detail = f"{name} allows {rate:g} requests/s across all workers"

    async def _write_decisions(self, session: AsyncSession, decisions: list[Decision], now: datetime) -> None:
        updates, trail, events = [], [], []
        for d in decisions:
            m = d.message
            DECISIONS.labels(d.action, d.reason or "").inc()
            purpose = {"purpose": d.purpose} if d.purpose else {}  # its templates made it marketing
            if d.action == "send":
                assert d.outgoing is not None and d.provider is not None
                # A batch's OutId stands in for the provider's id until the answer brings it (receipts and
                # status queries find the message by it, with its number); a message of its own has none yet.
                updates.append(_values(m.id, status="sending", reason=None, detail=None, channel=d.channel,
                                       provider=d.provider.name, recipient_masked=d.recipient_masked,
                                       recipient_key=d.recipient_key, body=d.outgoing.text, sent_at=now,
                                       attempts=m.attempts + 1, next_attempt_at=now + SEND_LEASE,
                                       provider_message_id=d.batch_out_id, **purpose))
                if d.batch_out_id is None:  # a batch's messages get one trail entry each, with the answer
                    trail.append(_trail(m.id, now, "sending", None, d.channel, d.provider.name,
                                        detail="; ".join(d.skipped) or None))
            elif d.action == "hold":
                updates.append(_values(m.id, status="held", reason=d.reason, detail=d.detail, next_attempt_at=d.until,
                                       **purpose))
                if m.status != "held" or m.reason != d.reason:  # one trail entry per reason, not per re-check
                    trail.append(_trail(m.id, now, "held", d.reason, None, None,
                                        detail=_until(d.until) + (f"; {d.detail}" if d.detail else "")))
            else:
                updates.append(_values(m.id, status="suppressed", reason=d.reason, detail=d.detail,
                                       next_attempt_at=None, **purpose))
                trail.append(_trail(m.id, now, "suppressed", d.reason, None, None, detail=d.detail))
                events.append(event_for(m, "suppressed", reason=d.reason or ""))
        await _bulk_update(session, updates)
        await _insert_trail(session, trail)
        await self.outbox.append_many(session, events)
        await _use_subscriptions(session, [d.outgoing for d in decisions if d.action == "send" and d.outgoing
                                           and d.outgoing.channel == "wechat"
                                           and d.outgoing.wechat_kind == "subscribe"])

    # --- send -------------------------------------------------------------------------------------------------

    async def _send(self, q: SendRequest) -> list[tuple[Decision, SendResult, str | None]]:
        """Each message of the request with its answer and the ``OutId`` of the request that carried it (None:
        its own id)."""
        if q.out_id is None:
            return [(q.decisions[0], await self._send_one(q.decisions[0]), None)]
        provider: BatchProvider = q.provider  # type: ignore[assignment]
        outs = [d.outgoing for d in q.decisions]
        async with self._calls:
            try:
                result = await provider.send_batch(outs, q.out_id)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - an adapter bug must not lose the batch; the outcome is unknown
                log.exception("provider_batch_crashed", provider=provider.name, out_id=q.out_id)
                result = SendResult(Outcome.UNKNOWN, code=type(exc).__name__, detail="adapter error")
        if result.outcome is Outcome.SENT or not provider.refusal_may_concern_some(result):
            BATCHES.labels(provider.name, result.outcome.value).inc()
            SENDS.labels(provider.name, result.outcome.value).inc(len(q.decisions))
            return [(d, result, q.out_id) for d in q.decisions]
        # Refused as a whole for what may be one number's problem: nothing was sent, so each message goes on its
        # own request (and takes its own rate token), and gets its own answer.
        BATCHES.labels(provider.name, "split").inc()
        log.info("provider_batch_split", provider=provider.name, out_id=q.out_id, size=len(q.decisions),
                 code=result.code)
        granted = await self._take_tokens(provider.name, len(q.decisions))
        singles = await asyncio.gather(*(self._send_one(d) for d in q.decisions[:granted]))
        rate = self.settings.provider_qps.get(provider.name, 1.0)
        waits = [SendResult(Outcome.RATE_LIMITED, code="rate_limited", retry_after=(i + 1) / rate,
                            detail=f"{provider.name} allows {rate:g} requests/s across all workers")
                 for i in range(len(q.decisions) - granted)]
        return [(d, r, None) for d, r in zip(q.decisions, [*singles, *waits], strict=True)]

    async def _send_one(self, d: Decision) -> SendResult:
        assert d.provider is not None and d.outgoing is not None
        async with self._calls:
            try:
                result = await d.provider.send(d.outgoing)
            except Exception as exc:  # noqa: BLE001 - an adapter bug must not lose the batch; the outcome is unknown
                log.exception("provider_send_crashed", provider=d.provider.name, message_id=str(d.message.id))
                result = SendResult(Outcome.UNKNOWN, code=type(exc).__name__, detail="adapter error")
        SENDS.labels(d.provider.name, result.outcome.value).inc()
        return result

    async def _take_tokens(self, provider: str, wanted: int) -> int:
        rate = self.settings.provider_qps.get(provider)
        if rate is None:
            return wanted
        async with self.sessionmaker() as session, session.begin():
            return await ratelimit.take(session, provider, wanted, rate, self.clock())

    async def _lookup(self, row: Any, recipient: Any) -> Receipt | None:
        provider = self.providers.get(row.channel or "")
        address = recipient.address(row.channel) if recipient is not None and row.channel else None
        if provider is None or address is None or row.sent_at is None:
            return None
        batch = row.provider_message_id if is_batch_out_id(row.provider_message_id) else None
        out = Outgoing(message_id=row.id, channel=row.channel, to=address, text=row.body or "", batch_out_id=batch)
        try:
            async with self._calls:
                return await provider.lookup(out, row.sent_at)
        except Exception:  # noqa: BLE001 - the status query is best effort; the row is looked at again later
            log.warning("provider_lookup_failed", provider=provider.name, message_id=str(row.id))
            return None

    # --- record -----------------------------------------------------------------------------------------------

    async def _record(self, session: AsyncSession, results: list[tuple[Decision, SendResult, str | None]],
                      now: datetime) -> None:
        updates, trail, events = [], [], []
        unused: list[Outgoing | None] = []  # not sent, nor to be: a WeChat authorisation they took goes back
        sent_ids: dict[uuid.UUID, str | None] = {}
        sent_events: dict[uuid.UUID, Any] = {}
        for d, r, out_id in results:
            m, channel, provider = d.message, d.channel, d.provider.name if d.provider else None
            attempts = m.attempts + 1
            # A message that leaves ``sending`` forgets its batch's OutId (a later attempt is a new request).
            forget = {"provider_message_id": None} if d.batch_out_id else {}
            detail = r.detail
            if d.batch_out_id is not None:  # no "sending" entry was written for it: this one says how it went
                how = f"in batch {out_id}" if out_id else f"alone, batch {d.batch_out_id} refused as a whole"
                detail = "; ".join([how, *d.skipped, *([r.detail] if r.detail else [])])
            trail.append(_trail(m.id, now, _trail_status(r.outcome), r.outcome.value, channel, provider, r.code,
                                detail))
            if r.outcome is Outcome.SENT:
                sent_ids[m.id] = r.provider_message_id
                sent_events[m.id] = event_for(m, "sent", channel=channel, provider=provider, sent_at=now)
            elif r.outcome is Outcome.UNKNOWN:
                # The batch's OutId stays as the provider id: the status query looks for it (and the message's own
                # id, when a refused batch's messages went on alone).
                updates.append(_values(m.id, status="sending", reason="awaiting_receipt", detail=r.detail,
                                       next_attempt_at=now + timedelta(seconds=self.settings.receipt_wait_seconds)))
            elif r.outcome is Outcome.PERMANENT:
                failed = [*(m.failed_channels or []), channel]
                remaining = [c for c in m.channels if c not in failed]
                if remaining:
                    updates.append(_values(m.id, status="queued", reason="fallback", detail=r.code,
                                           failed_channels=failed, sent_at=None, next_attempt_at=now, **forget))
                else:
                    updates.append(_values(m.id, status="failed", reason="provider_rejected", detail=r.code,
                                           failed_channels=failed, sent_at=None, next_attempt_at=None, **forget))
                    events.append(event_for(m, "failed", channel=channel, provider=provider,
                                            reason="provider_rejected", code=r.code))
            elif attempts >= self.settings.max_attempts:
                unused.append(d.outgoing)
                updates.append(_values(m.id, status="failed", reason="dead_lettered", sent_at=None,
                                       detail=f"{r.outcome.value} after {attempts} attempts: {r.code}",
                                       next_attempt_at=None, **forget))
                events.append(event_for(m, "failed", channel=channel, provider=provider, reason="dead_lettered",
                                        code=r.code))
            else:
                unused.append(d.outgoing)
                delay = r.retry_after or min(self.settings.retry_base_seconds * 2 ** (attempts - 1),
                                             self.settings.retry_max_seconds)
                reason = "provider_rate_limited" if r.outcome is Outcome.RATE_LIMITED else "provider_retry"
                updates.append(_values(m.id, status="held", reason=reason, detail=r.code, sent_at=None,
                                       next_attempt_at=now + timedelta(seconds=delay), **forget))
        if sent_ids:
            # A receipt can overtake this answer (a fast provider): only a row still `sending` becomes `sent`; one
            # the receipt already moved (delivered, fallback queued, failed) keeps its state and only learns its id.
            still = set(await session.scalars(sa.select(M.c.id).where(M.c.id.in_(list(sent_ids)),
                                                                      M.c.status == "sending").with_for_update()))
            if still:
                await session.execute(
                    sa.update(M).where(M.c.id == sa.bindparam("m_id"))
                    .values(status="sent", reason=None, provider_message_id=sa.bindparam("pmid"), next_attempt_at=None),
                    [{"m_id": k, "pmid": v} for k, v in sent_ids.items() if k in still])
                events += [sent_events[k] for k in sent_ids if k in still]
            overtaken = [{"m_id": k, "pmid": v} for k, v in sent_ids.items() if k not in still and v]
            if overtaken:
                await session.execute(sa.update(M).where(M.c.id == sa.bindparam("m_id"), sa.or_(
                    M.c.provider_message_id.is_(None), M.c.provider_message_id.startswith(BATCH_PREFIX)))
                                      .values(provider_message_id=sa.bindparam("pmid")), overtaken)
        await _bulk_update(session, updates, only_status="sending")
        await _insert_trail(session, trail)
        await self.outbox.append_many(session, events)
        await _use_subscriptions(session, [o for o in unused if o is not None and o.channel == "wechat"
                                           and o.wechat_kind == "subscribe"], give_back=True)

    async def _record_lookups(self, session: AsyncSession, results: list[tuple[Any, Receipt | None]],
                              now: datetime) -> None:
        for row, receipt in results:
            if receipt is not None:
                await apply_receipt(session, self.outbox, row.id, receipt, now)
            elif row.sent_at is not None and now - row.sent_at > UNKNOWN_GIVE_UP:
                await session.execute(sa.update(M).where(M.c.id == row.id, M.c.status == "sending").values(
                    status="failed", reason="unknown_outcome", next_attempt_at=None, updated_at=now,
                    detail="the provider never confirmed or denied the send; check before replaying"))
                await _insert_trail(session, [_trail(row.id, now, "failed", "unknown_outcome", row.channel,
                                                     row.provider)])
                await self.outbox.append_many(session, [event_for(row, "failed", channel=row.channel,
                                                                  provider=row.provider, reason="unknown_outcome")])
            else:
                await session.execute(sa.update(M).where(M.c.id == row.id, M.c.status == "sending").values(
                    next_attempt_at=now + timedelta(seconds=self.settings.receipt_wait_seconds)))


async def _use_subscriptions(session: AsyncSession, sends: list[Outgoing | None], give_back: bool = False) -> None:
    """A one-time WeChat subscription allows one notice: each send uses one up (decided under the same lock);
    ``give_back``: sends WeChat refused before sending anything (busy, flow control), whose authorisation the
    retry needs."""
    for out in sends:
        assert out is not None
        q = sa.update(Q).where(Q.c.openid == out.to, Q.c.template_id == out.template_code)
        await session.execute(q.values(remaining=Q.c.remaining + 1) if give_back else
                              q.where(Q.c.remaining > 0).values(remaining=Q.c.remaining - 1))


def _values(message_id: uuid.UUID, **values: Any) -> dict[str, Any]:
    return {"m_id": message_id, **values}


def _until(at: datetime | None) -> str:
    return f"until {at.isoformat(timespec='seconds')}" if at else ""


def _trail_status(outcome: Outcome) -> str:
    return {Outcome.SENT: "sent", Outcome.UNKNOWN: "sending", Outcome.PERMANENT: "failed"}.get(outcome, "held")


def _trail(message_id: uuid.UUID, at: datetime, status: str, reason: str | None, channel: str | None,
           provider: str | None, code: str | None = None, detail: str | None = None) -> dict[str, Any]:
    return {"id": new_id(), "message_id": message_id, "at": at, "status": status, "reason": reason,
            "channel": channel, "provider": provider, "code": code, "detail": (detail or None) and detail[:500]}


async def _insert_trail(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(sa.insert(E), rows)


async def _bulk_update(session: AsyncSession, updates: list[dict[str, Any]], only_status: str | None = None) -> None:
    """One executemany UPDATE per distinct column set (asyncpg pipelines them)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for u in updates:
        if u.get("detail"):
            u["detail"] = u["detail"][:500]
        groups[tuple(sorted(u))].append(u)
    for columns, rows in groups.items():
        stmt = sa.update(M).where(M.c.id == sa.bindparam("m_id"))
        if only_status is not None:
            stmt = stmt.where(M.c.status == only_status)
        values: dict[str, Any] = {c: sa.bindparam(f"v_{c}") for c in columns if c != "m_id"}
        values["updated_at"] = sa.func.now()
        params = [{("m_id" if k == "m_id" else f"v_{k}"): v for k, v in row.items()} for row in rows]
        await session.execute(stmt.values(values), params)


def plan_requests(decisions: list[Decision]) -> list[SendRequest]:
    """The provider requests for the batch's sends: batches where the provider takes them, else one each."""
    requests: list[SendRequest] = []
    groups: dict[tuple[str, str | None, str | None], list[Decision]] = defaultdict(list)
    for d in decisions:
        if d.action != "send":
            continue
        if _batchable(d):
            assert d.outgoing is not None and d.provider is not None
            groups[(d.provider.name, d.outgoing.template_code, d.outgoing.sign_name)].append(d)
        else:
            requests.append(SendRequest([d]))
    for group in groups.values():
        provider: BatchProvider = group[0].provider  # type: ignore[assignment]
        for chunk in _chunks(group, provider.max_batch):
            if len(chunk) == 1:
                requests.append(SendRequest(chunk))
                continue
            out_id = new_batch_out_id()
            for d in chunk:
                d.batch_out_id = out_id
            requests.append(SendRequest(chunk, out_id))
    return requests


def _batchable(d: Decision) -> bool:
    """Whether a send may wait in a batch: a provider that takes batches, a template and sign, not urgent."""
    out, m = d.outgoing, d.message
    return (out is not None and hasattr(d.provider, "send_batch") and bool(out.template_code and out.sign_name)
            and m.staff_id is None and m.source not in URGENT_SOURCES)


def _chunks(group: list[Decision], size: int) -> list[list[Decision]]:
    """Batches of at most ``size`` in which no two numbers mask alike (so none twice): a receipt names its message
    by the batch's id and the number, matched in masked form (``messages.receipts``)."""
    chunks: list[tuple[list[Decision], set[str | None]]] = []
    for d in group:
        home = next((c for c in chunks if len(c[0]) < size and d.recipient_masked not in c[1]), None)
        if home is None:
            home = ([], set())
            chunks.append(home)
        home[0].append(d)
        home[1].add(d.recipient_masked)
    return [c for c, _ in chunks]
