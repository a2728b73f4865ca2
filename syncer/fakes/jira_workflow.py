"""The fake Jira's workflows: statuses, the transitions between them, and the fields their screens show.

Every project has a workflow of its own (a copy, so configuring one project leaves the others alone):

- "simple" (the default): any status to any other by global transitions, as the fake always did.
- "strict", what many company-managed sites run: To Do -> In Progress -> Done, no way from To Do straight
  to Done, and back to To Do only by "Reopen" from Done. Its statuses may carry other names (a project
  whose start is "Open" and whose end is "Closed", same categories), and it may have a second done
  status ("Won't Do", by "Reject" from In Progress).
- "team-managed": statuses of the project's own (scoped to it, so their ids differ from every other
  project's even where the names are the same), and a global transition into each.

Company-managed projects share the instance's statuses: one status, one id, per name (`StatusRegistry`).
What a transition shows is Jira's `GET /issue/{key}/transitions` (Transition in Atlassian's OpenAPI
description: id, name, to, hasScreen, isGlobal, isInitial, isAvailable, isConditional, isLooped, fields).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

CATEGORIES: dict[str, dict[str, Any]] = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}


@dataclass(frozen=True)
class Status:
    id: str
    name: str
    category: str  # new | indeterminate | done
    project_id: str | None = None  # a team-managed project's own status


# The statuses the fake always had, and the ids Jira's classic default workflow gives the statuses it
# ships with, so a project that names its statuses "Open" and "Closed" gets the ids a real site has.
BUILT_IN = (
    Status("10000", "To Do", "new"),
    Status("3", "In Progress", "indeterminate"),
    Status("10001", "Done", "done"),
    Status("10002", "Won't Do", "done"),
)
CLASSIC_IDS = {"open": "1", "reopened": "4", "resolved": "5", "closed": "6"}


class StatusRegistry:
    """The instance's statuses: shared ones by name, and team-managed projects' own."""

    def __init__(self) -> None:
        self._ids = itertools.count(10100)
        self.shared: dict[str, Status] = {s.name.lower(): s for s in BUILT_IN}
        self.scoped: list[Status] = []

    def shared_status(self, name: str, category: str) -> Status:
        existing = self.shared.get(name.lower())
        if existing is not None:
            if existing.category != category:
                raise ValueError(f"status {name!r} exists in category {existing.category!r}, "
                                 f"not {category!r}")
            return existing
        status = Status(CLASSIC_IDS.get(name.lower()) or str(next(self._ids)), name, category)
        self.shared[name.lower()] = status
        return status

    def scoped_status(self, name: str, category: str, project_id: str) -> Status:
        status = Status(str(next(self._ids)), name, category, project_id)
        self.scoped.append(status)
        return status

    def all(self) -> list[Status]:
        return [*self.shared.values(), *self.scoped]

    def matching(self, name_or_id: str) -> list[Status]:
        """Every status with that name (case-insensitive) or id: JQL's `status = X` means all of them."""
        wanted = name_or_id.lower()
        return [s for s in self.all() if s.name.lower() == wanted or s.id == name_or_id]


@dataclass(frozen=True)
class ScreenField:
    field_id: str
    required: bool


@dataclass
class Transition:
    id: str
    name: str
    to: Status
    sources: frozenset[str] | None  # the status ids it leaves from; None: global, from every other status
    resolution: str | None = None  # what its post-function sets when the screen does not ask for one
    screen: list[ScreenField] = field(default_factory=list)

    def available_from(self, status: Status) -> bool:
        if self.sources is None:
            return status.id != self.to.id
        return status.id in self.sources


@dataclass
class Workflow:
    name: str
    statuses: list[Status]
    transitions: list[Transition]

    @property
    def initial(self) -> Status:
        return self.statuses[0]

    def status(self, name_or_id: str) -> Status | None:
        wanted = name_or_id.lower()
        return next((s for s in self.statuses if s.name.lower() == wanted or s.id == name_or_id), None)

    def available(self, current: Status) -> list[Transition]:
        return [t for t in self.transitions if t.available_from(current)]

    def find(self, ref: str) -> Transition | None:
        """A transition by id, by name, or by the name of the status it leads to."""
        wanted = ref.lower()
        return (next((t for t in self.transitions if t.id == ref), None)
                or next((t for t in self.transitions if t.name.lower() == wanted), None)
                or next((t for t in self.transitions if t.to.name.lower() == wanted), None))

    def first_in(self, category: str) -> Status:
        return next(s for s in self.statuses if s.category == category)


def simple_workflow(registry: StatusRegistry) -> Workflow:
    todo, doing, done, wont = (registry.shared_status(s.name, s.category) for s in BUILT_IN)
    return Workflow("simple", [todo, doing, done, wont], [
        Transition("11", "Reopen", todo, None),
        Transition("21", "Start progress", doing, None),
        Transition("31", "Done", done, None, "Done"),
        Transition("41", "Won't do", wont, None, "Won't Do"),
    ])


def strict_workflow(registry: StatusRegistry, *, todo: str = "To Do", doing: str = "In Progress",
                    done: str = "Done", rejected: str | None = None) -> Workflow:
    """`rejected`: a second done status ("Won't Do"), reached from `doing` as `done` is, and left by
    the same Reopen."""
    start, middle, end = (registry.shared_status(todo, "new"), registry.shared_status(doing, "indeterminate"),
                          registry.shared_status(done, "done"))
    # Renamed statuses come with the names and ids of Jira's classic default workflow's transitions.
    if (todo, doing, done) == ("To Do", "In Progress", "Done"):
        names = (("21", "Start progress"), ("31", "Done"), ("11", "Reopen"))
    else:
        names = (("4", "Start Progress"), ("2", "Close Issue"), ("3", "Reopen Issue"))
    (start_id, start_name), (close_id, close_name), (reopen_id, reopen_name) = names
    statuses = [start, middle, end]
    transitions = [
        Transition(start_id, start_name, middle, frozenset({start.id})),
        Transition(close_id, close_name, end, frozenset({middle.id}), "Done"),
    ]
    if rejected is not None:
        statuses.append(registry.shared_status(rejected, "done"))
        transitions.append(Transition("51", "Reject", statuses[-1], frozenset({middle.id}), "Won't Do"))
    transitions.append(Transition(reopen_id, reopen_name, start, frozenset(s.id for s in statuses[2:])))
    return Workflow("strict", statuses, transitions)


def team_managed_workflow(registry: StatusRegistry, project_id: str,
                          statuses: tuple[tuple[str, str], ...]) -> Workflow:
    """`statuses`: (name, category) pairs, in board order; each gets a global transition named after it."""
    own = [registry.scoped_status(name, category, project_id) for name, category in statuses]
    return Workflow("team-managed", own, [
        Transition(str(11 + 10 * n), status.name, status, None, "Done" if status.category == "done" else None)
        for n, status in enumerate(own)
    ])
