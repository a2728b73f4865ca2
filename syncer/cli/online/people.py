"""Online checks of the people the policy names: every configured assignee is one Jira will accept
in the project its tickets go to, and every `[people]` account exists. Each problem names the table
an operator fixes (`[teams.payments]`, `[defaults]`, `people."alice@example.com"`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from syncer.cli.online.context import Online, Problem
from syncer.core.routing import ticket_target
from syncer.policy import toml_key


def _assignees(online: Online) -> Iterator[tuple[str, str, str]]:
    """(where, project, e-mail) of each team's and the defaults' assignee, as its tickets get it."""
    policy = online.policy
    for name, team in policy.teams.items():
        target = ticket_target(policy, name, None, level="")
        if target.assignee_email:
            where = f"[teams.{toml_key(name)}]" if team.assignee else f"[defaults] (for team {name})"
            yield where, target.jira_project, target.assignee_email
    if policy.defaults.assignee and policy.defaults.action == "create" and policy.defaults.jira_project:
        yield "[defaults]", policy.defaults.jira_project, policy.defaults.assignee


def check_assignees(online: Online) -> Iterable[Problem]:
    """An assignee who is unknown, ambiguous, deactivated, hidden or not assignable in the project:
    its tickets would be filed unassigned. The same look-up as the worker's: [people] first."""
    asked: dict[tuple[str, str], str] = {}
    for where, project, email in _assignees(online):
        key = (project, email.casefold())
        if key not in asked:
            person = online.policy.directory.by_email(email)
            match = (online.jira.check_assignable(project, person.jira) if person is not None
                     else online.jira.find_assignable(project, email))
            asked[key] = "" if match.account_id else match.reason
        if asked[key]:
            yield Problem(where, f"assignee {email} is not one Jira takes in {project}: {asked[key]}; "
                                 "its tickets there are filed unassigned")


def check_people(online: Online) -> Iterable[Problem]:
    """A `[people]` entry whose Jira account does not exist (a typo, or a username on Cloud)."""
    for person in online.policy.directory:
        if online.jira.user(person.jira) is None:
            yield Problem(f"people.{toml_key(person.email)}",
                          f"Jira has no account {person.jira!r}: give the accountId (Cloud; from the "
                          "person's profile URL) or the username (Data Center)")
