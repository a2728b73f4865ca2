"""Routing: which team, if any, gets a ticket for a Sentry issue, and why.

Pure: data in, a `Decision` out. The issue's tags are the one input that costs a request to
Sentry, so they come through a callable that is called only when evaluation reaches a route with
a `tags` condition (and whose other conditions already hold), at most once per decision.

Inside a route, conditions are tested in the fixed order of `Conditions`' fields, tags last; the
"first failing condition" an explanation names follows that order.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from syncer.core.issue import SentryIssue
from syncer.core.patterns import OwnerPattern, Pattern
from syncer.errors import ConfigError
from syncer.policy import Conditions, Policy, Route, toml_key

Tags = Mapping[str, Sequence[str]]


class IssueTags(Mapping[str, Sequence[str]]):
    """Tags as Sentry's tags list shows them: only the most frequent values of each key. A key in
    `more` has rarer values too, which `rarer(key)` reads (a request): routing asks for them only
    when a route needs that key and none of its top values matched."""

    def __init__(
        self,
        top: Tags,
        more: Iterable[str] = (),
        rarer: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        self._top = dict(top)
        self.more = frozenset(more) if rarer is not None else frozenset()
        self._rarer = rarer

    def __getitem__(self, key: str) -> Sequence[str]:
        return self._top[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._top)

    def __len__(self) -> int:
        return len(self._top)

    def every_value(self, key: str) -> Sequence[str] | None:
        """All of `key`'s values, or None when the top values were all of them."""
        if key not in self.more or self._rarer is None:
            return None
        return self._rarer(key)


@dataclass(frozen=True)
class FieldSetting:
    """One `fields` entry as the policy gives it: the field's name or id, the value as written, and
    the table it came from (`defaults`, `teams.payments`, `routes[2]`), which messages name."""

    key: str
    value: Any
    source: str


@dataclass(frozen=True)
class TicketTarget:
    """Where and how a ticket is filed. `labels` excludes the per-issue `sentry-<id>` label."""

    jira_project: str
    issue_type: str
    components: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    priority: str | None = None
    # An e-mail on Jira Cloud; on Server/DC it may be a username (see policy.Team.assignee).
    assignee_email: str | None = None
    team: str | None = None
    # Every `fields` entry that applies, defaults first, then the team's, then the route's: a later one
    # for the same field wins. Which keys name the same field (a name and an id) only create-meta
    # tells, so the merge by field finishes in `syncer.core.fields`.
    fields: tuple[FieldSetting, ...] = ()


@dataclass(frozen=True)
class RouteCheck:
    """One route as evaluated: matched, or the first condition that failed and why."""

    index: int
    name: str
    matched: bool
    condition: str | None = None  # e.g. "level" or "tags.http.status_code"; None when matched
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    # notify: post to the team's Slack channel and make no ticket until a person asks there; the
    # target is where that ticket would go.
    action: Literal["create", "notify", "ignore"]
    route_index: int | None  # None: no route matched, [defaults] decided
    route_name: str  # "defaults" when no route matched
    team: str | None
    target: TicketTarget | None  # None when ignored
    checks: tuple[RouteCheck, ...]
    reason: str
    slack_channel: str | None = None  # the team's triage channel, where the issue is posted

    @property
    def files_ticket(self) -> bool:
        """Whether the route sends the issue to Jira now (notify waits for a person)."""
        return self.action == "create" and self.target is not None

    def asked_for_ticket(self, where: str = "Slack") -> Decision:
        """The same route, once a person asked for the ticket (a notify route's "Create ticket", or
        Sentry's create form)."""
        if self.action != "notify":
            return self
        return replace(self, action="create", reason=f"{self.reason}; ticket asked for in {where}")


