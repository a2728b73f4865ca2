"""The web tier's two helper threads (syncer/web/intake.py): the writer answers a request only once its row
is committed, one bad delivery fails only its own request, and the publisher hands every stored id
to the broker once, in batches, survives a broker that fails, and bounds its backlog."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from syncer import metrics
from syncer.store import deliveries, migrate
from syncer.store.engine import make_engine
from syncer.web import intake
from tests.harness import wait_for


@pytest.fixture
def own_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def incoming(key: str, payload: bytes = b"{}") -> deliveries.Incoming:
    return deliveries.Incoming("sentry", key, "issue", "created", payload)


def committed(engine: Engine, delivery_id: int) -> bool:
    """Seen by another connection: committed, not merely written inside the writer's transaction."""
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM deliveries WHERE id = :id"), {"id": delivery_id}
        ).scalar_one() == 1


def test_each_request_is_answered_after_the_commit_that_holds_its_row(own_engine: Engine) -> None:
    published: list[list[int]] = []
    writer = intake.DeliveryWriter(own_engine, on_stored=published.append)

    async def one(n: int) -> tuple[deliveries.Stored, bool]:
        stored = await writer.store(incoming(f"key-{n % 40}"))  # 40 keys, 100 requests: duplicates too
        return stored, committed(own_engine, stored.delivery_id)

    async def burst() -> list[tuple[deliveries.Stored, bool]]:
        return await asyncio.gather(*(one(n) for n in range(100)))

    answers = asyncio.run(burst())
    assert all(seen for _, seen in answers)
    ids = {stored.delivery_id for stored, _ in answers}
    assert len(ids) == 40
    assert sum(not stored.duplicate for stored, _ in answers) == 40
    # Only new rows go to the publisher, each once, a hand-off per group commit. The writer hands a
    # batch over after answering its requests, so the last hand-off may come just after the answers.
    wait_for(lambda: sum(len(batch) for batch in published) >= len(ids), 10, what="the last hand-off")
    assert sorted(i for batch in published for i in batch) == sorted(ids)


def test_a_delivery_that_cannot_be_stored_fails_only_its_own_request(own_engine: Engine) -> None:
    writer = intake.DeliveryWriter(own_engine)

    async def burst() -> list[deliveries.Stored | BaseException]:
        requests = [incoming(f"fine-{n}") for n in range(5)]
        requests.insert(2, incoming("broken", payload=b"\xff\xfe not UTF-8"))
        return await asyncio.gather(*(writer.store(r) for r in requests), return_exceptions=True)

    outcomes = asyncio.run(burst())
    assert isinstance(outcomes[2], UnicodeDecodeError)
    fine = [o for n, o in enumerate(outcomes) if n != 2]
    assert all(isinstance(o, deliveries.Stored) and committed(own_engine, o.delivery_id) for o in fine)


class Broker:
    """A publish_many that records what it is given, and can be made to fail or to hang."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.entered = 0
        self.failures = 0  # fail this many calls, then succeed
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, ids: Sequence[int]) -> None:
        self.entered += 1
        self.gate.wait(30)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker down")
        self.calls.append(list(ids))

    @property
    def published(self) -> list[int]:
        return [i for call in self.calls for i in call]


def failures() -> float:
    return metrics.REGISTRY.get_sample_value("syncer_enqueue_failures_total") or 0.0


def test_publisher_hands_over_every_id_once_in_order_and_in_batches() -> None:
    broker = Broker()
    publisher = intake.Publisher(broker)
    for start in range(0, 600, 6):
        publisher.submit(list(range(start, start + 6)))
    wait_for(lambda: len(broker.published) == 600, timeout=10, what="every id to be published")
    assert broker.published == list(range(600))
    assert len(broker.calls) < 100  # lingering gathered several hand-offs per publish
    assert all(len(call) <= intake.MAX_BATCH for call in broker.calls)


def test_publisher_survives_a_failing_broker_and_counts_what_it_left_to_the_sweeper() -> None:
    broker = Broker()
    broker.failures = 1
    publisher = intake.Publisher(broker)
    before = failures()
    publisher.submit([1, 2, 3])
    wait_for(lambda: failures() == before + 3, timeout=10, what="the failed publish to be counted")
    publisher.submit([4])
    wait_for(lambda: broker.published == [4], timeout=10, what="the publisher to go on afterwards")


def test_publisher_backlog_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake, "MAX_PENDING_PUBLISHES", 10)
    broker = Broker()
    broker.gate.clear()  # a broker that hangs: nothing drains
    publisher = intake.Publisher(broker)
    before = failures()
    publisher.submit([0])
    wait_for(lambda: broker.entered == 1, timeout=10, what="the first publish to hang")
    for start in range(1, 31, 5):
        publisher.submit(list(range(start, start + 5)))
    # 1-5, 6-10, 11-15 fit under the bound (10 pending when the third came); the rest are refused.
    assert failures() == before + 15
    broker.gate.set()
    wait_for(lambda: sorted(broker.published) == list(range(16)), timeout=10, what="the backlog to drain")
    # The refused ids never come later: the publisher keeps order, so once a marker submitted now is
    # published, whatever was still pending has gone out before it.
    publisher.submit([99])
    wait_for(lambda: 99 in broker.published, timeout=10, what="the marker to be published")
    assert sorted(broker.published) == [*range(16), 99]
