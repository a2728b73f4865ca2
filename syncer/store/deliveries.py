"""The inbox: deliveries stored before they are answered, claimed by one worker at a time,
finished, retried later, or moved to the dead letters. Every state change is one conditional
UPDATE, so two workers handed the same delivery (a redelivery, a sweep) cannot both process it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, col, select

from syncer.store.engine import one_statement, reading, session_scope
from syncer.store.schema import DeadLetter, Delivery, DeliveryState, utcnow


@dataclass(frozen=True)
class Stored:
    delivery_id: int
    duplicate: bool


def storable(text: str, limit: int) -> str:
    """`text` cut to `limit` and made fit for any text column. JSON can carry what a database
    refuses: a lone surrogate (`"\\ud800"`) is not UTF-8, and PostgreSQL text cannot hold NUL."""
    text = text[:limit]
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def store(
    engine: Engine,
    *,
    source: str,
    key: str,
    resource: str,
    action: str,
    payload: bytes,
    retried_within: timedelta | None = None,
) -> Stored:
    """Record a delivery durably; a second delivery with the same key is recognised, not stored,
    unless the first was stored longer than `retried_within` ago (see `Incoming`)."""
    values = {
        "source": source, "delivery_key": key, "resource": storable(resource, 100),
        "action": storable(action, 100), "payload": payload.decode("utf-8"),
    }
    try:
        with engine.begin() as connection:
            return Stored(int(connection.execute(_INSERT, values).scalar_one()), duplicate=False)
    except IntegrityError:
        pass
    with engine.begin() as connection:
        existing = connection.execute(_FIND_STORED, {"source": source, "key": key}).first()
        if existing is None:  # the unique violation was something else
            raise RuntimeError(f"delivery {source}/{key} conflicted but cannot be found")
        if not _repeats(connection, existing.id, existing.received_at, key, retried_within):
            return Stored(existing.id, duplicate=True)
        return Stored(int(connection.execute(_INSERT, values).scalar_one()), duplicate=False)


def _repeats(
    connection: Any, existing_id: int, received_at: datetime, key: str, retried_within: timedelta | None
) -> bool:
    """Whether a delivery with the key of `existing_id` is a new event rather than a retry of it:
    the look-alike was stored longer ago than the sender ever retries. Then the old row gives the key
    up (it keeps its history under `<key>@<id>`), so the new one can take it."""
    if retried_within is None or received_at >= utcnow() - retried_within:
        return False
    connection.execute(_RETIRE_KEY, {"b_id": existing_id, "b_key": f"{key}@{existing_id}"[:200]})
    return True


@dataclass(frozen=True)
class Incoming:
    source: str
    key: str
    resource: str
    action: str
    payload: bytes
    # Non-empty: nothing will be done with it (no handler); stored as ignored with this outcome.
    ignored: str = ""
    # How long the sender goes on retrying one delivery. A look-alike (the same key) stored longer
    # ago than this is not a retry: it is a new event whose body happens to be the same bytes (Sentry's
    # carry no time of change). None: the key alone decides, for ever.
    retried_within: timedelta | None = None


def store_many(engine: Engine, deliveries: Sequence[Incoming]) -> list[Stored]:
    """Record several deliveries in ONE transaction (the web tier's group commit): each row is stored
    or recognised as a duplicate, and all of them are durable once this returns. Raises (storing
    nothing) when the database fails: a `sqlalchemy.exc.SQLAlchemyError`, as any other storing does.

    One transaction per batch instead of per request is what lets one web process keep up: on SQLite
    a commit is the file's single write lock, on PostgreSQL a WAL flush."""
    raw = _raw_upserts(engine.dialect)
    if raw is None:  # pragma: no cover - syncer supports SQLite and PostgreSQL
        return [store(engine, source=d.source, key=d.key, resource=d.resource, action=d.action,
                      payload=d.payload) for d in deliveries]
    now = raw.when(utcnow())  # the same for every row of the batch: converted once
    received, ignored = raw.state(DeliveryState.RECEIVED), raw.state(DeliveryState.IGNORED)
    stored: list[Stored] = []
    with engine.begin() as connection:
        # Row by row on the driver's own cursor, inside SQLAlchemy's transaction (its BEGIN, its
        # commit, the SQLite write queue): SQLAlchemy's per-statement work (parameter processing,
        # result objects) cost more than the INSERT itself, 41 against 18 us a row
        # (docs/benchmarks.md). A multi-row INSERT was no cheaper at intake's batch sizes. On
        # PostgreSQL the batch's INSERTs go in one round trip (`_insert_all`).
        cursor = connection.connection.cursor()
        statement = raw.insert
        try:
            rows = [raw.insert_params((
                d.source, d.key, storable(d.resource, 100), storable(d.action, 100),
                d.payload.decode("utf-8"), now, ignored if d.ignored else received,
                storable(d.ignored, 500), now if d.ignored else None, 0,
            )) for d in deliveries]
            inserted_ids = _insert_all(cursor, statement, rows) if raw.pipelined and len(rows) > 1 else None
            for n, (d, row) in enumerate(zip(deliveries, rows, strict=True)):
                statement = raw.insert
                if inserted_ids is not None:
                    found = inserted_ids[n]
                else:
                    cursor.execute(statement, row)
                    found = cursor.fetchone()
                if found is not None:
                    stored.append(Stored(int(found[0]), duplicate=False))
                    continue
                statement = raw.find
                cursor.execute(statement, raw.find_params((d.source, d.key)))
                found = cursor.fetchone()
                if found is None:  # pragma: no cover - the conflict target is the only unique key
                    raise RuntimeError(f"delivery {d.source}/{d.key} conflicted but cannot be found")
                if d.retried_within is not None:  # rare: a look-alike; is it a retry, or a new event?
                    received_at = connection.execute(_RECEIVED_AT, {"b_id": int(found[0])}).scalar_one()
                    if _repeats(connection, int(found[0]), received_at, d.key, d.retried_within):
                        statement = raw.insert
                        cursor.execute(statement, row)
                        inserted = cursor.fetchone()
                        assert inserted is not None, "the key was given up in this transaction"
                        stored.append(Stored(int(inserted[0]), duplicate=False))
                        continue
                stored.append(Stored(int(found[0]), duplicate=True))
        except raw.dbapi_error as exc:
            # What SQLAlchemy raises for a failed statement (the web tier answers 503 on it), without
            # the parameters (payloads) in its message.
            raise DBAPIError.instance(statement, None, exc, raw.dbapi_error, hide_parameters=True,
                                      dialect=engine.dialect) from exc
        finally:
            cursor.close()
    return stored


def _insert_all(cursor: Any, statement: str, rows: list[Any]) -> list[Any]:
    """Every row's INSERT ... RETURNING sent at once (psycopg's `executemany(returning=True)` runs
    them in pipeline mode): one round trip for the batch instead of one per row, which on PostgreSQL
    was most of the writer's time. Each row's result: its new id, or None where the key exists (the
    caller looks those up one by one, as before)."""
    cursor.executemany(statement, rows, returning=True)
    found: list[Any] = []
    while True:
        found.append(cursor.fetchone())
        if not cursor.nextset():
            break
    if len(found) != len(rows):  # pragma: no cover - one result set per row is psycopg's contract
        raise RuntimeError(f"{len(rows)} rows inserted but {len(found)} results read")
    return found


# The values store_many passes per row, in this order; `_raw_upserts` maps them onto the columns.
_ROW_VALUES = ("source", "delivery_key", "resource", "action", "payload", "now", "state", "outcome",
               "finished_at", "attempts")
_COLUMN_VALUES = {"received_at": "now", "due_at": "now"}  # other columns take the value of their name
_FIND_VALUES = ("source", "key")


@dataclass(frozen=True)
class _RawUpserts:
    """`_UPSERTS` compiled once for one dialect, for the driver's cursor."""

    insert: str
    find: str
    insert_params: Callable[[tuple[Any, ...]], Any]  # _ROW_VALUES -> the driver's parameters
    find_params: Callable[[tuple[str, str]], Any]  # _FIND_VALUES -> the driver's parameters
    when: Callable[[datetime], Any]  # the conversions SQLAlchemy applies to these two columns
    state: Callable[[str], Any]
    dbapi_error: type[Exception]
    pipelined: bool  # the driver sends many statements in one round trip (psycopg 3's pipeline mode)


_RAW_UPSERTS: dict[tuple[str, str, str], _RawUpserts | None] = {}


def _raw_upserts(dialect: Dialect) -> _RawUpserts | None:
    """`_UPSERTS` as SQL text the way SQLAlchemy compiles it for `dialect`, with parameters in the
    driver's style and the bind conversions SQLAlchemy would apply (the UTC timestamps'); None when a
    column of plain text needs a conversion (then store_many leaves it all to SQLAlchemy)."""
    cache_key = (dialect.name, dialect.driver, dialect.paramstyle)
    if cache_key not in _RAW_UPSERTS:
        _RAW_UPSERTS[cache_key] = _compile_raw_upserts(dialect)
    return _RAW_UPSERTS[cache_key]


def _compile_raw_upserts(dialect: Dialect) -> _RawUpserts | None:
    statements = _UPSERTS.get(dialect.name)
    if statements is None:  # pragma: no cover - syncer supports SQLite and PostgreSQL
        return None
    insert_new, find_existing = statements
    table: Any = Delivery.__table__  # type: ignore[attr-defined]
    columns = [c.key for c in table.columns if c.key in set(_ROW_VALUES) | set(_COLUMN_VALUES)]
    processors = {name: table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns}
    if any(processors[name] for name in columns if name not in ("received_at", "due_at", "finished_at",
                                                                  "state")):
        return None  # pragma: no cover - no driver syncer supports converts these
    insert = insert_new.compile(dialect=dialect, column_keys=columns)
    find = find_existing.compile(dialect=dialect)
    insert_order = list(insert.positiontup) if insert.positiontup is not None else columns
    find_order = list(find.positiontup) if find.positiontup is not None else list(_FIND_VALUES)
    pick_row = itemgetter(*[_ROW_VALUES.index(_COLUMN_VALUES.get(name, name)) for name in insert_order])
    pick_key = itemgetter(*[_FIND_VALUES.index(name) for name in find_order])
    insert_params: Callable[[tuple[Any, ...]], Any]
    find_params: Callable[[tuple[str, str]], Any]
    if insert.positiontup is not None and find.positiontup is not None:
        insert_params, find_params = pick_row, pick_key
    else:
        def insert_params(values: tuple[Any, ...]) -> dict[str, Any]:
            return dict(zip(insert_order, pick_row(values), strict=True))

        def find_params(values: tuple[str, str]) -> dict[str, Any]:
            return dict(zip(find_order, pick_key(values), strict=True))

    def identity(value: Any) -> Any:
        return value

    return _RawUpserts(
        insert=insert.string, find=find.string, insert_params=insert_params, find_params=find_params,
        when=processors["received_at"] or identity, state=processors["state"] or identity,
        dbapi_error=dialect.loaded_dbapi.Error, pipelined=dialect.driver == "psycopg",
    )


def _upserts() -> dict[str, tuple[Any, Any]]:
    """Statements built once (SQLAlchemy caches their compiled form): insert unless the (source,
    key) pair exists, returning the new id; and the id of the one that exists."""
    from sqlalchemy import bindparam
    from sqlalchemy.dialects import postgresql, sqlite

    table: Any = Delivery.__table__  # type: ignore[attr-defined]
    find = select(table.c.id).where(
        table.c.source == bindparam("source"), table.c.delivery_key == bindparam("key")
    )
    out: dict[str, tuple[Any, Any]] = {}
    for name, insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert)):
        statement = (
            insert(table)
            .on_conflict_do_nothing(index_elements=["source", "delivery_key"])
            .returning(table.c.id)
        )
        out[name] = (statement, find)
    return out


