"""How the fake Sentry changes an issue's status, as getsentry/sentry `api/helpers/group_index/update.py`
does: resolutions, archiving with or without a condition (a snooze), reopening; and which
webhooks each change causes, as (action, extra data) for `issue.<action>`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncer.fakes.sentry_model import (
    IGNORE_CONDITION_FIELDS,
    IGNORED_SUBSTATUSES,
    RESOLVE_STATUSES,
    UNRESOLVED_SUBSTATUSES,
    Issue,
    Reply,
    Snooze,
    iso,
    to_ms,
)

Hook = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Echoes:
    """The fake's switches that decide which webhooks a change sends (see FakeSentry)."""

    archived_alias: bool
    on_unignore: bool
    on_noop_resolve: bool


def change_status(
    issue: Issue, status: str, details: Mapping[str, Any], substatus: str | None, actor: dict[str, Any],
    echoes: Echoes,
) -> list[Hook]:
    """Apply a status change asked for by a person or a token; `actor` is the user as statusDetails
    shows them."""
    if status in RESOLVE_STATUSES:
        return _resolve(issue, status, details, actor, echoes)
    if status == "unresolved":
        if issue.status == "unresolved":
            return []
        previous = issue.status
        if substatus not in UNRESOLVED_SUBSTATUSES:
            if previous == "resolved":
                substatus = "regressed"
            else:
                recent = issue.first_seen > (time.time() - 7 * 86400) * 1000
                substatus = "new" if recent else "ongoing"
        set_status(issue, "unresolved", substatus)
        # status_change.py: from ignored it is issue_unignored (no webhook), else issue_unresolved.
        if previous == "resolved" or echoes.on_unignore:
            return [("unresolved", {})]
        return []
    # ignored / muted
    if issue.status == "ignored":
        return []
    if substatus not in IGNORED_SUBSTATUSES:
        if details.get("untilEscalating") or details.get("ignoreUntilEscalating"):
            substatus = "archived_until_escalating"
        elif any(details.get(key) is not None for key in IGNORE_CONDITION_FIELDS):
            substatus = "archived_until_condition_met"
        else:
            substatus = "archived_forever"
    set_status(issue, "ignored", substatus)
    if substatus == "archived_until_escalating":
        issue.status_details = {"ignoreUntilEscalating": True}
    elif substatus == "archived_until_condition_met":
        issue.snooze = _snooze(issue, details, actor)
    return [("ignored", {}), ("archived", {})] if echoes.archived_alias else [("ignored", {})]


def set_status(
    issue: Issue, status: str, substatus: str | None, details: dict[str, Any] | None = None
) -> None:
    """A new status; any snooze ends with the archived state it belonged to."""
    issue.status, issue.substatus, issue.snooze = status, substatus, None
    issue.status_details = details or {}


def commit(sha: str, repository: str) -> dict[str, Any]:
    """A commit as Sentry's CommitSerializer shows it, the parts a resolution carries."""
    return {"id": sha, "message": None, "dateCreated": iso(int(time.time() * 1000)),
            "repository": {"name": repository}}


def status_details(issue: Issue) -> dict[str, Any]:
    """statusDetails as GroupSerializerBase._get_status shows them: for a snooze every condition
    key, null when unset, with counts that have no window showing what is left to go."""
    snooze = issue.snooze
    if snooze is None:
        return dict(issue.status_details)
    count, users = snooze.count, snooze.user_count
    if count and not snooze.window:
        count -= issue.count - snooze.count_at_start
    if users and not snooze.user_window:
        users -= issue.user_count - snooze.users_at_start
    return {"ignoreCount": count, "ignoreUntil": iso(snooze.until) if snooze.until else None,
            "ignoreUserCount": users, "ignoreUserWindow": snooze.user_window,
            "ignoreWindow": snooze.window, "actor": snooze.actor}


def snooze_expired(issue: Issue) -> str | None:
    """Which condition ended the snooze: "until" (time passed), "count" (events or users), or None.
    Events the fake records all fall inside any window."""
    snooze = issue.snooze
    if snooze is None:
        return None
    if snooze.until is not None and snooze.until <= time.time() * 1000:
        return "until"
    if snooze.count and issue.count - snooze.count_at_start >= snooze.count:
        return "count"
    if snooze.user_count and issue.user_count - snooze.users_at_start >= snooze.user_count:
        return "count"
    return None


def escalated_priority(issue: Issue) -> str:
    """issues/priority.py auto_update_priority on escalation: up a level, unless a person set it."""
    if issue.priority_locked_at is not None:
        return issue.priority
    return "medium" if issue.priority == "low" else "high"


def _resolve(
    issue: Issue, status: str, details: Mapping[str, Any], actor: dict[str, Any], echoes: Echoes
) -> list[Hook]:
    # update.py handle_resolve_in_release: statusDetails and the webhook's resolution_type.
    new_details: dict[str, Any]
    if status == "resolvedInNextRelease" or details.get("inNextRelease"):
        res_type, new_details = "in_next_release", {"inNextRelease": True, "actor": actor}
    elif details.get("inRelease"):
        res_type, new_details = "in_release", {"inRelease": str(details["inRelease"]), "actor": actor}
    elif details.get("inCommit"):
        given = details["inCommit"]
        if isinstance(given, Mapping):
            sha, repo = given.get("commit"), given.get("repository")
        else:
            sha, repo = given, None
        if not isinstance(sha, str) or not sha:
            raise Reply(400, {"statusDetails": {"inCommit": {"commit": ["This field is required."]}}})
        # A commit resolution shows the commit, and no actor (serializers/models/group.py).
        res_type, new_details = "in_commit", {"inCommit": commit(sha, str(repo or "unknown"))}
    else:
        res_type, new_details = "now", {}
    unchanged = issue.status == "resolved" and issue.status_details == new_details
    set_status(issue, "resolved", None, new_details)
    if unchanged and not echoes.on_noop_resolve:
        return []
    return [("resolved", {"resolution_type": res_type})]


def _snooze(issue: Issue, details: Mapping[str, Any], actor: dict[str, Any]) -> Snooze:
    def number(name: str) -> int | None:
        value = details.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise Reply(400, {"statusDetails": {name: ["A valid integer is required."]}})
        return int(value)

    until: int | None = None
    minutes = number("ignoreDuration")  # handle_ignored: a duration becomes an until
    if minutes is not None:
        until = int((time.time() + minutes * 60) * 1000)
    elif details.get("ignoreUntil") is not None:
        try:
            until = to_ms(str(details["ignoreUntil"]), 0)
        except ValueError:
            raise Reply(400, {"statusDetails": {"ignoreUntil": ["Datetime has wrong format."]}}) from None
    return Snooze(count=number("ignoreCount"), window=number("ignoreWindow"),
                  user_count=number("ignoreUserCount"), user_window=number("ignoreUserWindow"),
                  until=until, count_at_start=issue.count, users_at_start=issue.user_count, actor=actor)
