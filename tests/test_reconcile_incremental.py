"""Incremental reconciliation: a run reads what changed on either side since the last run, plus the
next slice of the rolling full pass, against the fakes with their webhooks off.

"Quiet" pairs are in sync and changed by nobody lately: their tickets updated two hours ago on
Jira's clock, their issues last seen days ago, their link rows untouched for two hours. A change a
test makes is then the only one a run's change reads can find. The clock is moved with freezegun
where the window's start decides (the fakes run in this process, so they see the same clock)."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from syncer.fakes.base import Fault
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.policy import Policy, ReconcilePolicy, Team
from syncer.runtime import Runtime
from syncer.store import reconcile as cursors
from syncer.store.schema import Link, utcnow
from syncer.sync import reconcile
from syncer.sync.reconcile.report import ReadScope
from syncer.sync.reconcile.scope import SAFETY_MARGIN, jira_projects, slice_size
from tests.test_reconcile import LONG_AGO, Pair, rt, seed_pairs, with_reconcile_policy

__all__ = ["rt"]  # the fixture, shared with test_reconcile.py: both kinds of Sentry organisation

QUIET = timedelta(hours=2)
# Projects the fake Jira has (the service policy names some it lacks: each costs the change search a
# second try without it).
ONLY_EXISTING_PROJECTS = """
[defaults]
jira_project = "OPS"

[teams.payments]
jira_project = "PAY"

