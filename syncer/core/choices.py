"""What a person chose in Sentry's own screens, over what the routes decided.

Two screens carry choices: the settings of an alert rule whose action is syncer (team, priority,
extra labels, "create" or "notify only"; they arrive with every `event_alert.triggered` in
`data.issue_alert.settings`), and the issue-link create form (team, assignee, priority). Pure: the
policy and a list of `{name, value}` in, a `Choices` or a `ChoiceError` naming the field out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from syncer.core.issue import SentryIssue
from syncer.core.routing import Decision, ticket_target
from syncer.policy import Policy

# The `name`s of the alert-rule-action settings form (syncer.sentry.ui builds the form with them).
TEAM, PRIORITY, LABELS, MODE, ASSIGNEE = "team", "priority", "labels", "mode", "assignee"
MODES = ("create", "notify")
# A value a select leaves empty: "" in Sentry's settings (the field was not set), or our own
# "route" option, which keeps what the routes decide.
AS_ROUTED = ("", "route")


class ChoiceError(ValueError):
    """A choice the policy cannot honour; the text is shown to the person in Sentry (no secrets)."""


@dataclass(frozen=True)
class Choices:
    team: str | None = None
    priority: str | None = None
    labels: tuple[str, ...] = ()
    assignee: str | None = None
    notify_only: bool = False
    where: str = "alert rule"  # what the explanation names as the source of the choices

    @property
    def empty(self) -> bool:
        return not (self.team or self.priority or self.labels or self.assignee or self.notify_only)

    def describe(self) -> str:
        parts = []
        if self.notify_only:
            parts.append("notify only")
        if self.team:
            parts.append(f"team {self.team}")
        if self.priority:
            parts.append(f"priority {self.priority}")
        if self.labels:
            parts.append(f"labels {', '.join(self.labels)}")
        if self.assignee:
            parts.append(f"assignee {self.assignee}")
        return f"{self.where}: {'; '.join(parts) or 'nothing chosen'}"


def settings_values(raw: Any) -> dict[str, str]:
    """Sentry's `[{"name": .., "value": ..}, ..]` (the saved settings, or the fields posted when a
    rule is saved) as a dict; anything not of that shape is left out."""
    values: dict[str, str] = {}
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        return values
    for item in raw:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            value = item.get("value")
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                values[item["name"][:100]] = str(value).strip()[:1000]
            elif value is None:
                values[item["name"][:100]] = ""
    return values


def parse_choices(values: Mapping[str, str], policy: Policy, *, where: str = "alert rule") -> Choices:
    """Check each choice against the policy; ChoiceError names the first one that cannot be used."""
    team = values.get(TEAM, "")
    if team in AS_ROUTED:
        team_name = None
    elif team in policy.teams:
        team_name = team
    else:
        known = ", ".join(sorted(policy.teams)) or "none: the policy has no [teams.*]"
        raise ChoiceError(f"team {team!r} is not in syncer's policy (teams: {known})")
    priority = values.get(PRIORITY, "")
    if priority in AS_ROUTED:
        priority = ""
    elif len(priority) > 100:
        raise ChoiceError("priority: at most 100 characters")
    labels: list[str] = []
    for label in (part.strip() for part in values.get(LABELS, "").split(",")):
        if not label:
            continue
        if any(char.isspace() for char in label) or len(label) > 255 or "{" in label or "}" in label:
            raise ChoiceError(f"label {label!r}: Jira labels have no spaces or braces, at most 255 "
                              "characters")
        labels.append(label)
    mode = values.get(MODE, "") or "create"
    if mode not in MODES:
        raise ChoiceError(f"mode {mode!r}: one of {', '.join(MODES)}")
    assignee = values.get(ASSIGNEE, "")
    if assignee in AS_ROUTED:
        assignee = ""
    elif any(char.isspace() for char in assignee) or len(assignee) > 200:
        raise ChoiceError(f"assignee {assignee!r}: an e-mail or Jira username, without spaces")
    return Choices(team_name, priority or None, tuple(dict.fromkeys(labels)), assignee or None,
                   mode == "notify", where)


def apply(decision: Decision, policy: Policy, issue: SentryIssue, choices: Choices) -> Decision:
    """The decision with the choices laid over it. A team chosen anew takes that team's target (the
    matched route's labels and fields were for the route's team, so they are left out); priority,
    labels and assignee then replace or add to the target. "Notify only" is the routes' `notify`
    action: the team's channel hears of the issue, and the ticket waits for a person to ask for it."""
    if choices.empty:
        return decision
    said = choices.describe()
    team = decision.team
    target = decision.target
    if choices.team and (choices.team != decision.team or target is None):
        team = choices.team
        route = policy.routes[decision.route_index] if decision.route_index is not None else None
        keep_route = route is not None and route.team == team
        target = ticket_target(policy, team, route if keep_route else None, issue.level, issue.priority)
    if target is None:  # the routes ignore the issue and no team was chosen: still nothing to file
        nothing = "posted" if choices.notify_only else "filed"
        return replace(decision, action="ignore", target=None,
                       reason=f"{decision.reason}; {said} (no team chosen, so nothing {nothing})")
    target = replace(
        target,
        priority=choices.priority or target.priority,
        labels=tuple(dict.fromkeys([*target.labels, *choices.labels])),
        assignee_email=choices.assignee or target.assignee_email,
    )
    if choices.notify_only:
        # [defaults] has no channel: an issue no route nor choice gave a team has nowhere to go.
        if team is None:
            return replace(decision, action="ignore", target=None,
                           reason=f"{decision.reason}; {said} (no team, so nothing posted)")
        return replace(decision, action="notify", team=team, target=target,
                       slack_channel=policy.teams[team].slack_channel, reason=f"{decision.reason}; {said}")
    return replace(decision, action="create", team=team, target=target, reason=f"{decision.reason}; {said}")
