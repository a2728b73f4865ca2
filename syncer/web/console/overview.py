"""What the overview and routes pages show, gathered from the store, Redis and the broker. Each
part is read on its own: one that fails (the database down, Redis gone) shows as failed, and the
page still answers with the rest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy.engine import Engine

from syncer import apicalls, ratelimit
from syncer.core import triage
from syncer.metrics import WorkerCounters
from syncer.policy import Policy
from syncer.settings import Settings
from syncer.store import deadletters, health
from syncer.store.schema import DeadLetter


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Api:
    """One API: what it last answered (`syncer.apicalls`), and our own budget for it."""

    calls: apicalls.LastCalls
    max_rps: float
    booked_ahead: float | None  # seconds; None when Redis could not say
    max_wait: float


@dataclass
class Overview:
    checks: list[Check] = field(default_factory=list)
    apis: list[Api] = field(default_factory=list)
    inbox: health.Inbox | None = None
    open_letters: int | None = None
    newest_letters: list[DeadLetter] = field(default_factory=list)
    last_reconcile: dict[str, Any] | None = None


def _check(name: str, probe: Callable[[], object]) -> Check:
    try:
        probe()
    except Exception as exc:  # any failure is this part's state, shown by its kind only
        return Check(name, False, type(exc).__name__)
    return Check(name, True, "answers")


def gather(settings: Settings, engine: Engine, client: redis.Redis | None,
           broker_check: Callable[[], None] | None) -> Overview:
    seen = Overview()
    database = _check("database", lambda: health.ping(engine))
    seen.checks.append(database)
    if broker_check is not None:
        seen.checks.append(_check("broker", broker_check))
    if client is not None:
        seen.checks.append(_check("redis (locks, rate limits)", client.ping))
    for service, base_url, max_rps in (
        ("sentry", settings.sentry_url, settings.sentry_max_rps),
        ("jira", settings.jira_url or "", settings.jira_max_rps),
    ):
        ahead: float | None = None
        if client is not None and base_url:
            try:
                ahead = ratelimit.booked_ahead(client, service=service, base_url=base_url)
            except redis.RedisError:
                ahead = None
        seen.apis.append(Api(apicalls.read(client, service), max_rps, ahead,
                             settings.rate_limit_max_wait_seconds))
    if database.ok:
        try:
            seen.inbox = health.inbox(engine)
            counts = health.state_counts(engine)
            seen.open_letters = counts.dead_letters.get("open", 0)
            seen.newest_letters = deadletters.open_letters(engine, limit=5)
        except Exception as exc:
            seen.checks.append(Check("database reads", False, type(exc).__name__))
    seen.last_reconcile = WorkerCounters(client).last_reconcile()
    return seen


@dataclass(frozen=True)
class RouteRow:
    """One line of the routing table (`syncer check-config`'s), with its figures when known."""

    route: str
    when: str
    outcome: str
    figures: dict[str, Any] = field(default_factory=dict)


def routes(policy: Policy, report: triage.Report | None) -> list[RouteRow]:
    """The table's rows, each with its route's figures from `report` (by the name a decision
    records: a route's display name, or "defaults")."""
    from syncer.cli.views import routing_rows

    names = [route.display_name(index) for index, route in enumerate(policy.routes)] + [triage.DEFAULTS_ROUTE]
    windows = [label for label, _ in triage.ROUTE_WINDOWS]
    by_name = {figures.route: figures for figures in report.routes} if report else {}
    rows = []
    for name, (route, when, outcome) in zip(names, routing_rows(policy), strict=True):
        found = by_name.get(name)
        figures: dict[str, Any] = {}
        if found is not None:
            figures = {kind: dict(zip(windows, getattr(found, kind), strict=True))
                       for kind in ("matched", "tickets", "ignored")}
        rows.append(RouteRow(route, when, outcome, figures))
    return rows