[[routes]]
name = "billing"
when = { project = "billing-*" }
team = "payments"
"""


def seed_quiet(engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira, n: int) -> list[Pair]:
    """`n` pairs in sync that nothing changed in the last two hours, and a last run that read the
    changes ten minutes ago."""
    skew = fake_jira.clock_skew
    fake_jira.clock_skew = skew - QUIET.total_seconds()  # the tickets' `updated`: two hours ago
    try:
        pairs = seed_pairs(engine, fake_sentry, fake_jira, n, last_seen=LONG_AGO)
    finally:
        fake_jira.clock_skew = skew
    with engine.begin() as connection:
        connection.execute(update(Link).values(updated_at=utcnow() - QUIET))
    cursors.save(engine, cursors.Cursor(changes_read_at=utcnow() - timedelta(minutes=10)))
    return pairs


def sentry_ids_read(fake_sentry: FakeSentry) -> set[str]:
    """The issue ids the run read by `group=`: the links it read."""
    return {
        found
        for call in fake_sentry.calls.calls("GET", r"/issues/$")
        for found in re.findall(r"(?:^|&)group=(\d+)", call.query)
    }


def every(rt: Runtime, policy_path: Path, tmp_path: Path, *, hours: int, minutes: int) -> Runtime:
    return with_reconcile_policy(
        rt, policy_path, tmp_path, f"full_pass_hours = {hours}\ninterval_minutes = {minutes}"
    )


def test_a_change_on_jira_is_repaired_without_reading_the_unchanged_links(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira, tmp_path: Path
) -> None:
    pairs = seed_quiet(engine, fake_sentry, fake_jira, 250)
    changed = pairs[137]
    fake_jira.person_transition(changed.key, "Done")
    fake_sentry.calls.reset()
    fake_jira.calls.reset()
    policy = tmp_path / "policy.toml"
    policy.write_text(ONLY_EXISTING_PROJECTS)

    report = reconcile.run(Runtime(rt.settings.model_copy(update={"config": policy})))

    assert fake_sentry.issue(changed.sentry_id)["status"] == "resolved"
    assert report.ok and report.repaired == 1
    read = report.scope
    assert (read.mode, read.changed_in_jira, read.changed_in_sentry, read.changed_links) == (
        "incremental", 1, 0, 1
    )
    # 250 links over 144 runs a day: a slice of 2, the first two links.
    assert (read.slice_size, read.slice_first, read.slice_last, read.slice_wrapped) == (2, 1, 2, False)
    assert report.links_checked == 1 + 2
    slice_ids = {p.sentry_id for p in pairs[:2]}
    # The changed link's ticket came with Jira's search: only its issue is read, with the slice's.
    assert sentry_ids_read(fake_sentry) == slice_ids | {changed.sentry_id}
    # Jira: the changes' search, the slice's page; (serverInfo once a run).
    assert fake_jira.calls.count("POST", r"/search") == 2
    assert read.changes_since is not None
    stored = cursors.load(engine)
    assert stored.after_link_id == 2 and stored.changes_read_at == report.started_at


def test_the_slice_cursor_advances_and_wraps(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira, policy_path: Path,
    tmp_path: Path,
) -> None:
    seed_quiet(engine, fake_sentry, fake_jira, 7)
    with engine.connect() as connection:
        ids = sorted(connection.execute(select(Link.id)).scalars())  # type: ignore[call-overload]
    thrice_an_hour = every(rt, policy_path, tmp_path, hours=1, minutes=20)  # 3 runs a cycle: slices of 3

    dry = reconcile.run(thrice_an_hour, dry_run=True)
    assert (dry.scope.slice_first, dry.scope.slice_last) == (ids[0], ids[2])
    assert cursors.load(engine).after_link_id == 0  # a dry run moves nothing

    slices = []
    for _ in range(4):
        report = reconcile.run(thrice_an_hour)
        s = report.scope
        after = cursors.load(engine).after_link_id
        slices.append((s.slice_first, s.slice_last, s.slice_links, s.slice_wrapped, after))

    assert slices == [
        (ids[0], ids[2], 3, False, ids[2]),
        (ids[3], ids[5], 3, False, ids[5]),
        (ids[6], ids[6], 1, True, 0),
        (ids[0], ids[2], 3, False, ids[2]),
    ]


def test_a_change_older_than_the_window_is_caught_by_the_full_pass_within_its_cycle(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira, policy_path: Path,
    tmp_path: Path,
) -> None:
    pairs = seed_quiet(engine, fake_sentry, fake_jira, 7)
    missed = pairs[-1]
    # Closed in Jira an hour ago, its webhook lost: far before the last run's window began.
    fake_jira.clock_skew -= 3600
    try:
        fake_jira.person_transition(missed.key, "Done")
    finally:
        fake_jira.clock_skew += 3600
    thrice_an_hour = every(rt, policy_path, tmp_path, hours=1, minutes=20)
    start = utcnow()

    seen = []
    last_start = cursors.load(engine).changes_read_at
    for k in range(3):  # one cycle: three runs, twenty minutes apart
        with freeze_time(start + timedelta(minutes=20 * k), tick=True):
            report = reconcile.run(thrice_an_hour)
        # Each window begins where the last run began, less the margin: the change is never in one.
        assert report.scope.changes_since == last_start - SAFETY_MARGIN  # type: ignore[operator]
        assert report.scope.changed_in_jira == 0
        last_start = report.started_at
        seen.append((report.repaired, fake_sentry.issue(missed.sentry_id)["status"]))

    assert seen == [(0, "unresolved"), (0, "unresolved"), (1, "resolved")]


def test_a_failed_change_read_leaves_the_window_where_it_was(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira, tmp_path: Path
) -> None:
    pairs = seed_quiet(engine, fake_sentry, fake_jira, 20)
    gap = pairs[10]  # outside either run's slice: only a change read can find it
    # Closed in Jira eight minutes ago, its webhook lost: inside the window the last run left (ten
    # minutes ago, less the margin), outside one that began at the failed run's start.
    fake_jira.clock_skew -= 480
    try:
        fake_jira.person_transition(gap.key, "Done")
    finally:
        fake_jira.clock_skew += 480
    policy = tmp_path / "policy.toml"
    policy.write_text(ONLY_EXISTING_PROJECTS)
    runtime = Runtime(rt.settings.model_copy(update={"config": policy}))
    before = cursors.load(engine).changes_read_at
    assert before is not None
    # Jira refuses the change search once (the run's first search), as it does a query it cannot run.
    fake_jira.faults.append(Fault("POST", r"/search", status=400, times=1))

    failed = reconcile.run(runtime)

    assert not failed.ok and any("could not read Jira's tickets" in e for e in failed.errors)
    assert failed.repaired == 0 and fake_sentry.issue(gap.sentry_id)["status"] == "unresolved"
    assert cursors.load(engine).changes_read_at == before  # the slice moved on; the window did not

    with freeze_time(utcnow() + timedelta(minutes=10), tick=True):
        retried = reconcile.run(runtime)

    assert retried.scope.changes_since == before - SAFETY_MARGIN
    assert retried.ok and retried.repaired == 1 and retried.scope.changed_in_jira == 1
    assert fake_sentry.issue(gap.sentry_id)["status"] == "resolved"
    assert cursors.load(engine).changes_read_at == retried.started_at


def test_a_project_jira_lacks_is_left_out_of_the_change_search_with_a_warning(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The service policy files into FRM and SQD too, which this Jira does not have (other tests of
    # the session may have added them to the shared fake: they are away for this one).
    lacking = {"FRM", "SQD"}
    assert lacking <= set(jira_projects(rt.policy))
    projects = fake_jira._state.projects
    away = {key: projects.pop(key) for key in lacking if key in projects}
    try:
        pairs = seed_quiet(engine, fake_sentry, fake_jira, 20)
        fake_jira.person_transition(pairs[10].key, "Done")
        with caplog.at_level(logging.WARNING, logger="syncer.jira.client"):
            report = reconcile.run(rt)
    finally:
        projects.update(away)

    assert report.ok and report.repaired == 1 and report.scope.changed_in_jira == 1
    warned = " ".join(r.getMessage() for r in caplog.records if r.name == "syncer.jira.client")
    assert "Jira knows no project FRM" in warned and "no project SQD" in warned and "policy" in warned
    assert "no project PAY" not in warned and "no project OPS" not in warned
    assert not any("trying again" in r.getMessage() for r in caplog.records)  # a 400 is not retried


def test_a_full_run_reads_every_link_and_leaves_the_pass_where_it_is(
    rt: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    seed_quiet(engine, fake_sentry, fake_jira, 5)

    report = reconcile.run(rt, full=True)

    assert report.links_checked == 5 and report.scope.mode == "full"
    assert cursors.load(engine).after_link_id == 0
    assert "every link" in report.scope.describe()


# --- pure -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "hours", "minutes", "size"),
    [(0, 24, 10, 0), (1, 24, 10, 1), (1_000_000, 24, 10, 6945), (10, 1, 20, 4), (10, 1, 120, 10)],
)
def test_a_slice_covers_the_table_in_full_pass_hours(total: int, hours: int, minutes: int, size: int) -> None:
    policy = Policy(reconcile=ReconcilePolicy(full_pass_hours=hours, interval_minutes=minutes))
    assert slice_size(total, policy) == size


def test_the_change_search_covers_the_projects_tickets_are_filed_in() -> None:
    policy = Policy.model_validate({"defaults": {"jira_project": "OPS"},
                                    "teams": {"a": {"jira_project": "PAY"}, "b": {}}})
    assert isinstance(policy.teams["b"], Team)
    assert jira_projects(policy) == ["OPS", "PAY"]


def test_the_read_line_names_the_window_and_the_slice() -> None:
    read = ReadScope(changes_since=utcnow().replace(microsecond=0), changed_in_jira=3, changed_links=3,
                     slice_size=10, slice_first=11, slice_last=20, slice_links=10, slice_wrapped=True)
    line = read.describe()
    assert "3 tickets in Jira" in line and "links 11-20" in line and "starts the pass again" in line
    assert read.as_dict()["slice_first"] == 11
