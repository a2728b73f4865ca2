"""Prometheus metrics.

The web process serves `/metrics` for the whole deployment: its own intake counters, gauges read
from the database at scrape time (inbox, dead letters, links: true across every process), and
counters that workers add to a Redis hash (shared by all worker processes). The last two are
`prometheus_client` custom collectors, built per scrape; every name is a `Metric`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

import redis
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from syncer.store import health

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE", "CountedCalls", "Metric", "WorkerCounters", "render"]


class Metric(StrEnum):
    """Every metric syncer serves, by the name scrapers know it by."""

    # The web process's own, in `REGISTRY`.
    WEBHOOKS = "syncer_webhooks_total"
    INTAKE_STORE_SECONDS = "syncer_intake_store_seconds"
    ENQUEUE_FAILURES = "syncer_enqueue_failures_total"
    # Read from the database at scrape time (`DatabaseStates`).
    DELIVERIES = "syncer_deliveries"
    LINKS = "syncer_links"
    LINKS_UNREACHABLE = "syncer_links_unreachable"
    DEAD_LETTERS = "syncer_dead_letters"
    DATABASE_UP = "syncer_database_up"
    INBOX_OLDEST_SECONDS = "syncer_inbox_oldest_seconds"
    # Added to by workers and reconcile runs, in Redis (`WorkerCounters`, `SharedCounters`).
    DEAD_LETTERS_TOTAL = "syncer_dead_letters_total"
    DELIVERY_RETRIES = "syncer_delivery_retries_total"
    ASSIGNEE_UNRESOLVED = "syncer_assignee_unresolved_total"
    TICKETS_UNASSIGNED = "syncer_tickets_unassigned_total"
    TICKET_FIELDS_LEFT_OUT = "syncer_ticket_fields_left_out_total"
    TICKETS_MADE = "syncer_tickets_made_total"
    API_CALLS = "syncer_api_calls_total"
    RECONCILE_RUNS = "syncer_reconcile_runs_total"
    RECONCILE_LINKS_CHECKED = "syncer_reconcile_links_checked_total"
    RECONCILE_DRIFT = "syncer_reconcile_drift_total"
    RECONCILE_REPAIRS = "syncer_reconcile_repairs_total"
    RECONCILE_BACKFILLED = "syncer_reconcile_backfilled_total"
    RECONCILE_REQUEUED = "syncer_reconcile_requeued_total"
    RECONCILE_API_CALLS = "syncer_reconcile_api_calls_total"
    # Replaced, not added to, by each reconcile run.
    RECONCILE_LAST_DURATION = "syncer_reconcile_last_duration_seconds"
    RECONCILE_LAST_RUN = "syncer_reconcile_last_run_timestamp_seconds"
    RECONCILE_LAST_LINKS_CHECKED = "syncer_reconcile_last_links_checked"
    RECONCILE_LAST_DRIFT = "syncer_reconcile_last_drift"
    RECONCILE_LAST_SUCCESS = "syncer_reconcile_last_success_timestamp_seconds"


HELP: dict[Metric, str] = {
    Metric.WEBHOOKS: "Webhook deliveries received, by source and result",
    Metric.INTAKE_STORE_SECONDS: "Time to store one delivery durably",
    Metric.ENQUEUE_FAILURES: "Deliveries stored but not handed to the broker (left to the sweeper)",
    Metric.DELIVERIES: "Inbox deliveries, by state",
    Metric.LINKS: "Links between Sentry issues and Jira tickets, by state",
    Metric.LINKS_UNREACHABLE: "Active links whose ticket Jira answers 404 for without having sent a deletion",
    Metric.DEAD_LETTERS: "Dead letters, by state",
    Metric.DATABASE_UP: "1 when the database answered this scrape, 0 when it did not",
    Metric.INBOX_OLDEST_SECONDS: "Age of the oldest delivery not yet finished (0 when none waits)",
    Metric.DEAD_LETTERS_TOTAL: "Deliveries that became dead letters, by source and reason",
    Metric.DELIVERY_RETRIES: "Deliveries postponed for another try, by source",
    Metric.ASSIGNEE_UNRESOLVED: "Look-ups that found no account Jira would accept as assignee, by problem",
    Metric.TICKETS_UNASSIGNED: "Tickets filed or kept without the assignee asked for, by problem",
    Metric.TICKET_FIELDS_LEFT_OUT: "Policy fields or components left off new tickets, by problem",
    Metric.TICKETS_MADE: "Tickets created or adopted for Sentry issues, by team and how",
    Metric.API_CALLS: "Calls to Jira and Sentry that got an answer, by side and status (ok, 429, 4xx, 5xx)",
    Metric.RECONCILE_RUNS: "Reconcile runs, by result",
    Metric.RECONCILE_LINKS_CHECKED: "Links checked by reconcile runs",
    Metric.RECONCILE_DRIFT: "Drift found by reconcile runs, by kind",
    Metric.RECONCILE_REPAIRS: "Repairs by reconcile runs, by result",
    Metric.RECONCILE_BACKFILLED: "Tickets backfilled by reconcile runs",
    Metric.RECONCILE_REQUEUED: "Deliveries and dead letters handed out again by reconcile runs",
    Metric.RECONCILE_API_CALLS: "API calls made by reconcile runs, by side",
    Metric.RECONCILE_LAST_DURATION: "Duration of the last reconcile run",
    Metric.RECONCILE_LAST_RUN: "When the last reconcile run ended",
    Metric.RECONCILE_LAST_LINKS_CHECKED: "Links checked by the last reconcile run",
    Metric.RECONCILE_LAST_DRIFT: "Links found drifted by the last reconcile run",
    Metric.RECONCILE_LAST_SUCCESS: "When the last successful reconcile run ended",
}

REGISTRY = CollectorRegistry()
WEBHOOKS = Counter(Metric.WEBHOOKS, HELP[Metric.WEBHOOKS], ["source", "result"], registry=REGISTRY)
INTAKE_SECONDS = Histogram(
    Metric.INTAKE_STORE_SECONDS,
    HELP[Metric.INTAKE_STORE_SECONDS],
    ["source"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
ENQUEUE_FAILURES = Counter(Metric.ENQUEUE_FAILURES, HELP[Metric.ENQUEUE_FAILURES], registry=REGISTRY)

COUNTERS_KEY = "syncer:counters"
GAUGES_KEY = "syncer:gauges"
# The last reconcile run's summary (JSON), replaced by each run: what the console's overview shows.
LAST_RECONCILE_KEY = "syncer:reconcile:last"


def _field(name: Metric, labels: dict[str, str]) -> str:
    """A sample's key in the Redis hash: `name|label=value|...`, labels sorted (a `|` in a value, as
    a team's name might have, becomes `_`)."""
    return name.value + "".join(f"|{k}={v.replace('|', '_')}" for k, v in sorted(labels.items()))


