"""RabbitMQ transport: topology, a confirming publisher, and a supervised consumer.

We supervise plain connections ourselves instead of trusting ``connect_robust``: its recovery has
known gaps after hard broker restarts (aio-pika #231, #626: consumers silently not restored). On any
connection or channel close the consumer tears everything down, reconnects with back-off and
re-declares its queues; the publisher reconnects on the next batch. Both are proven by tests that
stop and start the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from shared.events.envelope import CloudEvent
from shared.messaging.consumer import EventConsumer

log = structlog.get_logger("amqp")
CONTENT_TYPE = "application/cloudevents+json"


#: deadlock_detected, serialization_failure, lock_not_available (lock_timeout), too_many_connections,
#: admin_shutdown, crash_shutdown, cannot_connect_now. Not query_canceled (statement_timeout): a query that always
#: takes too long would be retried for ever without using up attempts; it is parked like any failure instead.
RETRY_SQLSTATES = frozenset({"40P01", "40001", "55P03", "53300", "57P01", "57P02", "57P03"})


def is_transient(exc: BaseException) -> bool:
    """Failures of the infrastructure rather than of the event: a lost or refused connection, a timeout (the
    network's, a lock wait's, or the wait for a pooled connection), Postgres restarting or out of connections, or a
    deadlock / serialization failure (another transaction won; the same event succeeds when tried again). Under
    contention (an import holding rows a consumer locks) these must not use up an event's attempts."""
    if isinstance(exc, DBAPIError) and (exc.connection_invalidated
                                        or getattr(exc.orig, "sqlstate", None) in RETRY_SQLSTATES):
        return True
    return isinstance(exc, (OperationalError, InterfaceError, ConnectionError, TimeoutError, OSError,
                            PoolTimeoutError))


def queue_names(service: str) -> dict[str, str]:
    return {"main": f"{service}.events", "parked": f"{service}.parked"}


def retry_queue_name(service: str, delay_ms: int) -> str:
    return f"{service}.retry.{delay_ms}ms"


async def declare_exchange(channel: AbstractChannel, name: str) -> AbstractExchange:
    """The durable topic exchange; unroutable events land in ``<name>.unrouted`` instead of being returned."""
    unrouted = await channel.declare_exchange(f"{name}.unrouted", aio_pika.ExchangeType.FANOUT, durable=True)
    queue = await channel.declare_queue(f"{name}.unrouted", durable=True,
                                        arguments={"x-max-length": 100_000, "x-overflow": "drop-head"})
    await queue.bind(unrouted)
    return await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True,
                                          arguments={"alternate-exchange": unrouted.name})


async def declare_service_queues(channel: AbstractChannel, exchange: AbstractExchange, service: str,
                                 patterns: list[str], retry_delays_ms: list[int]) -> AbstractQueue:
    """Quorum queue bound to the service's event types, TTL retry queues feeding back into it, a parking queue."""
    names = queue_names(service)
    await channel.declare_queue(names["parked"], durable=True, arguments={"x-queue-type": "quorum"})
    main = await channel.declare_queue(names["main"], durable=True, arguments={
        "x-queue-type": "quorum",
        # Backstop for crash loops (the handler kills the process before it can retry or park).
        "x-delivery-limit": 10,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": names["parked"],
    })
    for delay in retry_delays_ms:
        await channel.declare_queue(retry_queue_name(service, delay), durable=True, arguments={
            "x-message-ttl": delay,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": names["main"],
        })
    for pattern in patterns:
        await main.bind(exchange, routing_key=pattern)
    return main


def to_message(event: CloudEvent, headers: dict[str, Any] | None = None) -> aio_pika.Message:
    hdrs: dict[str, Any] = {"ce-type": event.type}
    if event.traceparent:
        hdrs["traceparent"] = event.traceparent
    if event.correlationid:
        hdrs["correlation-id"] = event.correlationid
    hdrs.update(headers or {})
    return aio_pika.Message(
        body=event.model_dump_json().encode(),
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(event.id),
        type=event.type,
        timestamp=event.time,
        app_id=event.source,
        correlation_id=event.correlationid,
        headers=hdrs,
    )


class AmqpPublisher:
    """Publishes batches pipelined (all in flight, then await every confirm), mandatory and persistent."""

    def __init__(self, url: str, exchange: str, timeout: float = 10.0) -> None:
        self.url = url
        self.exchange_name = exchange
        self.timeout = timeout
        self._conn: aio_pika.abc.AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> AbstractExchange:
        async with self._lock:
            if self._exchange is not None and self._conn is not None and not self._conn.is_closed \
                    and not self._exchange.channel.is_closed:
                return self._exchange
            await self.close()
            self._conn = await aio_pika.connect(self.url, timeout=5)
            channel = await self._conn.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await declare_exchange(channel, self.exchange_name)
            return self._exchange

    async def publish_batch(self, events: list[CloudEvent]) -> list[BaseException | None]:
        exchange = await self._ensure()
        results = await asyncio.gather(
            *(exchange.publish(to_message(e), routing_key=e.type, mandatory=True, timeout=self.timeout) for e in events),
            return_exceptions=True,
        )
        errors = [r if isinstance(r, BaseException) else None for r in results]
        if any(errors) and (self._conn is None or self._conn.is_closed or exchange.channel.is_closed):
            await self.close()
            raise ConnectionError(f"broker connection lost during publish: {next(e for e in errors if e)!r}")
        return errors

    async def close(self) -> None:
        conn, self._conn, self._exchange = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def ping(self) -> None:
        await self._ensure()


