"""`deliveries.store_many`, the web tier's group commit, on SQLite and PostgreSQL: new rows, duplicates
(within one batch and against stored rows), ignored events, text a database refuses, and failures
raised as SQLAlchemy's errors (the web tier answers 503 on those)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from syncer.store import deliveries, migrate
from syncer.store.engine import make_engine
from syncer.store.schema import Delivery, DeliveryState, utcnow

POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
        migrate.upgrade(engine)
        yield engine
        engine.dispose()
        return
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL answers at 127.0.0.1:5432 ({type(exc).__name__})")
    name = f"syncer_store_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        migrate.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def rows(engine: Engine) -> dict[int, Delivery]:
    with Session(engine) as session:
        return {row.id: row for row in session.exec(select(Delivery)).all() if row.id is not None}


def incoming(
    key: str, *, source: str = "sentry", ignored: str = "", payload: bytes | None = None
) -> deliveries.Incoming:
    body = payload if payload is not None else json.dumps({"key": key}).encode()
    return deliveries.Incoming(source, key, "issue", "created", body, ignored)


def test_a_batch_is_stored_with_duplicates_recognised(db: Engine) -> None:
    before = utcnow()
    first = deliveries.store_many(db, [incoming("a"), incoming("b"), incoming("a", source="jira")])
    assert [s.duplicate for s in first] == [False, False, False]
    assert len({s.delivery_id for s in first}) == 3
    # Against stored rows, and twice within one batch: the first of the batch is new, the rest not.
    second = deliveries.store_many(db, [incoming("b"), incoming("c"), incoming("c"), incoming("a")])
    assert [s.duplicate for s in second] == [True, False, True, True]
    assert second[0].delivery_id == first[1].delivery_id
    assert second[1].delivery_id == second[2].delivery_id
    assert second[3].delivery_id == first[0].delivery_id

    stored = rows(db)
    assert len(stored) == 4
    row = stored[first[0].delivery_id]
    assert (row.source, row.delivery_key, row.resource, row.action) == ("sentry", "a", "issue", "created")
    assert json.loads(row.payload) == {"key": "a"}
    assert row.state == DeliveryState.RECEIVED and row.attempts == 0 and row.outcome == ""
    assert row.finished_at is None and row.last_error is None and row.started_at is None
    # Timestamps are aware UTC on both databases, as the ORM writes them.
    assert row.received_at.tzinfo is not None and before <= row.received_at <= utcnow()
    assert row.due_at == row.received_at
    assert deliveries.overdue(db, grace=timedelta(0), now=utcnow() + timedelta(seconds=1)) != []


def backdate(engine: Engine, delivery_id: int, by: timedelta) -> None:
    """As if the delivery had been stored `by` ago."""
    with Session(engine) as session:
        row = session.get(Delivery, delivery_id)
        assert row is not None
        row.received_at = row.received_at - by
        session.add(row)
        session.commit()


@pytest.mark.parametrize("how", ["store_many", "store"])
def test_a_look_alike_after_the_senders_retries_end_is_a_new_delivery(db: Engine, how: str) -> None:
    span = timedelta(minutes=20)

    def put(key: str) -> deliveries.Stored:
        if how == "store":
            return deliveries.store(db, source="sentry", key=key, resource="issue", action="resolved",
                                    payload=b'{"action":"resolved"}', retried_within=span)
        [stored] = deliveries.store_many(db, [dataclasses.replace(incoming(key), retried_within=span)])
        return stored

    first = put("same-bytes")
    retry = put("same-bytes")  # Sentry's retry, minutes later: the same key, recognised
    assert (retry.delivery_id, retry.duplicate) == (first.delivery_id, True)

    backdate(db, first.delivery_id, span + timedelta(seconds=5))  # Sentry stopped retrying long ago
    repeat = put("same-bytes")  # a genuine repeat: the same issue resolved again, byte for byte
    again = put("same-bytes")  # and that one's own retry

    assert repeat.duplicate is False and repeat.delivery_id != first.delivery_id
    assert (again.delivery_id, again.duplicate) == (repeat.delivery_id, True)
    stored = rows(db)
    assert stored[first.delivery_id].delivery_key == f"same-bytes@{first.delivery_id}"  # kept, key given up
    assert stored[repeat.delivery_id].delivery_key == "same-bytes"
    assert stored[repeat.delivery_id].state == DeliveryState.RECEIVED


def test_a_look_alike_and_its_retry_in_one_batch(db: Engine) -> None:
    # On PostgreSQL a batch's INSERTs are sent together (pipeline mode) and the conflicts resolved
    # after: the outcome must be what row by row gives.
    span = timedelta(minutes=20)
    alike = dataclasses.replace(incoming("same-bytes"), retried_within=span)
    [first] = deliveries.store_many(db, [alike])
    backdate(db, first.delivery_id, span + timedelta(seconds=5))
    repeat, again, other = deliveries.store_many(db, [alike, alike, incoming("other")])
    assert repeat.duplicate is False and repeat.delivery_id != first.delivery_id
    assert (again.delivery_id, again.duplicate) == (repeat.delivery_id, True)
    assert other.duplicate is False
    assert rows(db)[first.delivery_id].delivery_key == f"same-bytes@{first.delivery_id}"


def test_without_a_retry_span_the_key_decides_for_ever(db: Engine) -> None:
    [first] = deliveries.store_many(db, [incoming("jira-identifier")])
    backdate(db, first.delivery_id, timedelta(days=3))
    [later] = deliveries.store_many(db, [incoming("jira-identifier")])
    assert (later.delivery_id, later.duplicate) == (first.delivery_id, True)


def test_ignored_event_is_stored_finished(db: Engine) -> None:
    ignored = "no handler for jira:issue_created"
    [stored] = deliveries.store_many(db, [incoming("x", source="jira", ignored=ignored)])
    row = rows(db)[stored.delivery_id]
    assert row.state == DeliveryState.IGNORED
    assert row.outcome == "no handler for jira:issue_created"
    assert row.finished_at is not None and row.finished_at == row.received_at


def test_text_a_database_refuses_is_made_storable(db: Engine) -> None:
    long_resource = "r" * 300
    odd = deliveries.Incoming("sentry", "odd", long_resource, "cre\x00ated\ud800", b"{}")
    [stored] = deliveries.store_many(db, [odd])
    row = rows(db)[stored.delivery_id]
    assert row.resource == "r" * 100
    assert row.action.startswith("cre\ufffdated") and len(row.action) == 9
    row.action.encode("utf-8")  # no lone surrogate left


def test_the_same_delivery_stored_by_store_and_store_many_is_one_row(db: Engine) -> None:
    single = deliveries.store(db, source="sentry", key="k", resource="issue", action="created", payload=b"{}")
    [batch] = deliveries.store_many(db, [incoming("k", payload=b"{}")])
    assert batch == deliveries.Stored(single.delivery_id, duplicate=True)


def test_a_failing_batch_raises_sqlalchemy_error_and_stores_nothing(db: Engine) -> None:
    deliveries.store_many(db, [incoming("kept")])
    with db.begin() as connection:  # a constraint the inbox does not expect, to make an INSERT fail
        connection.execute(text(
            "CREATE TRIGGER refuse BEFORE INSERT ON deliveries FOR EACH ROW WHEN (NEW.delivery_key = 'bad') "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END" if db.dialect.name == "sqlite" else
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
            "IF NEW.delivery_key = 'bad' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ "
            "LANGUAGE plpgsql"
        ))
        if db.dialect.name != "sqlite":
            connection.execute(text(
                "CREATE TRIGGER refuse BEFORE INSERT ON deliveries FOR EACH ROW EXECUTE FUNCTION refuse()"
            ))
    with pytest.raises(SQLAlchemyError) as raised:
        deliveries.store_many(db, [incoming("fine"), incoming("bad")])
    assert "refused" in str(raised.value)
    assert '"key": "bad"' not in str(raised.value)  # payloads stay out of error messages
    assert [row.delivery_key for row in rows(db).values()] == ["kept"]
    # The connection went back to the pool usable: the next batch is stored.
    assert [s.duplicate for s in deliveries.store_many(db, [incoming("fine")])] == [False]


def test_database_unreachable_raises_sqlalchemy_error() -> None:
    from tests.harness import free_port

    dead = make_engine(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    with pytest.raises(SQLAlchemyError):
        deliveries.store_many(dead, [incoming("a")])
