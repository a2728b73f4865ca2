"""Online checks of each route's create screen (Jira create-meta): the fields the policy sets, the
required fields it does not, components, and priorities. Each problem names the route and the table
(`teams.payments`, `[defaults]`, the route itself) where the value is set or should be."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator

from syncer.cli.online.context import Online, Problem, Target
from syncer.core.fields import Person, allowed_names, convert, describe_allowed, missing_required
from syncer.errors import SyncerError
from syncer.jira.createmeta import CreateMeta
from syncer.policy import toml_key

# Fields a ticket always has from syncer, beyond the ones `missing_required` knows: the priority is
# set by the level unless the policy says "" (leave it to Jira).
_BY_LEVEL = "priority"


def _screens(online: Online, *, wanted: Callable[[Target], bool] = lambda _: True,
             ) -> Iterator[tuple[Target, CreateMeta] | Problem]:
    """Each wanted target with its create screen, or the problem of reading it."""
    for target in online.targets:
        if not wanted(target):
            continue
        try:
            yield target, online.create_meta(target)
        except SyncerError as exc:
            yield Problem(target.where, f"cannot read the create screen of {target.screen}: {exc}")


def _person(online: Online, value: str) -> Person:
    if "@" not in value:
        return Person(value)  # an accountId (Cloud) or username (Data Center), taken as written
    known = online.policy.directory.by_email(value)
    if known is not None:  # as the worker takes it: [people] first
        return Person(known.jira)
    match = online.jira.find_account(value)
    return Person(match.account_id, match.reason)


def _tables(target: Target) -> str:
    """Where a value for this route's tickets may be set, most specific first."""
    places = [f"the route ({target.where.split(' ')[0]})"] if target.route is not None else []
    if target.ticket.team is not None:
        places.append(f"[teams.{toml_key(target.ticket.team)}]")
    places.append("[defaults]")
    return ", ".join(places[:-1]) + " or " + places[-1] if len(places) > 1 else places[0]


def check_fields(online: Online) -> Iterable[Problem]:
    """Unknown field names, values the field cannot take, and required fields with no value."""
    for screen in _screens(online):
        if isinstance(screen, Problem):
            yield screen
            continue
        target, meta = screen
        converted = convert(target.ticket.fields, meta, person=lambda v: _person(online, v),
                            user_ref=online.jira.user_ref)
        for problem in converted.problems:
            yield Problem(target.where, f"{problem.source}.fields: {problem.message}")
        given = set(converted.values)
        given |= {"components"} if target.ticket.components else set()
        given |= {"assignee"} if target.ticket.assignee_email else set()
        given.add(_BY_LEVEL)
        for missing in missing_required(meta, given):
            allowed = describe_allowed(missing)
            yield Problem(
                target.where,
                f"{meta.where} requires {missing.label}, and no fields entry sets it: add "
                f'fields = {{ "{missing.name or missing.id}" = ... }} to {_tables(target)}'
                + (f" (allowed: {allowed})" if allowed else ""),
            )


def check_components(online: Online) -> Iterable[Problem]:
    """Components on a screen without them (team-managed projects have none), and components the
    project does not have."""
    for screen in _screens(online, wanted=lambda t: bool(t.ticket.components)):
        if isinstance(screen, Problem):
            yield screen
            continue
        target, meta = screen
        components = target.ticket.components
        source = _components_source(online, target)
        project = target.ticket.jira_project
        field = meta.find("components")
        if field is None or field.id != "components":
            if online.jira.project_is_team_managed(project):
                why = f"{project} is a team-managed project, which has no components"
            else:
                why = f"the create screen of {meta.where} has no Components field"
            yield Problem(target.where, f"{source}.components = {_list(components)}: {why}; its tickets are "
                          f"created without them (remove components from {source})")
            continue
        known = {n.casefold() for n in allowed_names(field)} if field.allowed is not None else None
        for name in components:
            if known is not None and name.casefold() not in known:
                has = describe_allowed(field) or "none"
                yield Problem(target.where, f"{source}.components: {project} has no component "
                              f"{json.dumps(name)} (it has: {has})")


def check_priorities(online: Online) -> Iterable[Problem]:
    """Priority names (the route's, team's, defaults' or [priorities] by level) the screen does not offer."""
    for screen in _screens(online):
        if isinstance(screen, Problem):
            yield screen
            continue
        target, meta = screen
        field = meta.find("priority")
        if field is None or field.id != "priority" or field.allowed is None:
            continue
        offered = {name.casefold() for name in allowed_names(field)}
        for where, name in _priorities(online, target):
            if name and name.casefold() not in offered:
                yield Problem(target.where, f"{where}: {meta.where} has no priority {json.dumps(name)} "
                              f"(it offers: {describe_allowed(field)})")


def _priorities(online: Online, target: Target) -> list[tuple[str, str]]:
    policy = online.policy
    team = policy.teams[target.ticket.team] if target.ticket.team else None
    for where, name in (
        (f"{target.where.split(' ')[0]}.priority", target.route.priority if target.route else None),
        (f"teams.{toml_key(target.ticket.team or '')}.priority", team.priority if team else None),
        ("defaults.priority", policy.defaults.priority),
    ):
        if name is not None:
            return [(where, name)]  # the first one set decides, for every level
    return [(f"priorities.{level}", getattr(policy.priorities, level))
            for level in ("fatal", "error", "warning", "info", "debug")]


def _list(names: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(n, ensure_ascii=False) for n in names) + "]"


def _components_source(online: Online, target: Target) -> str:
    team = online.policy.teams.get(target.ticket.team or "")
    if team is not None and team.components is not None:
        return f"teams.{toml_key(target.ticket.team or '')}"
    return "defaults"
