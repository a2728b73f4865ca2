"""The web tier's two helper threads: one stores deliveries, one hands them to the broker.

Measured, not guessed (docs/benchmarks.md): a webhook costs the server stack about as much as the
store and the publish together, and doing both per request on the thread pool made intake a fraction
of what the stack can serve, with SQLite writers sleeping in its busy handler. So:

- `DeliveryWriter`: requests queue their delivery and wait; one thread stores whatever is waiting in
  ONE transaction (a group commit) and then answers them all. A 202 still means "in the database":
  nobody is answered before the commit that holds their row.
- `Publisher`: stored ids are published in batches (kombu's Redis pipeline) after the answers, off
  the request's path, each to its lane's queue (`syncer.lanes`: status changes apart from creates),
  the status lane's first. If the broker is down nothing waits: the ids are dropped with a warning and the
  sweeper hands those rows out once it is back, exactly as when one publish fails.

Both threads start with the first request and are daemons: a web process that dies loses only
requests that were never answered (their senders retry) and publishes the sweeper covers.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from syncer import logs, metrics
from syncer.lanes import Lane
from syncer.store import deliveries

log = logs.get_logger(__name__)

MAX_BATCH = 256  # rows per transaction; a bound on how long the first of them waits
PUBLISH_LINGER_SECONDS = 0.01
MAX_PENDING_PUBLISHES = 100_000  # past this (broker down for long) ids are left to the sweeper



class PublishMany(Protocol):
    """Publishes stored ids to their lane's queue (`worker.publish_batch`); raises when the broker
    cannot take them."""

    def __call__(self, ids: Sequence[int], lane: Lane = ..., /) -> None: ...


class Enqueue(Protocol):
    def __call__(self, delivery_id: int, lane: Lane = ..., /) -> None: ...


_Waiting = tuple[deliveries.Incoming, Lane, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class DeliveryWriter:
    def __init__(self, engine: Engine, on_stored: PublishMany | None = None) -> None:
        self._engine = engine
        self._on_stored = on_stored
        self._queue: queue.SimpleQueue[_Waiting] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    async def store(self, delivery: deliveries.Incoming, lane: Lane = Lane.DEFAULT) -> deliveries.Stored:
        """Stored (or recognised as a duplicate) and committed; raises what the database raised.
        Once stored it is handed on (`on_stored`) with its lane."""
        self._ensure_started()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[deliveries.Stored] = loop.create_future()
        self._queue.put((delivery, lane, loop, future))
        return await future

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="syncer-intake-writer",
                                                    daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            outcomes = self._store([item for item, _, _, _ in batch])
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
            for (_, _, loop, future), outcome in zip(batch, outcomes, strict=True):
                by_loop.setdefault(loop, []).append((future, outcome))
            for loop, answers in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_resolve, answers)
                except RuntimeError:  # that event loop has closed: nobody is waiting any more
                    pass
            if self._on_stored is not None:
                fresh: dict[Lane, list[int]] = {}
                for (item, lane, _, _), o in zip(batch, outcomes, strict=True):
                    if isinstance(o, deliveries.Stored) and not o.duplicate and not item.ignored:
                        fresh.setdefault(lane, []).append(o.delivery_id)
                if status := fresh.pop(Lane.STATUS, None):
                    self._on_stored(status, Lane.STATUS)
                if default := fresh.pop(Lane.DEFAULT, None):
                    self._on_stored(default)

    def _store(self, items: list[deliveries.Incoming]) -> list[deliveries.Stored | BaseException]:
        try:
            return list(deliveries.store_many(self._engine, items))
        except Exception as exc:
            if len(items) == 1:
                return [exc]
        # One transaction failed: store them one by one, so one bad row fails only its own request.
        outcomes: list[deliveries.Stored | BaseException] = []
        for item in items:
            try:
                outcomes += deliveries.store_many(self._engine, [item])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes


def _resolve(answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, outcome in answers:
        if future.done():  # the request was cancelled (client went away)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class Publisher:
    """Publishes stored delivery ids from one thread, as many per broker round trip as are waiting:
    the status lane's first, then the default lane's (`syncer.lanes`)."""

    def __init__(self, publish_many: PublishMany) -> None:
        self._publish_many = publish_many
        self._queue: queue.SimpleQueue[tuple[int, Lane]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, ids: Sequence[int], lane: Lane = Lane.DEFAULT) -> None:
        if self._queue.qsize() > MAX_PENDING_PUBLISHES:
            metrics.ENQUEUE_FAILURES.inc(len(ids))
            log.warning("%s deliveries not enqueued (publisher backlog); left for the sweeper", len(ids),
                        delivery_ids=list(ids))
            return
        for delivery_id in ids:
            self._queue.put((delivery_id, lane))
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="syncer-intake-publisher",
                                                    daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            waiting = [self._queue.get()]
            # Linger: a pipeline of many messages costs a third of the CPU per message of a pipeline
            # of one, and under load that CPU is what the web process is short of. The wait is after
            # the answers, so it delays only when a worker sees the delivery, by milliseconds.
            deadline = time.monotonic() + PUBLISH_LINGER_SECONDS
            while len(waiting) < MAX_BATCH:
                left = deadline - time.monotonic()
                try:
                    waiting.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            status = [delivery_id for delivery_id, lane in waiting if lane is Lane.STATUS]
            if status:
                self._publish(status, Lane.STATUS)
            if len(status) < len(waiting):
                self._publish([delivery_id for delivery_id, lane in waiting if lane is not Lane.STATUS],
                              Lane.DEFAULT)

    def _publish(self, ids: list[int], lane: Lane) -> None:
        try:
            # The default lane's call is the one-argument call publishers have always taken.
            if lane is Lane.DEFAULT:
                self._publish_many(ids)
            else:
                self._publish_many(ids, lane)
        except Exception as exc:
            metrics.ENQUEUE_FAILURES.inc(len(ids))
            log.warning("broker unavailable, %s deliveries left for the sweeper (first %s): %s",
                        len(ids), ids[0], type(exc).__name__, delivery_ids=ids)


def one_by_one(enqueue: Enqueue) -> PublishMany:
    """A PublishMany from a single-id enqueue function (tests pass those)."""

    def publish_many(ids: Sequence[int], lane: Lane = Lane.DEFAULT, /) -> None:
        for delivery_id in ids:
            if lane is Lane.DEFAULT:
                enqueue(delivery_id)
            else:
                enqueue(delivery_id, lane)

    return publish_many
