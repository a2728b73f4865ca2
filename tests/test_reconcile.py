"""Reconciliation against the fakes with their webhooks off: a person changes one side, syncer never
hears of it, and a reconciliation run (in process, as the beat's task runs it, or as the
`syncer reconcile` command) finds the drift and repairs it through the webhook handlers' code.

The pure decisions (drift kinds, precedence, the lookback window) are tested at the bottom, with the
clock frozen."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from syncer import errors, locks, metrics
from syncer.core import drift
from syncer.core.issue import JiraTicket, SentryIssue
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.policy import Policy, ReconcilePolicy
from syncer.runtime import Runtime
from syncer.store import deliveries
from syncer.store.engine import session_scope
from syncer.store.schema import DeadLetter, Delivery, DeliveryState, Link, LinkState, utcnow
from syncer.sync import reconcile, tickets
from syncer.sync.reconcile.sweep import AUTO_RETRIES_PER_DELIVERY
from tests.harness import BOTH_DEPLOYMENTS, REPO, Background, audit_of, links_of, wait_for

SENTRY_PUT = r"^/api/0/organizations/[^/]+/issues/\d+/?$"
LONG_AGO = datetime.now(UTC) - timedelta(days=3)  # first seen before the lookback window


# --- helpers --------------------------------------------------------------------------------------


@dataclass
class Pair:
    sentry_id: str
    jira_id: str
    key: str


@pytest.fixture(params=["global-views", "one-project-per-read"])
def rt(
    request: pytest.FixtureRequest,
    clean: None,
    runtime: Runtime,
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
) -> Runtime:
    """Empty tables and fakes, and no webhooks: every change a test makes is one syncer never hears of.
    Each test runs twice: against an organisation with multi-project reads (Business plans), and
    against one without (Team and Developer plans: a read spanning its two or more projects is a 400)."""
    fake_sentry.webhooks.enabled = False
    fake_jira.webhooks.enabled = False
    fake_sentry.default_search_window = True  # as real Sentry: a search naming no range covers 90 days
    if request.param == "one-project-per-read":
        fake_sentry.global_views = False
        fake_sentry.add_project("an-idle-project")  # two projects at least, so that the gate bites
    return runtime


def seed_pairs(
    engine: Engine,
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    n: int = 1,
    *,
    sentry_status: str = "unresolved",
    jira_status: str = "To Do",
    project: str = "PAY",
    last_seen: datetime | None = None,
) -> list[Pair]:
    """`n` linked pairs, in sync: both fakes seeded without webhooks, the links stored as syncer
    would have left them after its last sync. `last_seen`: the issues' last event (default: now)."""
    seen = {} if last_seen is None else {"last_seen": last_seen}
    ids = fake_sentry.seed_issues(
        n, project="billing-api", status=sentry_status, first_seen=LONG_AGO, **seen
    )
    made = fake_jira.seed_tickets(
        project, n, status=jira_status, labels=lambda k: ["sentry", f"sentry-{ids[k]}"]
    )
    now = utcnow()
    with session_scope(engine) as session:
        for sentry_id, (jira_id, key) in zip(ids, made, strict=True):
            issue = fake_sentry.issue(sentry_id)
            ticket = fake_jira.issue(jira_id)
            assert ticket is not None
            session.add(
                Link(
                    sentry_issue_id=sentry_id,
                    live_sentry_issue_id=sentry_id,
                    sentry_project="billing-api",
                    jira_issue_id=jira_id,
                    jira_key=key,
                    state=LinkState.ACTIVE,
                    route="billing",
                    team="payments",
                    sentry_status=issue["status"],
                    sentry_substatus=issue["substatus"] or "",
                    sentry_changed_at=now,
                    jira_status=ticket["status"],
                    jira_status_category=ticket["status_category"],
                    jira_changed_at=now,
                    synced_at=now,
                    remote_link_done=True,
                    sentry_link_done=True,
                )
            )
    return [Pair(s, j, k) for s, (j, k) in zip(ids, made, strict=True)]


def seed_claim(engine: Engine, sentry_id: str, *, claimed_at: datetime | None) -> None:
    """A ticket claim as a delivery leaves it: pending, claimed at `claimed_at` (None: released)."""
    with session_scope(engine) as session:
        session.add(
            Link(
                sentry_issue_id=sentry_id,
                live_sentry_issue_id=sentry_id,
                sentry_project="billing-api",
                state=LinkState.PENDING,
                claim_token=None if claimed_at is None else "a-worker",
                claimed_at=claimed_at,
                route="billing",
                team="payments",
            )
        )


def links(engine: Engine) -> list[dict[str, Any]]:
    with Session(engine) as session:
        return [row.model_dump() for row in session.exec(select(Link).order_by(col(Link.id)))]


def writes(fake_sentry: FakeSentry, fake_jira: FakeJira) -> int:
    """Requests that change something; Jira's searches are POSTs that only read."""
    jira = sum(fake_jira.calls.count(m) for m in ("PUT", "DELETE", "PATCH"))
    jira += fake_jira.calls.count("POST") - fake_jira.calls.count("POST", r"/search")
    return fake_sentry.calls.writes() + jira


def with_reconcile_policy(rt: Runtime, policy_path: Path, tmp_path: Path, table: str) -> Runtime:
    path = tmp_path / "policy.toml"
    path.write_text(policy_path.read_text() + "\n[reconcile]\n" + table + "\n")
    return Runtime(rt.settings.model_copy(update={"config": path}))


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncer", "reconcile", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )


# --- repairs of lost webhooks ---------------------------------------------------------------------


