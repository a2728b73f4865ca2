"""Migrations on SQLite and PostgreSQL, and the constraints idempotency rests on."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from syncer.errors import ConfigError
from syncer.store import deliveries, migrate
from syncer.store.engine import make_engine, session_scope
from syncer.store.schema import Delivery, DeliveryState, Link, LinkState, utcnow


def check_migrations(engine: Engine) -> None:
    with pytest.raises(ConfigError, match="syncer db upgrade"):
        migrate.require_current(engine)
    migrate.upgrade(engine)
    migrate.require_current(engine)
    with engine.connect() as connection:
        drift = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), SQLModel.metadata
        )
    assert drift == [], f"models and migrations disagree: {drift}"
    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_migrations_on_sqlite(tmp_path: Path) -> None:
    check_migrations(make_engine(f"sqlite:///{tmp_path / 'm.db'}"))


@pytest.mark.postgres
def test_migrations_on_postgresql(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    check_migrations(engine)
    check_constraints(engine)
    engine.dispose()


def check_constraints(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(Link(sentry_issue_id="7", live_sentry_issue_id="7", state=LinkState.ACTIVE))
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(Link(sentry_issue_id="7", live_sentry_issue_id="7"))
    # A broken link leaves room for a new live one: history is kept.
    with session_scope(engine) as session:
        session.add(Link(sentry_issue_id="8", live_sentry_issue_id=None, state=LinkState.BROKEN))
        session.add(Link(sentry_issue_id="8", live_sentry_issue_id=None, state=LinkState.BROKEN))
        session.add(Link(sentry_issue_id="8", live_sentry_issue_id="8"))
    first = deliveries.store(
        engine, source="sentry", key="k1", resource="issue", action="created", payload=b"{}"
    )
    again = deliveries.store(
        engine, source="sentry", key="k1", resource="issue", action="created", payload=b"{}"
    )
    other = deliveries.store(
        engine, source="jira", key="k1", resource="x", action="", payload=b"{}"
    )
    assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
    assert again.delivery_id == first.delivery_id != other.delivery_id


def test_constraints_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate.upgrade(engine)
    check_constraints(engine)


def test_claim_is_exclusive_and_expires(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'i.db'}")
    migrate.upgrade(engine)
    stored = deliveries.store(
        engine, source="sentry", key="k", resource="issue", action="created", payload=b"{}"
    )
    lease = timedelta(seconds=30)
    assert deliveries.claim(engine, stored.delivery_id, lease=lease)
    assert not deliveries.claim(engine, stored.delivery_id, lease=lease)  # held
    # The holder died (no finish): after the lease another worker may take it.
    assert deliveries.claim(engine, stored.delivery_id, lease=lease, now=utcnow() + timedelta(seconds=31))
    deliveries.finish(engine, stored.delivery_id, ignored=False, outcome="done")
    assert not deliveries.claim(engine, stored.delivery_id, lease=lease, now=utcnow() + timedelta(hours=1))
    row = deliveries.load(engine, stored.delivery_id)
    assert row is not None and row.state == DeliveryState.DONE and row.attempts == 2


def test_a_late_ignored_does_not_hide_the_done_of_the_attempt_that_did_the_work(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    migrate.upgrade(engine)
    stored = deliveries.store(
        engine, source="sentry", key="k", resource="issue", action="created", payload=b"{}"
    )
    lease = timedelta(seconds=30)
    assert deliveries.take(engine, stored.delivery_id, lease=lease) is not None  # the first attempt, slow
    later = deliveries.take(engine, stored.delivery_id, lease=lease, now=utcnow() + timedelta(seconds=31))
    assert later is not None and later.attempts == 2  # its lease passed: another worker takes over
    deliveries.finish(engine, stored.delivery_id, ignored=False, outcome="created PAY-1")
    deliveries.finish(engine, stored.delivery_id, ignored=True, outcome="already linked to PAY-1")
    row = deliveries.load(engine, stored.delivery_id)
    assert row is not None and row.state == DeliveryState.DONE and row.outcome == "created PAY-1"
    # The other order ends the same way: "done" replaces "ignored".
    second = deliveries.store(
        engine, source="sentry", key="k2", resource="issue", action="created", payload=b"{}"
    )
    deliveries.finish(engine, second.delivery_id, ignored=True, outcome="already linked to PAY-2")
    deliveries.finish(engine, second.delivery_id, ignored=False, outcome="created PAY-2")
    row = deliveries.load(engine, second.delivery_id)
    assert row is not None and row.state == DeliveryState.DONE and row.outcome == "created PAY-2"


def stored(tmp_path: Path, count: int) -> tuple[Engine, list[int]]:
    """A migrated SQLite database holding `count` deliveries, just received."""
    engine = make_engine(f"sqlite:///{tmp_path / 'inbox.db'}")
    migrate.upgrade(engine)
    ids = [
        deliveries.store(engine, source="sentry", key=f"k{i}", resource="r", action="a", payload=b"{}")
        .delivery_id
        for i in range(count)
    ]
    return engine, ids


def test_overdue_finds_unfinished_rows_only(tmp_path: Path) -> None:
    engine, ids = stored(tmp_path, 4)
    deliveries.finish(engine, ids[0], ignored=True, outcome="")
    deliveries.postpone(engine, ids[1], until=utcnow() + timedelta(minutes=10), error="429")
    later = utcnow() + timedelta(seconds=40)
    assert deliveries.overdue(engine, grace=timedelta(seconds=30), now=later) == [ids[2], ids[3]]
    assert deliveries.overdue(engine, grace=timedelta(seconds=30)) == []
    with session_scope(engine) as session:
        assert session.get(Delivery, ids[1]).state == DeliveryState.QUEUED  # type: ignore[union-attr]


def test_a_renewed_lease_keeps_a_long_jobs_rows_from_the_sweeper_and_other_takers(tmp_path: Path) -> None:
    engine, ids = stored(tmp_path, 3)
    lease, start = timedelta(seconds=30), utcnow()
    for delivery_id in ids[:2]:
        assert deliveries.take(engine, delivery_id, lease=lease, now=start) is not None
    deliveries.finish(engine, ids[1], ignored=False, outcome="done")
    renewed = start + timedelta(seconds=25)
    deliveries.renew_leases(engine, ids, now=renewed)  # a finished or untaken row is left as it is
    past_first_lease = start + timedelta(seconds=40)
    assert deliveries.overdue(engine, grace=lease, now=past_first_lease) == [ids[2]]
    assert deliveries.take(engine, ids[0], lease=lease, now=past_first_lease) is None
    past_renewal = renewed + timedelta(seconds=31)
    assert sorted(deliveries.overdue(engine, grace=lease, now=past_renewal)) == [ids[0], ids[2]]


def test_finished_deliveries_are_pruned_after_retention(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    migrate.upgrade(engine)
    ids = [
        deliveries.store(engine, source="jira", key=f"k{i}", resource="r", action="a", payload=b"{}")
        .delivery_id
        for i in range(3)
    ]
    deliveries.finish(engine, ids[0], ignored=False, outcome="done")
    deliveries.finish(engine, ids[1], ignored=True, outcome="ignored")
    deliveries.bury(engine, ids[2], error="permanent")
    assert deliveries.prune(engine, older_than=timedelta(days=14)) == 0
    assert deliveries.prune(engine, older_than=timedelta(days=14), now=utcnow() + timedelta(days=15)) == 2
    assert deliveries.load(engine, ids[2]) is not None  # dead ones stay with their letters
