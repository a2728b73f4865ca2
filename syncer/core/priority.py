"""Whether a ticket's priority follows a change of its Sentry issue's priority. Pure.

Sentry's issue priority (high/medium/low, since 2024) picks the ticket's priority at creation
when `[priorities]` maps it (`syncer.core.routing.ticket_target`: after a route's, team's or
the defaults' own priority, before the level's). After that, only `[priorities] follow_sentry`
moves it: when the issue's priority is no longer the one the link recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncer.policy import Priorities


@dataclass(frozen=True)
class FollowDecision:
    """`jira_priority`: set the ticket to it (None: leave it). `record`: store the issue's priority
    on the link as the one the ticket has followed."""

    jira_priority: str | None
    record: bool
    reason: str = ""


def decide_follow(policy: Priorities, now: str, known: str, ticket_priority: str) -> FollowDecision:
    """`now`: the issue's priority as Sentry shows it; `known`: the link's; `ticket_priority`: the
    ticket's priority name as Jira shows it now."""
    if not now or now == known:
        return FollowDecision(None, record=False)
    if not policy.follow_sentry or not known:
        # Not following, or never known (a link older than the column, a Sentry without
        # priorities until now): nothing says the ticket's priority came from the old one.
        return FollowDecision(None, record=True)
    wanted = policy.for_sentry_priority(now)
    if not wanted or wanted.casefold() == ticket_priority.casefold():
        return FollowDecision(None, record=True)
    return FollowDecision(wanted, record=True,
                          reason=f"Sentry priority {known} -> {now}: priority {wanted!r}")