class WorkerCounters:
    """Counters incremented by workers, kept in Redis so every worker process adds to one total."""

    def __init__(self, client: redis.Redis | None) -> None:
        self.client = client
        self.local: dict[str, int] = {}
        self.local_gauges: dict[str, float] = {}
        self.local_last_reconcile: dict[str, object] | None = None

    def incr(self, name: Metric, amount: int = 1, **labels: str) -> None:
        field = _field(name, labels)
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

    def set_gauge(self, name: Metric, value: float, **labels: str) -> None:
        """A value that is replaced, not added to (the last reconciliation's duration, its time)."""
        field = _field(name, labels)
        self.local_gauges[field] = value
        if self.client is None:
            return
        try:
            self.client.hset(GAUGES_KEY, field, repr(float(value)))
        except redis.RedisError:
            pass  # kept locally: a metric is never worth failing a sync over

    def set_last_reconcile(self, summary: dict[str, object]) -> None:
        """The last run's summary (when, drift by kind, repairs), replacing the one before."""
        self.local_last_reconcile = summary
        if self.client is None:
            return
        try:
            self.client.set(LAST_RECONCILE_KEY, json.dumps(summary, default=str))
        except redis.RedisError:
            pass  # kept locally: a metric is never worth failing a sync over

    def last_reconcile(self) -> dict[str, object] | None:
        if self.client is not None:
            try:
                raw = self.client.get(LAST_RECONCILE_KEY)
            except redis.RedisError:
                raw = None
            if raw:
                try:
                    found = json.loads(raw)
                except ValueError:
                    found = None
                if isinstance(found, dict):
                    return found
        return self.local_last_reconcile

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


