"""Sentry's reads as they really are, through the real worker against the fake Sentry: organisations
without multi-project reads (Team and Developer plans), the search's 90-day window, merged issues and
tags beyond the top values."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy.engine import Engine

from syncer import metrics
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.runtime import Runtime
from syncer.store import links
from syncer.store.engine import session_scope
from syncer.store.schema import DeliveryState, Link, LinkState, utcnow
from syncer.worker import app as worker
from tests.conftest import post_sentry
from tests.harness import REPO, audit_of, deliveries, link_of, links_of, wait_for

ISSUE_LIST = r"/organizations/[^/]+/issues/$"
LONG_AGO = datetime.now(UTC) - timedelta(days=3)


@pytest.fixture
def quiet(stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira) -> None:
    """The whole stack, with both fakes' webhooks off: only reconciliation hears of changes."""
    fake_sentry.webhooks.enabled = False
    fake_jira.webhooks.enabled = False


def seed_pair(engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira, project: str) -> tuple[str, str]:
    """One linked pair in sync, in Sentry project `project`: (Sentry id, Jira key)."""
    [sentry_id] = fake_sentry.seed_issues(1, project=project, first_seen=LONG_AGO)
    [(jira_id, key)] = fake_jira.seed_tickets("PAY", 1, labels=lambda _k: ["sentry", f"sentry-{sentry_id}"])
    issue, ticket, now = fake_sentry.issue(sentry_id), fake_jira.issue(jira_id), utcnow()
    assert ticket is not None
    with session_scope(engine) as session:
        session.add(Link(
            sentry_issue_id=sentry_id, live_sentry_issue_id=sentry_id, sentry_project=project,
            jira_issue_id=jira_id, jira_key=key, state=LinkState.ACTIVE, route="billing", team="payments",
            sentry_status=issue["status"], sentry_substatus=issue["substatus"] or "", sentry_changed_at=now,
            jira_status=ticket["status"], jira_status_category=ticket["status_category"], jira_changed_at=now,
            synced_at=now, remote_link_done=True, sentry_link_done=True,
        ))
    return sentry_id, key


def reconcile_by_the_worker(runtime: Runtime, engine: Engine) -> None:
    """The beat's task, sent to the real worker; returns once its run is recorded."""
    worker.app.send_task("syncer.reconcile")
    wait_for(
        lambda: b"syncer_reconcile_runs_total{" in metrics.render(engine, runtime.counters),
        120,
        what="the worker's reconciliation run",
    )


def list_reads(fake_sentry: FakeSentry) -> list[dict[str, list[str]]]:
    return [parse_qs(c.query) for c in fake_sentry.calls.calls("GET", ISSUE_LIST)]


def backfill_searches(reads: list[dict[str, list[str]]]) -> list[dict[str, list[str]]]:
    """The backfill's searches: they name a query (the run's change read asks for every issue seen
    in its window, an empty query, which `parse_qs` leaves out)."""
    return [r for r in reads if "group" not in r and "query" in r]


# --- organisations without multi-project reads ----------------------------------------------------


