"""Sentry's `installation` webhooks: the integration installed (again) or uninstalled.

An installation's uuid is what external-issue links are made through. `created` records it as
current; `deleted` records that Sentry removed it, after which tickets get a note on their issue
instead of an external-issue link (`tickets.finish_backlinks`), and `/readyz` and `check-config`
say so, until the integration is installed again.
"""

from __future__ import annotations

from syncer import logs
from syncer.errors import PayloadError
from syncer.runtime import Runtime
from syncer.sentry.webhooks import SentryEvent
from syncer.store import installations
from syncer.sync.outcome import Outcome

log = logs.get_logger(__name__)


def on_sentry_installation(rt: Runtime, event: SentryEvent, cause: str) -> Outcome:
    uuid = event.installation_uuid
    if not uuid:
        raise PayloadError(f"installation.{event.action} names no installation uuid")
    if event.action == "created":
        if not installations.created(rt.engine, uuid):
            raise PayloadError("installation.created: the uuid is not one Sentry makes")
        return Outcome(f"installation {uuid} created: external-issue links go through it")
    if not installations.deleted(rt.engine, uuid):
        raise PayloadError("installation.deleted: the uuid is not one Sentry makes")
    configured = rt.settings.sentry_installation_uuid
    if configured and configured != uuid:
        return Outcome(f"installation {uuid} deleted; SYNCER_SENTRY_INSTALLATION_UUID names another "
                       f"({configured}), which stays in use")
    log.warning("sentry installation %s deleted: external-issue links paused", uuid, cause=cause)
    return Outcome(f"installation {uuid} deleted: external-issue links paused, notes instead")
