"""A way through a Jira workflow to the status a sync wants, found step by step.

Jira tells a caller only the transitions available from an issue's status now (Get transitions:
"Returns either all transitions or a transition that can be performed by the user on an issue, based
on the issue's status"; Atlassian's Jira REST v2 OpenAPI description,
https://developer.atlassian.com/cloud/jira/platform/rest/v2/api-group-issues/#api-rest-api-2-issue-issueidorkey-transitions-get),
and reading a workflow itself needs an administrator. So the map is what syncer has seen: the
transitions out of each status it has read, per project, issue type and status (the client's cache).
Each step takes the first transition of the shortest known way to a target status; when the map holds
no way yet, of the shortest way to a status whose transitions are not known, nearest in category to
the target (To Do -> In Progress -> Done goes through In Progress). Pure: the client reads and moves,
this decides.

Which statuses count as the target comes from the project's statuses (`GET /project/{key}/statuses`:
"the valid statuses for a project ... grouped by issue type", which the Browse permission reads;
https://developer.atlassian.com/cloud/jira/platform/rest/v2/api-group-projects/#api-rest-api-2-project-projectidorkey-statuses-get):
the configured name when the workflow has it, else any status of the fallback category (a close:
done, a reopen: new) that is not one to avoid (a won't-fix status would archive instead of resolve).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CATEGORY_ORDER = {"new": 0, "indeterminate": 1, "done": 2}
MAX_STEPS = 8  # a walk longer than this is a workflow syncer should not wander through


@dataclass(frozen=True)
class Status:
    id: str
    name: str
    category: str  # new | indeterminate | done


@dataclass(frozen=True)
class Edge:
    """A transition as the map needs it: from which status, its id, and where it leads."""

    source: str  # status id
    transition_id: str
    to: Status


@dataclass(frozen=True)
class Goal:
    """Where a move should end. `setting`: the policy key that named the status (close_to, ...), for
    messages; `avoid`: status names (any case) never to end in when falling back (won't-fix ones)."""

    status: str
    setting: str = ""
    fallback_category: str | None = None
    avoid: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Targets:
    """The statuses a move may end in, and how they were chosen (for messages)."""

    ids: frozenset[str] | None  # None: the workflow's statuses are unknown; the name decides
    name: str
    category: str | None  # the targets' category, to head for while exploring
    how: str
    avoid: frozenset[str] = frozenset()  # casefolded names not to pass through

    def accepts(self, status: Status) -> bool:
        if self.ids is not None:
            return status.id in self.ids
        return status.name.casefold() == self.name.casefold()


class NoTarget(Exception):
    """The workflow has no status the goal may end in; `statuses` are the ones it has."""

    def __init__(self, statuses: Sequence[Status]) -> None:
        super().__init__("no target status")
        self.statuses = tuple(statuses)


def choose_targets(goal: Goal, statuses: Sequence[Status] | None) -> Targets:
    """The goal's statuses in this workflow. NoTarget when it has none (neither the name nor, if the
    goal falls back, a status of the fallback category)."""
    avoid = frozenset(name.casefold() for name in goal.avoid)
    if statuses is None:
        return Targets(None, goal.status, goal.fallback_category, repr(goal.status), avoid)
    named = [s for s in statuses if s.name.casefold() == goal.status.casefold()]
    if named:
        return Targets(frozenset(s.id for s in named), goal.status, named[0].category, repr(goal.status),
                       avoid)
    if goal.fallback_category:
        fitting = [s for s in statuses
                   if s.category == goal.fallback_category and s.name.casefold() not in avoid]
        if fitting:
            names = ", ".join(repr(s.name) for s in fitting)
            how = (f"{names} (the workflow has no {goal.status!r}; its {goal.fallback_category} category "
                   "stands in)")
            return Targets(frozenset(s.id for s in fitting), goal.status, goal.fallback_category, how, avoid)
    raise NoTarget(statuses)


def next_step(here: str, graph: Mapping[str, Sequence[Edge]], targets: Targets) -> tuple[Edge, bool] | None:
    """The transition to take from status `here`, and whether it ends the walk; None when the map
    shows no way on. `graph`: the known transitions out of each status (those of `here` included)."""
    seen = {here}
    queue: deque[tuple[str, Edge | None, int]] = deque([(here, None, 0)])
    explore: tuple[int, int, Edge] | None = None
    while queue:
        status, first, depth = queue.popleft()
        for edge in graph.get(status, ()):
            if edge.to.id in seen:
                continue
            seen.add(edge.to.id)
            lead = first or edge
            if targets.accepts(edge.to):
                return lead, first is None  # breadth first: the shortest known way
            if edge.to.name.casefold() in targets.avoid:
                continue  # a won't-fix status on the way would archive the Sentry issue
            if edge.to.id in graph:
                queue.append((edge.to.id, lead, depth + 1))
            else:
                rank = (depth, _distance(edge.to.category, targets.category))
                if explore is None or rank < explore[:2]:
                    explore = (*rank, lead)
    return (explore[2], False) if explore is not None else None


def _distance(category: str, target: str | None) -> int:
    if target is None or category not in CATEGORY_ORDER or target not in CATEGORY_ORDER:
        return 0
    return abs(CATEGORY_ORDER[category] - CATEGORY_ORDER[target])