_UPSERTS = _upserts()
_deliveries: Any = Delivery.__table__  # type: ignore[attr-defined]
_FIND_STORED = select(_deliveries.c.id, _deliveries.c.received_at).where(
    _deliveries.c.source == bindparam("source"), _deliveries.c.delivery_key == bindparam("key")
)
_RECEIVED_AT = select(_deliveries.c.received_at).where(_deliveries.c.id == bindparam("b_id"))
_RETIRE_KEY = (
    update(_deliveries).where(_deliveries.c.id == bindparam("b_id")).values(delivery_key=bindparam("b_key"))
)


def claim(engine: Engine, delivery_id: int, *, lease: timedelta, now: datetime | None = None) -> bool:
    """Take a delivery for processing. False when it is finished or another worker holds it."""
    now = now or utcnow()
    with one_statement(engine) as connection:
        result = connection.execute(_CLAIM, {"b_id": delivery_id, "b_now": now, "b_stale": now - lease})
        return bool(result.rowcount)


# Every delivery passes claim() and finish(): statements built once, run on a plain connection
# (a fifth of the CPU of building them anew on an ORM session each time; bench/e2e.py).
_CLAIM = (
    update(Delivery)
    .where(
        col(Delivery.id) == bindparam("b_id"),
        or_(
            col(Delivery.state).in_([DeliveryState.RECEIVED, DeliveryState.QUEUED]),
            # A holder that has been silent past its lease is presumed dead (kill -9).
            and_(
                col(Delivery.state) == DeliveryState.PROCESSING,
                col(Delivery.started_at) < bindparam("b_stale"),
            ),
        ),
    )
    .values(
        state=DeliveryState.PROCESSING, started_at=bindparam("b_now"), attempts=col(Delivery.attempts) + 1
    )
)
# A holder presumed dead after its lease may still finish, after another worker took the delivery
# over and found nothing left to do ("already linked"): that late "ignored" must not hide the "done"
# of the attempt that did the work, whichever of the two finishes last.
_FINISH = (
    update(Delivery)
    .where(col(Delivery.id) == bindparam("b_id"),
           or_(col(Delivery.state) != DeliveryState.DONE, bindparam("b_state") == DeliveryState.DONE))
    .values(state=bindparam("b_state"), outcome=bindparam("b_outcome"), finished_at=bindparam("b_now"),
            last_error=None)
)


