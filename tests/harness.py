"""Real processes and servers for the tests: Redis, the syncer worker and beat as subprocesses,
the web app on a real socket. Nothing of syncer's own code is mocked."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest
import redis
from jira import JIRA
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from syncer.store.schema import AuditEntry, DeadLetter, Delivery, Link

if TYPE_CHECKING:
    from syncer.fakes.jira import FakeJira

REPO = Path(__file__).resolve().parent.parent
# What the fake Jira sites of conftest.py (cloud_jira, dc_jira) accept and sign webhooks with.
FAKE_JIRA_EMAIL, FAKE_JIRA_TOKEN, FAKE_JIRA_PAT = "bot@example.com", "jira-token", "jira-pat"
FAKE_JIRA_SECRET = "hook-secret"
# A test marked BOTH_DEPLOYMENTS runs twice: against the session's Jira Cloud site and against a Jira Data
# Center 9 site (conftest.fake_jira), each with its own web app, worker and environment. Cloud's param is
# None, the cache key of an unmarked test's `fake_jira`: its run shares their site instead of a new one.
DATA_CENTER = "DataCenter"
BOTH_DEPLOYMENTS = pytest.mark.parametrize(
    "fake_jira", [pytest.param(None, id="cloud"), pytest.param(DATA_CENTER, id="datacenter")], indirect=True
)
# What syncer's worker and beat log once they serve (syncer.worker.app, on Celery's signals).
WORKER_READY, BEAT_READY = "syncer worker ready", "syncer beat ready"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll until `predicate()` is truthy; fail the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def redis_answers(host: str, port: int) -> bool:
    try:
        return bool(redis.Redis(host=host, port=port, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


class RedisServer:
    """A private redis-server, for tests that stop and start the broker."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="syncer-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (CI installs it: see .ci/run)")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: redis_answers("127.0.0.1", self.port), 10, what="redis-server to start")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@contextlib.contextmanager
def redis_database() -> Iterator[str]:
    """The URL of an empty Redis database of the caller's own: one of 1-15 on 127.0.0.1:6379, claimed
    (so that test sessions, and fixtures within one, running side by side never share a broker
    queue), or a private redis-server when none answers there."""
    if redis_answers("127.0.0.1", 6379):
        admin = redis.Redis(host="127.0.0.1", port=6379)
        for db in range(1, 16):
            if admin.set(f"syncer-test:db:{db}", os.getpid(), nx=True, ex=3 * 3600):
                break
        else:
            raise RuntimeError("all Redis databases 1-15 are claimed by other test sessions")
        redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()
        try:
            yield f"redis://127.0.0.1:6379/{db}"
        finally:
            redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()
            admin.delete(f"syncer-test:db:{db}")
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


class SyncerProcess:
    """`python -m syncer <args>` with its output collected (and echoed on failure)."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, ready_line: str | None = None, timeout: float = 30.0) -> SyncerProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncer", *self.args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        if ready_line:
            wait_for(
                lambda: ready_line in self.output() or self.proc.poll() is not None,
                timeout,  # type: ignore[union-attr]
                what=f"{self.name} to log {ready_line!r}",
            )
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.output()[-3000:]}")
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """kill -9: no goodbye, no cleanup, like a crashed or OOM-killed worker."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None


def start_worker(name: str, env: Mapping[str, str], log_dir: Path, concurrency: int = 8) -> SyncerProcess:
    """One Celery worker in one process (`--processes 1`): its pid is the worker a test kills."""
    return SyncerProcess(
        name,
        ["worker", "--processes", "1", "--concurrency", str(concurrency), "--hostname", f"{name}@%h"],
        env,
        log_dir,
    ).start(ready_line=WORKER_READY, timeout=60)


def start_beat(env: Mapping[str, str], log_dir: Path) -> SyncerProcess:
    schedule = log_dir / "beat-schedule"
    return SyncerProcess("beat", ["beat", "--schedule", str(schedule)], env, log_dir).start(
        ready_line=BEAT_READY, timeout=60
    )


