"""Create a ticket, adopt one, or wait: what to do for an issue that has no link yet.

Pure: the caller searches Jira for tickets carrying the issue's label, reads which of the issue's
tickets are retired, and passes the time; this decides. Why each rule:
- A ticket found by the label was made by hand, by an earlier install, or by a create whose answer
  we never saw: adopting it keeps exactly one ticket per issue.
- The issue's past tickets (superseded, unlinked, broken) carry the label too: history, not
  candidates.
- Several candidates (from a past duplicate): the oldest is the one people have been working in.
- None found, but an earlier attempt sent a create: it may have worked unseen, and Jira Cloud's
  search lags a just-created issue, so wait out the lag before creating again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from syncer.core.issue import JiraTicket
from syncer.core.moments import aware


@dataclass(frozen=True)
class TicketChoice:
    action: Literal["create", "adopt", "wait"]
    ticket: JiraTicket | None = None  # adopt: the ticket to link
    wait: timedelta = timedelta(0)  # wait: until the search can be trusted to show an earlier create


def choose_ticket(
    found: Sequence[JiraTicket],
    *,
    retired: Collection[str],
    create_attempted_at: datetime | None,
    now: datetime,
    search_lag: timedelta,
) -> TicketChoice:
    """`found`: the label search's answer; `retired`: Jira ids of the issue's past tickets;
    `create_attempted_at`: when an earlier attempt sent a create (None: none did)."""
    candidates = [ticket for ticket in found if ticket.id not in retired]
    if candidates:
        oldest = min(candidates, key=lambda t: int(t.id) if t.id.isdigit() else 0)
        return TicketChoice("adopt", ticket=oldest)
    if create_attempted_at is not None:
        waited = aware(now) - aware(create_attempted_at)
        if waited < search_lag:
            return TicketChoice("wait", wait=search_lag - waited)
    return TicketChoice("create")