@dataclass(frozen=True)
class Taken:
    """A delivery claimed for processing, with what the handlers need of it."""

    id: int
    source: str
    resource: str
    action: str
    payload: str
    attempts: int  # this attempt included
    received_at: datetime  # when it was stored: its retry window runs from here


def take(engine: Engine, delivery_id: int, *, lease: timedelta, now: datetime | None = None) -> Taken | None:
    """`claim` and read the delivery in one statement (UPDATE ... RETURNING): None when it is
    finished or another worker holds it. Every delivery passes here, so it is one round trip and
    one transaction, not two (docs/benchmarks.md)."""
    now = now or utcnow()
    with one_statement(engine) as connection:
        row = connection.execute(_TAKE, {"b_id": delivery_id, "b_now": now, "b_stale": now - lease}).first()
    if row is None:
        return None
    return Taken(id=row.id, source=row.source, resource=row.resource, action=row.action,
                 payload=row.payload, attempts=row.attempts, received_at=row.received_at)


_TAKE = _CLAIM.returning(
    col(Delivery.id), col(Delivery.source), col(Delivery.resource), col(Delivery.action),
    col(Delivery.payload), col(Delivery.attempts), col(Delivery.received_at),
)


@dataclass(frozen=True)
class DeliveryRecord:
    """A stored delivery as it was when read."""

    id: int
    source: str
    delivery_key: str
    resource: str
    action: str
    received_at: datetime
    payload: str
    state: str
    attempts: int
    last_error: str | None
    outcome: str
    due_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def load(engine: Engine, delivery_id: int) -> DeliveryRecord | None:
    with reading(engine) as connection:
        row = connection.execute(_LOAD, {"b_id": delivery_id}).mappings().first()
    return None if row is None else DeliveryRecord(**row)


