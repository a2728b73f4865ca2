"""A new ticket's fields against its create screen: the policy's `fields` in Jira's shapes, and what
the screen has no room for left out (components in a team-managed project), each said in the audit
trail. Create-meta is read only for tickets that set fields or components, once per project and
issue type per `CREATE_META_TTL_SECONDS` in each process (the client caches it)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from syncer.core.fields import Person, convert, describe_allowed
from syncer.core.routing import TicketTarget
from syncer.errors import SyncerError
from syncer.jira.client import FieldsRefused
from syncer.jira.createmeta import CreateMeta
from syncer.metrics import Metric
from syncer.runtime import Runtime
from syncer.sync import assignees

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """What became of the policy's side of a ticket's fields."""

    meta: CreateMeta | None = None  # None: nothing needed the create screen
    notes: list[str] = field(default_factory=list)  # what was left out, and why (for the audit trail)


def prepare(rt: Runtime, target: TicketTarget, fields: dict[str, Any]) -> Prepared:
    """Complete the rendered `fields` (changed in place) from `target.fields` and the create screen."""
    if not target.fields and not target.components:
        return Prepared()
    meta = rt.jira.create_meta(target.jira_project, target.issue_type)
    prepared = Prepared(meta)
    if "components" in fields and not meta.has("components"):
        # Team-managed projects have no components; the create would be refused for naming them.
        del fields["components"]
        rt.counters.incr(Metric.TICKET_FIELDS_LEFT_OUT, problem="no_components")
        prepared.notes.append(
            f"components {json.dumps(list(target.components))} left out: the create screen of "
            f"{meta.where} has no Components field (a team-managed project has none)"
        )
    converted = convert(target.fields, meta, person=lambda v: _person(rt, v), user_ref=rt.jira.user_ref)
    for field_id, value in converted.values.items():
        if field_id == "labels":  # added to the ticket's own labels, which tie it to its Sentry issue
            fields["labels"] = list(dict.fromkeys([*fields.get("labels", []), *value]))
        else:
            fields[field_id] = value
    for problem in converted.problems:
        prepared.notes.append(f"left out {problem}")
        rt.counters.incr(Metric.TICKET_FIELDS_LEFT_OUT, problem=problem.kind)
    if prepared.notes:
        log.warning("ticket fields for %s: %s", meta.where, "; ".join(prepared.notes))
    return prepared


def refused(rt: Runtime, exc: FieldsRefused, target: TicketTarget, prepared: Prepared,
            where: str) -> FieldsRefused:
    """Jira's refusal of a create for its fields, as a dead letter says it: each field by name with
    Jira's own words, its allowed values when the screen lists them, and where to set it. The screen
    is read afresh (the cached one may be what is out of date), also for a ticket that did not need
    it before: one read, on the way to a dead letter."""
    rt.jira.forget_create_meta(target.jira_project, target.issue_type)
    try:
        meta: CreateMeta | None = rt.jira.create_meta(target.jira_project, target.issue_type)
    except SyncerError as error:
        log.warning("create screen of %s/%s unreadable: %s", target.jira_project, target.issue_type, error)
        meta = prepared.meta
    parts = []
    for field_id, words in exc.fields.items():
        found = meta.find(field_id) if meta is not None else None
        label = found.label if found is not None else f'"{field_id}"'
        allowed = describe_allowed(found) if found is not None else ""
        parts.append(f"{label}: {words}" + (f" (allowed: {allowed})" if allowed else ""))
    message = (
        f"Jira refused (400) the ticket in {target.jira_project}/{target.issue_type} for its fields: "
        + "; ".join(parts)
        + f". Set them under fields in {where}"
    )
    if prepared.notes:
        message += " (syncer left out: " + "; ".join(prepared.notes) + ")"
    return FieldsRefused(message, exc.fields)


def _person(rt: Runtime, value: str) -> Person:
    """A user field's value: an e-mail (its [people] entry, else looked up site-wide, exactly, cached)
    or an account as written."""
    if "@" not in value:
        return Person(value)
    found = assignees.resolve(rt, value, None)
    return Person(found.account_id, found.reason)