#: Largest batch of batchable events handled in one transaction, and how long the first waits for more.
BATCH_MAX = 100
BATCH_LINGER = 0.005


class AmqpConsumerRunner:
    """Consumes the service queue: handle, then ack; on failure re-publish to a delay queue, finally park."""

    def __init__(self, consumer: EventConsumer, url: str, exchange: str, prefetch: int = 100,
                 retry_delays_ms: list[int] | None = None) -> None:
        self.consumer = consumer
        self.url = url
        self.exchange_name = exchange
        self.prefetch = prefetch
        self.retry_delays_ms = retry_delays_ms if retry_delays_ms is not None else [1000, 10000, 60000]
        self.names = queue_names(consumer.service)
        self.connected = asyncio.Event()
        #: When the connect / watch loop last turned: it keeps turning while the broker is down (reconnecting with
        #: back-off up to 10 s), and stops only if the loop itself is stuck.
        self.beat = time.monotonic()
        self._channel: AbstractChannel | None = None
        #: Batchable events (see ``Subscription.batch_handler``) wait up to ``BATCH_LINGER`` for company.
        self.batch_size = min(prefetch, BATCH_MAX)
        self._batch: list[tuple[CloudEvent, asyncio.Future[BaseException | None]]] = []
        #: Messages being handled (each delivery runs as its own task): a stopping worker lets them finish.
        self._handling: set[asyncio.Task[Any]] = set()
        self._flush: asyncio.TimerHandle | None = None

    @property
    def max_attempts(self) -> int:
        return len(self.retry_delays_ms) + 1

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            self.beat = time.monotonic()
            try:
                await self._consume_until_closed(stop)
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - reconnect on anything
                log.warning("consumer_connection_failed", service=self.consumer.service, error=repr(exc))
            finally:
                self.connected.clear()
                self._channel = None
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, 10)

    async def _consume_until_closed(self, stop: asyncio.Event) -> None:
        conn = await aio_pika.connect(self.url, timeout=5)
        closed = asyncio.Event()
        conn.close_callbacks.add(lambda *_: closed.set())
        try:
            # A retry or parking copy that no queue took (someone deleted it) must not count as forwarded.
            channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
            channel.close_callbacks.add(lambda *_: closed.set())
            await channel.set_qos(prefetch_count=self.prefetch)
            exchange = await declare_exchange(channel, self.exchange_name)
            queue = await declare_service_queues(channel, exchange, self.consumer.service,
                                                 self.consumer.patterns, self.retry_delays_ms)
            self._channel = channel
            tag = await queue.consume(self._on_message)
            self.connected.set()
            log.info("consumer_started", service=self.consumer.service, queue=queue.name)
            waiters = [asyncio.ensure_future(closed.wait()), asyncio.ensure_future(stop.wait())]
            try:
                while not closed.is_set() and not stop.is_set():
                    self.beat = time.monotonic()
                    # Watchdog: a close callback can be missed; a closed channel must never sit idle.
                    await asyncio.wait(waiters, timeout=2, return_when=asyncio.FIRST_COMPLETED)
                    if conn.is_closed or channel.is_closed:
                        break
            finally:
                for w in waiters:
                    w.cancel()
            if stop.is_set() and not closed.is_set():
                await self._finish_handling(queue, tag)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _finish_handling(self, queue: AbstractQueue, tag: str) -> None:
        """Stopping (SIGTERM): no new deliveries, and the messages under way are handled and acked before the
        connection closes, instead of being cut off, rolled back and delivered again (the worker's drain bounds
        the wait)."""
        with contextlib.suppress(Exception):
            await queue.cancel(tag)
        self._start_batch()
        while self._handling:
            await asyncio.wait(set(self._handling))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handling.add(task)
            task.add_done_callback(self._handling.discard)
        attempt = int((message.headers or {}).get("x-attempt", 0)) + 1
        try:
            event = CloudEvent.model_validate_json(message.body)
        except ValidationError as exc:
            await self._forward(message, self.names["parked"], attempt, f"undecodable event: {exc}")
            return
        if self.batch_size > 1 and self.consumer.batchable(event.type):
            if await self._in_batch(event) is None:
                await message.ack()
                return
            # The batch failed as a whole: this event goes alone, with the usual retries.
        try:
            await self.consumer.handle(event)
        except Exception as exc:  # noqa: BLE001 - every failure is retried, then parked
            if is_transient(exc) and self.retry_delays_ms:
                # The database (or the network) is down, not the event: wait and retry without using up an attempt,
                # so an outage does not park everything delivered meanwhile.
                log.warning("event_handler_transient_failure", event_id=str(event.id), type=event.type,
                            error=type(exc).__name__)
                await self._forward(message, retry_queue_name(self.consumer.service, self.retry_delays_ms[-1]),
                                    attempt - 1, f"transient: {type(exc).__name__}")
                return
            log.warning("event_handler_failed", event_id=str(event.id), type=event.type, attempt=attempt,
                        error=type(exc).__name__)
            if attempt >= self.max_attempts:
                await self._forward(message, self.names["parked"], attempt, repr(exc))
            else:
                delay = self.retry_delays_ms[attempt - 1]
                await self._forward(message, retry_queue_name(self.consumer.service, delay), attempt, repr(exc))
            return
        await message.ack()

    def _in_batch(self, event: CloudEvent) -> asyncio.Future[BaseException | None]:
        """Join the pending batch; resolves to None once it committed, or to the error that failed it."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[BaseException | None] = loop.create_future()
        self._batch.append((event, done))
        if len(self._batch) >= self.batch_size:
            self._start_batch()
        elif self._flush is None:
            self._flush = loop.call_later(BATCH_LINGER, self._start_batch)
        return done

    def _start_batch(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        items, self._batch = self._batch, []
        if items:
            asyncio.get_running_loop().create_task(self._run_batch(items))

    async def _run_batch(self, items: list[tuple[CloudEvent, asyncio.Future[BaseException | None]]]) -> None:
        error: BaseException | None = None
        try:
            await self.consumer.handle_batch([event for event, _ in items])
        except Exception as exc:  # noqa: BLE001 - each event is then retried on its own
            log.warning("event_batch_failed", service=self.consumer.service, size=len(items),
                        error=type(exc).__name__)
            error = exc
        for _, done in items:
            if not done.done():
                done.set_result(error)

    async def _forward(self, message: AbstractIncomingMessage, queue: str, attempt: int, error: str) -> None:
        """Copy to ``queue`` (confirmed), then ack; if the copy fails, requeue the original instead."""
        headers = dict(message.headers or {})
        headers.update({"x-attempt": attempt, "x-last-error": error[:1000]})
        copy = aio_pika.Message(
            body=message.body, content_type=message.content_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id, type=message.type, timestamp=message.timestamp, app_id=message.app_id,
            correlation_id=message.correlation_id, headers=headers,
        )
        try:
            assert self._channel is not None
            await self._channel.default_exchange.publish(copy, routing_key=queue, timeout=10)
        except Exception as exc:  # noqa: BLE001
            log.exception("forward_failed", queue=queue)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            if isinstance(exc, aio_pika.exceptions.DeliveryError):
                # No such queue any more: reconnect, which declares the service's queues again.
                with contextlib.suppress(Exception):
                    await self._channel.close()
            return
        if queue == self.names["parked"]:
            log.error("event_parked", message_id=message.message_id, type=message.type, attempts=attempt, error=error[:300])
        await message.ack()


async def list_parked(url: str, service: str, limit: int = 100) -> list[dict[str, Any]]:
    """Peek at parked messages (they stay parked: the channel closes without acking)."""
    conn = await aio_pika.connect(url, timeout=5)
    async with conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(queue_names(service)["parked"], passive=True)
        out = []
        for _ in range(limit):
            msg = await queue.get(no_ack=False, fail=False, timeout=5)
            if msg is None:
                break
            headers = msg.headers or {}
            out.append({"message_id": msg.message_id, "type": msg.type, "attempts": headers.get("x-attempt"),
                        "error": headers.get("x-last-error"), "death": str(headers.get("x-death", ""))[:300]})
    return out


async def replay_parked(url: str, service: str, message_id: str | None = None, limit: int = 10_000) -> int:
    """Move parked messages (all, or one by id) back to the service queue with a fresh retry budget."""
    names = queue_names(service)
    conn = await aio_pika.connect(url, timeout=5)
    replayed = 0
    async with conn:
        channel = await conn.channel(publisher_confirms=True)
        queue = await channel.declare_queue(names["parked"], passive=True)
        for _ in range(limit):
            msg = await queue.get(no_ack=False, fail=False, timeout=5)
            if msg is None:
                break
            if message_id is not None and msg.message_id != message_id:
                continue  # left unacked: requeued when the channel closes
            headers = {k: v for k, v in (msg.headers or {}).items() if k not in ("x-attempt", "x-last-error", "x-death")}
            await channel.default_exchange.publish(aio_pika.Message(
                body=msg.body, content_type=msg.content_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=msg.message_id, type=msg.type, timestamp=msg.timestamp, headers=headers,
            ), routing_key=names["main"], timeout=10)
            await msg.ack()
            replayed += 1
    return replayed
