"""Engines and sessions. Callers pass sessions in; nothing here is a global connection."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session, create_engine


def normalise_url(url: str) -> str:
    """`postgres://` and `postgresql://` mean the psycopg 3 driver we ship."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, pool_size: int = 10, pre_ping: bool = True) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        # One lock per engine (so per process) in front of SQLite's file lock: see _QueuedConnection.
        database = make_url(url).database
        lock_path = f"{database}.lock" if database and database != ":memory:" else None
        queued = {"queue": threading.Lock(), "lock_path": lock_path}
        factory = type("QueuedConnection", (_QueuedConnection,), queued)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_SECONDS, "factory": factory}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so a write
        # transaction takes its lock at the start instead of failing half-way.
        event.listen(engine, "begin", _begin_sqlite)
        return engine
    # `pre_ping` is a `SELECT 1` round trip on every checkout: a fifth of the worker's database waits
    # on PostgreSQL (docs/benchmarks.md, "PostgreSQL"), so the worker turns it off. There a connection
    # the server dropped fails its first statement instead, SQLAlchemy recycles the pool, and the
    # delivery is retried as after any transient database error. The web tier keeps it: a webhook
    # answered 503 is not retried by every sender, and its writer pings once per batch, not per row.
    # The overflow is small on purpose: overflow connections are closed on return, and a pool smaller
    # than the threads using it opened and closed a connection per transaction under load.
    return create_engine(url, pool_size=pool_size, max_overflow=max(2, pool_size // 8),
                         pool_pre_ping=pre_ping, pool_recycle=3600)


READ_ONLY = "syncer_read_only"  # an execution option: see `reading`


def _begin_sqlite(conn: Connection) -> None:
    if conn.get_execution_options().get(READ_ONLY):
        return  # autocommit mode: each SELECT is its own read transaction, and takes no write lock
    conn.connection.dbapi_connection.begin_immediate()  # type: ignore[union-attr]


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for single-statement reads. On SQLite it takes no write lock: in WAL mode a
    reader sees the last commit and neither waits for the writer nor holds it up, where a
    transaction through `session_scope` queues for the one write lock like every writer (a ticket's
    reads used to wait behind other threads' writes). Each statement sees its own snapshot, so a
    read that needs several statements to agree belongs in a transaction."""
    with engine.connect() as connection:
        connection.execution_options(**{READ_ONLY: True})
        if connection.dialect.name == "postgresql":
            # Autocommit: the SELECT is its own transaction, one round trip, where psycopg's implicit
            # BEGIN and the pool's ROLLBACK on return made it three.
            connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


@contextmanager
def one_statement(engine: Engine) -> Iterator[Connection]:
    """A connection for a write that is ONE statement (a conditional UPDATE, an INSERT ... ON
    CONFLICT): atomic and committed on its own. On PostgreSQL it runs in autocommit, one round trip
    where BEGIN, the statement and COMMIT were three (the commit is as durable: synchronous_commit is
    the server's); on SQLite it is `engine.begin()`, which queues for the write lock as every writer
    must. Two statements that must agree belong in `engine.begin()`."""
    if engine.dialect.name != "postgresql":
        with engine.begin() as connection:
            yield connection
        return
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: there, SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]

SQLITE_BUSY_SECONDS = 30
_thread_holds = threading.local()  # the database lock files this thread holds (see _lock_file)


class _QueuedConnection(sqlite3.Connection):
    """A pysqlite connection whose transactions queue for SQLite's write lock instead of polling it.

    SQLite has one write lock per file, and every transaction here takes it at the start (`BEGIN
    IMMEDIATE`). Left to SQLite, a waiter sleeps in its busy handler (1, 2, 5 ... 100 ms steps,
    whether or not the lock came free meanwhile): under load a quarter of a worker task's time went
    there (bench/e2e.py). So a transaction first takes its process's lock (threads queue on it and
    wake the moment it is released), then an advisory lock on `<database>.lock` that every syncer
    process (web, workers, beat) takes the same way: the kernel wakes the next process the moment it
    is released, and releases it itself when a process dies. SQLite's own lock is then free at once.
    Anything else writing the file (a person with the sqlite3 shell) meets SQLite's busy handler, as
    before. A process that hangs inside a transaction stops the others until it is killed, as it
    did when it held SQLite's lock: they wait on the file lock instead of failing every 30 s."""

    queue: threading.Lock  # set per engine by make_engine
    lock_path: str | None  # likewise; None for an in-memory database
    _holds_queue = False
    _holds_file = False
    _lock_fd: int | None = None

    def begin_immediate(self) -> None:
        if not self.queue.acquire(timeout=SQLITE_BUSY_SECONDS):
            raise sqlite3.OperationalError("database is locked (this process's other transactions held it)")
        self._holds_queue = True
        try:
            self._lock_file()
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._leave_queue()
            raise

    def _lock_file(self) -> None:
        if self.lock_path is None or fcntl is None:
            return
        held: set[str] = _thread_holds.__dict__.setdefault("paths", set())
        if self.lock_path in held:
            # This thread is inside a transaction on another engine of the same file: waiting here
            # would never end. SQLite's busy timeout decides, as it always did.
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._holds_file = True
        held.add(self.lock_path)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._leave_queue()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._leave_queue()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._leave_queue()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _leave_queue(self) -> None:
        if self._holds_queue:
            self._holds_queue = False
            if self._holds_file and self._lock_fd is not None and fcntl is not None:
                self._holds_file = False
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                _thread_holds.__dict__.get("paths", set()).discard(self.lock_path)
            self.queue.release()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Several processes (web, worker threads, beat) share one SQLite file: WAL lets readers
    # and one writer proceed together; busy_timeout waits instead of failing on a locked file.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed on success, rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
