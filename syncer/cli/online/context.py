"""What every online check is given, and what it gives back.

A check is a function `(Online) -> Iterable[Problem]`: it reads what it needs from the sites through
`online.jira` and `online.sentry` (the same clients the worker uses) and names, in each problem, the
place in the policy an operator fixes: a route, a team, `[defaults]`, or a key like `status.close_to`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from syncer.core.routing import TicketTarget, ticket_target
from syncer.policy import Policy, Route

if TYPE_CHECKING:
    from syncer.jira.client import JiraClient
    from syncer.jira.createmeta import CreateMeta
    from syncer.runtime import Runtime
    from syncer.sentry.client import SentryClient


@dataclass(frozen=True)
class Problem:
    """One thing to fix: `where` in the policy (`routes[2] "billing"`, `[defaults]`, `status.close_to`)
    and what is wrong there, with what to set."""

    where: str
    message: str


@dataclass(frozen=True)
class Target:
    """A place tickets are filed from: a route that creates tickets, or `[defaults]`."""

    where: str  # `routes[2] "billing"`, `routes[3]`, `[defaults]`
    route_index: int | None  # None: [defaults]
    route: Route | None
    ticket: TicketTarget

    @property
    def screen(self) -> str:
        """The create screen its tickets go through: `PAY/Bug`."""
        return f"{self.ticket.jira_project}/{self.ticket.issue_type}"


def route_where(index: int, route: Route) -> str:
    return f'routes[{index}] "{route.name}"' if route.name else f"routes[{index}]"


class Online:
    """The policy and both sites, for the checks."""

    def __init__(self, rt: Runtime, policy: Policy) -> None:
        self.rt = rt
        self.policy = policy

    @property
    def jira(self) -> JiraClient:
        return self.rt.jira

    @property
    def sentry(self) -> SentryClient:
        return self.rt.sentry

    @cached_property
    def targets(self) -> list[Target]:
        """Every route that creates tickets, in order, then `[defaults]` unless it ignores."""
        found = [
            Target(route_where(i, route), i, route, ticket_target(self.policy, route.team, route, level=""))
            for i, route in enumerate(self.policy.routes)
            if not route.ignores
        ]
        if self.policy.defaults.action == "create" and self.policy.defaults.jira_project:
            found.append(Target("[defaults]", None, None, ticket_target(self.policy, None, None, level="")))
        return found

    def create_meta(self, target: Target) -> CreateMeta:
        """The target's create screen (read once per project and issue type: the client caches it)."""
        return self.jira.create_meta(target.ticket.jira_project, target.ticket.issue_type)


Check = Callable[[Online], Iterable[Problem]]
