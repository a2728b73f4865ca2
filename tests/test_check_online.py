"""`syncer check-config --online` as an operator runs it: the real command in a subprocess, reading a
fake Jira site over HTTP (the module's own Cloud site, reset for each test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from syncer.fakes.jira import FakeJira
from tests.harness import FAKE_JIRA_EMAIL, FAKE_JIRA_TOKEN, REPO

MISCONFIGURED = """
[defaults]
jira_project = "OPS"

[teams.payments]
jira_project = "PAY"
components = ["Billing", "Refunds"]
fields = { "Root cuase" = "Unknown", Severity = "Sev 9" }

[teams.squad]
jira_project = "SQD"
components = ["Backend"]

[[routes]]
name = "billing"
when = { project = "billing-*" }
team = "payments"
priority = "Urgent"

[[routes]]
name = "squad"
when = { project = "squad-*" }
team = "squad"
"""

FIXED = """
[defaults]
jira_project = "OPS"

[teams.payments]
jira_project = "PAY"
components = ["Billing"]
fields = { "Root cause" = "unknown", Severity = "Sev 2" }

[teams.squad]
jira_project = "SQD"

[[routes]]
name = "billing"
when = { project = "billing-*" }
team = "payments"
priority = "High"

[[routes]]
name = "squad"
when = { project = "squad-*" }
team = "squad"
fields = { Severity = "Sev 1" }
"""


@pytest.fixture(scope="module")
def screens(cloud_jira_site: FakeJira) -> dict[str, str]:
    """Custom fields of the site (they outlive reset()); the screens are set per test."""
    cloud_jira_site.add_project("SQD", team_managed=True)
    return {
        "root_cause": cloud_jira_site.add_custom_field("Root cause", "select", ["Unknown", "Code", "Config"]),
        "severity": cloud_jira_site.add_custom_field("Severity", "select", ["Sev 1", "Sev 2"]),
    }


@pytest.fixture
def jira(cloud_jira: FakeJira, screens: dict[str, str]) -> FakeJira:
    cloud_jira.add_create_field("PAY", screens["root_cause"], required=True)
    cloud_jira.add_create_field("PAY", screens["severity"], required=False)
    cloud_jira.add_create_field("SQD", screens["severity"], required=False)
    return cloud_jira


def check_online(
    process_env: dict[str, str], jira: FakeJira, policy: Path
) -> subprocess.CompletedProcess[str]:
    env = {**process_env, "SYNCER_CONFIG": str(policy), "SYNCER_JIRA_URL": jira.url,
           "SYNCER_JIRA_EMAIL": FAKE_JIRA_EMAIL, "SYNCER_JIRA_TOKEN": FAKE_JIRA_TOKEN}
    return subprocess.run([sys.executable, "-m", "syncer", "check-config", "--online"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_misconfigured_route_is_named_with_each_problem_and_exit_1(
    process_env: dict[str, str], jira: FakeJira, screens: dict[str, str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(MISCONFIGURED)
    done = check_online(process_env, jira, policy)
    print(done.stdout)  # what the README shows
    assert done.returncode == 1, done.stderr
    out = done.stdout
    billing = out[out.index('  routes[0] "billing":'):out.index('  routes[1] "squad":')]
    squad = out[out.index('  routes[1] "squad":'):]
    root_cause = f'"Root cause" ({screens["root_cause"]})'
    # An unknown field name, with the name it was probably meant to be.
    assert 'teams.payments.fields: "Root cuase" is not a field of the create screen of PAY/Bug' in billing
    assert 'did you mean "Root cause"?' in billing
    # A value not among the allowed ones, naming them.
    assert '"Sev 9" is not one of its values (allowed: "Sev 1", "Sev 2")' in billing
    # The required field nobody sets (the misspelt entry does not count), with where to set it.
    assert f"PAY/Bug requires {root_cause}, and no fields entry sets it" in billing
    assert "[teams.payments]" in billing and '(allowed: "Unknown", "Code", "Config")' in billing
    # A component the project does not have, and a priority it does not offer.
    assert 'teams.payments.components: PAY has no component "Refunds"' in billing
    assert 'routes[0].priority: PAY/Bug has no priority "Urgent"' in billing
    # Components on a team-managed project: named, and said to be left off.
    assert 'teams.squad.components = ["Backend"]: SQD is a team-managed project' in squad
    assert "its tickets are created without them" in squad
    assert "[defaults]:" not in out  # OPS/Bug is fine
    assert "found online" in done.stderr


def test_a_policy_that_fits_the_screens_passes(
    process_env: dict[str, str], jira: FakeJira, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(FIXED)
    done = check_online(process_env, jira, policy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No problems found online." in done.stdout
    # Each create screen was read once, however many checks looked at it.
    assert jira.calls.count(path=r"/issue/createmeta/PAY/issuetypes/\d+$") == 1


def test_a_project_that_does_not_exist_is_a_problem_of_its_route(
    process_env: dict[str, str], jira: FakeJira, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(FIXED.replace('jira_project = "SQD"', 'jira_project = "NOPE"'))
    done = check_online(process_env, jira, policy)
    assert done.returncode == 1
    assert '  routes[1] "squad":' in done.stdout
    assert "cannot read the create screen of NOPE/Bug" in done.stdout
    assert "No project could be found with key 'NOPE'" in done.stdout


PEOPLE = """
[defaults]
jira_project = "OPS"
assignee = "oncall@example.com"