class ThrottleLike(Protocol):
    """`syncer.ratelimit.Throttle`, as far as counting calls needs it."""

    def before(self, method: str, url: str) -> None: ...
    def after(self, method: str, url: str, status: int, headers: Mapping[str, str]) -> None: ...


class CountedCalls:
    """An API client's throttle hooks with every answered call counted (by side and status class),
    around the rate limiter when there is one: `syncer_api_calls_total`."""

    def __init__(self, side: str, counters: WorkerCounters, inner: ThrottleLike | None = None) -> None:
        self.side = side
        self.counters = counters
        self.inner = inner

    def before(self, method: str, url: str) -> None:
        if self.inner is not None:
            self.inner.before(method, url)

    def after(self, method: str, url: str, status: int, headers: Mapping[str, str]) -> None:
        self.counters.incr(Metric.API_CALLS, side=self.side, status=status_class(status))
        if self.inner is not None:
            self.inner.after(method, url, status, headers)


def status_class(status: int) -> str:
    """429 on its own (a rate limit), else the class: ok (1xx-3xx), 4xx, 5xx."""
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    if status >= 400:
        return "4xx"
    return "ok"


class DatabaseStates(Collector):
    """Rows by state, counted at scrape time; `syncer_database_up 0` alone when the database fails."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Family]:
        try:
            counts = health.state_counts(self.engine)
        except Exception as exc:
            log.warning("metrics: database unavailable: %s", type(exc).__name__)
            yield GaugeMetricFamily(Metric.DATABASE_UP, HELP[Metric.DATABASE_UP], value=0)
            return
        yield GaugeMetricFamily(Metric.DATABASE_UP, HELP[Metric.DATABASE_UP], value=1)
        oldest = 0.0 if counts.oldest_unfinished is None else max(
            0.0, (datetime.now(UTC) - counts.oldest_unfinished).total_seconds())
        yield GaugeMetricFamily(Metric.INBOX_OLDEST_SECONDS, HELP[Metric.INBOX_OLDEST_SECONDS], value=oldest)
        for name, by_state in (
            (Metric.DELIVERIES, counts.deliveries),
            (Metric.LINKS, counts.links),
            (Metric.DEAD_LETTERS, counts.dead_letters),
        ):
            family = GaugeMetricFamily(name, HELP[name], labels=["state"])
            for state, n in sorted(by_state.items()):
                family.add_metric([state], n)
            yield family
        yield GaugeMetricFamily(Metric.LINKS_UNREACHABLE, HELP[Metric.LINKS_UNREACHABLE],
                                value=counts.unreachable_links)


class SharedCounters(Collector):
    """What `WorkerCounters` holds in Redis: counters, then gauges, each name once, in name order."""

    def __init__(self, counters: WorkerCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Family]:
        yield from _families(self.counters.read().items(), CounterMetricFamily)
        yield from _families(self.counters.read_gauges().items(), GaugeMetricFamily)


def _families(
    samples: Iterable[tuple[str, float]], kind: type[CounterMetricFamily] | type[GaugeMetricFamily]
) -> Iterator[Family]:
    families: dict[str, Family] = {}
    for field, value in sorted(samples):
        name, *pairs = field.split("|")
        family = families.get(name)
        if family is None:
            # A name this version does not know (written by another version) is served as it is.
            known = name in Metric._value2member_map_
            family = families[name] = kind(name, HELP[Metric(name)] if known else name)
        # A counter family's name drops `_total`; its samples keep it.
        family.add_sample(name, dict(pair.split("=", 1) for pair in pairs), value)
    yield from families.values()


def render(engine: Engine, counters: WorkerCounters | None = None) -> bytes:
    body = generate_latest(REGISTRY) + generate_latest(DatabaseStates(engine))
    if counters is not None:
        body += generate_latest(SharedCounters(counters))
    return body