_LOAD = select(Delivery).where(col(Delivery.id) == bindparam("b_id"))


def ignored(engine: Engine, *, action: str) -> list[DeliveryRecord]:
    """The deliveries of `action` that were recorded as needing nothing done, oldest first."""
    with reading(engine) as connection:
        rows = connection.execute(_IGNORED, {"b_action": action}).mappings().all()
    return [DeliveryRecord(**row) for row in rows]


_IGNORED = select(Delivery).where(
    col(Delivery.state) == DeliveryState.IGNORED, col(Delivery.action) == bindparam("b_action")
).order_by(col(Delivery.id))


def finish(engine: Engine, delivery_id: int, *, ignored: bool, outcome: str) -> None:
    with one_statement(engine) as connection:
        connection.execute(_FINISH, {
            "b_id": delivery_id, "b_state": DeliveryState.IGNORED if ignored else DeliveryState.DONE,
            "b_outcome": storable(outcome, 500), "b_now": utcnow(),
        })


def postpone(engine: Engine, delivery_id: int, *, until: datetime, error: str, counted: bool = True) -> None:
    """A transient failure: back to the queue, due again at `until` (the sweeper respects that).
    Not `counted` (a wait for our own rate limit's turn, or for another worker's hold on the
    issue): the attempt `take` counted is given back."""
    values: dict[str, Any] = {"state": DeliveryState.QUEUED, "due_at": until, "started_at": None,
                              "last_error": storable(error, 2000)}
    if not counted:
        values["attempts"] = col(Delivery.attempts) - 1
    with session_scope(engine) as session:
        session.execute(update(Delivery).where(col(Delivery.id) == delivery_id).values(**values))


