"""The persistence layer's functions on real databases (SQLite, and PostgreSQL when one answers):
claims and their races, link changes with their audit lines, records, the account cache, the
installations table and its migration."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import fields
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from syncer.errors import Busy, ConfigError, HeldElsewhere, TransientError
from syncer.runtime import Runtime
from syncer.settings import Settings
from syncer.store import accounts, deliveries, installations, links, migrate
from syncer.store.engine import make_engine
from syncer.store.links import ClaimRecord, LinkRecord
from syncer.store.schema import AccountCache, AuditEntry, Delivery, Link, LinkState, utcnow
from syncer.sync.reconcile.run import installation_uuid

TTL = timedelta(seconds=90)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def claim(engine: Engine, issue: str = "101", *, ttl: timedelta = TTL) -> ClaimRecord | LinkRecord:
    return links.take_claim(engine, issue, project="billing-api", route="billing", team="payments", ttl=ttl)


def activate(engine: Engine, taken: ClaimRecord, issue: str = "101", key: str = "PAY-1") -> None:
    now = utcnow()
    links.activate(
        engine,
        taken.link_id,
        {"jira_issue_id": "10001", "jira_key": key, "state": LinkState.ACTIVE, "claim_token": None,
         "claimed_at": None, "synced_at": now, "updated_at": now},
        links.audit_row(LinkRecord(id=taken.link_id, sentry_issue_id=issue, jira_key=key), side="jira",
                        action="created", detail="route billing", cause="delivery:1"),
    )


@pytest.mark.parametrize(("record", "table"), [
    (links.LinkRecord, Link), (links.AuditRecord, AuditEntry), (deliveries.DeliveryRecord, Delivery),
    (accounts.AccountRecord, AccountCache),
])
def test_records_carry_every_column_of_their_table(record: type, table: type) -> None:
    columns = [column.key for column in table.__table__.columns]  # type: ignore[attr-defined]
    assert [f.name for f in fields(record)] == columns


# --- claims ---------------------------------------------------------------------------------------


def test_a_claim_is_a_pending_link_and_held_while_fresh(engine: Engine) -> None:
    taken = claim(engine)
    assert isinstance(taken, ClaimRecord) and taken.create_attempted_at is None
    link = links.live(engine, "101")
    assert link is not None
    assert (link.id, link.state, link.claim_token, link.sentry_project, link.route, link.team) == (
        taken.link_id, LinkState.PENDING, taken.token, "billing-api", "billing", "payments")
    with pytest.raises(HeldElsewhere, match="another worker") as raised:
        claim(engine)
    # Retried like any lock held elsewhere.
    assert isinstance(raised.value, Busy) and isinstance(raised.value, TransientError)


def test_of_racing_workers_exactly_one_claims_the_issue(engine: Engine) -> None:
    racers = 8
    start = threading.Barrier(racers)
    results: list[object] = []

    def race() -> None:
        start.wait()
        try:
            results.append(claim(engine, "202"))
        except HeldElsewhere as exc:
            results.append(exc)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    claims = [r for r in results if isinstance(r, ClaimRecord)]
    assert len(results) == racers
    assert len(claims) == 1
    assert all(isinstance(r, HeldElsewhere) for r in results if r is not claims[0])
    assert links.issues_with_links(engine, ["202", "203"]) == set()  # a claim is not a link yet


def test_an_expired_claim_is_taken_over_and_remembers_the_create_attempt(engine: Engine) -> None:
    first = claim(engine)
    assert isinstance(first, ClaimRecord)
    assert links.refresh_claim(engine, first, create_attempt=True)
    second = claim(engine, ttl=timedelta(0))  # the first holder went silent
    assert isinstance(second, ClaimRecord)
    assert second.link_id == first.link_id and second.token != first.token
    assert second.create_attempted_at is not None  # the next attempt must look before creating
    assert not links.refresh_claim(engine, first)  # the first holder has lost it
    assert links.refresh_claim(engine, second)


def test_a_released_claim_is_free_and_an_abandoned_one_gone(engine: Engine) -> None:
    taken = claim(engine)
    assert isinstance(taken, ClaimRecord)
    assert links.refresh_claim(engine, taken, create_attempt=True)
    links.release_claim(engine, taken, created_nothing=False)
    link = links.live(engine, "101")
    assert link is not None and link.claim_token is None and link.claimed_at is None
    assert link.create_attempted_at is not None
    again = claim(engine)  # released: free at once, whatever the ttl
    assert isinstance(again, ClaimRecord) and again.create_attempted_at is not None
    links.release_claim(engine, again, created_nothing=True)
    link = links.live(engine, "101")
    assert link is not None and link.create_attempted_at is None
    third = claim(engine)
    assert isinstance(third, ClaimRecord)
    links.abandon_claim(engine, ClaimRecord(third.link_id, "not-the-token", None))
    assert links.live(engine, "101") is not None  # only its holder may abandon it
    links.abandon_claim(engine, third)
    assert links.live(engine, "101") is None
    assert isinstance(claim(engine), ClaimRecord)  # a later event starts afresh


def test_an_active_link_is_what_a_later_claim_gets(engine: Engine) -> None:
    taken = claim(engine)
    assert isinstance(taken, ClaimRecord)
    activate(engine, taken)
    found = claim(engine)
    assert isinstance(found, LinkRecord)
    assert (found.id, found.state, found.jira_key, found.claim_token) == (
        taken.link_id, LinkState.ACTIVE, "PAY-1", None)
    assert links.active_for_ticket(engine, "10001") == found
    assert links.load(engine, taken.link_id) == found
    assert links.count_active(engine) == 1
    _, trail = links.history(engine, "101")
    assert [(a.link_id, a.jira_key, a.side, a.action, a.cause) for a in trail] == [
        (taken.link_id, "PAY-1", "jira", "created", "delivery:1")]


# --- changing links, with their audit lines -------------------------------------------------------


def test_save_stores_fields_and_appends_its_audit_lines_in_order(engine: Engine) -> None:
    taken = claim(engine)
    assert isinstance(taken, ClaimRecord)
    activate(engine, taken)
    before = links.load(engine, taken.link_id)
    assert before is not None
    quiet = links.save(engine, taken.link_id, cause="delivery:2", jira_status="In Progress")
    assert quiet.jira_status == "In Progress"
    assert quiet.synced_at == before.synced_at and quiet.changed_by == before.changed_by  # nothing done
    assert quiet.updated_at > before.updated_at
    saved = links.save(
        engine, taken.link_id, cause="reconcile:r1",
        changes=[("jira", "moved", "PAY-1 is now OPS-7"), ("sentry", "resolved", "ticket done")],
        jira_key="OPS-7",
    )
    assert saved == links.load(engine, taken.link_id)
    assert (saved.jira_key, saved.changed_by) == ("OPS-7", "reconcile:r1")
    assert saved.synced_at is not None and saved.synced_at >= quiet.updated_at
    _, trail = links.history(engine, "101")
    assert [(a.action, a.jira_key, a.detail, a.cause) for a in trail] == [
        ("created", "PAY-1", "route billing", "delivery:1"),
        ("moved", "OPS-7", "PAY-1 is now OPS-7", "reconcile:r1"),  # the link as it is after the change
        ("resolved", "OPS-7", "ticket done", "reconcile:r1"),
    ]
    assert trail[0].id < trail[1].id < trail[2].id
    with pytest.raises(TransientError, match="link 999999 vanished"):  # the retry sees what happened
        links.save(engine, 999_999, cause="x", jira_status="Done")


def test_backlink_flags_only_ever_go_from_false_to_true(engine: Engine) -> None:
    taken = claim(engine)
    assert isinstance(taken, ClaimRecord)
    activate(engine, taken)
    links.mark_backlinks(engine, taken.link_id, remote_link_done=True, sentry_link_done=True)
    links.mark_backlinks(engine, taken.link_id, remote_link_done=False, sentry_link_done=False)  # stale
    link = links.load(engine, taken.link_id)
    assert link is not None and link.remote_link_done and link.sentry_link_done


def test_links_by_hand_unlinked_and_tied_to_their_successor(engine: Engine) -> None:
    values = {"sentry_issue_id": "303", "live_sentry_issue_id": "303", "jira_issue_id": "1",
              "jira_key": "OPS-1", "state": LinkState.ACTIVE, "route": "by hand", "changed_by": "cli"}
    made = links.create_active(engine, values, audit=[("syncer", "linked_by_hand", "")], cause="cli")
    assert made is not None and made.state == LinkState.ACTIVE and made.route == "by hand"
    assert links.create_active(engine, values, audit=[], cause="cli") is None  # one live link per issue
    assert links.untied_successor(engine, "303") is None  # nothing it follows
    old = links.save(engine, made.id, cause="delivery:3", changes=[("syncer", "superseded", "regressed")],
                     state=LinkState.SUPERSEDED, live_sentry_issue_id=None)
    assert old.live_sentry_issue_id is None
    new = links.create_active(engine, {**values, "jira_issue_id": "2", "jira_key": "OPS-2"}, audit=[],
                              cause="delivery:3")
    assert new is not None and new.id > old.id
    pair = links.untied_successor(engine, "303")
    assert pair == (new, old)
    links.tie(engine, new, old, cause="delivery:3", audit=[("jira", "follows", "OPS-2 follows OPS-1")])
    assert links.untied_successor(engine, "303") is None
    tied = links.load(engine, new.id)
    assert tied is not None and tied.previous_link_id == old.id
    assert links.retired_ticket_ids(engine, "303") == {"1"}
    unlinked = links.unlink(engine, "303", cause="cli", audit=[("syncer", "unlinked", "")])
    assert unlinked is not None
    assert (unlinked.id, unlinked.state, unlinked.live_sentry_issue_id, unlinked.changed_by) == (
        new.id, LinkState.UNLINKED, None, "cli")
    assert links.unlink(engine, "303", cause="cli", audit=[]) is None
    found, trail = links.history(engine, "303")
    assert [link.id for link in found] == [old.id, new.id]
    assert [(a.link_id, a.action) for a in trail] == [
        (made.id, "linked_by_hand"), (made.id, "superseded"), (new.id, "follows"), (new.id, "unlinked")]
    assert [link.id for link in links.listed(engine)] == [new.id, old.id]
    assert [link.id for link in links.listed(engine, state=LinkState.SUPERSEDED)] == [old.id]


def test_active_links_are_read_in_keyset_pages(engine: Engine) -> None:
    ids = []
    for n in range(5):
        taken = claim(engine, str(400 + n))
        assert isinstance(taken, ClaimRecord)
        if n != 2:
            activate(engine, taken, str(400 + n), f"PAY-{n}")
            ids.append(taken.link_id)
    first = links.active_page(engine, after=0, size=3)
    assert [link.id for link in first] == ids[:3]
    assert [link.id for link in links.active_page(engine, after=first[-1].id, size=3)] == ids[3:]
    assert links.count_active(engine) == 4
    assert links.issues_with_links(engine, ["400", "402", "405"]) == {"400"}  # 402: only claimed


# --- records elsewhere ----------------------------------------------------------------------------


def test_deliveries_come_back_as_records(engine: Engine) -> None:
    stored = deliveries.store(engine, source="sentry", key="k", resource="issue", action="created",
                              payload=b'{"a": 1}')
    row = deliveries.load(engine, stored.delivery_id)
    assert row is not None
    assert (row.id, row.source, row.delivery_key, row.payload, row.state, row.attempts) == (
        stored.delivery_id, "sentry", "k", '{"a": 1}', "received", 0)
    letter = deliveries.bury(engine, stored.delivery_id, error="permanent")
    assert isinstance(letter, int)
    dead = deliveries.load(engine, stored.delivery_id)
    assert dead is not None and dead.state == "dead" and dead.last_error == "permanent"


def test_ignored_deliveries_of_an_action_are_listed_oldest_first(engine: Engine) -> None:
    ids = [deliveries.store(engine, source="sentry", key=f"k{n}", resource="issue", action=action,
                            payload=b"{}").delivery_id
           for n, action in enumerate(("created", "created", "resolved", "created"))]
    for delivery_id in (ids[3], ids[0], ids[2]):
        deliveries.finish(engine, delivery_id, ignored=True, outcome=f"nothing for {delivery_id}")
    deliveries.finish(engine, ids[1], ignored=False, outcome="created PAY-1")
    assert [(d.id, d.outcome) for d in deliveries.ignored(engine, action="created")] == [
        (ids[0], f"nothing for {ids[0]}"), (ids[3], f"nothing for {ids[3]}")]

def test_the_account_cache_replaces_what_it_held_per_project(engine: Engine) -> None:
    assert accounts.cached(engine, "PAY", "alice@example.com") is None
    first = utcnow()
    accounts.remember(engine, "PAY", "alice@example.com", account_id=None, problem="not_assignable",
                      reason="no exact match " * 60, at=first)
    miss = accounts.cached(engine, "PAY", "alice@example.com")
    assert miss is not None and miss.account_id is None and len(miss.reason) == 500
    assert miss.resolved_at == first and miss.problem == "not_assignable"
    assert accounts.cached(engine, "OPS", "alice@example.com") is None  # another project: not known
    later = first + timedelta(hours=2)
    accounts.remember(engine, "PAY", "alice@example.com", account_id="acc-alice", problem="", reason="",
                      at=later)
    assert accounts.cached(engine, "PAY", "alice@example.com") == accounts.AccountRecord(
        "PAY", "alice@example.com", "acc-alice", "", "", later)
    accounts.forget(engine, "PAY", "alice@example.com")
    assert accounts.cached(engine, "PAY", "alice@example.com") is None


# --- installations --------------------------------------------------------------------------------


def test_installations_record_the_latest_uuid_once_per_process(engine: Engine) -> None:
    assert installations.latest(engine) is None
    assert installations.seen(engine, "uuid-one")
    assert not installations.seen(engine, "uuid-one")  # recorded already: no write on every delivery
    assert installations.latest(engine) == "uuid-one"
    assert installations.seen(engine, "uuid-two")  # reinstalled: a new uuid
    assert installations.latest(engine) == "uuid-two"
    for odd in ("", "a\x00b", "\ud800", "../../steal", "x" * 101):  # webhook JSON carries anything
        assert not installations.seen(engine, odd)
    assert installations.latest(engine) == "uuid-two"


def test_reconcile_takes_the_recorded_installation_else_the_inboxs(url: str, engine: Engine) -> None:
    rt = Runtime(Settings(database_url=url))
    assert rt.settings.sentry_installation_uuid is None
    assert installation_uuid(rt) == ""
    deliveries.store(engine, source="sentry", key="k1", resource="issue", action="created",
                     payload=b'{"action": "created", "installation": {"uuid": "from-the-inbox"}}')
    assert installation_uuid(rt) == "from-the-inbox"  # no installation recorded yet
    installations.seen(rt.engine, "recorded")
    assert installation_uuid(rt) == "recorded"
    deliveries.prune(engine, older_than=timedelta(0), now=utcnow() + timedelta(days=1))
    assert installation_uuid(rt) == "recorded"  # kept past the inbox's retention
    rt.engine.dispose()


def test_migration_0002_adds_the_installations_table(url: str) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine, "0001")
    assert "installations" not in inspect(engine).get_table_names()
    with pytest.raises(ConfigError, match="syncer db upgrade"):  # the schema is behind: processes refuse
        migrate.require_current(engine)
    migrate.upgrade(engine, "0002")
    assert migrate.current_revision(engine) == "0002"
    assert "installations" in inspect(engine).get_table_names()
    assert installations.seen(engine, "u")
    migrate.downgrade(engine, "0001")
    assert "installations" not in inspect(engine).get_table_names()
    assert "links" in inspect(engine).get_table_names()
    engine.dispose()


def test_migration_0003_adds_the_unreachable_flag_to_links(url: str) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine, "0002")
    assert "unreachable_since" not in {c["name"] for c in inspect(engine).get_columns("links")}
    with pytest.raises(ConfigError, match="syncer db upgrade"):
        migrate.require_current(engine)
    migrate.upgrade(engine)
    migrate.require_current(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert "unreachable_since" in {c["name"] for c in inspect(engine).get_columns("links")}
    migrate.downgrade(engine, "0002")
    assert "unreachable_since" not in {c["name"] for c in inspect(engine).get_columns("links")}
    engine.dispose()


def test_migration_0004_keeps_the_account_cache_per_project(url: str) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine, "0003")
    with engine.begin() as connection:  # a site-wide answer of before: dropped, looked up again per project
        connection.execute(text("INSERT INTO account_cache (email, account_id, reason, resolved_at) "
                                "VALUES ('a@example.com', 'acc-a', '', CURRENT_TIMESTAMP)"))
    migrate.upgrade(engine, "0004")
    assert accounts.cached(engine, "OPS", "a@example.com") is None
    accounts.remember(engine, "OPS", "a@example.com", account_id="acc-a", problem="", reason="", at=utcnow())
    assert accounts.cached(engine, "OPS", "a@example.com") is not None
    assert {c["name"] for c in inspect(engine).get_columns("account_cache")} >= {"project", "problem"}
    migrate.downgrade(engine, "0003")
    assert "project" not in {c["name"] for c in inspect(engine).get_columns("account_cache")}
    engine.dispose()