@BOTH_DEPLOYMENTS
def test_a_missed_jira_close_resolves_the_sentry_issue(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    pair, untouched = seed_pairs(engine, fake_sentry, fake_jira, 2)
    fake_jira.person_transition(pair.key, "Done")

    report = reconcile.run(rt)

    assert fake_sentry.issue(pair.sentry_id)["status"] == "resolved"
    assert fake_sentry.issue(untouched.sentry_id)["status"] == "unresolved"
    assert fake_sentry.calls.count("PUT", SENTRY_PUT) == 1
    assert report.ok and report.links_checked == 2
    assert (report.drift, report.repaired) == ({"jira_changed": 1}, 1)
    link = links_of(engine, pair.sentry_id)[0]
    assert (link.sentry_status, link.jira_status, link.jira_status_category) == ("resolved", "Done", "done")
    [entry] = [a for a in audit_of(engine) if a.side == "sentry"]
    assert (entry.action, entry.sentry_issue_id) == ("resolve", pair.sentry_id)
    assert entry.cause == f"reconcile:{report.run}"

    again = reconcile.run(rt)  # repaired means in sync: the next run finds nothing
    assert again.drifted == 0 and fake_sentry.calls.count("PUT", SENTRY_PUT) == 1


@BOTH_DEPLOYMENTS
def test_a_missed_regression_reopens_the_ticket_with_a_comment(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    [pair] = seed_pairs(engine, fake_sentry, fake_jira, sentry_status="resolved", jira_status="Done")
    fake_sentry.regress(pair.sentry_id)

    report = reconcile.run(rt)

    ticket = fake_jira.issue(pair.key)
    assert ticket is not None and ticket["status"] == "To Do"
    [comment] = fake_jira.comments(pair.key)
    assert "regressed" in comment["body"]
    assert report.drift == {"sentry_changed": 1} and report.repaired == 1
    link = links_of(engine, pair.sentry_id)[0]
    assert (link.sentry_status, link.sentry_substatus, link.jira_status) == (
        "unresolved",
        "regressed",
        "To Do",
    )


def test_the_archive_label_goes_when_the_issue_is_unarchived(
    rt: Runtime,
    engine: Engine,
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    policy_path: Path,
    tmp_path: Path,
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(policy_path.read_text().replace("[status]\n", '[status]\non_archive = "label"\n', 1))
    labelling = Runtime(rt.settings.model_copy(update={"config": path}))
    assert labelling.policy.status.on_archive == "label"
    [pair] = seed_pairs(engine, fake_sentry, fake_jira, sentry_status="ignored")
    fake_jira.person_edit(pair.key, {"labels": ["sentry", f"sentry-{pair.sentry_id}", "sentry-archived"]})
    fake_sentry.person_unresolve(pair.sentry_id)

    report = reconcile.run(labelling)

    ticket = fake_jira.issue(pair.key)
    assert ticket is not None and "sentry-archived" not in ticket["labels"]
    assert f"sentry-{pair.sentry_id}" in ticket["labels"] and ticket["status"] == "To Do"
    assert report.repaired == 1, report.rows
    assert [a.action for a in audit_of(engine) if a.side == "jira"] == ["unlabelled"]


@BOTH_DEPLOYMENTS
def test_a_missed_sentry_resolve_closes_the_ticket(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    [pair] = seed_pairs(engine, fake_sentry, fake_jira)
    fake_sentry.person_resolve(pair.sentry_id)

    reconcile.run(rt)

    ticket = fake_jira.issue(pair.key)
    assert ticket is not None and ticket["status"] == "Done" and ticket["resolution"] == "Done"


@BOTH_DEPLOYMENTS
def test_a_ticket_gone_without_its_webhook_is_flagged_unreachable_and_a_moved_one_is_followed(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    deleted, moved, fine = seed_pairs(engine, fake_sentry, fake_jira, 3)
    fake_jira.person_delete(deleted.key)  # its jira:issue_deleted is never delivered
    new_key = fake_jira.person_move(moved.key, "OPS")

    report = reconcile.run(rt)

    # Jira answers a deleted ticket and one the bot may not see alike: no deletion webhook, no
    # deletion. The link is kept (no second ticket for the issue), flagged, and reported.
    assert report.drift == {"ticket_unreachable": 1, "ticket_moved": 1} and report.repaired == 1
    kept = links_of(engine, deleted.sentry_id)[0]
    assert (kept.state, kept.live_sentry_issue_id) == (LinkState.ACTIVE, deleted.sentry_id)
    assert kept.unreachable_since is not None
    followed = links_of(engine, moved.sentry_id)[0]
    assert (followed.state, followed.jira_key, followed.jira_issue_id) == (
        LinkState.ACTIVE,
        new_key,
        moved.jira_id,
    )
    assert {(a.sentry_issue_id, a.action) for a in audit_of(engine)} == {
        (deleted.sentry_id, "ticket_unreachable"),
        (moved.sentry_id, "moved"),
    }
    assert links_of(engine, fine.sentry_id)[0].state == LinkState.ACTIVE
    assert not report.ok and report.unreachable == 1  # a person must act: grant access, or unlink
    assert "1 tickets unreachable" in report.summary()
    # The deleted ticket cost one search that Jira refused, naming it: no direct read (that one is
    # kept for ids the search leaves out without naming them: its lag).
    assert fake_jira.calls.count("GET", rf"/issue/{deleted.jira_id}$") == 0

    again = reconcile.run(rt)  # reported on every run, audited once
    assert again.drift == {"ticket_unreachable": 1} and not again.ok
    flagged = [a.action for a in audit_of(engine) if a.sentry_issue_id == deleted.sentry_id]
    assert flagged == ["ticket_unreachable"]


def test_a_ticket_hidden_from_the_bot_is_reported_until_it_answers_again(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira, process_env: dict[str, str]
) -> None:
    hidden, _fine = seed_pairs(
        engine, fake_sentry, fake_jira, 2, sentry_status="resolved", jira_status="Done"
    )
    fake_jira.hide_from_bot(hidden.key)  # an issue security level the bot is not in
    fake_sentry.regress(hidden.sentry_id)  # a regression reconcile would otherwise act on

    report = reconcile.run(rt)
    done = run_cli(process_env)

    assert report.drift == {"ticket_unreachable": 1} and not report.ok
    assert done.returncode == 1 and "ticket_unreachable" in done.stdout, done.stdout + done.stderr
    flagged = links_of(engine, hidden.sentry_id)[0]
    assert (flagged.state, flagged.unreachable_since is not None) == (LinkState.ACTIVE, True)
    assert len(fake_jira.issues()) == 2  # no second ticket
    assert metrics_value(rt, "syncer_links_unreachable") == 1

    fake_jira.show_to_bot(hidden.key)  # access granted back
    report = reconcile.run(rt)

    assert report.ok and "ticket_unreachable" not in report.drift, report.rows
    answered = links_of(engine, hidden.sentry_id)[0]
    assert (answered.state, answered.unreachable_since) == (LinkState.ACTIVE, None)
    assert "ticket_reachable" in [a.action for a in audit_of(engine) if a.sentry_issue_id == hidden.sentry_id]
    assert fake_jira.issue(hidden.key)["status"] != "Done"  # the regression reopened it, once answered
    assert len(fake_jira.issues()) == 2
    assert metrics_value(rt, "syncer_links_unreachable") == 0


def metrics_value(rt: Runtime, name: str) -> float:
    for line in metrics.render(rt.engine).decode().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not served")


def test_an_issue_deleted_in_sentry_breaks_its_link_once(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    [pair, other] = seed_pairs(engine, fake_sentry, fake_jira, 2)
    fake_sentry.person_delete_issue(pair.sentry_id)  # Sentry sends no webhook for it

    report = reconcile.run(rt)
    again = reconcile.run(rt)

    assert report.drift == {"issue_missing": 1} and report.ok
    assert [(row.sentry_issue_id, row.result) for row in report.rows] == [(pair.sentry_id, "repaired")]
    link = links_of(engine, pair.sentry_id)[0]
    assert (link.state, link.live_sentry_issue_id) == (LinkState.BROKEN, None)
    [entry] = [a for a in audit_of(engine) if a.link_id == link.id]
    assert (entry.side, entry.action) == ("sentry", "issue_deleted")
    assert "no issue" in entry.detail and "deleted" in entry.detail
    assert (again.drifted, again.links_total) == (0, 1)  # reported once, not on every run
    assert links_of(engine, other.sentry_id)[0].state == LinkState.ACTIVE
    assert writes(fake_sentry, fake_jira) == 0


def test_an_issue_merged_into_another_is_followed_not_called_missing(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    [pair] = seed_pairs(engine, fake_sentry, fake_jira)
    [target] = fake_sentry.seed_issues(1, project="billing-api", first_seen=LONG_AGO)
    fake_sentry.merge([pair.sentry_id], target)

    report = reconcile.run(rt)
    again = reconcile.run(rt)

    assert report.drift == {"issue_merged": 1} and report.ok
    # The ticket follows the issue it was merged into (which had none): not missing, not broken.
    [moved] = links_of(engine, target)
    assert (moved.state, moved.jira_key, moved.live_sentry_issue_id) == (LinkState.ACTIVE, pair.key, target)
    assert links_of(engine, pair.sentry_id) == []
    assert (again.drifted, again.ok) == (0, True)


def test_with_merges_closing_the_merged_away_issues_link_ends_and_its_ticket_is_commented(
    rt: Runtime,
    engine: Engine,
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    policy_path: Path,
    tmp_path: Path,
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(policy_path.read_text() + '\n[merges]\non_merge = "close"\n')
    closing = Runtime(rt.settings.model_copy(update={"config": path}))
    [pair] = seed_pairs(engine, fake_sentry, fake_jira)
    [target] = fake_sentry.seed_issues(1, project="billing-api", first_seen=LONG_AGO)
    fake_sentry.merge([pair.sentry_id], target)

    report = reconcile.run(closing)

    assert report.drift == {"issue_merged": 1} and report.ok
    assert [link.state for link in links_of(engine, pair.sentry_id)] == [LinkState.MERGED]
    assert links_of(engine, target) == []  # left to routing, like any issue without a ticket
    [comment] = fake_jira.comments(pair.key)
    assert f"{pair.sentry_id} was merged into" in comment["body"] and "no longer synced" in comment["body"]


def test_a_ticket_just_missing_from_search_is_not_called_deleted(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    [pair] = seed_pairs(engine, fake_sentry, fake_jira)
    fake_jira.search_lag = 60.0
    fresh = fake_jira.person_create("PAY", "just made", ["sentry"])  # not yet in Cloud's search index
    ticket = fake_jira.issue(fresh)
    assert ticket is not None
    with session_scope(engine) as session:
        row = session.exec(select(Link).where(Link.sentry_issue_id == pair.sentry_id)).one()
        row.jira_issue_id, row.jira_key = ticket["id"], fresh
        row.jira_status, row.jira_status_category = ticket["status"], ticket["status_category"]

    report = reconcile.run(rt)

    assert report.drifted == 0
    assert links_of(engine, pair.sentry_id)[0].state == LinkState.ACTIVE


def test_a_link_a_webhook_changed_meanwhile_is_left_to_the_next_run(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    from syncer.store.links import save as save_link

    [pair] = seed_pairs(engine, fake_sentry, fake_jira)
    fake_jira.person_transition(pair.key, "Won't Do")
    seen = links_of(engine, pair.sentry_id)[0]
    issue, ticket = rt.sentry.get_issue(pair.sentry_id), rt.jira.get_ticket(pair.jira_id)
    planned = drift.plan(seen, issue, ticket, rt.policy, utcnow())
    assert planned is not None and planned.inbound is not None and planned.inbound.action == "archive"
    assert seen.id is not None
    # Between the page read and the repair, the delivery of that change is applied.
    save_link(rt.engine, seen.id, cause="delivery:1", jira_status="Won't Do", jira_status_category="done")

    result = reconcile.repair(rt, seen, planned, issue, ticket, cause="reconcile:test")

    assert result == ("skipped", "a webhook changed the link meanwhile; the next run looks again")
    assert fake_sentry.calls.count("PUT", SENTRY_PUT) == 0


def test_a_link_another_worker_holds_is_skipped_and_the_run_still_exits_0(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira, process_env: dict[str, str]
) -> None:
    [pair] = seed_pairs(engine, fake_sentry, fake_jira)
    fake_jira.person_transition(pair.key, "Done")
    link = links_of(engine, pair.sentry_id)[0]
    assert link.id is not None

    with locks.link_lock(rt, link.id):  # a webhook's handler is applying a change to it right now
        held = run_cli(process_env, "--json")

    assert held.returncode == 0, held.stdout + held.stderr
    report = json.loads(held.stdout)
    assert report["ok"] is True
    assert (report["links"]["skipped"], report["links"]["failed"]) == (1, 0)
    [row] = report["drift"]
    assert row["result"] == "skipped" and "busy in another worker" in row["detail"]
    assert fake_sentry.issue(pair.sentry_id)["status"] == "unresolved"
    # Once the holder lets go, the next run repairs it.
    assert run_cli(process_env).returncode == 0
    assert fake_sentry.issue(pair.sentry_id)["status"] == "resolved"


def test_an_issue_another_worker_is_filing_is_skipped_by_the_backfill_not_failed(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    issue = fake_sentry.file_issue(project="billing-api", level="error")
    seed_claim(engine, issue["id"], claimed_at=utcnow())  # its delivery's fresh claim, a moment ago

    report = reconcile.run(rt)

    assert [(b.sentry_issue_id, b.result) for b in report.backfill] == [(issue["id"], "skipped")]
    assert "being handled by another worker" in report.backfill[0].detail
    assert report.ok and report.as_dict()["backfill"]["skipped"] == 1
    assert fake_jira.issues() == []


def test_a_claim_whose_delivery_died_is_backfilled_with_exactly_one_ticket(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    issue = fake_sentry.file_issue(project="billing-api", level="error")
    long_ago = utcnow() - timedelta(seconds=rt.settings.claim_ttl_seconds + 60)
    seed_claim(engine, issue["id"], claimed_at=long_ago)  # its delivery claimed it, then died

    report = reconcile.run(rt)

    assert [(b.sentry_issue_id, b.result) for b in report.backfill] == [(issue["id"], "created")]
    [ticket] = fake_jira.issues()
    link = links_of(engine, issue["id"])[0]
    assert (link.state, link.jira_key) == (LinkState.ACTIVE, ticket["key"])
    assert reconcile.run(rt).backfill == [] and len(fake_jira.issues()) == 1


# --- both sides changed ---------------------------------------------------------------------------


def test_both_changed_the_newer_change_wins_by_default(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    closed_then_seen, seen_then_closed = seed_pairs(engine, fake_sentry, fake_jira, 2)
    # Closed in Jira, then the error came back (a resolve and a regression syncer never heard of):
    # events after the close mean the problem outlived it, so the ticket reopens.
    fake_jira.person_transition(closed_then_seen.key, "Done")
    time.sleep(0.01)
    fake_sentry.regress(closed_then_seen.sentry_id)
    # The other way round: the last event came before the close, which wins and resolves Sentry.
    fake_sentry.regress(seen_then_closed.sentry_id)
    time.sleep(0.01)
    fake_jira.person_transition(seen_then_closed.key, "Done")

    report = reconcile.run(rt)

    assert report.drift == {"both_changed": 2} and report.repaired == 2
    reopened = fake_jira.issue(closed_then_seen.key)
    assert reopened is not None and reopened["status"] == "To Do"
    assert fake_sentry.issue(closed_then_seen.sentry_id)["status"] == "unresolved"
    closed = fake_jira.issue(seen_then_closed.key)
    assert closed is not None and closed["status"] == "Done"
    assert fake_sentry.issue(seen_then_closed.sentry_id)["status"] == "resolved"
    reasons = {row.sentry_issue_id: row.reason for row in report.rows}
    assert "newest wins" in reasons[closed_then_seen.sentry_id]


@pytest.mark.parametrize(
    ("precedence", "ticket_after", "issue_after"),
    [
        ("jira", "Done", "resolved"),
        ("sentry", "To Do", "unresolved"),
    ],
)
def test_both_changed_the_configured_precedence_decides(
    rt: Runtime,
    engine: Engine,
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    policy_path: Path,
    tmp_path: Path,
    precedence: str,
    ticket_after: str,
    issue_after: str,
) -> None:
    [pair] = seed_pairs(engine, fake_sentry, fake_jira)
    fake_sentry.regress(pair.sentry_id)
    fake_jira.person_transition(pair.key, "Done")

    reconcile.run(with_reconcile_policy(rt, policy_path, tmp_path, f'precedence = "{precedence}"'))

    ticket = fake_jira.issue(pair.key)
    assert ticket is not None and ticket["status"] == ticket_after
    assert fake_sentry.issue(pair.sentry_id)["status"] == issue_after


def test_both_changed_without_conflict_both_are_kept(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    [pair] = seed_pairs(engine, fake_sentry, fake_jira)
    fake_jira.person_transition(pair.key, "Done")
    fake_sentry.person_resolve(pair.sentry_id)

    report = reconcile.run(rt)

    assert report.drift == {"both_changed": 1} and report.recorded == 1 and report.repaired == 0
    assert writes(fake_sentry, fake_jira) == 0
    link = links_of(engine, pair.sentry_id)[0]
    assert (link.sentry_status, link.jira_status) == ("resolved", "Done")


# --- backfill -------------------------------------------------------------------------------------


@BOTH_DEPLOYMENTS
def test_a_missed_created_webhook_is_backfilled_with_exactly_one_ticket(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    issue = fake_sentry.file_issue(project="billing-api", level="error")  # its webhook went nowhere
    old = fake_sentry.seed_issues(1, project="billing-api", first_seen=LONG_AGO)[0]  # before the window
    noise = fake_sentry.file_issue(project="billing-api", level="info")  # a route ignores it

    first = reconcile.run(rt)
    again = reconcile.run(rt)

    labelled = [t for t in fake_jira.issues() if f"sentry-{issue['id']}" in t["labels"]]
    assert len(labelled) == 1 and labelled[0]["project"] == "PAY"
    link = links_of(engine, issue["id"])[0]
    assert (link.state, link.jira_key, link.route) == (LinkState.ACTIVE, labelled[0]["key"], "billing")
    assert [(b.sentry_issue_id, b.result) for b in first.backfill] == [(issue["id"], "created")]
    assert first.backfill_ignored == 1 and first.backfill_seen == 2
    assert again.backfill == [] and again.backfill_seen == 2
    assert len(fake_jira.issues()) == 1
    assert all(
        f"sentry-{other}" not in t["labels"] for t in fake_jira.issues() for other in (old, noise["id"])
    )

    # The lost webhook turns up after all: the webhook path finds the link, and makes nothing.
    from syncer.sentry.webhooks import parse_event
    from syncer.sync import tickets

    late = parse_event("issue", {"action": "created", "data": {"issue": fake_sentry.issue(issue["id"])}})
    assert tickets.on_sentry_issue(rt, late, "delivery:late").ignored
    assert len(fake_jira.issues()) == 1


def test_a_new_tickets_status_name_is_learnt_quietly_not_counted_as_drift(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    issue = fake_sentry.file_issue(project="billing-api", level="error")
    assert [b.result for b in reconcile.run(rt).backfill] == ["created"]
    assert links_of(engine, issue["id"])[0].jira_status == ""  # Jira's create answers id and key only

    first = reconcile.run(rt)

    assert (first.drifted, dict(first.drift), first.rows) == (0, {}, [])
    assert first.ok and links_of(engine, issue["id"])[0].jira_status == "To Do"
    assert reconcile.run(rt).drifted == 0


def test_backfill_reads_an_ignored_issues_tags_again_only_after_a_new_event(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira, redis_client: redis.Redis
) -> None:
    client_errors = [
        fake_sentry.file_issue(project="api-gateway", level="error", tags={"http.status_code": "404"})
        for _ in range(3)
    ]
    tag_reads = r"/issues/\d+/tags/"

    first = reconcile.run(rt)
    again = reconcile.run(rt)
    read_before = fake_sentry.calls.count("GET", tag_reads)
    fake_sentry.record_events(client_errors[0]["id"])
    after_an_event = reconcile.run(rt)

    assert (first.backfill_ignored, again.backfill_ignored, after_an_event.backfill_ignored) == (3, 3, 3)
    assert read_before == 3  # the first run's, none by the second
    assert fake_sentry.calls.count("GET", tag_reads) == 4  # the issue with a new event, alone
    assert fake_jira.issues() == []
    # Kept for the lookback window, not the webhook path's few minutes: runs ten minutes apart
    # still find them.
    kept = [redis_client.ttl(key) for key in redis_client.scan_iter("syncer:tags:*")]
    assert len(kept) == 4
    assert all(ttl > rt.policy.reconcile.lookback_hours * 3600 - 60 for ttl in kept), kept
    assert rt.policy.reconcile.lookback_hours * 3600 > 10 * tickets.TAGS_TTL_SECONDS


def test_a_ticket_left_without_back_links_gets_them(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    [pair, fine] = seed_pairs(engine, fake_sentry, fake_jira, 2)
    with session_scope(engine) as session:  # made, then its delivery died before the back-links
        row = session.exec(select(Link).where(Link.sentry_issue_id == pair.sentry_id)).one()
        row.remote_link_done = row.sentry_link_done = False

    report = reconcile.run(rt)
    again = reconcile.run(rt)

    assert report.drift == {"backlinks_missing": 1} and report.ok
    [row] = report.rows
    assert (row.sentry_issue_id, row.result) == (pair.sentry_id, "repaired")
    ticket = fake_jira.issue(pair.key)
    assert ticket is not None and ticket["remote_links"] == 1
    link = links_of(engine, pair.sentry_id)[0]
    assert (link.remote_link_done, link.sentry_link_done) == (True, True)
    found = fake_sentry.external_issues(pair.sentry_id) + fake_sentry.notes(pair.sentry_id)
    assert len(found) == 1 and pair.key in str(found[0])
    assert again.drifted == 0
    assert fake_jira.issue(fine.key)["remote_links"] == 0  # type: ignore[index]


def test_an_old_issue_whose_claim_died_gets_its_ticket_though_outside_the_window(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    [old] = fake_sentry.seed_issues(1, project="billing-api", first_seen=LONG_AGO)  # before the window
    [gone] = fake_sentry.seed_issues(1, project="billing-api", first_seen=LONG_AGO, status="resolved")
    # Claimed, then the delivery died (a dead letter by now), or released after a failure.
    seed_claim(engine, old, claimed_at=utcnow() - timedelta(hours=30))
    seed_claim(engine, gone, claimed_at=None)

    report = reconcile.run(rt)
    again = reconcile.run(rt)

    assert [(b.sentry_issue_id, b.result) for b in report.backfill] == [(old, "created")]
    [ticket] = fake_jira.issues()
    assert f"sentry-{old}" in ticket["labels"]
    states = (links_of(engine, old)[0].state, links_of(engine, gone)[0].state)
    assert states == (LinkState.ACTIVE, LinkState.PENDING)
    assert report.ok and again.backfill == [] and len(fake_jira.issues()) == 1


def test_backfill_does_not_undo_a_persons_unlink(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    issue = fake_sentry.file_issue(project="billing-api", level="error")
    with session_scope(engine) as session:
        session.add(
            Link(sentry_issue_id=issue["id"], state=LinkState.UNLINKED, jira_issue_id="1", jira_key="PAY-1")
        )

    report = reconcile.run(rt)

    assert report.backfill == [] and fake_jira.issues() == []


# --- dry run --------------------------------------------------------------------------------------


def test_a_dry_run_reports_every_kind_of_drift_and_changes_nothing(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira, process_env: dict[str, str]
) -> None:
    closed, resolved, deleted, _fine = seed_pairs(engine, fake_sentry, fake_jira, 4)
    fake_jira.person_transition(closed.key, "Done")
    fake_sentry.person_resolve(resolved.sentry_id)
    fake_jira.person_delete(deleted.key)
    unlinked = fake_sentry.file_issue(project="billing-api", level="error")
    overdue = deliveries.store(
        engine, source="sentry", key="lost", resource="issue", action="created", payload=b"{}"
    )
    with session_scope(engine) as session:
        row = session.get(Delivery, overdue.delivery_id)
        assert row is not None
        row.due_at = utcnow() - timedelta(hours=1)
    before = links(engine)
    fake_sentry.calls.reset()
    fake_jira.calls.reset()

    report = reconcile.run(rt, dry_run=True)
    capped = reconcile.run(rt, dry_run=True, keep_rows=1)  # as the beat's task keeps them
    done = run_cli(process_env, "--dry-run")
    as_json = run_cli(process_env, "--dry-run", "--json")

    assert writes(fake_sentry, fake_jira) == 0
    assert links(engine) == before and audit_of(engine) == []
    with Session(engine) as session:
        assert session.get(Delivery, overdue.delivery_id).state == DeliveryState.RECEIVED  # type: ignore[union-attr]
    assert fake_jira.issues() and len(fake_jira.issues()) == 3
    assert {row.sentry_issue_id: (row.kind, row.result) for row in report.rows} == {
        closed.sentry_id: ("jira_changed", "would"),
        resolved.sentry_id: ("sentry_changed", "would"),
        deleted.sentry_id: ("ticket_unreachable", "would"),
    }
    assert [b.sentry_issue_id for b in report.backfill] == [unlinked["id"]]
    assert report.sweep.overdue == 1 and report.sweep.requeued == 0
    assert (capped.drifted, len(capped.rows), capped.rows_omitted, capped.would) == (3, 1, 2, 3)

    assert done.returncode == 1, done.stderr  # an unreachable ticket needs a person, dry run or not
    header = done.stdout.splitlines()[0]
    for column in ("LINK", "JIRA NOW", "SENTRY NOW", "STORED", "ACTION"):
        assert column in header
    assert f"{closed.sentry_id} <-> {closed.key}" in done.stdout
    assert "resolve the Sentry issue" in done.stdout and "close the ticket (to Done)" in done.stdout
    assert "flag the link unreachable" in done.stdout and "dry run: nothing was changed" in done.stdout
    assert as_json.returncode == 1, as_json.stderr
    parsed = json.loads(as_json.stdout)
    assert parsed["dry_run"] is True and parsed["links"]["drifted"] == 3
    assert parsed["drift_by_kind"] == {"jira_changed": 1, "sentry_changed": 1, "ticket_unreachable": 1}
    assert parsed["links"]["unreachable"] == 1 and parsed["ok"] is False
    assert writes(fake_sentry, fake_jira) == 0 and links(engine) == before


# --- one run at a time ----------------------------------------------------------------------------


def test_two_concurrent_runs_one_does_the_work(
    rt: Runtime,
    engine: Engine,
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    redis_client: redis.Redis,
    process_env: dict[str, str],
) -> None:
    [pair] = seed_pairs(engine, fake_sentry, fake_jira)
    fake_jira.person_transition(pair.key, "Done")
    from syncer.worker import app as worker

    worker.use_runtime(rt)  # as `syncer worker` hands its Runtime to the tasks
    fake_sentry.latency = 0.5  # the first run is slow: the others meet it holding the lock
    first = Background(lambda: reconcile.run(rt))
    first.start()
    wait_for(lambda: redis_client.exists(locks.RUN_LOCK_KEY), 10, what="the first run to take the lock")

    with pytest.raises(errors.Busy, match="another reconciliation is running"):
        reconcile.run(rt)
    assert worker.reconcile() == "busy"  # the beat's task, as a worker runs it

    first.join(60)
    assert first.error is None and first.result.repaired == 1
    assert fake_sentry.calls.count("PUT", SENTRY_PUT) == 1
    assert not redis_client.exists(locks.RUN_LOCK_KEY)  # released: the next run proceeds
    assert worker.reconcile() == "ok"
    fake_sentry.latency = 0.0

    with locks.run_lock(rt):  # the command, meeting a run that holds the lock
        command = run_cli(process_env, "--json")
    assert command.returncode == 1
    assert "another reconciliation is running" in command.stderr
    assert json.loads(command.stdout)["busy"] is True


def test_a_run_that_dies_frees_the_lock_when_it_expires(rt: Runtime, redis_client: redis.Redis) -> None:
    redis_client.set(locks.RUN_LOCK_KEY, b"host pid 1 since then [dead]", px=300)
    with pytest.raises(errors.Busy, match="host pid 1 since then"):
        reconcile.run(rt)
    wait_for(lambda: not redis_client.exists(locks.RUN_LOCK_KEY), 5, what="the lock to expire")
    assert reconcile.run(rt).ok


# --- the sweep ------------------------------------------------------------------------------------


def test_the_sweep_requeues_lost_deliveries_and_retries_old_dead_letters_with_a_cap(
    rt: Runtime, engine: Engine, policy_path: Path, tmp_path: Path
) -> None:
    stored = deliveries.store(
        engine, source="jira", key="never-sent", resource="jira:issue_updated", action="", payload=b"{}"
    )
    with session_scope(engine) as session:
        row = session.get(Delivery, stored.delivery_id)
        assert row is not None
        row.due_at = utcnow() - timedelta(minutes=5)
    letters = []
    for n in range(4):
        dead = deliveries.store(
            engine, source="jira", key=f"dead-{n}", resource="r", action="a", payload=b"{}"
        )
        letters.append(deliveries.bury(engine, dead.delivery_id, error="PermanentError: 400"))
    fresh = deliveries.store(engine, source="jira", key="dead-fresh", resource="r", action="a", payload=b"{}")
    deliveries.bury(engine, fresh.delivery_id, error="PermanentError: 400")
    with session_scope(engine) as session:
        for letter_id in letters:
            letter = session.get(DeadLetter, letter_id)
            assert letter is not None
            letter.created_at = utcnow() - timedelta(hours=7)
    capped = with_reconcile_policy(rt, policy_path, tmp_path, "dead_letter_retry_cap = 3")
    sent: list[int] = []

    report = reconcile.run(capped, enqueue=sent.append)

    assert report.sweep.overdue == 1 and report.sweep.requeued == 1
    assert report.sweep.dead_letters == 3 and report.sweep.retried == 3
    with Session(engine) as session:
        states = {d.id: d.state for d in session.exec(select(DeadLetter))}
    assert [states[i] for i in letters] == ["retried", "retried", "retried", "open"]
    assert sent[0] == stored.delivery_id and len(sent) == 4
    assert reconcile.run(capped, enqueue=sent.append).sweep.retried == 1  # the fourth, next run


def test_a_delivery_that_keeps_dying_is_left_to_a_person(rt: Runtime, engine: Engine) -> None:
    dead = deliveries.store(engine, source="jira", key="doomed", resource="r", action="a", payload=b"{}")
    for _ in range(AUTO_RETRIES_PER_DELIVERY + 1):
        letter_id = deliveries.bury(engine, dead.delivery_id, error="PermanentError: 400")
    with session_scope(engine) as session:
        for letter in session.exec(select(DeadLetter)):
            letter.created_at = utcnow() - timedelta(days=1)
            if letter.id != letter_id:
                letter.state = "retried"

    assert reconcile.run(rt, enqueue=lambda _id: None).sweep.dead_letters == 0


# --- scale, calls and metrics ---------------------------------------------------------------------


def test_calls_are_two_per_hundred_links_and_the_clients_count_them(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    n = 250
    seed_pairs(engine, fake_sentry, fake_jira, n)
    fake_sentry.calls.reset()
    fake_jira.calls.reset()

    report = reconcile.run(rt, full=True)  # every link, as runs read before they were incremental

    pages = math.ceil(n / 100)
    assert report.links_checked == n and report.drifted == 0
    assert report.api_calls == {"sentry": fake_sentry.calls.count(), "jira": fake_jira.calls.count()}
    if fake_sentry.global_views:
        assert fake_sentry.calls.count("GET", r"/issues/$") == pages + 1  # + the backfill's one search
    else:
        # The first read spanning projects is refused, once a run; then one read per project with
        # links in the page (all in one here), and the backfill searches each of the two projects.
        assert fake_sentry.calls.count("GET", r"/issues/$") == 1 + pages + 2
        assert fake_sentry.calls.count("GET", r"/projects/$") == 1
    assert fake_jira.calls.count("POST", r"/search/jql$") == pages
    assert fake_jira.calls.count() == pages + 1  # + serverInfo, once per run


def test_a_run_leaves_its_metrics(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    [pair] = seed_pairs(engine, fake_sentry, fake_jira)
    fake_jira.person_transition(pair.key, "Done")

    reconcile.run(rt)
    text = metrics.render(engine, rt.counters).decode()

    assert 'syncer_reconcile_runs_total{result="ok"} 1' in text
    assert "syncer_reconcile_links_checked_total 1" in text
    assert 'syncer_reconcile_drift_total{kind="jira_changed"} 1' in text
    assert 'syncer_reconcile_repairs_total{result="applied"} 1' in text
    assert 'syncer_reconcile_api_calls_total{side="sentry"}' in text
    assert "# TYPE syncer_reconcile_last_duration_seconds gauge" in text
    assert "syncer_reconcile_last_success_timestamp_seconds" in text


def test_a_failed_repair_is_exit_status_1_and_the_rest_is_repaired(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira, process_env: dict[str, str]
) -> None:
    from syncer.fakes.base import Fault

    failing, fine = seed_pairs(engine, fake_sentry, fake_jira, 2)
    fake_jira.person_transition(failing.key, "Done")
    fake_jira.person_transition(fine.key, "Done")
    fake_sentry.faults.append(Fault("PUT", rf"/issues/{failing.sentry_id}/$", status=400))

    done = run_cli(process_env)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed 1" in done.stdout
    assert fake_sentry.issue(fine.sentry_id)["status"] == "resolved"
    assert fake_sentry.issue(failing.sentry_id)["status"] == "unresolved"
    assert links_of(engine, failing.sentry_id)[0].jira_status == "To Do"  # not recorded: the next run retries
    assert run_cli(process_env).returncode == 0
    assert fake_sentry.issue(failing.sentry_id)["status"] == "resolved"


def test_a_terminal_sees_progress_and_a_pipe_does_not(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira, process_env: dict[str, str]
) -> None:
    import os
    import pty

    seed_pairs(engine, fake_sentry, fake_jira, 150)
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "syncer", "reconcile"],
            env=process_env,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=120,
            check=False,
            cwd=REPO,
        )
        os.close(follower)
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other end is closed and everything has been read
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    assert "\rreconcile: 100/150 links checked" in terminal.decode()
    assert "reconcile: 150/150 links checked" in terminal.decode()
    assert "links checked," not in run_cli(process_env).stderr


def test_beat_runs_it_at_the_policy_interval(environment: None, policy_path: Path, tmp_path: Path) -> None:
    from celery import Celery

    from syncer.settings import current_settings
    from syncer.worker import app as worker

    settings = current_settings()
    entry = worker.configure(settings, Celery("default")).conf.beat_schedule["reconcile"]
    assert (entry["task"], entry["schedule"], entry["options"]) == (
        "syncer.reconcile",
        timedelta(minutes=10),
        {"expires": 600},
    )
    path = tmp_path / "policy.toml"
    path.write_text(policy_path.read_text() + "\n[reconcile]\ninterval_minutes = 3\n")
    custom = worker.configure(settings.model_copy(update={"config": path}), Celery("custom"))
    assert custom.conf.beat_schedule["reconcile"]["schedule"] == timedelta(minutes=3)


def test_usage_and_configuration_errors_are_exit_status_2(
    process_env: dict[str, str], tmp_path: Path
) -> None:
    assert run_cli(process_env, "--bogus").returncode == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[defaults]\njira_project = "OPS"\n[reconcile]\nprecedence = "loudest"\n')
    done = run_cli({**process_env, "SYNCER_CONFIG": str(bad)})
    assert done.returncode == 2 and "reconcile.precedence" in done.stderr


def test_the_benchmark_smoke_mode_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "bench/reconcile.py", "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wall s" in done.stdout and "within target" in done.stdout


# --- pure decisions -------------------------------------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Stored:
    sentry_issue_id: str = "4506"
    jira_key: str | None = "OPS-12"
    sentry_status: str = "unresolved"
    sentry_substatus: str = "ongoing"
    sentry_changed_at: datetime | None = T0
    jira_status: str = "To Do"
    jira_status_category: str = "new"
    jira_changed_at: datetime | None = T0
    reopen_commented_at: datetime | None = None
    reopens_since_comment: int = 0
    team: str | None = None


def sentry(status: str = "unresolved", substatus: str = "ongoing", seen: datetime = T0) -> SentryIssue:
    return SentryIssue(id="4506", status=status, substatus=substatus, last_seen=seen)


def jira(status: str = "To Do", category: str = "new", key: str = "OPS-12", at: datetime = T0) -> JiraTicket:
    return JiraTicket(id="10001", key=key, status=status, status_category=category, updated=at)


def plan(known: Stored, issue: SentryIssue | None, ticket: JiraTicket | None, **reconcile_policy: Any) -> Any:
    policy = Policy(reconcile=ReconcilePolicy.model_validate(reconcile_policy))
    return drift.plan(known, issue, ticket, policy, T0 + timedelta(hours=1))


def test_plan_in_sync_is_none_and_each_kind_is_named() -> None:
    assert plan(Stored(), sentry(), jira()) is None
    unreachable = plan(Stored(), sentry(), None)
    assert (unreachable.kinds, unreachable.action) == (("ticket_unreachable",), "flag")
    assert "flag the link unreachable" in unreachable.describe()
    assert plan(Stored(), None, jira()).action == "break"
    closed = plan(Stored(), sentry(), jira("Done", "done"))
    assert (closed.kinds, closed.action, closed.inbound.action) == (("jira_changed",), "inbound", "resolve")
    moved = plan(Stored(), sentry(), jira(key="PAY-3"))
    assert (moved.kinds, moved.action, moved.moved_to) == (("ticket_moved",), "record", "PAY-3")
    assert moved.repairs and "follow the move to PAY-3" in moved.describe()
    # Sentry moves new -> ongoing by itself: stale, nothing to apply.
    aged = plan(Stored(sentry_substatus="new"), sentry(), jira())
    assert (aged.kinds, aged.action, aged.repairs) == (("stale_state",), "record", False)
    # A ticket the create path stored without its status's name: a record, and no drift at all.
    named = plan(Stored(jira_status=""), sentry(), jira())
    assert (named.kinds, named.action, named.repairs) == ((), "record", False)


def test_plan_a_regression_unseen_reopens_and_an_unrelated_jira_move_does_not_block_it() -> None:
    known = Stored(
        sentry_status="resolved", sentry_substatus="", jira_status="Done", jira_status_category="done"
    )
    regressed = plan(known, sentry("unresolved", "regressed"), jira("Done", "done"))
    assert (regressed.kinds, regressed.action, regressed.outbound.action) == (
        ("sentry_changed",),
        "outbound",
        "reopen",
    )
    # Jira moved To Do -> In Progress (asks nothing of Sentry) while Sentry resolved: Sentry's applies.
    both = plan(Stored(), sentry("resolved", ""), jira("In Progress", "indeterminate"))
    assert (both.kinds, both.action, both.outbound.action) == (("both_changed",), "outbound", "close")


@pytest.mark.parametrize(
    ("precedence", "seen", "winner"),
    [
        ("newest", T0 - timedelta(minutes=5), "inbound"),  # the close came after the last event
        ("newest", T0 + timedelta(minutes=5), "outbound"),  # events after the close: reopen
        ("jira", T0 + timedelta(minutes=5), "inbound"),
        ("sentry", T0 - timedelta(minutes=5), "outbound"),
    ],
)
def test_plan_precedence_when_both_changes_conflict(precedence: str, seen: datetime, winner: str) -> None:
    conflict = plan(
        Stored(), sentry("unresolved", "regressed", seen), jira("Done", "done"), precedence=precedence
    )
    assert (conflict.kinds, conflict.action) == (("both_changed",), winner)
    assert precedence in conflict.reason or "newest" in conflict.reason


def test_precedence_without_a_sentry_time_lets_jira_win() -> None:
    issue = SentryIssue(id="1", status="unresolved", substatus="regressed")
    assert drift.precedence_winner(jira("Done", "done"), issue, "newest")[0] == "jira"


@freeze_time("2026-03-02 08:30:00")
def test_the_lookback_window_runs_back_from_now() -> None:
    now = datetime.now(UTC)
    since = drift.lookback_start(now, 24)
    assert since == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    assert drift.backfill_query(since) == "is:unresolved firstSeen:>=2026-03-01T08:30:00Z"
    assert drift.in_lookback(datetime(2026, 3, 1, 8, 30, tzinfo=UTC), since)
    assert not drift.in_lookback(datetime(2026, 3, 1, 8, 29, 59, tzinfo=UTC), since)
    assert not drift.in_lookback(None, since)
    assert drift.lookback_start(now, 0) is None


def test_the_fake_sentry_understands_the_backfill_query(rt: Runtime, fake_sentry: FakeSentry) -> None:
    inside = fake_sentry.file_issue(first_seen=datetime.now(UTC) - timedelta(hours=23))
    fake_sentry.file_issue(first_seen=datetime.now(UTC) - timedelta(hours=25))
    since = drift.lookback_start(datetime.now(UTC), 24)
    assert since is not None
    assert [i.id for i in rt.sentry.iter_issues(drift.backfill_query(since), since=since)] == [inside["id"]]