def bury(engine: Engine, delivery_id: int, *, error: str, subject: str = "") -> int:
    """Retries exhausted or the failure is permanent: a dead letter keeps the error and payload."""
    with session_scope(engine) as session:
        row = session.get(Delivery, delivery_id)
        payload = row.payload if row else ""
        session.execute(
            update(Delivery)
            .where(col(Delivery.id) == delivery_id)
            .values(state=DeliveryState.DEAD, last_error=storable(error, 2000), finished_at=utcnow())
        )
        letter_id = session.execute(_INSERT_LETTER, {
            "delivery_id": delivery_id, "kind": "delivery", "subject": storable(subject, 200),
            "error": storable(error, 4000), "payload": payload,
        }).scalar_one()
        return int(letter_id)


_INSERT = Delivery.__table__.insert().returning(col(Delivery.id))  # type: ignore[attr-defined]
_INSERT_LETTER = DeadLetter.__table__.insert().returning(col(DeadLetter.id))  # type: ignore[attr-defined]


def overdue(engine: Engine, *, grace: timedelta, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Deliveries a worker should have finished by now: never enqueued (broker down), lost with a
    dead worker, or whose retry countdown has passed without a worker taking them."""
    now = now or utcnow()
    with Session(engine) as session:
        rows = session.exec(
            select(Delivery.id)
            .where(
                or_(
                    and_(
                        col(Delivery.state).in_([DeliveryState.RECEIVED, DeliveryState.QUEUED]),
                        col(Delivery.due_at) < now - grace,
                    ),
                    and_(
                        col(Delivery.state) == DeliveryState.PROCESSING,
                        col(Delivery.started_at) < now - grace,
                    ),
                )
            )
            .order_by(col(Delivery.due_at))
            .limit(limit)
        ).all()
    return [row for row in rows if row is not None]


@dataclass(frozen=True)
class Kind:
    """What decides a stored delivery's lane (`syncer.lanes.of_stored`): its envelope, and its body
    only for a Jira update (the one event whose lane its body decides)."""

    source: str
    resource: str
    action: str
    payload: str


def kinds(engine: Engine, ids: Sequence[int]) -> dict[int, Kind]:
    if not ids:
        return {}
    table: Any = Delivery.__table__  # type: ignore[attr-defined]
    body = case((and_(table.c.source == "jira", table.c.resource == "jira:issue_updated"), table.c.payload),
                else_="")
    statement = (sa_select(table.c.id, table.c.source, table.c.resource, table.c.action, body)
                 .where(table.c.id.in_(list(ids))))
    with engine.connect() as connection:
        rows = connection.execute(statement).all()
    return {int(row[0]): Kind(row[1], row[2], row[3], row[4] or "") for row in rows}


def renew_leases(engine: Engine, ids: Sequence[int], *, now: datetime | None = None) -> None:
    """Deliveries still being worked on, as one long job (a bulk filer's batch): their leases run
    from now, so the sweeper does not hand them to another worker while the job goes on."""
    if not ids:
        return
    now = now or utcnow()
    with one_statement(engine) as connection:
        connection.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(list(ids)), col(Delivery.state) == DeliveryState.PROCESSING)
            .values(started_at=now)
        )


def touch(engine: Engine, ids: Sequence[int], *, now: datetime | None = None) -> None:
    """Re-enqueued by the sweeper: due again from now, so it is not swept twice in a row."""
    now = now or utcnow()
    with session_scope(engine) as session:
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(list(ids)), col(Delivery.state) != DeliveryState.PROCESSING)
            .values(due_at=now)
        )


def prune(engine: Engine, *, older_than: timedelta, now: datetime | None = None) -> int:
    """Forget finished deliveries past the retention period (dead ones stay with their letters)."""
    now = now or utcnow()
    with session_scope(engine) as session:
        result = session.execute(
            delete(Delivery).where(
                col(Delivery.state).in_([DeliveryState.DONE, DeliveryState.IGNORED]),
                col(Delivery.finished_at) < now - older_than,
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def latest_payloads(engine: Engine, *, source: str, limit: int) -> list[str]:
    """The payloads of the last `limit` deliveries from `source`, newest first."""
    with Session(engine) as session:
        return list(
            session.exec(
                select(Delivery.payload)
                .where(Delivery.source == source)
                .order_by(col(Delivery.id).desc())
                .limit(limit)
            ).all()
        )


def issues_titled(engine: Engine, text: str, *, limit: int = 50, scanned: int = 2000) -> dict[str, str]:
    """Sentry issues whose title contains `text` (any case), {issue id: title}, from the newest of
    the Sentry deliveries still in the inbox: the title is in no table of its own. At most `scanned`
    payloads that mention the text are read."""
    needle = text.strip().lower()
    if not needle:
        return {}
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with reading(engine) as connection:
        payloads = connection.execute(
            select(Delivery.payload)
            .where(Delivery.source == "sentry", func.lower(Delivery.payload).like(pattern, escape="\\"))
            .order_by(col(Delivery.id).desc())
            .limit(scanned)
        ).scalars()
        found: dict[str, str] = {}
        for payload in payloads:
            issue = _issue_of(payload)
            if issue and needle in issue[1].lower():
                found.setdefault(issue[0], issue[1])
                if len(found) >= limit:
                    break
    return found


def _issue_of(payload: str) -> tuple[str, str] | None:
    """(id, title) of the Sentry issue a webhook body is about, or None."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    issue = data.get("issue") if isinstance(data, dict) else None
    if not isinstance(issue, dict):
        return None
    issue_id, title = issue.get("id"), issue.get("title")
    if issue_id is None or not isinstance(title, str):
        return None
    return str(issue_id), title
