"""Triage figures on real databases (SQLite, and PostgreSQL when one answers): the moments links
keep (first seen, ticketed, resolved), the routing decisions, the figures worked out from them, and
the migration that derives them for old rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from syncer.core import triage
from syncer.store import links, migrate
from syncer.store import triage as stored
from syncer.store.engine import make_engine
from syncer.store.links import ClaimRecord, LinkRecord
from syncer.store.schema import LinkState, utcnow
from syncer.sync.triage import figures

TTL = timedelta(seconds=90)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'triage.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def ticket(
    engine: Engine, issue: str, *, team: str | None, route: str, ticketed: datetime,
    first_seen: datetime | None = None, category: str = "new",
) -> LinkRecord:
    """A ticket as sync/tickets.py makes one: a claim, then its activation with the moments."""
    taken = links.take_claim(engine, issue, project="billing-api", route=route, team=team, ttl=TTL)
    assert isinstance(taken, ClaimRecord)
    stored.record_routing(engine, issue, route=route, team=team, action="create", at=ticketed)
    key = f"T-{issue}"
    links.activate(engine, taken.link_id, {
        "jira_issue_id": f"1{issue}", "jira_key": key, "state": LinkState.ACTIVE, "claim_token": None,
        "claimed_at": None, "jira_status_category": category, "updated_at": ticketed,
        "sentry_first_seen": first_seen, "ticketed_at": ticketed,
        "resolved_at": links.resolved_since(category, None, ticketed),
    }, links.audit_row(LinkRecord(id=taken.link_id, sentry_issue_id=issue, jira_key=key), side="jira",
                       action="created", cause="delivery:1"))
    found = links.load(engine, taken.link_id)
    assert found is not None
    return found


def test_a_ticket_is_resolved_while_done_and_keeps_its_first_resolution(engine: Engine) -> None:
    made = utcnow() - timedelta(days=2)
    link = ticket(engine, "1", team="payments", route="billing", ticketed=made, first_seen=made)
    assert link.ticketed_at == made and link.resolved_at is None
    done = links.save(engine, link.id, cause="delivery:2", jira_status="Done", jira_status_category="done")
    assert done.resolved_at is not None and done.resolved_at > made
    again = links.save(engine, link.id, cause="delivery:3", jira_status="Closed", jira_status_category="done")
    assert again.resolved_at == done.resolved_at  # still done: the first resolution counts
    untouched = links.save(engine, link.id, cause="delivery:4", sentry_status="resolved")
    assert untouched.resolved_at == done.resolved_at  # a save without Jira's category leaves it
    reopened = links.save(engine, link.id, cause="delivery:5", jira_status="To Do",
                          jira_status_category="new")
    assert reopened.resolved_at is None


def test_a_routing_decision_is_kept_once_per_issue_and_route(engine: Engine) -> None:
    now = utcnow()
    stored.record_routing(engine, "9", route="noise", team=None, action="ignore", at=now - timedelta(days=3))
    stored.record_routing(engine, "9", route="noise", team=None, action="ignore", at=now)  # a later event
    stored.record_routing(engine, "10", route="noise", team=None, action="ignore", at=now)
    counts = stored.route_counts(engine, [now - timedelta(hours=24), now - timedelta(days=7)])
    assert [(c.route, c.matched, c.ignored, c.tickets) for c in counts] == [("noise", (1, 2), (1, 2), (0, 0))]


def test_route_figures_count_matched_tickets_ignored_and_the_share_without_owner(engine: Engine) -> None:
    now = utcnow()
    ticket(engine, "1", team="payments", route="billing", ticketed=now - timedelta(hours=2))
    ticket(engine, "2", team="payments", route="billing", ticketed=now - timedelta(days=3))
    ticket(engine, "3", team=None, route="defaults", ticketed=now - timedelta(days=20))
    ticket(engine, "4", team=None, route="defaults", ticketed=now - timedelta(days=40))  # outside 30 d
    stored.record_routing(engine, "5", route="noise", team=None, action="ignore", at=now - timedelta(hours=1))
    report = figures(engine, since=timedelta(days=7), now=now)
    assert [(r.route, r.matched, r.tickets, r.ignored) for r in report.routes] == [
        ("billing", (1, 2, 2), (1, 2, 2), (0, 0, 0)),
        ("defaults", (0, 0, 1), (0, 0, 1), (0, 0, 0)),
        ("noise", (1, 1, 1), (0, 0, 0), (1, 1, 1)),
    ]
    assert report.no_owner_share == (0.0, 0.0, 0.25)
    only = figures(engine, since=timedelta(days=7), now=now, team="payments")
    assert [r.route for r in only.routes] == ["billing"]


def test_team_figures_measure_first_seen_to_ticket_and_ticket_to_resolved(engine: Engine) -> None:
    now = utcnow()
    for n, hours in enumerate((1, 2, 3, 4, 10), start=1):  # first seen `hours` before its ticket
        made = now - timedelta(days=3, hours=n)
        ticket(engine, str(n), team="payments", route="billing", ticketed=made,
               first_seen=made - timedelta(hours=hours))
    ticket(engine, "6", team="web", route="frontend", ticketed=now - timedelta(days=10))  # open, 10 d old
    ticket(engine, "7", team="web", route="frontend", ticketed=now - timedelta(hours=5))  # no first seen
    old = ticket(engine, "8", team="payments", route="billing", ticketed=now - timedelta(days=60))
    links.save(engine, old.id, cause="delivery:9", jira_status="Done", jira_status_category="done")
    report = figures(engine, since=timedelta(days=7), now=now)
    payments, web = report.teams
    assert (payments.team, payments.made, payments.resolved) == ("payments", 5, 1)
    assert (payments.to_ticket.count, payments.to_ticket.p50, payments.to_ticket.p90) == (
        5, timedelta(hours=3), timedelta(hours=10))
    assert payments.to_resolve.count == 1 and payments.to_resolve.p50 is not None
    assert timedelta(days=60) <= payments.to_resolve.p50 < timedelta(days=60, minutes=5)
    assert dict(payments.open_by_age) == {"under 1d": 0, "1d-7d": 5, "7d-30d": 0, "over 30d": 0}
    assert (web.team, web.made, web.to_ticket.count, web.to_ticket.p50) == ("web", 1, 0, None)
    assert dict(web.open_by_age) == {"under 1d": 1, "1d-7d": 0, "7d-30d": 1, "over 30d": 0}
    weeks = {w.week: (w.made, w.resolved) for w in payments.weeks}
    assert weeks[triage.iso_week(now - timedelta(days=3, hours=1))][0] >= 1
    assert sum(made for made, _ in weeks.values()) == 5 and sum(r for _, r in weeks.values()) == 1
    assert list(weeks) == sorted(weeks) and len(weeks) in (2, 3)  # 7 days touch two or three ISO weeks


def test_regressions_and_reopens_come_from_the_audit_trail_by_team(engine: Engine) -> None:
    now = utcnow()
    link = ticket(engine, "1", team="payments", route="billing", ticketed=now - timedelta(days=1))
    links.save(engine, link.id, cause="delivery:2", changes=[("jira", "reopen", "regressed in Sentry")])
    links.save(engine, link.id, cause="delivery:3", changes=[("jira", "reopen", "regressed again"),
                                                             ("jira", "commented", "regression comment")])
    links.save(engine, link.id, cause="delivery:4", changes=[("sentry", "unresolve", "reopened in Jira")])
    links.save(engine, link.id, cause="delivery:5", changes=[("jira", "close", "resolved in Sentry")])
    back = stored.coming_back(engine, since=now - timedelta(days=7))
    assert back == {"payments": stored.ComingBack(regressions=2, reopens=1)}
    assert stored.coming_back(engine, since=now + timedelta(minutes=5)) == {}
    (payments,) = figures(engine, since=timedelta(days=7), now=now + timedelta(seconds=1)).teams
    assert (payments.regressions, payments.reopens) == (2, 1)


def test_an_empty_database_gives_an_empty_report(engine: Engine) -> None:
    report = figures(engine, since=timedelta(days=7))
    assert (report.teams, report.routes, report.no_owner_share) == ((), (), (None, None, None))
    assert "No tickets were made" in triage.markdown(report)
    (only,) = figures(engine, since=timedelta(days=7), team="payments").teams  # asked for: shown, zero
    assert (only.team, only.made, only.open) == ("payments", 0, 0)


def test_migration_0006_derives_the_moments_of_old_links(url: str) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine, "0005")
    with engine.begin() as connection:
        for n, (category, key) in enumerate((("done", "PAY-1"), ("new", "PAY-2"), ("", None)), start=1):
            connection.execute(text(
                "INSERT INTO links (sentry_issue_id, sentry_project, jira_issue_id, jira_key, state, route, "
                "team, sentry_status, sentry_substatus, jira_status, jira_status_category, jira_changed_at, "
                "changed_by, remote_link_done, sentry_link_done, reopens_since_comment, created_at, "
                "updated_at) VALUES (:issue, 'p', :jid, :key, :state, 'billing', 'payments', '', '', '', "
                ":category, :changed, '', false, false, 0, :created, :created)"
            ), {"issue": str(n), "jid": f"1{n}" if key else None, "key": key, "category": category,
                "state": "active" if key else "pending", "changed": datetime(2026, 11, 3, tzinfo=UTC),
                "created": datetime(2026, 11, 1, tzinfo=UTC)})
    migrate.upgrade(engine, "0006")
    migrate.upgrade(engine)  # the later revisions add columns the store reads, and leave these alone
    rows = {link.sentry_issue_id: link for link in links.listed(engine)}
    assert rows["1"].ticketed_at == datetime(2026, 11, 1, tzinfo=UTC)
    assert rows["1"].resolved_at == datetime(2026, 11, 3, tzinfo=UTC)
    assert (rows["2"].ticketed_at, rows["2"].resolved_at) == (datetime(2026, 11, 1, tzinfo=UTC), None)
    assert (rows["3"].ticketed_at, rows["1"].sentry_first_seen) == (None, None)
    counts = stored.route_counts(engine, [datetime(2026, 10, 1, tzinfo=UTC)])
    assert [(c.route, c.matched, c.tickets) for c in counts] == [("billing", (3,), (2,))]
    migrate.downgrade(engine, "0005")
    assert "routed_issues" not in inspect(engine).get_table_names()
    assert "ticketed_at" not in {c["name"] for c in inspect(engine).get_columns("links")}
    engine.dispose()


# --- the pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("24h", timedelta(hours=24)), ("7d", timedelta(days=7)), (" 4w ", timedelta(weeks=4)),
])
def test_since_reads_hours_days_and_weeks(given: str, expected: timedelta) -> None:
    assert triage.parse_since(given) == expected


@pytest.mark.parametrize("given", ["7", "7x", "-1d", "0d", "99999d", "seven days", ""])
def test_a_bad_since_says_what_it_wants(given: str) -> None:
    with pytest.raises(ValueError, match=r"hours, days or weeks|more than nothing"):
        triage.parse_since(given)


def test_percentiles_are_durations_some_ticket_took() -> None:
    spans = [timedelta(minutes=m) for m in (5, 1, 3, 2, 4)]
    assert triage.percentile(spans, 0.5) == timedelta(minutes=3)
    assert triage.percentile(spans, 0.9) == timedelta(minutes=5)
    assert triage.percentile([], 0.5) is None


def test_markdown_and_json_carry_the_same_figures() -> None:
    now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    hours, days = timedelta(hours=1), timedelta(days=1)
    rows: list[Any] = [
        stored.TicketRow("payments", "billing", now - 5 * hours, now - 4 * hours, None, True),
        stored.TicketRow("payments", "billing", None, now - 2 * days, now - days, False),
    ]
    team = triage.team_figures("payments", rows, since=now - timedelta(days=7), now=now, regressions=1)
    route = triage.RouteFigures("billing", (1, 2, 2), (1, 2, 2), (0, 0, 0))
    report = triage.Report(now - timedelta(days=7), now, None, (team,), (route,),
                           triage.no_owner_share([route]))
    text_ = triage.markdown(report)
    assert "| payments | 2 | 1 | 1h | 1h | 1d | 1d | 1 | 0 | 1 |" in text_
    assert "| billing | 1 | 2 | 2 | 1 | 2 | 2 | 0 | 0 | 0 |" in text_
    assert "No owner (reached [defaults]): 0% in 24h, 0% in 7d, 0% in 30d." in text_
    data = triage.as_dict(report)
    assert data["teams"][0]["first_seen_to_ticket"] == {
        "count": 1, "p50_seconds": 3600.0, "p90_seconds": 3600.0}
    assert data["teams"][0]["open_by_age"]["under 1d"] == 1
    assert data["routes"][0]["matched"] == {"24h": 1, "7d": 2, "30d": 2}
    assert [w["week"] for w in data["teams"][0]["weeks"]] == ["2026-W48", "2026-W49"]