class Background(threading.Thread):
    """Run a callable in a thread and keep its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc


def environ_with(overrides: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCER_")}
    env.update(overrides)
    return env


def jira_library(fake: FakeJira) -> JIRA:
    """The real `jira` library, signed in to a fake Jira site of conftest.py as the bot, without retries."""
    if fake.deployment == "Cloud":
        return JIRA(fake.url, basic_auth=(FAKE_JIRA_EMAIL, FAKE_JIRA_TOKEN), max_retries=0, timeout=5)
    return JIRA(fake.url, token_auth=FAKE_JIRA_PAT, max_retries=0, timeout=5)


# --- what the database holds, for assertions ------------------------------------------------------


def link_of(engine: Engine, sentry_id: str) -> Link | None:
    """The issue's live link (active, pending or unlinked; not a superseded or broken one)."""
    with Session(engine) as session:
        return session.exec(select(Link).where(Link.live_sentry_issue_id == sentry_id)).first()


def links_of(engine: Engine, sentry_id: str) -> list[Link]:
    """Every link the issue has had, oldest first."""
    with Session(engine) as session:
        query = select(Link).where(Link.sentry_issue_id == sentry_id).order_by(col(Link.id))
        return list(session.exec(query).all())


def deliveries(engine: Engine, source: str | None = None) -> list[Delivery]:
    """What the inbox holds, in the order it arrived; `source` narrows it (the fakes' echoes of
    other work arrive as jira rows)."""
    with Session(engine) as session:
        query = select(Delivery).order_by(col(Delivery.id))
        if source:
            query = query.where(Delivery.source == source)
        return list(session.exec(query).all())


def audit_of(engine: Engine, sentry_id: str | None = None) -> list[AuditEntry]:
    """The audit lines of one issue, or all of them, oldest first."""
    with Session(engine) as session:
        query = select(AuditEntry).order_by(col(AuditEntry.id))
        if sentry_id is not None:
            query = query.where(AuditEntry.sentry_issue_id == sentry_id)
        return list(session.exec(query).all())


def letters(engine: Engine) -> list[DeadLetter]:
    """Every dead letter, oldest first."""
    with Session(engine) as session:
        return list(session.exec(select(DeadLetter).order_by(col(DeadLetter.id))).all())


@contextlib.contextmanager
def private_stack(
    engine: Engine, env: Mapping[str, str], sentry: Any, jira: Any, log_dir: Path, name: str,
    slack: Any = None,
) -> Iterator[tuple[SyncerProcess, redis.Redis]]:
    """A broker, web app and worker of a test module's own, for a policy or Sentry the session's
    worker does not have: `env` is that worker's environment (the session's, with the module's
    changes); `sentry` and `jira` (fakes) send their webhooks here while it runs, and `slack` (a
    fake, when given) its events. Needs redis-server (CI installs it)."""
    from syncer import metrics
    from syncer.fakes.base import FakeServer
    from syncer.settings import Settings, current_settings
    from syncer.web.app import create_app
    from syncer.worker import app as worker_app

    broker = RedisServer().start()
    overrides = {**env, "SYNCER_BROKER_URL": broker.url}
    # The web app reads only the secrets and limits, which are the session's.
    settings = Settings(**{**current_settings().model_dump(), "broker_url": broker.url})
    client = redis.Redis.from_url(broker.url)
    counters = metrics.WorkerCounters(client)
    app = create_app(settings, engine, worker_app.publisher(settings), client.ping, counters)
    web = FakeServer(app).start()
    hooks = (sentry.webhooks.url, jira.webhooks.url)
    sentry.webhooks.url, jira.webhooks.url = f"{web.url}/webhooks/sentry", f"{web.url}/webhooks/jira"
    slack_events = slack.events.url if slack is not None else None
    if slack is not None:
        slack.events.url = f"{web.url}/webhooks/slack"
    proc: SyncerProcess | None = None
    try:
        proc = start_worker(name, overrides, log_dir, concurrency=4)
        yield proc, client
    finally:
        # Only while the fakes still send here: a stack built since may have pointed them elsewhere.
        if sentry.webhooks.url == f"{web.url}/webhooks/sentry":
            sentry.webhooks.url = hooks[0]
        if jira.webhooks.url == f"{web.url}/webhooks/jira":
            jira.webhooks.url = hooks[1]
        if slack is not None and slack.events.url == f"{web.url}/webhooks/slack":
            slack.events.url = slack_events
        if proc is not None:
            proc.stop()
        web.stop()
        broker.stop()
