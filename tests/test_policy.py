"""The TOML policy: what loads, what it means, and how a mistake is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.core.patterns import NameGlob, TextPattern
from syncer.errors import ConfigError
from syncer.jira.screens import ScreenField, lookup
from syncer.policy import Policy, load_policy, parse_policy

ROOT = Path(__file__).resolve().parent.parent

BASE = """
[defaults]
jira_project = "OPS"

[teams.payments]
jira_project = "PAY"
assignee = "driver@example.com"
"""


def parse(extra: str, base: str = BASE) -> Policy:
    return parse_policy(base + extra, "syncer.toml")


def problem(extra: str, base: str = BASE) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(extra, base)
    return str(caught.value)


# --- what loads -----------------------------------------------------------------------------------


def test_the_example_policy_loads() -> None:
    policy = load_policy(ROOT / "syncer.example.toml")

    assert policy.defaults.jira_project == "OPS"
    assert set(policy.teams) == {"payments", "web", "ops"}
    assert policy.teams["payments"].assignee == "driver@example.com"
    assert policy.teams["web"].assignee == "alice@example.com"
    assert policy.routes[0].ignores
    assert policy.uses_tags


def test_a_policy_with_everything_defaulted_is_constructible() -> None:
    policy = Policy()

    assert policy.defaults.jira_project is None
    assert policy.defaults.issue_type == "Bug"
    assert policy.defaults.labels == ("sentry",)
    assert policy.defaults.action == "create"
    assert policy.routes == ()
    assert policy.priorities.for_level("fatal") == "Highest"
    assert policy.status.resolve_on == ("done",)
    assert policy.status.wont_fix == ("Won't Do", "Duplicate")
    assert policy.status.new_ticket_after_days == 30
    assert policy.reconcile.precedence == "newest"
    assert policy.reconcile.batch_size == 100
    assert not policy.uses_tags


def test_the_contract_example_loads() -> None:
    policy = parse(
        """
        [[routes]]
        when = { project = "billing-*", level = ["error", "fatal"] }
        team = "payments"

        [[routes]]
        when = { sentry_owner = "team:payments" }
        team = "payments"

        [[routes]]
        when = { tags = { "http.status_code" = "4*" } }
        action = "ignore"

        [status]
        resolve_on = ["done"]
        wont_fix = ["Won't Do", "Duplicate"]
        sentry_resolution = "resolved"
        close_to = "Done"
        reopen_to = "To Do"
        new_ticket_after_days = 30
        """
    )

    assert len(policy.routes) == 3
    assert policy.routes[1].team == "payments"
    assert policy.routes[2].ignores
    assert policy.uses_tags


def test_people_are_found_by_email_jira_account_and_sentry_id() -> None:
    policy = parse(
        """
        [people]
        "Alice@Example.com" = { jira = "5b10ac8d82e05b22cc7d4ef5", sentry = "42" }
        "bob@example.com" = { jira = "bob" }
        """
    )

    alice = policy.directory.by_email("alice@example.com")
    assert alice is not None and (alice.email, alice.jira, alice.sentry) == (
        "alice@example.com", "5b10ac8d82e05b22cc7d4ef5", "42")
    assert policy.directory.by_jira("5B10AC8D82E05B22CC7D4EF5") == alice
    assert policy.directory.by_sentry("42") == alice
    assert policy.directory.by_jira("BOB").sentry_ref == "bob@example.com"  # type: ignore[union-attr]
    assert alice.sentry_ref == "user:42"
    assert policy.directory.by_email("carol@example.com") is None


def test_a_single_value_and_a_list_mean_the_same() -> None:
    policy = parse(
        """
        [[routes]]
        when = { project = "billing-*", level = "ERROR" }
        team = "payments"
        """
    )

    when = policy.routes[0].when
    assert when.project is not None
    assert [p.source for p in when.project] == ["billing-*"]
    assert when.level == ("error",)


def test_priorities_merge_over_the_defaults() -> None:
    policy = parse('[priorities]\nerror = "Blocker"\ndebug = ""\n')

    assert policy.priorities.for_level("error") == "Blocker"
    assert policy.priorities.for_level("fatal") == "Highest"
    assert policy.priorities.for_level("debug") == ""
    assert policy.priorities.for_level("sample") is None


def test_defaults_may_ignore_without_a_project() -> None:
    policy = parse_policy('[defaults]\naction = "ignore"\n', "syncer.toml")

    assert policy.defaults.action == "ignore"
    assert policy.defaults.jira_project is None


def test_a_route_may_say_create_along_with_its_team() -> None:
    policy = parse('[[routes]]\nwhen = {}\nteam = "payments"\naction = "create"\n')

    assert not policy.routes[0].ignores


def test_a_username_is_accepted_as_assignee_for_jira_server() -> None:
    policy = parse('[teams.ops]\nassignee = "jdoe"\n')

    assert policy.teams["ops"].assignee == "jdoe"


# --- patterns -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("billing-*", "billing-api", True),
        ("billing-*", "Billing-API", True),  # names compare case-insensitively
        ("billing-?", "billing-ab", False),
        ("[db]*", "[db] timeout", True),  # `[` is literal, not a character class
        ("[db]*", "d timeout", False),
        ("*", "", True),
    ],
)
def test_name_globs(pattern: str, text: str, matches: bool) -> None:
    assert NameGlob.parse(pattern).matches(text) is matches


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("Timeout*", "Timeout after 30s", True),
        ("Timeout*", "timeout after 30s", False),  # text globs are case-sensitive
        ("/time(d)? ?out/", "Request timed out", True),  # regexes search
        ("/time(d)? ?out/", "Request Timed Out", False),
        ("/time(d)? ?out/i", "Request Timed Out", True),
        ("/^Key/", "KeyError: 'x'", True),
        ("/^Key/", "A KeyError", False),
    ],
)
def test_text_patterns(pattern: str, text: str, matches: bool) -> None:
    assert TextPattern.parse(pattern).matches(text) is matches


# --- how mistakes are reported --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(
            '[[routes]]\nwhen = { levle = "error" }\nteam = "payments"\n',
            "syncer.toml: routes[0].when.levle: unknown key (did you mean 'level'?)",
            id="unknown key in when",
        ),
        pytest.param(
            '[teams.web]\njira_project = "WEB"\nasignee = "alice@example.com"\n',
            "syncer.toml: teams.web.asignee: unknown key (did you mean 'assignee'?)",
            id="unknown key in a team",
        ),
        pytest.param(
            "[statuss]\n",
            "syncer.toml: statuss: unknown key (did you mean 'status'?)",
            id="unknown table",
        ),
        pytest.param(
            '[[routes]]\nwhen = {}\nteam = "payments"\n'
            '[[routes]]\nwhen = { title = "/(unclosed/" }\nteam = "payments"\n',
            "syncer.toml: routes[1].when.title: bad regex /(unclosed/: missing ), unterminated subpattern",
            id="bad regex",
        ),
        pytest.param(
            '[[routes]]\nwhen = { culprit = ["ok", "/[/"] }\nteam = "payments"\n',
            "syncer.toml: routes[0].when.culprit[1]: bad regex /[/",
            id="bad regex in a list",
        ),
        pytest.param(
            '[[routes]]\nwhen = {}\nteam = "payments"\n[[routes]]\nwhen = {}\nteam = "paymnts"\n',
            "syncer.toml: routes[1].team: names team 'paymnts', which no [teams.*] entry defines "
            "(did you mean 'payments'?)",
            id="undefined team",
        ),
        pytest.param(
            '[[routes]]\nwhen = {}\nteam = "payments"\naction = "ignore"\n',
            'syncer.toml: routes[0].team: give either team = "..." or action = "ignore", not both',
            id="team and ignore",
        ),
        pytest.param(
            "[[routes]]\nwhen = {}\n",
            'syncer.toml: routes[0].team: missing: a route needs team = "<name>" or action = "ignore"',
            id="neither team nor ignore",
        ),
        pytest.param(
            '[[routes]]\nteam = "payments"\n',
            "syncer.toml: routes[0].when: missing (write when = {} to match every issue)",
            id="no when",
        ),
        pytest.param(
            '[[routes]]\nwhen = { level = 3 }\nteam = "payments"\n',
            "syncer.toml: routes[0].when.level: expected a string or an array of strings, got an integer",
            id="level of the wrong type",
        ),
        pytest.param(
            '[[routes]]\nwhen = { level = ["error", "fatl"] }\nteam = "payments"\n',
            "syncer.toml: routes[0].when.level[1]: \"fatl\" is not one of 'fatal', 'error', 'warning',",
            id="unknown level",
        ),
        pytest.param(
            '[[routes]]\nwhen = { level = [] }\nteam = "payments"\n',
            "syncer.toml: routes[0].when.level: an empty array matches nothing",
            id="empty list",
        ),
        pytest.param(
            '[[routes]]\nwhen = { min_events = "10" }\nteam = "payments"\n',
            "syncer.toml: routes[0].when.min_events: expected an integer, got a string",
            id="count as a string",
        ),
        pytest.param(
            '[[routes]]\nwhen = { min_users = -1 }\nteam = "payments"\n',
            "syncer.toml: routes[0].when.min_users: must be >= 0, got -1",
            id="negative count",
        ),
        pytest.param(
            '[[routes]]\nwhen = { sentry_owner = "payments" }\nteam = "payments"\n',
            'syncer.toml: routes[0].when.sentry_owner: "payments" should be team:<slug> or user:',
            id="owner without a kind",
        ),
        pytest.param(
            '[[routes]]\nwhen = { tags = { "http.status_code" = 404 } }\naction = "ignore"\n',
            'syncer.toml: routes[0].when.tags."http.status_code": expected a string or an array of strings',
            id="tag value of the wrong type",
        ),
        pytest.param(
            '[[routes]]\nwhen = {}\naction = "ignore"\nlabels = ["x"]\n',
            'syncer.toml: routes[0].labels: has no effect on a route with action = "ignore"',
            id="labels on an ignore route",
        ),
        pytest.param(
            '[[routes]]\nname = "pay"\nwhen = {}\nteam = "payments"\n'
            '[[routes]]\nname = "pay"\nwhen = {}\nteam = "payments"\n',
            "syncer.toml: routes[1].name: 'pay' is already the name of routes[0]",
            id="duplicate route names",
        ),
        pytest.param(
            '[status]\nresolve_on = ["done", "closed"]\n',
            "syncer.toml: status.resolve_on[1]: \"closed\" is not one of 'new', 'indeterminate' or 'done'",
            id="bad status category",
        ),
        pytest.param(
            '[status]\non_archive = "transition"\n',
            'syncer.toml: status.archive_to: required when on_archive = "transition"',
            id="transition without a status",
        ),
        pytest.param(
            '[status]\nclose_to = "Duplicate"\n',
            'syncer.toml: status.close_to: "Duplicate" is also listed in wont_fix',
            id="close_to archives again",
        ),
        pytest.param(
            '[status]\nassignee_to_jira = "yes"\n',
            "syncer.toml: status.assignee_to_jira: expected true or false, got a string",
            id="bool as a string",
        ),
        pytest.param(
            "[reconcile]\nbatch_size = 500\n",
            "syncer.toml: reconcile.batch_size: must be <= 100, got 500",
            id="batch too large",
        ),
        pytest.param(
            '[teams.web]\nassignee = "alice@"\n',
            'syncer.toml: teams.web.assignee: "alice@" is not a valid e-mail address',
            id="bad e-mail",
        ),
        pytest.param(
            '[teams.web]\nlabels = ["front end"]\n',
            'syncer.toml: teams.web.labels[0]: "front end" is not a Jira label',
            id="label with a space",
        ),
        pytest.param(
            '[teams.web]\njira_project = "Web Team"\n',
            'syncer.toml: teams.web.jira_project: "Web Team" is not a Jira project key',
            id="project name instead of key",
        ),
        pytest.param(
            '[people]\n"alice@example.com" = { jira = "acc-1" }\n"bob@example.com" = { jira = "ACC-1" }\n',
            'syncer.toml: people."bob@example.com": the same jira account as "alice@example.com"',
            id="two people, one jira account",
        ),
        pytest.param(
            '[people]\n"a@example.com" = { jira = "a", sentry = "7" }\n"b@example.com" = { jira = "b", '
            'sentry = "7" }\n',
            'syncer.toml: people."b@example.com": the same sentry id as "a@example.com"',
            id="two people, one sentry id",
        ),
        pytest.param(
            '[people]\n"alice@example.com" = { jira = "a" }\n"Alice@Example.com" = { jira = "b" }\n',
            'syncer.toml: people."Alice@Example.com": the same e-mail as "alice@example.com"',
            id="one person twice",
        ),
        pytest.param(
            '[people]\nalice = { jira = "a" }\n',
            "syncer.toml: people.alice: is not an e-mail address",
            id="people keyed by a name",
        ),
        pytest.param(
            '[people]\n"alice@example.com" = "acc-1"\n',
            'syncer.toml: people."alice@example.com": expected a table, got a string',
            id="a person as a bare id",
        ),
        pytest.param(
            '[people]\n"alice@example.com" = { sentry = "7" }\n',
            'syncer.toml: people."alice@example.com".jira: missing',
            id="a person without a jira account",
        ),
        pytest.param(
            '[people]\n"alice@example.com" = { jira = "Alice Example" }\n',
            'syncer.toml: people."alice@example.com".jira: "Alice Example" is not a Jira account',
            id="a display name for the jira account",
        ),
        pytest.param(
            '[people]\n"alice@example.com" = { jira = "a", sentry = "alice" }\n',
            'syncer.toml: people."alice@example.com".sentry: "alice" is not a Sentry user id',
            id="a sentry username for the id",
        ),
        pytest.param(
            '[people]\n"alice@example.com" = { jira = "a", slack = "U1" }\n',
            'syncer.toml: people."alice@example.com".slack: unknown key',
            id="unknown key in a person",
        ),
        pytest.param(
            '[teams.web]\nlabels = ["env-{tags.}"]\n',
            'syncer.toml: teams.web.labels[0]: "env-{tags.}": {tags.} is not a value a label can take',
            id="label value without a tag key",
        ),
        pytest.param(
            '[teams.web]\nlabels = ["{culprit}"]\n',
            "syncer.toml: teams.web.labels[0]: \"{culprit}\": {culprit} is not a value a label can take from "
            "Sentry ({project}, {project_name}, {level}, {platform} or {tags.<key>})",
            id="label value sentry does not give",
        ),
        pytest.param(
            '[teams.web]\nlabels = ["env-{tags.environment"]\n',
            "a brace without its pair",
            id="label value unclosed",
        ),
        pytest.param(
            "[priorities]\nfatl = 'Highest'\n",
            "syncer.toml: priorities.fatl: unknown key (did you mean 'fatal'?)",
            id="unknown level in priorities",
        ),
    ],
)
def test_a_mistake_names_the_file_and_the_key(extra: str, expected: str) -> None:
    assert expected in problem(extra)


def test_every_problem_is_reported_on_its_own_line() -> None:
    message = problem('[teams.web]\nasignee = "x"\n[reconcile]\nbatch_size = 0\n')

    lines = message.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("syncer.toml: ") for line in lines)


def test_defaults_need_a_project_unless_they_ignore() -> None:
    message = problem("[defaults]\nissue_type = 'Bug'\n", base="")

    assert message.startswith("syncer.toml: defaults.jira_project: missing")


def test_a_team_needs_a_project_of_its_own_when_defaults_have_none() -> None:
    message = problem('[defaults]\naction = "ignore"\n[teams.web]\nassignee = "alice@example.com"\n', base="")

    assert "syncer.toml: teams.web.jira_project: missing, and [defaults] has no jira_project" in message


def test_invalid_toml_names_the_line() -> None:
    message = problem("\n\n[[routes]\nwhen = {}\n", base="")

    assert message.startswith("syncer.toml: invalid TOML:")
    assert "line 3" in message


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "syncer.toml"

    with pytest.raises(ConfigError, match="no such file"):
        load_policy(path)


def test_a_file_is_named_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[defaults]\njira_project = "OPS"\n[[routes]]\nwhen = {}\nteam = "nobody"\n')

    with pytest.raises(ConfigError) as caught:
        load_policy(path)

    assert str(caught.value).startswith(f"{path}: routes[0].team: names team 'nobody'")


# --- status settings per team and per Jira project --------------------------------------------------


def test_a_tickets_status_settings_come_from_its_project_then_its_team_then_status() -> None:
    policy = parse('''
[status]
close_to = "Done"
transition_fields = { "Root cause" = "Sentry", fixVersions = "2.4" }

[status.teams.payments]
close_to = "Resolved"
reopen_to = "Backlog"

[status.projects.ops]
close_to = "Closed"
on_archive = "transition"
archive_to = "Rejected"
transition_fields = { "root cause" = ["Code"] }
''')
    both = policy.status.for_ticket("OPS", "payments")
    team = policy.status.for_ticket("PAY", "payments")
    assert (both.close_to, both.reopen_to, both.on_archive, both.archive_to) == (
        "Closed", "Backlog", "transition", "Rejected")
    # The most specific entry for a field is the one found, whatever case or key it was written with.
    root_cause = ScreenField(id="customfield_10050", name="Root cause", required=True, has_default=False,
                             type="option", items=None, custom=None, allowed=None)
    assert lookup(both.transition_fields, root_cause) == ("root cause", ("Code",))
    assert lookup(team.transition_fields, root_cause) == ("Root cause", "Sentry")
    assert (team.close_to, team.reopen_to, team.on_archive) == ("Resolved", "Backlog", "nothing")
    assert policy.status.for_ticket("PAY", None) is policy.status


def test_a_project_or_team_override_is_checked_as_the_status_table_is() -> None:
    assert problem('[status.projects.OPS]\nwont_fix = ["Done"]\n') == (
        'syncer.toml: status.projects.OPS.close_to: "Done" is also listed in wont_fix')
    assert problem('[status.projects.OPS]\non_archive = "transition"\n') == (
        'syncer.toml: status.projects.OPS.archive_to: required when on_archive = "transition"')
    assert problem('[status.teams.paymnts]\nclose_to = "Closed"\n') == (
        "syncer.toml: status.teams.paymnts: names a team that no [teams.*] entry defines "
        "(did you mean 'payments'?)")
    assert problem('[status.projects.OPS]\nclosed_to = "Closed"\n') == (
        "syncer.toml: status.projects.OPS.closed_to: unknown key (did you mean 'close_to'?)")
    assert problem('[status.transition_fields]\n"Root cause" = true\n').startswith(
        'syncer.toml: status.transition_fields."Root cause": true/false is no Jira field')
