"""One reconciliation run: the run lock, then the linked pairs, the backfill and the sweep, in
that order; the report, its log line and its metrics."""

from __future__ import annotations

import json
import logging
import secrets
import time

from syncer import logs
from syncer.errors import Busy, LockLost
from syncer.locks import run_lock
from syncer.metrics import Metric
from syncer.runtime import Runtime
from syncer.store import deliveries, installations
from syncer.store.schema import utcnow
from syncer.sync.reconcile.backfill import backfill
from syncer.sync.reconcile.pairs import check_links
from syncer.sync.reconcile.report import Progress, Report
from syncer.sync.reconcile.sweep import Enqueue, sweep

log = logging.getLogger(__name__)


def run(
    rt: Runtime,
    *,
    dry_run: bool = False,
    enqueue: Enqueue | None = None,
    progress: Progress | None = None,
    keep_rows: int | None = None,
    full: bool = False,
) -> Report:
    """One reconciliation. Raises `Busy` when another run holds the lock. `enqueue` hands a delivery
    to the broker (the sweep); without it, nothing is re-enqueued. `progress` is called after every
    page of links. `keep_rows` caps the drift rows kept in the report (the counts stay whole), for
    callers that need no table: after an outage every link may have drifted. `full` reads every
    link (as every run did before runs were incremental): after an outage, or to compare."""
    started = time.monotonic()
    now = utcnow()
    report = Report(
        run=f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}",
        dry_run=dry_run,
        started_at=now,
        keep_rows=keep_rows,
    )
    own = rt.with_own_clients()  # their request counts are this run's API calls
    # Every line logged during the run carries the cause its repairs record (`reconcile:<run>`).
    with logs.bound(cause=report.cause):
        try:
            with run_lock(rt) as renew:
                installation = installation_uuid(own)
                try:
                    check_links(
                        own, report, now=now, renew=renew, progress=progress, installation_uuid=installation,
                        full=full,
                    )
                    backfill(own, report, now=now, renew=renew, installation_uuid=installation)
                    sweep(own, report, now=now, enqueue=enqueue)
                except LockLost as exc:
                    report.errors.append(str(exc))
                    log.error("reconcile: %s", exc)
        except Busy:
            if not dry_run:
                rt.counters.incr(Metric.RECONCILE_RUNS, result="busy")
            raise
        finally:
            report.api_calls = {"sentry": own.sentry.requests_made, "jira": own.jira.requests_made}
            own.sentry.close()
            report.duration_seconds = time.monotonic() - started
        if not dry_run:
            _record_metrics(rt, report)
        log.info("reconcile %s: %s", report.run, report.summary())
    return report


def installation_uuid(rt: Runtime) -> str:
    """The installation for external-issue links: configured, or the one Sentry's webhooks named
    last (recorded as they are processed; before any was, the latest webhooks in the inbox)."""
    if rt.settings.sentry_installation_uuid:
        return rt.settings.sentry_installation_uuid
    recorded = installations.latest(rt.engine)
    if recorded:
        return recorded
    for payload in deliveries.latest_payloads(rt.engine, source="sentry", limit=20):
        try:
            installation = json.loads(payload).get("installation")
        except (ValueError, AttributeError):
            continue
        uuid = installation.get("uuid") if isinstance(installation, dict) else None
        if isinstance(uuid, str) and uuid:
            return uuid
    return ""


def _record_metrics(rt: Runtime, report: Report) -> None:
    counters = rt.counters
    counters.incr(Metric.RECONCILE_RUNS, result="ok" if report.ok else "failed")
    counters.incr(Metric.RECONCILE_LINKS_CHECKED, report.links_checked)
    for kind, n in report.drift.items():
        counters.incr(Metric.RECONCILE_DRIFT, n, kind=kind)
    counters.incr(Metric.RECONCILE_REPAIRS, report.repaired, result="applied")
    counters.incr(Metric.RECONCILE_REPAIRS, report.failed, result="failed")
    counters.incr(Metric.RECONCILE_BACKFILLED, report.backfilled)
    counters.incr(Metric.RECONCILE_REQUEUED, report.sweep.requeued + report.sweep.retried)
    for side, n in report.api_calls.items():
        counters.incr(Metric.RECONCILE_API_CALLS, n, side=side)
    counters.set_gauge(Metric.RECONCILE_LAST_DURATION, round(report.duration_seconds, 3))
    counters.set_gauge(Metric.RECONCILE_LAST_RUN, time.time())
    counters.set_gauge(Metric.RECONCILE_LAST_LINKS_CHECKED, report.links_checked)
    counters.set_gauge(Metric.RECONCILE_LAST_DRIFT, report.drifted)
    if report.ok:
        counters.set_gauge(Metric.RECONCILE_LAST_SUCCESS, time.time())
    counters.set_last_reconcile({
        "run": report.run, "ok": report.ok, "ended_at": time.time(), "summary": report.summary(),
        "links_checked": report.links_checked, "drifted": report.drifted,
        "drift_by_kind": dict(sorted(report.drift.items())), "repaired": report.repaired,
        "recorded": report.recorded, "skipped": report.skipped, "failed": report.failed,
        "backfilled": report.backfilled, "errors": report.errors[:5],
    })