def test_a_team_plan_organisation_is_reconciled_one_project_at_a_time(
    quiet: None, runtime: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    fake_sentry.global_views = False
    billing, billing_key = seed_pair(engine, fake_sentry, fake_jira, "billing-api")
    other, _ = seed_pair(engine, fake_sentry, fake_jira, "billing-worker")
    missed = fake_sentry.file_issue(project="billing-api", level="error")  # its webhook never came
    fake_jira.person_transition(billing_key, "Done")
    fake_sentry.calls.reset()

    reconcile_by_the_worker(runtime, engine)

    assert b'syncer_reconcile_runs_total{result="ok"} 1' in metrics.render(engine, runtime.counters)
    assert fake_sentry.issue(billing)["status"] == "resolved"  # the drift was read, and repaired
    assert fake_sentry.issue(other)["status"] == "unresolved"
    backfilled = link_of(engine, missed["id"])
    assert backfilled is not None and backfilled.state == LinkState.ACTIVE
    reads = list_reads(fake_sentry)
    refused = [r for r in reads if r.get("project") == ["-1"]]
    # Learnt once a run: one refused read spanning projects, then one per project.
    assert len(refused) == 1 and fake_sentry.calls.count("GET", r"/projects/$") == 1
    lookups = [r for r in reads if "group" in r and r not in refused]
    assert sorted((r["project"][0], sorted(r["group"])) for r in lookups) == sorted(
        [("1", [billing]), ("2", [other])]
    )
    searches = [r for r in backfill_searches(reads) if r not in refused]
    assert sorted(r["project"][0] for r in searches) == ["1", "2"]


# --- the search's 90-day window -------------------------------------------------------------------


def test_the_backfill_names_its_window_to_the_search(
    quiet: None, runtime: Runtime, engine: Engine, fake_sentry: FakeSentry
) -> None:
    fake_sentry.default_search_window = True  # as real Sentry: a search naming no range covers 90 days
    missed = fake_sentry.file_issue(project="billing-api", level="error")
    started = datetime.now(UTC)

    reconcile_by_the_worker(runtime, engine)

    assert link_of(engine, missed["id"]) is not None
    [search] = backfill_searches(list_reads(fake_sentry))
    start = datetime.fromisoformat(search["start"][0])
    end = datetime.fromisoformat(search["end"][0])
    hours = runtime.policy.reconcile.lookback_hours
    assert abs(start - (started - timedelta(hours=hours))) < timedelta(minutes=2)
    assert started - timedelta(minutes=2) < end < datetime.now(UTC) + timedelta(minutes=2)
    assert "statsPeriod" not in search


def test_a_lookback_beyond_sentrys_90_days_is_a_configuration_error(
    process_env: dict[str, str], policy_path: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_path.read_text() + "\n[reconcile]\nlookback_hours = 2161\n")

    done = subprocess.run(
        [sys.executable, "-m", "syncer", "reconcile", "--dry-run"],
        env={**process_env, "SYNCER_CONFIG": str(policy)},
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
    )

    assert done.returncode == 2, done.stdout + done.stderr
    assert "reconcile.lookback_hours: at most 2160 (90 days), got 2161" in done.stderr
    policy.write_text(policy_path.read_text() + "\n[reconcile]\nlookback_hours = 2160\n")
    assert subprocess.run(
        [sys.executable, "-m", "syncer", "reconcile", "--dry-run"],
        env={**process_env, "SYNCER_CONFIG": str(policy)},
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
    ).returncode == 0


# --- tags beyond the top values -------------------------------------------------------------------


def test_a_route_on_a_rarer_tag_value_than_the_tags_list_shows_still_matches(
    stack: dict[str, Any], engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    # `client-errors` ignores api-* issues with a 4xx status code; Sentry's tags list shows ten values.
    often = {f"5{n:02d}": 100 - n for n in range(10)}
    rare = fake_sentry.file_issue(project="api-gateway", title="mostly 5xx, once a 404",
                                  tags={"http.status_code": {**often, "404": 1}})
    plain = fake_sentry.file_issue(project="api-gateway", title="two values, both listed",
                                   tags={"http.status_code": {"500": 5, "503": 2}})

    rows = wait_for(lambda: (got := deliveries(engine, "sentry")) and len(got) == 2
                    and all(r.state not in DeliveryState.UNFINISHED for r in got) and got,
                    60, what="both deliveries processed")

    by_issue = {json.loads(row.payload)["data"]["issue"]["id"]: row for row in rows}
    assert by_issue[rare["id"]].state == DeliveryState.IGNORED
    assert "client-errors" in by_issue[rare["id"]].outcome
    assert link_of(engine, rare["id"]) is None
    made = link_of(engine, plain["id"])
    assert made is not None and made.state in LinkState.LIVE
    # One more request, for the key whose top values did not match and that has more; none for
    # the issue whose every value was listed.
    assert fake_sentry.calls.count("GET", rf"/issues/{rare['id']}/tags/http.status_code/values/") == 1
    assert fake_sentry.calls.count("GET", r"/tags/[^/]+/values/") == 1
    assert fake_sentry.calls.count("GET", r"/tags/$") == 2


# --- merged issues --------------------------------------------------------------------------------


def test_a_ticket_follows_its_issue_into_the_one_it_was_merged_into(
    quiet: None, runtime: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    old, key = seed_pair(engine, fake_sentry, fake_jira, "billing-api")
    [target] = fake_sentry.seed_issues(1, project="billing-api", first_seen=LONG_AGO)
    fake_sentry.merge([old], target)  # Sentry sends no webhook for it

    reconcile_by_the_worker(runtime, engine)

    moved = link_of(engine, target)
    assert moved is not None and (moved.state, moved.jira_key) == (LinkState.ACTIVE, key)
    assert moved.remote_link_done and moved.sentry_link_done
    [merged] = audit_of(engine, old)  # under the issue it left; the back-links under the new one
    assert (merged.action, merged.link_id) == ("issue_merged", moved.id)
    assert f"{old} was merged into {target}" in merged.detail
    assert [entry.action for entry in audit_of(engine, target)] == ["linked"]
    assert any(target in link["object"]["url"] for link in fake_jira.remote_links(key))
    # No installation known here (no webhook has named one): the issue gets a note with the key.
    assert [key in note["data"]["text"] for note in fake_sentry.notes(target)] == [True]
    assert fake_jira.issue(key) is not None and fake_jira.comments(key) == []
    # `syncer links show` by either id finds the link, with its whole trail.
    for either in (old, target):
        shown, trail = links.history(engine, either)
        assert [link.id for link in shown] == [moved.id] and "issue_merged" in [a.action for a in trail]


def test_a_second_ticket_of_a_merged_issue_is_commented_and_its_link_ends(
    quiet: None, runtime: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    old, old_key = seed_pair(engine, fake_sentry, fake_jira, "billing-api")
    target, target_key = seed_pair(engine, fake_sentry, fake_jira, "billing-api")
    fake_sentry.merge([old], target)

    reconcile_by_the_worker(runtime, engine)

    ended = [link for link in links_of(engine, old) if link.jira_key == old_key]
    assert [(link.state, link.live_sentry_issue_id) for link in ended] == [(LinkState.MERGED, None)]
    kept = link_of(engine, target)
    assert kept is not None and (kept.state, kept.jira_key) == (LinkState.ACTIVE, target_key)
    [comment] = fake_jira.comments(old_key)
    assert f"merged into [{fake_sentry.issue(target)['shortId']}" in comment["body"]
    assert target_key in comment["body"]
    assert fake_jira.issue(old_key) is not None  # kept, never deleted
    assert fake_jira.comments(target_key) == []
    [entry] = [a for a in audit_of(engine, old) if a.action == "issue_merged"]
    assert target_key in entry.detail


def test_a_jira_close_on_a_merged_away_issue_follows_the_merge_as_reconciliation_does(
    stack: dict[str, Any], engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    fake_sentry.webhooks.enabled = False
    moving, moving_key = seed_pair(engine, fake_sentry, fake_jira, "billing-api")
    [gains] = fake_sentry.seed_issues(1, project="billing-api", first_seen=LONG_AGO)
    ending, ending_key = seed_pair(engine, fake_sentry, fake_jira, "billing-api")
    keeps, keeps_key = seed_pair(engine, fake_sentry, fake_jira, "billing-api")
    fake_sentry.merge([moving], gains)
    fake_sentry.merge([ending], keeps)

    fake_jira.person_transition(moving_key, "Done")  # its webhook reaches the worker
    fake_jira.person_transition(ending_key, "Done")

    wait_for(lambda: fake_sentry.issue(gains)["status"] == "resolved", 60, what="the close, followed")
    wait_for(lambda: fake_jira.comments(ending_key), 60, what="the ended ticket's comment")
    moved = link_of(engine, gains)
    assert moved is not None and (moved.state, moved.jira_key) == (LinkState.ACTIVE, moving_key)
    assert [a.action for a in audit_of(engine, moving)] == ["issue_merged"]
    # The issue merged into has its own, open ticket: closing the other one does not resolve it.
    wait_for(lambda: any(link.state == LinkState.MERGED for link in links_of(engine, ending)), 60,
             what="the ended link")
    assert fake_sentry.issue(keeps)["status"] == "unresolved"
    assert keeps_key in fake_jira.comments(ending_key)[0]["body"]
    assert fake_jira.issue(keeps_key)["status"] == "To Do"  # type: ignore[index]


def test_route_explain_reads_rarer_tag_values_as_the_worker_does(
    clean: None, process_env: dict[str, str], fake_sentry: FakeSentry
) -> None:
    fake_sentry.webhooks.enabled = False  # a worker of the session must not route it meanwhile
    often = {f"5{n:02d}": 100 - n for n in range(10)}
    rare = fake_sentry.file_issue(project="api-gateway", title="mostly 5xx, once a 404",
                                  tags={"http.status_code": {**often, "404": 1}})

    done = subprocess.run(
        [sys.executable, "-m", "syncer", "route", "explain", rare["id"]],
        env=process_env, capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Result: ignored (routes[1] \"client-errors\")" in done.stdout, done.stdout
    assert fake_sentry.calls.count("GET", r"/tags/http.status_code/values/") == 1


def test_a_late_sentry_webhook_for_a_merged_away_issue_follows_the_merge(
    stack: dict[str, Any], engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    fake_sentry.webhooks.enabled = False
    old, key = seed_pair(engine, fake_sentry, fake_jira, "billing-api")
    [target] = fake_sentry.seed_issues(1, project="billing-api", first_seen=LONG_AGO)
    fake_sentry.person_resolve(old)
    [(resource, resolved)] = [(r, p) for r, p in fake_sentry.emitted() if p.get("action") == "resolved"]
    fake_sentry.merge([old], target)  # before the resolve's delivery reaches syncer

    assert post_sentry(stack["web"].url, resolved, resource=resource).status_code < 300

    wait_for(lambda: link_of(engine, target) is not None, 60, what="the link to follow the merge")
    moved = link_of(engine, target)
    assert moved is not None and (moved.state, moved.jira_key) == (LinkState.ACTIVE, key)
    # The resolve was of the issue merged away; the one merged into is unresolved: the ticket stays open.
    assert fake_jira.issue(key)["status"] == "To Do"  # type: ignore[index]