def decide(issue: SentryIssue, policy: Policy, tags: Callable[[], Tags]) -> Decision:
    """Try the routes in order; the first whose conditions all hold decides, else [defaults]."""
    lazy_tags = _OnceTags(tags)
    checks: list[RouteCheck] = []
    for index, route in enumerate(policy.routes):
        name = route.display_name(index)
        failure = _first_failure(route.when, issue, lazy_tags)
        if failure is not None:
            condition, reason = failure
            checks.append(RouteCheck(index, name, matched=False, condition=condition, reason=reason))
            continue
        checks.append(RouteCheck(index, name, matched=True, reason="all conditions hold"))
        label = route_label(index, name)
        if route.ignores:
            return Decision("ignore", index, name, None, None, tuple(checks), f"{label} matched: ignore")
        assert route.team is not None  # Route's validator guarantees a team when not ignoring
        target = ticket_target(policy, route.team, route, issue.level, issue.priority)
        if route.notifies:
            channel = policy.teams[route.team].slack_channel
            reason = (f"{label} matched: team {route.team}, notify {channel} "
                      f"(ticket in {target.jira_project} when asked for)")
            return Decision("notify", index, name, route.team, target, tuple(checks), reason, channel)
        reason = f"{label} matched: team {route.team} \u2192 {target.jira_project}"
        return Decision("create", index, name, route.team, target, tuple(checks), reason,
                        policy.teams[route.team].slack_channel)

    if policy.defaults.action == "ignore":
        reason = 'no route matched; [defaults] has action = "ignore"'
        return Decision("ignore", None, "defaults", None, None, tuple(checks), reason)
    target = ticket_target(policy, None, None, issue.level, issue.priority)
    reason = f"no route matched; [defaults] \u2192 {target.jira_project}"
    return Decision("create", None, "defaults", None, target, tuple(checks), reason)


def likely_team(policy: Policy, project_slug: str) -> str | None:
    """The team the routes send a project's issues to when only the project is known (Sentry's
    select requests name the project, not the issue): the first route that holds on the project
    alone. Routes with other conditions may or may not hold, so they are passed over."""
    for route in policy.routes:
        if set(route.when.given) - {"project"}:
            continue
        if route.when.project is not None and _globs(project_slug, route.when.project) is not None:
            continue
        return None if route.ignores else route.team
    return None


def ticket_target(
    policy: Policy, team_name: str | None, route: Route | None, level: str, sentry_priority: str = ""
) -> TicketTarget:
    """Merge route, team and defaults into one target. The priority: the route's, the team's, the
    defaults', then `[priorities]` by Sentry's priority, then by level. An empty `level` and
    `sentry_priority` leave `[priorities]` out."""
    defaults = policy.defaults
    team = policy.teams[team_name] if team_name is not None else None
    project = (team.jira_project if team else None) or defaults.jira_project
    if project is None:
        # parse_policy refuses such files; only a Policy built in code can get here.
        raise ConfigError("defaults.jira_project: missing, and an issue was routed to [defaults]")
    components = team.components if team else None
    if components is None:
        components = defaults.components if project == defaults.jira_project else ()
    labels = _unique([*defaults.labels, *(team.labels if team else ()), *(route.labels if route else ())])
    priority = _first_set(
        route.priority if route else None,
        team.priority if team else None,
        defaults.priority,
        policy.priorities.for_issue(level, sentry_priority),
    )
    return TicketTarget(
        jira_project=project,
        issue_type=(team.issue_type if team else None) or defaults.issue_type,
        components=tuple(components),
        labels=labels,
        priority=priority or None,  # "" in the policy means: let Jira choose
        assignee_email=(team.assignee if team else None) or defaults.assignee,
        team=team_name,
        fields=field_settings(policy, team_name, route),
    )


def field_settings(policy: Policy, team_name: str | None, route: Route | None) -> tuple[FieldSetting, ...]:
    """The `fields` of defaults, team and route, in that order (the last one for a field wins)."""
    layers: list[tuple[str, Mapping[str, Any]]] = [("defaults", policy.defaults.fields)]
    if team_name is not None:
        layers.append((f"teams.{toml_key(team_name)}", policy.teams[team_name].fields))
    if route is not None:
        index = next((i for i, r in enumerate(policy.routes) if r is route), None)
        layers.append((f"routes[{index}]" if index is not None else "route", route.fields))
    return tuple(
        FieldSetting(key, value, source) for source, fields in layers for key, value in fields.items()
    )


def _first_set(*values: str | None) -> str | None:
    return next((value for value in values if value is not None), None)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


class _OnceTags:
    """Calls the tags callable the first time they are needed, and never again."""

    def __init__(self, fetch: Callable[[], Tags]) -> None:
        self._fetch = fetch
        self._tags: Tags | None = None
        self._every: dict[str, Sequence[str] | None] = {}

    def get(self) -> Tags:
        if self._tags is None:
            self._tags = self._fetch()
        return self._tags

    def every_value(self, key: str) -> Sequence[str] | None:
        """`key`'s values beyond the top ones, when Sentry has more (see `IssueTags`)."""
        tags = self.get()
        if not isinstance(tags, IssueTags):
            return None
        if key not in self._every:
            self._every[key] = tags.every_value(key)
        return self._every[key]


# --- conditions -----------------------------------------------------------------------------------

Failure = tuple[str, str]  # (condition key, "key: reason")


