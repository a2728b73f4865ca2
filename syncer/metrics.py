"""Prometheus metrics.

The web process serves `/metrics` for the whole deployment: its own intake counters, gauges read
from the database at scrape time (inbox, dead letters, links: true across every process), and
counters that workers add to a Redis hash (shared by all worker processes).
"""

from __future__ import annotations

import logging

import redis
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncer.store.schema import DeadLetter, Delivery, Link

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE", "WorkerCounters", "render"]

REGISTRY = CollectorRegistry()
WEBHOOKS = Counter(
    "syncer_webhooks_total",
    "Webhook deliveries received, by source and result",
    ["source", "result"],
    registry=REGISTRY,
)
INTAKE_SECONDS = Histogram(
    "syncer_intake_store_seconds",
    "Time to store one delivery durably",
    ["source"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
ENQUEUE_FAILURES = Counter(
    "syncer_enqueue_failures_total",
    "Deliveries stored but not handed to the broker (left to the sweeper)",
    registry=REGISTRY,
)

COUNTERS_KEY = "syncer:counters"
GAUGES_KEY = "syncer:gauges"


class WorkerCounters:
    """Counters incremented by workers, kept in Redis so every worker process adds to one total."""

    def __init__(self, client: redis.Redis | None) -> None:
        self.client = client
        self.local: dict[str, int] = {}
        self.local_gauges: dict[str, float] = {}

    def incr(self, name: str, amount: int = 1, **labels: str) -> None:
        field = name + "".join(f"|{k}={v}" for k, v in sorted(labels.items()))
        if self.client is None:
            self.local[field] = self.local.get(field, 0) + amount
            return
        try:
            self.client.hincrby(COUNTERS_KEY, field, amount)
        except redis.RedisError:
            # A metric is never worth failing a sync over.
            self.local[field] = self.local.get(field, 0) + amount

    def read(self) -> dict[str, int]:
        values = dict(self.local)
        if self.client is not None:
            try:
                raw = self.client.hgetall(COUNTERS_KEY)
            except redis.RedisError:
                raw = {}
            for key, value in raw.items():
                name = key.decode() if isinstance(key, bytes) else str(key)
                values[name] = values.get(name, 0) + int(value)
        return values

    def set_gauge(self, name: str, value: float, **labels: str) -> None:
        """A value that is replaced, not added to (the last reconciliation's duration, its time)."""
        field = name + "".join(f"|{k}={v}" for k, v in sorted(labels.items()))
        self.local_gauges[field] = value
        if self.client is None:
            return
        try:
            self.client.hset(GAUGES_KEY, field, repr(float(value)))
        except redis.RedisError:
            pass  # kept locally: a metric is never worth failing a sync over

    def read_gauges(self) -> dict[str, float]:
        values = dict(self.local_gauges)
        if self.client is not None:
            try:
                raw = self.client.hgetall(GAUGES_KEY)
            except redis.RedisError:
                raw = {}
            for key, value in raw.items():
                name = key.decode() if isinstance(key, bytes) else str(key)
                values[name] = float(value)
        return values


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _line(name: str, labels: dict[str, str], value: float) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        return f"{name}{{{inner}}} {value}"
    return f"{name} {value}"


def render(engine: Engine, counters: WorkerCounters | None = None) -> bytes:
    lines: list[str] = []
    try:
        with Session(engine) as session:
            lines.append("# TYPE syncer_deliveries gauge")
            for state, n in session.exec(select(Delivery.state, func.count()).group_by(Delivery.state)).all():
                lines.append(_line("syncer_deliveries", {"state": state}, n))
            lines.append("# TYPE syncer_links gauge")
            for state, n in session.exec(select(Link.state, func.count()).group_by(Link.state)).all():
                lines.append(_line("syncer_links", {"state": state}, n))
            lines.append("# TYPE syncer_dead_letters gauge")
            for state, n in session.exec(
                select(DeadLetter.state, func.count()).group_by(DeadLetter.state)
            ).all():
                lines.append(_line("syncer_dead_letters", {"state": state}, n))
    except Exception as exc:
        log.warning("metrics: database unavailable: %s", type(exc).__name__)
        lines.append(_line("syncer_database_up", {}, 0))
    if counters is not None:
        names = set()
        for field, value in sorted(counters.read().items()):
            name, *pairs = field.split("|")
            if name not in names:
                lines.append(f"# TYPE {name} counter")
                names.add(name)
            labels = dict(pair.split("=", 1) for pair in pairs)
            lines.append(_line(name, labels, value))
        gauges = set()
        for field, gauge in sorted(counters.read_gauges().items()):
            name, *pairs = field.split("|")
            if name not in gauges:
                lines.append(f"# TYPE {name} gauge")
                gauges.add(name)
            lines.append(_line(name, dict(pair.split("=", 1) for pair in pairs), gauge))
    return generate_latest(REGISTRY) + ("\n".join(lines) + "\n").encode()
