"""Online check of each route's workflow: the statuses the status policy moves its tickets to exist
there, by name or, for a close or a reopen, by a status of the category that stands in (done, new).

Read from `GET /project/{key}/statuses` (the project's statuses per issue type; Browse permission).
Whether Jira leads there from every status is known only ticket by ticket (Jira lists the transitions
of an issue, not of a workflow, to anyone but an administrator): a worker finds the way when it moves
one, and a status no way reaches is a dead letter saying so.
"""

from __future__ import annotations

from collections.abc import Iterable

from syncer.cli.online.context import Online, Problem
from syncer.errors import SyncerError
from syncer.jira.workflow import Goal, NoTarget, choose_targets
from syncer.policy import StatusPolicy


def _goals(policy: StatusPolicy) -> list[Goal]:
    avoid = frozenset(policy.wont_fix)
    goals = [Goal(policy.close_to, "close_to", "done", avoid),
             Goal(policy.reopen_to, "reopen_to", "new", avoid)]
    if policy.on_archive == "transition" and policy.archive_to is not None:
        goals.append(Goal(policy.archive_to, "archive_to"))
    return goals


def check_statuses(online: Online) -> Iterable[Problem]:
    """A close_to, reopen_to or archive_to its route's workflow has no status for (and no stand-in)."""
    for target in online.targets:
        project, issue_type = target.ticket.jira_project, target.ticket.issue_type
        policy = online.policy.status.for_ticket(project, target.ticket.team)
        try:
            statuses = online.jira.project_statuses(project, issue_type)
        except SyncerError as exc:
            yield Problem(target.where, f"cannot read the statuses of {project}: {exc}")
            continue
        if statuses is None:
            yield Problem(target.where, f"Jira does not list the statuses of {project}/{issue_type} to the "
                                        "bot (it needs the project's Browse permission)")
            continue
        for goal in _goals(policy):
            try:
                choose_targets(goal, statuses)
            except NoTarget:
                names = ", ".join(repr(s.name) for s in statuses) or "none"
                stand_in = f", nor a {goal.fallback_category} status to stand in" if goal.fallback_category \
                    else ""
                yield Problem(target.where, f"status.{goal.setting} = {goal.status!r}: {project}'s workflow "
                                            f"for {issue_type} has no such status{stand_in} (it has: "
                                            f"{names}); set status.projects.{project}.{goal.setting}")
