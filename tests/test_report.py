"""`syncer report` as an operator runs it, over figures made by real deliveries: fake Sentry files
issues, the real web app and worker route them, fake Jira's ticket is closed by a person."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.store.schema import utcnow
from tests.harness import link_of
from tests.test_cli import run
from tests.test_status_sync import linked_issue, settle, wait_sentry


def test_the_report_shows_what_real_deliveries_made(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine,
    process_env: dict[str, str],
) -> None:
    first_seen = utcnow() - timedelta(hours=2)
    paid, key = linked_issue(fake_sentry, fake_jira, engine, project="billing-api", first_seen=first_seen)
    fake_jira.person_transition(key, "Done")
    wait_sentry(fake_sentry, paid, "resolved")
    linked_issue(fake_sentry, fake_jira, engine, project="misc-api", title="KeyError: 'x'")  # [defaults]
    fake_sentry.file_issue(project="billing-api", level="info", title="cache warmed")  # route noise: ignored
    settle(engine, fake_sentry, fake_jira)
    link = link_of(engine, paid)
    assert link is not None and link.ticketed_at is not None and link.resolved_at is not None
    assert link.sentry_first_seen is not None
    assert abs(link.sentry_first_seen - first_seen) < timedelta(seconds=1)

    done = run(process_env, "report", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    teams = {team["team"]: team for team in report["teams"]}
    assert set(teams) == {"payments", None}
    payments = teams["payments"]
    assert (payments["made"], payments["resolved"], payments["open"]) == (1, 1, 0)
    to_ticket = payments["first_seen_to_ticket"]["p50_seconds"]
    assert 2 * 3600 - 1 <= to_ticket < 2 * 3600 + 120  # two hours in Sentry, then seconds to the ticket
    assert payments["ticket_to_resolved"]["count"] == 1
    assert (teams[None]["made"], teams[None]["open_by_age"]["under 1d"]) == (1, 1)
    routes = {route["route"]: route for route in report["routes"]}
    assert routes["billing"]["matched"]["24h"] == 1 and routes["billing"]["tickets"]["24h"] == 1
    assert routes["noise"]["ignored"] == {"24h": 1, "7d": 1, "30d": 1}
    assert routes["noise"]["tickets"]["30d"] == 0
    assert routes["defaults"]["matched"]["7d"] == 1
    assert report["no_owner_share"]["24h"] == 1 / 3

    shown = run(process_env, "report", "--since", "24h")
    assert shown.returncode == 0, shown.stderr
    assert "| payments | 1 | 1 | 2h |" in shown.stdout
    assert "No owner (reached [defaults]): 33% in 24h, 33% in 7d, 33% in 30d." in shown.stdout

    one = run(process_env, "report", "--team", "payments", "--format", "json")
    assert one.returncode == 0, one.stderr
    only = json.loads(one.stdout)
    assert [t["team"] for t in only["teams"]] == ["payments"] and only["no_owner_share"] is None
    assert [r["route"] for r in only["routes"]] == ["billing"]


def test_a_bad_since_or_an_unknown_team_is_refused_clearly(process_env: dict[str, str]) -> None:
    bad = run(process_env, "report", "--since", "7days")
    assert bad.returncode == 2
    assert "--since: '7days' is not a duration" in bad.stderr and "e.g. 24h, 7d or 4w" in bad.stderr
    assert "Traceback" not in bad.stderr
    unknown = run(process_env, "report", "--team", "paymnets")
    assert unknown.returncode == 2
    assert "--team: no team 'paymnets'" in unknown.stderr and "payments" in unknown.stderr
    assert "Traceback" not in unknown.stderr