[teams.payments]
jira_project = "PAY"
assignee = "payer@example.com"

[teams.web]
jira_project = "WEB"
assignee = "nobody@example.com"

[teams.bobs]
jira_project = "WEB"
assignee = "bob@example.com"

[teams.ops]

[[routes]]
when = { project = "billing-*" }
team = "payments"

[people]
"bob@example.com" = { jira = "acc-bob" }
"gone@example.com" = { jira = "acc-typo" }
"""


def test_assignees_not_assignable_in_their_project_and_people_without_an_account_are_named(
    process_env: dict[str, str], jira: FakeJira, tmp_path: Path
) -> None:
    jira.add_user("acc-oncall", "On Call", "oncall@example.com")
    jira.add_user("acc-payer", "Pay Er", "payer@example.com")
    jira.add_user("acc-bob", "Bob Example", "bob@example.com", email_visible=False)
    jira.make_unassignable("acc-payer", "PAY")
    policy = tmp_path / "policy.toml"
    policy.write_text(PEOPLE)

    done = check_online(process_env, jira, policy)

    assert done.returncode == 1, done.stderr
    out = done.stdout[done.stdout.index("Online checks"):]  # past the routing table, which names them all
    assert "  [teams.payments]:" in out
    assert "assignee payer@example.com is not one Jira takes in PAY: not assignable in PAY" in out
    assert "  [teams.web]:" in out and "assignee nobody@example.com is not one Jira takes in WEB" in out
    assert '  people."gone@example.com":' in out and "Jira has no account 'acc-typo'" in out
    # Bob's address is hidden, but [people] names his account, assignable in WEB; the defaults'
    # assignee (for [defaults] and team ops) is assignable in OPS.
    assert "bob@example.com" not in out and "oncall@example.com" not in out
    assert "[teams.ops]" not in out


WORKFLOWS = """
[defaults]
jira_project = "OPS"

[teams.payments]
jira_project = "PAY"

[teams.web]
jira_project = "WEB"

[[routes]]
name = "billing"
when = { project = "billing-*" }
team = "payments"

[[routes]]
name = "frontend"
when = { platform = "javascript*" }
team = "web"

[status]
close_to = "Resolved"
on_archive = "transition"
archive_to = "Won't Do"

[status.projects.WEB]
close_to = "Closed"
"""


def test_statuses_a_routes_workflow_lacks_are_named_with_what_to_set(
    process_env: dict[str, str], jira: FakeJira, tmp_path: Path
) -> None:
    jira.set_workflow("PAY", "strict")  # no "Resolved" (Done stands in), no "Won't Do"
    jira.set_workflow("WEB", "strict", todo="Open", done="Closed")  # no "To Do" (Open stands in)
    policy = tmp_path / "policy.toml"
    policy.write_text(WORKFLOWS)

    done = check_online(process_env, jira, policy)

    assert done.returncode == 1, done.stderr
    out = done.stdout[done.stdout.index("Online checks"):]
    print(out)  # what the README shows
    assert "checked  workflows: statuses for close_to, reopen_to and archive_to" in out
    billing = out[out.index('  routes[0] "billing":'):out.index('  routes[1] "frontend":')]
    frontend = out[out.index('  routes[1] "frontend":'):]
    assert ("status.archive_to = \"Won't Do\": PAY's workflow for Bug has no such status (it has: 'To Do', "
            "'In Progress', 'Done'); set status.projects.PAY.archive_to") in billing
    assert "close_to" not in billing  # Done stands in for Resolved
    assert "WEB's workflow for Bug has no such status" in frontend and "archive_to" in frontend
    assert "close_to" not in frontend and "reopen_to" not in frontend  # Closed, and Open for To Do
    assert "[defaults]:" not in out  # OPS's simple workflow has Won't Do, and Done stands in for Resolved
