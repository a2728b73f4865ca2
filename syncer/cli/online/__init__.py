"""`syncer check-config --online`: the policy checked against the live Jira and Sentry.

`CHECKS` lists the checks in the order they run, each a function `(Online) -> Iterable[Problem]`
(`context.py`). To add one: write it in a module of this package and append it here. A check that
cannot reach a site fails alone: its error becomes a problem and the other checks still run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from syncer.cli.online import create_screens, people, workflows
from syncer.cli.online.context import Check, Online, Problem, Target
from syncer.errors import SyncerError

__all__ = ["CHECKS", "Check", "Online", "Problem", "Report", "Target", "run"]

CHECKS: list[tuple[str, Check]] = [
    ("create screens: required and custom fields", create_screens.check_fields),
    ("create screens: components", create_screens.check_components),
    ("create screens: priorities", create_screens.check_priorities),
    ("assignees: assignable in their projects", people.check_assignees),
    ("people: Jira accounts exist", people.check_people),
    ("workflows: statuses for close_to, reopen_to and archive_to", workflows.check_statuses),
]


@dataclass
class Report:
    checked: list[str] = field(default_factory=list)  # the checks that ran, by name
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def run(online: Online, checks: list[tuple[str, Check]] | None = None) -> Report:
    report = Report()
    for name, check in CHECKS if checks is None else checks:
        try:
            found = list(check(online))
        except SyncerError as exc:
            found = [Problem(f"({name})", f"could not be checked: {exc}")]
        report.checked.append(name)
        report.problems += [p for p in found if p not in report.problems]
    return report
