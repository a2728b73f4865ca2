"""Reconciliation: the guarantee behind every webhook promise.

Webhooks get lost (Sentry tries a delivery three times, deployments and outages drop them, a change
made by another tool may emit nothing). A run (`run.py`):

1. takes the deployment-wide run lock (`syncer.locks.run_lock`, renewed as it goes), or stops with
   `Busy` naming the holder: two beats started by mistake, or a person running `syncer reconcile`
   during the scheduled run, cannot both repair;
2. checks the linked pairs (`pairs.py`): the links `scope.py` chooses, in keyset pages (memory
   stays flat in the number of links): those whose side changed since the last run (Jira's tickets
   updated in the window, Sentry's issues seen in it, link rows a webhook changed in it) and the
   next slice of the rolling full pass, which reads every link once in `reconcile.full_pass_hours`
   (`syncer reconcile --full`: every link, as runs did before). Both sides of each page are read
   with one request each (`pages.py`: Jira `id in (...)`, Sentry by `group=` ids; a side the run's
   change reads already returned is not read again); `syncer.core.drift` says what drifted, and
   `repair.py` repairs through the functions the webhook handlers use
   (`inbound.apply_inbound`, `outbound.apply_outbound`, `store.links.mark_broken`, `save`), under the
   link's lock, after checking that no webhook moved the link meanwhile;
3. backfills (`backfill.py`): unresolved Sentry issues first seen within `reconcile.lookback_hours`
   that match a route and have no link get their ticket through `tickets.create_or_link` (exactly
   once holds: a late webhook for the same issue meets the same claim);
4. sweeps (`sweep.py`): re-enqueues inbox deliveries that were stored but never processed, and
   retries dead letters older than `reconcile.dead_letter_retry_after_hours`, once per run, at most
   `reconcile.dead_letter_retry_cap` of them.

What it found and did is a `Report` (`report.py`); `syncer.cli.views` prints it for a person.
`dry_run` reads everything and writes nothing: neither side, nor the database, nor the broker.

API calls: the change reads (one Jira search page and one Sentry search page per 100 changes), then
one call per page of changed links (the side the change read did not return), 2 per page of the
slice, plus one for each ticket a page's search did not return (a direct read, before a ticket is
called deleted: Cloud's search lags behind new tickets), plus what each repair costs through the
shared apply functions. An organisation without
multi-project reads (Sentry's Team and Developer plans) answers the first read spanning projects
400; the run's client learns that once and reads Sentry one project at a time from then on: one
read per project with links in the page, one backfill search per project, and one list of the
organisation's projects a run (`syncer.sentry.client`).
"""

from syncer.sync.reconcile.repair import repair
from syncer.sync.reconcile.report import Report
from syncer.sync.reconcile.run import run

__all__ = ["Report", "repair", "run"]