def _first_failure(when: Conditions, issue: SentryIssue, tags: _OnceTags) -> Failure | None:
    for key, problem in _problems(when, issue, tags):
        if problem is not None:
            return key, f"{key}: {problem}"
    return None


def _problems(when: Conditions, issue: SentryIssue, tags: _OnceTags) -> Iterator[tuple[str, str | None]]:
    """(condition key, why it fails or None) for each condition given, lazily: a caller that stops
    at the first failure never reaches the tags, and so never fetches them."""
    if when.project is not None:
        yield "project", _globs(issue.project_slug, when.project)
    if when.level is not None:
        yield "level", _level(issue.level, when.level)
    if when.platform is not None:
        yield "platform", _globs(issue.platform, when.platform)
    if when.issue_type is not None:
        yield "issue_type", _issue_type(issue, when.issue_type)
    if when.sentry_owner is not None:
        yield "sentry_owner", _owner(issue, when.sentry_owner)
    if when.min_events is not None:
        yield "min_events", _at_least(issue.count, when.min_events, "event")
    if when.min_users is not None:
        yield "min_users", _at_least(issue.user_count, when.min_users, "user")
    if when.culprit is not None:
        yield "culprit", _globs(issue.culprit, when.culprit)
    if when.title is not None:
        yield "title", _globs(issue.title, when.title)
    for tag_key, patterns in (when.tags or {}).items():
        problem = _tag(tags.get().get(tag_key, ()), patterns)
        if problem is not None and (every := tags.every_value(tag_key)) is not None:
            problem = _tag(every, patterns)  # a rarer value than the tags list shows may match
        yield f"tags.{tag_key}", problem


def _globs(text: str, patterns: Sequence[Pattern]) -> str | None:
    if any(pattern.matches(text) for pattern in patterns):
        return None
    return f"{quoted(text)} {_matches_none(patterns)}"


def _matches_none(patterns: Sequence[Pattern]) -> str:
    if len(patterns) == 1:
        return f"does not match {patterns[0]}"
    return f"matches none of [{', '.join(str(p) for p in patterns)}]"


def _level(level: str, levels: Sequence[str]) -> str | None:
    if level.lower() in levels:
        return None
    return f"{quoted(level)} is not one of [{', '.join(quoted(lv) for lv in levels)}]"


def _issue_type(issue: SentryIssue, patterns: Sequence[Pattern]) -> str | None:
    candidates = list(dict.fromkeys(value for value in (issue.issue_type, issue.issue_category) if value))
    if any(pattern.matches(value) for pattern in patterns for value in candidates):
        return None
    shown = " or ".join(quoted(value) for value in candidates) or quoted("")
    return f"{shown} {_matches_none(patterns)}"


def _owner(issue: SentryIssue, patterns: Sequence[OwnerPattern]) -> str | None:
    actor = issue.assigned_to
    if actor is None:
        return "the issue has no assignee in Sentry"
    names = [value for value in (actor.name, actor.email, actor.id) if value]
    for pattern in patterns:
        if pattern.kind == actor.type.lower() and any(pattern.matches(name) for name in names):
            return None
    return f"{quoted(actor.as_owner())} {_matches_none(patterns)}"


def _at_least(actual: int, minimum: int, unit: str) -> str | None:
    if actual >= minimum:
        return None
    return f"{counted(actual, unit)}, fewer than {minimum}"


def counted(number: int, unit: str) -> str:
    return f"{number} {unit}{'' if number == 1 else 's'}"


def _tag(values: Sequence[str], patterns: Sequence[Pattern]) -> str | None:
    if any(pattern.matches(value) for pattern in patterns for value in values):
        return None
    if not values:
        return "Sentry reports no value for this tag"
    shown = ", ".join(quoted(value) for value in values[:10]) + (", ..." if len(values) > 10 else "")
    if len(patterns) == 1:
        return f"no value of [{shown}] matches {patterns[0]}"
    return f"no value of [{shown}] matches any of [{', '.join(str(p) for p in patterns)}]"


# --- text for people (`syncer.cli.views` prints it too) -------------------------------------------


def quoted(text: str, limit: int = 80) -> str:
    """Sentry text, double-quoted for a terminal: shortened, with control and bidi characters
    escaped, so an issue title cannot move the cursor or reorder what an operator reads."""
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif unicodedata.category(char) in {"Cc", "Cf"}:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def route_label(index: int, name: str) -> str:
    default = f"routes[{index}]"
    return default if name == default else f"{default} {json.dumps(name, ensure_ascii=False)}"
