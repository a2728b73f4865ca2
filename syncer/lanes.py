"""Lanes: status changes travel apart from everything else, so a storm of new issues never holds
them up.

A resolve, a regression or a ticket moving to Done is small work that a person waits to see; a
release storm is a thousand creates. In one queue the resolve waits behind the creates, and behind
their turns at Jira's rate limit. So every delivery belongs to one lane:

- `Lane.STATUS`: Sentry `issue` resolved / unresolved (a regression too) / ignored / archived /
  assigned, and Jira `jira:issue_updated` whose changelog moves the status;
- `Lane.DEFAULT`: creates and everything else.

Each lane is a broker queue of its own (`queue_for`); `syncer worker` consumes both, the status
queue first, and a message of several creates gives way between them to a waiting status change
(`syncer.worker.app`). The lane also rides along while a delivery is handled
(`handling`): the shared rate limiter keeps a share of each API's rate for the status lane, so a
status call finds a turn within about one interval of that share (`syncer.ratelimit`).

The web tier decides the lane from the body it has decoded once anyway (`classify`); the sweeper
and a person's retry decide it again from the stored row (`of_stored`), by the same rule.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any


class Lane(StrEnum):
    DEFAULT = "default"
    STATUS = "status"


# Broker queues. "syncer" is the one queue every deployment already has: the default lane keeps it,
# so messages published before an upgrade are still consumed.
QUEUES: Mapping[Lane, str] = {Lane.DEFAULT: "syncer", Lane.STATUS: "syncer.status"}
# The order a worker asks for them in (first served first, `syncer.worker.app`).
CONSUMED = (QUEUES[Lane.STATUS], QUEUES[Lane.DEFAULT])

# Sentry's `issue` webhook actions that change (or say) an issue's status or owner (docs.sentry.io,
# "Integration Platform > Webhooks > Issues": created, resolved, assigned, archived, unresolved;
# `ignored` is older installations' word for archived). `created` is the storm: default lane.
SENTRY_STATUS_ACTIONS = frozenset({"resolved", "unresolved", "ignored", "archived", "assigned"})
JIRA_UPDATED = "jira:issue_updated"
_MAX_CHANGELOG_ITEMS = 500  # as syncer.jira.webhooks reads them: a body is bounded, so is this look


def queue_for(lane: Lane) -> str:
    return QUEUES[lane]


def lane_of_queue(queue: str | None) -> Lane:
    """The lane a message came in on (its routing key), default when unknown."""
    return Lane.STATUS if queue == QUEUES[Lane.STATUS] else Lane.DEFAULT


def sentry_lane(resource: str, action: str) -> Lane:
    return Lane.STATUS if resource == "issue" and action in SENTRY_STATUS_ACTIONS else Lane.DEFAULT


def jira_lane(webhook_event: str, payload: Mapping[str, Any]) -> Lane:
    """A `jira:issue_updated` whose changelog has a `status` item (Jira's webhook body: `changelog.
    items[].field` / `fieldId`, developer.atlassian.com "Webhooks", the issue-updated example)."""
    if webhook_event != JIRA_UPDATED:
        return Lane.DEFAULT
    changelog = payload.get("changelog")
    items = changelog.get("items") if isinstance(changelog, Mapping) else None
    if not isinstance(items, list):
        return Lane.DEFAULT
    for item in items[:_MAX_CHANGELOG_ITEMS]:
        if isinstance(item, Mapping) and "status" in (item.get("fieldId"), item.get("field")):
            return Lane.STATUS
    return Lane.DEFAULT


def classify(source: str, resource: str, action: str, payload: Mapping[str, Any]) -> Lane:
    if source == "sentry":
        return sentry_lane(resource, action)
    if source == "jira":
        return jira_lane(resource, payload)
    return Lane.DEFAULT


def of_stored(source: str, resource: str, action: str, payload: str) -> Lane:
    """The lane of a stored row, by `classify`'s rule; its body is decoded only when the rule needs it
    (a Jira update), and a body that does not decode is default lane (the worker will say why)."""
    if source == "jira" and resource == JIRA_UPDATED:
        try:
            decoded = json.loads(payload)
        except ValueError:
            return Lane.DEFAULT
        return jira_lane(resource, decoded) if isinstance(decoded, dict) else Lane.DEFAULT
    return classify(source, resource, action, {})


# The lane of the delivery this thread (or task) is handling now: what the rate limiter asks. None
# outside a delivery (a reconcile run, a command): the limiter counts such work with the default lane.
_current: contextvars.ContextVar[Lane | None] = contextvars.ContextVar("syncer_lane", default=None)


def current() -> Lane | None:
    return _current.get()


@contextlib.contextmanager
def handling(lane: Lane) -> Iterator[None]:
    token = _current.set(lane)
    try:
        yield
    finally:
        _current.reset(token)
