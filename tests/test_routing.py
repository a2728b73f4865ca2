"""Routing: which route wins for a real-shaped Sentry issue, what ticket it asks for, and why."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from syncer.cli.views import format_explanation, format_routing_table
from syncer.core.issue import SentryActor, SentryIssue
from syncer.core.routing import decide
from syncer.errors import ConfigError
from syncer.policy import Policy, load_policy, parse_policy
from syncer.sentry.parse import parse_issue

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sentry"
ROOT = Path(__file__).resolve().parent.parent

TEAMS = """
[defaults]
jira_project = "OPS"
labels = ["sentry"]
components = ["Triage"]

[teams.payments]
jira_project = "PAY"
components = ["Billing"]
assignee = "driver@example.com"
labels = ["payments"]

[teams.web]
jira_project = "WEB"
assignee = "alice@example.com"

[teams.ops]
labels = ["ops"]
"""


def sentry_issue(fixture: str, **changes: Any) -> SentryIssue:
    body = json.loads((FIXTURES / fixture).read_text())
    return dataclasses.replace(parse_issue(body["data"]["issue"]), **changes)


def policy(routes: str, base: str = TEAMS) -> Policy:
    return parse_policy(base + routes, "test.toml")


class FakeTags:
    """A tags source that counts how often routing asks Sentry for them."""

    def __init__(self, tags: Mapping[str, Sequence[str]] | None = None) -> None:
        self.tags = tags or {}
        self.calls = 0

    def __call__(self) -> Mapping[str, Sequence[str]]:
        self.calls += 1
        return self.tags


def no_tags() -> Mapping[str, Sequence[str]]:
    raise AssertionError("routing fetched tags although no route reached needs them")


BILLING = "issue_created.json"  # billing-api, error, python, unassigned, 1 event, 1 user
OWNED = "issue_created_owned_by_team.json"  # checkout, error, assigned to team payments, 57 events
WARNING = "issue_created_warning.json"  # web-frontend, warning, javascript, assigned to alice


# --- each condition -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "fixture", "reason"),
    [
        ('{ project = "billing-*" }', BILLING, None),
        ('{ project = ["web-*", "BILLING-API"] }', BILLING, None),
        ('{ project = "web-*" }', BILLING, 'project: "billing-api" does not match "web-*"'),
        ('{ level = ["error", "fatal"] }', BILLING, None),
        ('{ level = ["error", "fatal"] }', WARNING, 'level: "warning" is not one of ["error", "fatal"]'),
        ('{ platform = "python" }', BILLING, None),
        (
            '{ platform = ["javascript*", "node"] }',
            BILLING,
            'platform: "python" matches none of ["javascript*", "node"]',
        ),
        ('{ issue_type = "error" }', BILLING, None),
        ('{ issue_type = "performance_*" }', BILLING, 'issue_type: "error" does not match "performance_*"'),
        ('{ culprit = "billing.* in compute_*" }', BILLING, None),
        ('{ culprit = "/invoices/" }', BILLING, None),
        (
            '{ culprit = "invoices" }',
            BILLING,
            'culprit: "billing.invoices in compute_total" does not match "invoices"',
        ),
        ('{ title = "ZeroDivisionError:*" }', BILLING, None),
        (
            '{ title = "zerodivisionerror:*" }',
            BILLING,
            'title: "ZeroDivisionError: division by zero" does not match "zerodivisionerror:*"',
        ),
        ('{ title = "/division by (zero|nothing)/" }', BILLING, None),
        (
            '{ title = "/^division/" }',
            BILLING,
            'title: "ZeroDivisionError: division by zero" does not match /^division/',
        ),
        ('{ title = "*[db]*" }', OWNED, None),
        ('{ sentry_owner = "team:payments" }', OWNED, None),
        ('{ sentry_owner = "team:pay*" }', OWNED, None),
        ('{ sentry_owner = "team:12" }', OWNED, None),
        (
            '{ sentry_owner = "user:payments" }',
            OWNED,
            'sentry_owner: "team:payments" does not match "user:payments"',
        ),
        ('{ sentry_owner = "user:alice@example.com" }', WARNING, None),
        ('{ sentry_owner = "user:Alice Example" }', WARNING, None),
        (
            '{ sentry_owner = ["team:web", "user:bob@*"] }',
            WARNING,
            'sentry_owner: "user:alice@example.com" matches none of ["team:web", "user:bob@*"]',
        ),
        ('{ sentry_owner = "team:*" }', BILLING, "sentry_owner: the issue has no assignee in Sentry"),
        ("{ min_events = 57 }", OWNED, None),
        ("{ min_events = 58 }", OWNED, "min_events: 57 events, fewer than 58"),
        ("{ min_users = 1 }", BILLING, None),
        ("{ min_users = 2 }", BILLING, "min_users: 1 user, fewer than 2"),
        ("{}", BILLING, None),
    ],
)
def test_a_condition(when: str, fixture: str, reason: str | None) -> None:
    rules = policy(f'[[routes]]\nwhen = {when}\nteam = "payments"\n')

    decision = decide(sentry_issue(fixture), rules, no_tags)

    (check,) = decision.checks
    if reason is None:
        assert check.matched
        assert decision.route_index == 0
        assert decision.team == "payments"
    else:
        assert not check.matched
        assert check.reason == reason
        assert check.condition == reason.split(":")[0]
        assert decision.route_name == "defaults"


def test_issue_type_also_matches_the_category() -> None:
    rules = policy('[[routes]]\nwhen = { issue_type = "performance" }\nteam = "web"\n')
    issue = sentry_issue(
        BILLING, issue_type="performance_n_plus_one_db_queries", issue_category="performance"
    )

    assert decide(issue, rules, no_tags).team == "web"


def test_an_owner_matches_by_id_name_or_email() -> None:
    rules = policy('[[routes]]\nwhen = { sentry_owner = "user:301" }\nteam = "web"\n')
    hidden_email = SentryActor(type="user", id="301", name="Alice Example")

    assert decide(sentry_issue(WARNING, assigned_to=hidden_email), rules, no_tags).team == "web"


@pytest.mark.parametrize(
    ("tags", "matched", "reason"),
    [
        ({"http.status_code": ["404"]}, True, None),
        ({"http.status_code": ["200", "404"]}, True, None),  # any value may match
        ({"http.status_code": ["200"]}, False, 'tags.http.status_code: no value of ["200"] matches "4*"'),
        ({}, False, "tags.http.status_code: Sentry reports no value for this tag"),
    ],
)
def test_a_tags_condition(tags: dict[str, list[str]], matched: bool, reason: str | None) -> None:
    rules = policy('[[routes]]\nwhen = { tags = { "http.status_code" = "4*" } }\naction = "ignore"\n')

    decision = decide(sentry_issue(BILLING), rules, FakeTags(tags))

    assert decision.checks[0].matched is matched
    assert decision.action == ("ignore" if matched else "create")
    if reason is not None:
        assert decision.checks[0].reason == reason
        assert decision.checks[0].condition == "tags.http.status_code"


def test_every_tag_key_must_hold() -> None:
    rules = policy(
        '[[routes]]\nwhen = { tags = { environment = "production", "worker.queue" = ["billing", "inv*"] } }\n'
        'team = "payments"\n'
    )
    issue = sentry_issue(BILLING)

    assert decide(issue, rules, FakeTags({"environment": ["production"], "worker.queue": ["invoices"]})).team
    decision = decide(issue, rules, FakeTags({"environment": ["staging"], "worker.queue": ["billing"]}))
    assert decision.checks[0].condition == "tags.environment"


def test_all_conditions_must_hold_and_the_first_failure_is_named() -> None:
    rules = policy(
        '[[routes]]\nwhen = { project = "billing-*", level = "fatal", min_events = 100 }\nteam = "payments"\n'
    )

    check = decide(sentry_issue(BILLING), rules, no_tags).checks[0]

    assert check.condition == "level"
    assert check.reason == 'level: "error" is not one of ["fatal"]'


# --- order, ignore, defaults ----------------------------------------------------------------------


def test_the_first_matching_route_wins() -> None:
    rules = policy(
        """
        [[routes]]
        name = "web"
        when = { project = "web-*" }
        team = "web"

        [[routes]]
        name = "billing"
        when = { project = "billing-*" }
        team = "payments"

        [[routes]]
        name = "everything"
        when = {}
        team = "ops"
        """
    )

    decision = decide(sentry_issue(BILLING), rules, no_tags)

    assert decision.action == "create"
    assert (decision.route_index, decision.route_name, decision.team) == (1, "billing", "payments")
    assert [check.matched for check in decision.checks] == [False, True]  # the third is never tried
    assert decision.reason == 'routes[1] "billing" matched: team payments \u2192 PAY'


def test_an_ignore_route_leaves_no_target() -> None:
    rules = policy('[[routes]]\nwhen = { level = "warning" }\naction = "ignore"\n')

    decision = decide(sentry_issue(WARNING), rules, no_tags)

    assert decision.action == "ignore"
    assert decision.target is None
    assert decision.team is None
    assert decision.route_index == 0
    assert decision.route_name == "routes[0]"


def test_no_match_follows_the_defaults() -> None:
    rules = policy('[[routes]]\nwhen = { project = "web-*" }\nteam = "web"\n')

    decision = decide(sentry_issue(BILLING), rules, no_tags)

    assert decision.action == "create"
    assert (decision.route_index, decision.route_name, decision.team) == (None, "defaults", None)
    assert decision.target is not None
    assert decision.target.jira_project == "OPS"
    assert decision.target.components == ("Triage",)
    assert decision.reason == "no route matched; [defaults] \u2192 OPS"


def test_defaults_can_ignore() -> None:
    rules = parse_policy(
        '[defaults]\naction = "ignore"\n[[routes]]\nwhen = { level = "fatal" }\naction = "ignore"\n',
        "test.toml",
    )

    decision = decide(sentry_issue(BILLING), rules, no_tags)

    assert decision.action == "ignore"
    assert decision.route_name == "defaults"
    assert decision.target is None
    assert len(decision.checks) == 1


# --- tags are fetched lazily ----------------------------------------------------------------------


def test_tags_are_not_fetched_when_no_route_needs_them() -> None:
    rules = policy('[[routes]]\nwhen = { project = "web-*" }\nteam = "web"\n')

    decide(sentry_issue(BILLING), rules, no_tags)


def test_tags_are_not_fetched_when_an_earlier_route_matches() -> None:
    rules = policy(
        '[[routes]]\nwhen = { project = "billing-*" }\nteam = "payments"\n'
        '[[routes]]\nwhen = { tags = { environment = "production" } }\nteam = "ops"\n'
    )

    assert decide(sentry_issue(BILLING), rules, no_tags).team == "payments"


def test_tags_are_not_fetched_when_the_routes_other_conditions_fail() -> None:
    rules = policy(
        '[[routes]]\nwhen = { project = "web-*", tags = { environment = "production" } }\nteam = "web"\n'
    )

    assert decide(sentry_issue(BILLING), rules, no_tags).checks[0].condition == "project"


def test_tags_are_fetched_once_however_many_routes_use_them() -> None:
    rules = policy(
        '[[routes]]\nwhen = { tags = { environment = "staging" } }\nteam = "web"\n'
        '[[routes]]\nwhen = { tags = { "http.status_code" = "5*" } }\nteam = "ops"\n'
        '[[routes]]\nwhen = { tags = { environment = "production" } }\nteam = "payments"\n'
    )
    tags = FakeTags({"environment": ["production"], "http.status_code": ["200"]})

    decision = decide(sentry_issue(BILLING), rules, tags)

    assert decision.team == "payments"
    assert tags.calls == 1


# --- the ticket target ----------------------------------------------------------------------------


def test_labels_compose_defaults_team_and_route_in_order_without_repeats() -> None:
    rules = policy('[[routes]]\nwhen = {}\nteam = "payments"\nlabels = ["hot", "payments", "sentry"]\n')

    target = decide(sentry_issue(BILLING), rules, no_tags).target

    assert target is not None
    assert target.labels == ("sentry", "payments", "hot")
    assert "sentry-4506" not in target.labels  # render adds the per-issue label


@pytest.mark.parametrize(
    ("defaults_priority", "team_priority", "route_priority", "expected"),
    [
        (None, None, None, "High"),  # from [priorities] by level "error"
        ('"Medium"', None, None, "Medium"),
        ('"Medium"', '"Low"', None, "Low"),
        ('"Medium"', '"Low"', '"Highest"', "Highest"),
        (None, '""', None, None),  # "" leaves it to Jira
    ],
)
def test_priority_precedence(
    defaults_priority: str | None, team_priority: str | None, route_priority: str | None, expected: str | None
) -> None:
    text = '[defaults]\njira_project = "OPS"\n'
    text += f"priority = {defaults_priority}\n" if defaults_priority else ""
    text += '[teams.payments]\njira_project = "PAY"\n'
    text += f"priority = {team_priority}\n" if team_priority else ""
    text += '[[routes]]\nwhen = {}\nteam = "payments"\n'
    text += f"priority = {route_priority}\n" if route_priority else ""

    target = decide(sentry_issue(BILLING), parse_policy(text, "test.toml"), no_tags).target

    assert target is not None
    assert target.priority == expected


def test_priority_follows_the_level_mapping() -> None:
    rules = policy('[priorities]\nwarning = "Minor"\n')

    target = decide(sentry_issue(WARNING), rules, no_tags).target

    assert target is not None
    assert target.priority == "Minor"


def test_a_team_inherits_project_and_components_from_the_defaults() -> None:
    rules = policy('[[routes]]\nwhen = {}\nteam = "ops"\n')

    target = decide(sentry_issue(BILLING), rules, no_tags).target

    assert target is not None
    assert (target.jira_project, target.components, target.team) == ("OPS", ("Triage",), "ops")
    assert target.labels == ("sentry", "ops")
    assert target.assignee_email is None


def test_a_team_in_another_project_does_not_inherit_components() -> None:
    rules = policy('[[routes]]\nwhen = {}\nteam = "web"\n')

    target = decide(sentry_issue(BILLING), rules, no_tags).target

    assert target is not None
    assert (target.jira_project, target.components) == ("WEB", ())
    assert target.assignee_email == "alice@example.com"
    assert target.issue_type == "Bug"


def test_the_example_policy_routes_the_fixtures() -> None:
    rules = load_policy(ROOT / "syncer.example.toml")
    tags = {"http.status_code": ["500"], "environment": ["production"]}

    assert decide(sentry_issue(BILLING), rules, FakeTags(tags)).team == "payments"
    assert decide(sentry_issue(OWNED), rules, FakeTags(tags)).team == "payments"
    assert decide(sentry_issue(WARNING), rules, FakeTags(tags)).team == "web"
    client_error = decide(sentry_issue(BILLING), rules, FakeTags({"http.status_code": ["404"]}))
    assert (client_error.action, client_error.route_name) == ("ignore", "drop-client-errors")
    debug = decide(sentry_issue(BILLING, level="debug"), rules, no_tags)
    assert (debug.action, debug.route_name) == ("ignore", "drop-info-and-debug")


# --- text for people ------------------------------------------------------------------------------


def test_the_explanation_names_why_each_earlier_route_failed() -> None:
    rules = policy(
        """
        [[routes]]
        name = "web"
        when = { project = "web-*" }
        team = "web"

        [[routes]]
        when = { level = ["fatal"] }
        action = "ignore"

        [[routes]]
        name = "payments-owned"
        when = { sentry_owner = "team:payments" }
        team = "payments"
        """
    )
    issue = sentry_issue(OWNED)

    text = format_explanation(decide(issue, rules, no_tags), issue)

    assert 'routes[0] "web": no match, project: "checkout" does not match "web-*"' in text
    assert 'routes[1]: no match, level: "error" is not one of ["fatal"]' in text
    assert 'routes[2] "payments-owned": matches' in text
    assert "Result: create a ticket for team payments" in text
    for line in (
        "project     PAY",
        "assignee    driver@example.com",
        "labels      sentry, payments",
        "priority    High",
    ):
        assert line in text


def test_the_explanation_of_an_ignored_issue() -> None:
    rules = policy('[[routes]]\nname = "noise"\nwhen = { level = "warning" }\naction = "ignore"\n')
    issue = sentry_issue(WARNING)

    text = format_explanation(decide(issue, rules, no_tags), issue)

    assert text.endswith('Result: ignored (routes[0] "noise")')


def test_the_explanation_cannot_be_steered_by_control_characters_in_a_title() -> None:
    issue = sentry_issue(BILLING, title="boom\x1b[2J\u202egnp.exe\r\n")

    text = format_explanation(decide(issue, policy(""), no_tags), issue)

    assert not {"\x1b", "\u202e", "\r"} & set(text)
    assert '"boom\\u001b[2J\\u202egnp.exe\\u000d\\u000a"' in text


def test_the_routing_table_lists_each_route_then_the_defaults() -> None:
    rules = policy(
        """
        [[routes]]
        name = "billing"
        when = { project = "billing-*", level = ["error", "fatal"] }
        team = "payments"

        [[routes]]
        when = { tags = { "http.status_code" = "4*" }, title = "/time ?out/i" }
        action = "ignore"
        """
    )

    lines = format_routing_table(rules).splitlines()

    assert len(lines) == 4
    assert lines[1].split() == [
        "[0]",
        "billing",
        "project",
        "=",
        '"billing-*",',
        "level",
        "=",
        '["error",',
        '"fatal"]',
        "\u2192",
        "team",
        "payments:",
        "PAY,",
        "Bug,",
        "components",
        "[Billing],",
        "assignee",
        "driver@example.com,",
        "labels",
        "[sentry,",
        "payments],",
        "priority",
        "by",
        "level",
    ]
    assert 'title = /time ?out/i, tags."http.status_code" = "4*"' in lines[2]
    assert lines[2].endswith("\u2192 ignore")
    assert lines[3].split()[:3] == ["[defaults]", "no", "route"]
    assert lines[3].endswith(
        "\u2192 OPS, Bug, components [Triage], assignee (none), labels [sentry], priority by level"
    )


def test_a_policy_built_in_code_without_a_default_project_fails_loudly() -> None:
    with pytest.raises(ConfigError, match=r"defaults\.jira_project"):
        decide(sentry_issue(BILLING), Policy(), no_tags)
