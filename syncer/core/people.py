"""Who is who on both sides: the policy's `[people]` table, looked up by e-mail, Sentry id or Jira id.

Pure. E-mail matching is only a fallback: on Jira Cloud most people hide their address, and a user
Jira shows has `emailAddress` "returned as null" then (Atlassian's REST v2 `User` schema: "Depending
on the user's privacy settings, this may be returned as null",
https://developer.atlassian.com/cloud/jira/platform/rest/v2/api-group-users/), and Sentry leaves the
e-mail out of assignees when the organisation enables enhanced privacy. An explicit entry names the
person's Jira account (accountId on Cloud, username on Data Center) and Sentry user id, and is tried
first in both directions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Person:
    email: str  # the table's key, lower-cased
    jira: str  # accountId on Cloud, username on Data Center
    sentry: str = ""  # Sentry user id, when given

    @property
    def sentry_ref(self) -> str:
        """How Sentry's `assignedTo` names this person: by id when known, else by e-mail (Sentry
        usernames are e-mail addresses unless changed)."""
        return f"user:{self.sentry}" if self.sentry else self.email


class People:
    """The `[people]` entries, indexed each way. Jira ids and e-mails compare case-insensitively
    (Data Center usernames are case-insensitive; accountIds never differ by case alone)."""

    def __init__(self, people: Iterable[Person] = ()) -> None:
        self._all = tuple(people)
        self._by_email = {p.email.casefold(): p for p in self._all}
        self._by_jira = {p.jira.casefold(): p for p in self._all}
        self._by_sentry = {p.sentry: p for p in self._all if p.sentry}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def by_email(self, email: str) -> Person | None:
        return self._by_email.get(email.strip().casefold()) if email else None

    def by_jira(self, account_id: str) -> Person | None:
        return self._by_jira.get(account_id.casefold()) if account_id else None

    def by_sentry(self, user_id: str) -> Person | None:
        return self._by_sentry.get(user_id) if user_id else None
