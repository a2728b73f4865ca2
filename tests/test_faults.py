"""The bad day, made to happen for real: workers killed mid-call, the broker and the database
stopped, Jira and Sentry answering 429/5xx/4xx, hanging or hanging up, and two workers sharing one
rate limit. After each: nothing lost, nothing done twice, failures visible.

These tests run on a stack of their own (a private Redis as broker and lock store, the real web app
on a socket, `syncer worker` and `syncer beat` processes) with short timeouts, leases and backoffs,
so that a recovery that takes minutes in production takes seconds here. The database and the fake
Sentry and Jira are the session's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from sqlalchemy.engine import Engine

from syncer import metrics
from syncer.errors import AmbiguousError, TransientError
from syncer.fakes.base import Call, FakeServer, Fault, compact_json
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.jira.client import JiraClient
from syncer.ratelimit import RateLimiter
from syncer.sentry.client import SentryClient
from syncer.settings import Settings
from syncer.store import deliveries, migrate
from syncer.store.engine import make_engine
from syncer.store.schema import Delivery, DeliveryState, Link, LinkState
from tests.conftest import INSTALLATION_UUID, JIRA_TOKEN, ORG, SENTRY_TOKEN, clean_redis, post_sentry
from tests.harness import (
    REPO,
    RedisServer,
    SyncerProcess,
    environ_with,
    free_port,
    letters,
    link_of,
    start_beat,
    start_worker,
    wait_for,
)
from tests.harness import deliveries as delivery_rows  # `deliveries` is the store module here

JIRA_CREATE = r"^/rest/api/2/issue/?$"
JIRA_BULK_CREATE = r"^/rest/api/2/issue/bulk$"
JIRA_SEARCH = r"^/rest/api/2/search"
SENTRY_EXTERNAL = r"/external-issues/$"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"

# Production defaults are minutes; these make every recovery path run in seconds.
SHORT: dict[str, Any] = {
    "http_connect_timeout": 1,
    "http_read_timeout": 3,  # short, yet not so short that a busy 2-core machine trips it
    "rate_limit_max_wait_seconds": 2,
    "claim_ttl_seconds": 7,
    "sweep_after_seconds": 5,
    "sweep_every_seconds": 1,
    "retry_backoff_cap_seconds": 4,
    "task_max_retries": 4,
    "jira_search_lag_seconds": 3,
}


def as_env(values: dict[str, Any]) -> dict[str, str]:
    return {f"SYNCER_{name.upper()}": str(value) for name, value in values.items()}


@dataclass
class FaultStack:
    """A broker, web app, beat and (one at a time) worker of this module's own."""

    env: dict[str, str]
    settings: Settings
    broker: RedisServer
    web: FakeServer
    beat: SyncerProcess
    workdir: Path
    worker: SyncerProcess | None = None
    started: list[SyncerProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.web.url

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.broker.url)

    def start_worker(self, name: str = "faults-worker", **overrides: Any) -> SyncerProcess:
        """A worker on this stack; `overrides` are settings (field names) for it alone."""
        self.stop_worker()
        self.worker = start_worker(name, {**self.env, **as_env(overrides)}, self.workdir, concurrency=4)
        self.started.append(self.worker)
        return self.worker

    def ensure_worker(self) -> SyncerProcess:
        if self.worker is None or self.worker.proc is None or self.worker.name != "faults-worker":
            return self.start_worker()
        return self.worker

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None


@pytest.fixture(scope="module")
def faults(
    environment: None,
    engine: Engine,
    process_env: dict[str, str],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FaultStack]:
    from syncer.settings import current_settings
    from syncer.web.app import create_app
    from syncer.worker import app as worker

    workdir = tmp_path_factory.mktemp("faults")
    broker = RedisServer().start()
    env = {**process_env, "SYNCER_BROKER_URL": broker.url, **as_env(SHORT)}
    settings = Settings(**{**current_settings().model_dump(), "broker_url": broker.url, **SHORT})
    client = redis.Redis.from_url(broker.url)
    app = create_app(
        settings, engine, worker.publisher(settings), client.ping, metrics.WorkerCounters(client)
    )
    web = FakeServer(app).start()
    beat = start_beat(env, workdir)
    hooks = (fake_sentry.webhooks.url, fake_jira.webhooks.url)
    fake_sentry.webhooks.url = f"{web.url}/webhooks/sentry"
    fake_jira.webhooks.url = f"{web.url}/webhooks/jira"
    stack = FaultStack(env, settings, broker, web, beat, workdir)
    try:
        yield stack
    finally:
        fake_sentry.webhooks.url, fake_jira.webhooks.url = hooks
        for proc in stack.started:
            proc.stop()
        beat.stop()
        web.stop()
        broker.stop()


@pytest.fixture
def fstack(clean: None, faults: FaultStack) -> FaultStack:
    """The module's stack, emptied (tables, fakes, this broker's locks, rate buckets and counters);
    the test starts the worker it needs."""
    clean_redis(faults.redis())
    return faults


@pytest.fixture
def fworker(fstack: FaultStack) -> FaultStack:
    """The module's stack with its ordinary worker running."""
    fstack.ensure_worker()
    return fstack


# ------------------------------------------------------------------ helpers


def tickets_for(fake_jira: FakeJira, sentry_id: str) -> list[dict[str, Any]]:
    return [t for t in fake_jira.issues() if f"sentry-{sentry_id}" in t["labels"]]


def enqueue_failures() -> float:
    return metrics.REGISTRY.get_sample_value("syncer_enqueue_failures_total") or 0.0


def wait_linked(engine: Engine, sentry_id: str, timeout: float = 60) -> Link:
    def linked() -> Link | None:
        link = link_of(engine, sentry_id)
        done = link is not None and link.state == LinkState.ACTIVE
        return link if done and link.remote_link_done and link.sentry_link_done else None

    return wait_for(linked, timeout, what=f"sentry issue {sentry_id} linked both ways")  # type: ignore[no-any-return]


def wait_all_finished(engine: Engine, timeout: float = 60) -> list[Delivery]:
    def finished() -> list[Delivery] | None:
        rows = delivery_rows(engine)
        return rows if rows and all(r.state not in DeliveryState.UNFINISHED for r in rows) else None

    return wait_for(finished, timeout, what="every delivery finished")  # type: ignore[no-any-return]


def the_delivery(engine: Engine, sentry_id: str) -> Delivery:
    (row,) = [d for d in delivery_rows(engine) if d.source == "sentry" and f'"id":"{sentry_id}"' in d.payload]
    return row


def finished_delivery(engine: Engine, sentry_id: str, timeout: float = 30) -> Delivery:
    """The issue's delivery once its worker has recorded the outcome: that is the task's last write,
    after the link shows both back-links, so a test that saw the link must still wait for it."""
    return wait_for(  # type: ignore[no-any-return]
        lambda: (row := the_delivery(engine, sentry_id)).state not in DeliveryState.UNFINISHED and row,
        timeout,
        what=f"the delivery for sentry issue {sentry_id} to finish",
    )


def syncer_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


def gaps(calls: list[Call]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(calls)]


# ------------------------------------------------------------------ a worker killed mid-call


@pytest.mark.slow
def test_worker_killed_during_a_jira_create_leaves_one_ticket(
    fstack: FaultStack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    # Jira takes the create, then holds its answer: the worker is waiting on it when it dies.
    worker = fstack.start_worker(
        "doomed-worker", http_read_timeout=8, claim_ttl_seconds=12, task_max_retries=20
    )
    fake_jira.faults.append(Fault("POST", JIRA_CREATE, status=201, after=True, delay=30))
    issue = fake_sentry.file_issue(project="billing-api", title="created while the worker dies")
    wait_for(lambda: tickets_for(fake_jira, issue["id"]), 30, what="the create to reach Jira")
    worker.kill()
    link = link_of(engine, issue["id"])
    assert link is not None and link.state == LinkState.PENDING and link.create_attempted_at is not None
    assert the_delivery(engine, issue["id"]).state == DeliveryState.PROCESSING

    fstack.start_worker("reborn-worker", http_read_timeout=8, claim_ttl_seconds=12, task_max_retries=20)
    wait_linked(engine, issue["id"], timeout=90)  # the sweeper re-enqueues; the dead claim expires
    assert len(tickets_for(fake_jira, issue["id"])) == 1
    assert fake_jira.calls.count("POST", JIRA_CREATE) == 1
    delivery = finished_delivery(engine, issue["id"])
    assert delivery.state == DeliveryState.DONE and delivery.attempts >= 2
    fstack.stop_worker()


@pytest.mark.slow
@pytest.mark.parametrize("workflow", ["simple", "strict"])
def test_worker_killed_during_a_jira_transition_transitions_once(
    fstack: FaultStack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, workflow: str
) -> None:
    """In the strict workflow the worker dies between the walk's steps (To Do -> In Progress made, its
    answer held back): the next worker goes on from In Progress, and no step is taken twice."""
    if workflow == "strict":
        fake_jira.set_workflow("PAY", "strict")
    fstack.start_worker("doomed-worker", http_read_timeout=8, claim_ttl_seconds=12, link_lock_seconds=12,
                        task_max_retries=30)
    issue = fake_sentry.file_issue(project="billing-api", title="resolved while the worker dies")
    link = wait_linked(engine, issue["id"])
    key = link.jira_key
    assert key is not None
    wait_all_finished(engine)
    transitions = rf"^/rest/api/2/issue/{key}/transitions$"
    fake_jira.faults.append(Fault("POST", transitions, status=204, after=True, delay=30))
    fake_sentry.person_resolve(issue["id"])
    first = "In Progress" if workflow == "strict" else "Done"
    wait_for(lambda: fake_jira.issue(key)["status"] == first, 30, what="the transition to reach Jira")
    assert fstack.worker is not None
    fstack.worker.kill()

    fstack.start_worker("reborn-worker", http_read_timeout=8, claim_ttl_seconds=12, link_lock_seconds=12,
                        task_max_retries=30)
    # The dead worker's lock on the link must lapse first (`link_lock_seconds`).
    rows = wait_all_finished(engine, timeout=150)
    assert all(r.state in (DeliveryState.DONE, DeliveryState.IGNORED) for r in rows), [
        (r.id, r.state, r.last_error) for r in rows
    ]
    assert fake_jira.calls.count("POST", transitions) == (2 if workflow == "strict" else 1)
    assert fake_jira.issue(key)["status"] == "Done"
    assert fake_sentry.issue(issue["id"])["status"] == "resolved"
    fstack.stop_worker()


# ------------------------------------------------------------------ the broker down


@pytest.mark.slow
def test_deliveries_accepted_while_the_broker_is_down_are_all_processed(
    clean: None,
    environment: None,
    engine: Engine,
    process_env: dict[str, str],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    tmp_path: Path,
) -> None:
    """Redis stopped while a burst of webhooks arrives: every 202 is kept and processed once it returns."""
    from syncer.settings import current_settings
    from syncer.web.app import create_app
    from syncer.worker import app as worker

    broker = RedisServer().start()
    env = {**process_env, "SYNCER_BROKER_URL": broker.url, **as_env(SHORT)}
    settings = Settings(**{**current_settings().model_dump(), "broker_url": broker.url, **SHORT})
    own_worker = start_worker("broker-down-worker", env, tmp_path, concurrency=4)
    beat = start_beat(env, tmp_path)
    web = FakeServer(create_app(settings, engine, worker.publisher(settings), lambda: None)).start()
    fake_sentry.webhooks.enabled = False
    try:
        issues = [
            fake_sentry.file_issue(project="billing-api", title=f"while Redis is down {n}") for n in range(6)
        ]
        broker.stop()
        refused = enqueue_failures()
        answers = [
            post_sentry(
                web.url,
                {
                    "action": "created",
                    "installation": {"uuid": INSTALLATION_UUID},
                    "actor": {"type": "application", "id": "sentry"},
                    "data": {"issue": fake_sentry.issue(i["id"])},
                },
            )
            for i in issues
        ]
        assert [a.status_code for a in answers] == [202] * len(issues)
        # Each delivery's hand-off to the broker failed: nothing can move while it is away.
        wait_for(lambda: enqueue_failures() >= refused + len(issues), 30, what="every publish to fail")
        assert {d.state for d in delivery_rows(engine)} == {DeliveryState.RECEIVED}
        broker.start()
        rows = [r for r in wait_all_finished(engine, timeout=120) if r.source == "sentry"]
        assert len(rows) == len(issues) and {r.state for r in rows} == {DeliveryState.DONE}
        for issue in issues:
            assert len(tickets_for(fake_jira, issue["id"])) == 1
        # Made alone or, released together, some filed in one bulk create: never a create too many.
        creates = fake_jira.calls.count("POST", JIRA_CREATE) + fake_jira.calls.count("POST", JIRA_BULK_CREATE)
        assert 1 <= creates <= len(issues)
    finally:
        web.stop()
        beat.stop()
        own_worker.stop()
        broker.stop()


# ------------------------------------------------------------------ the database down


class TcpProxy:
    """A TCP forwarder that can be cut: `stop()` refuses new connections and severs open ones, like
    a database host that went away; `start()` brings it back on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, []
        if listener is not None:
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def postgres_db() -> Iterator[str]:
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL answers at 127.0.0.1:5432 ({type(exc).__name__})")
    name = f"syncer_faults_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_database_down_intake_answers_503_and_workers_back_off_then_resume(
    clean: None,
    environment: None,
    postgres_db: str,
    process_env: dict[str, str],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    tmp_path: Path,
) -> None:
    from syncer.settings import current_settings
    from syncer.web.app import create_app
    from syncer.worker import app as worker

    direct = make_engine(f"postgresql://postgres@127.0.0.1:5432/{postgres_db}")
    migrate.upgrade(direct)
    proxy = TcpProxy(("127.0.0.1", 5432)).start()
    via_proxy = f"postgresql://postgres@127.0.0.1:{proxy.port}/{postgres_db}"
    broker = RedisServer().start()
    values = {**SHORT, "database_url": via_proxy, "broker_url": broker.url}
    env = {**process_env, **as_env(values)}
    settings = Settings(**{**current_settings().model_dump(), **values})
    own_worker = start_worker("db-down-worker", env, tmp_path, concurrency=4)
    beat = start_beat(env, tmp_path)  # through the proxy too: it sweeps once the database is back
    publish = worker.publisher(settings)
    web_engine = make_engine(via_proxy)
    web = FakeServer(create_app(settings, web_engine, publish, lambda: None)).start()
    fake_sentry.webhooks.enabled = False

    def body(issue_id: str) -> dict[str, Any]:
        return {
            "action": "created",
            "installation": {"uuid": INSTALLATION_UUID},
            "actor": {"type": "application", "id": "sentry"},
            "data": {"issue": fake_sentry.issue(issue_id)},
        }

    try:
        first = fake_sentry.file_issue(project="billing-api", title="before the outage")
        assert post_sentry(web.url, body(first["id"])).status_code == 202
        wait_linked(direct, first["id"], timeout=60)

        proxy.stop()
        during = fake_sentry.file_issue(project="billing-api", title="during the outage")
        assert post_sentry(web.url, body(during["id"])).status_code == 503  # the sender retries later
        ready = httpx.get(f"{web.url}/readyz", timeout=30)
        assert ready.status_code == 503 and "database" in ready.json()["failed"]

        # Deliveries stored just before the outage, whose tasks run during it.
        stranded = [fake_sentry.file_issue(project="billing-api", title=f"stranded {n}") for n in range(3)]
        ids = []
        for issue in stranded:
            stored = deliveries.store(
                direct,
                source="sentry",
                key=f"stranded-{issue['id']}",
                resource="issue",
                action="created",
                payload=compact_json(body(issue["id"])),
            )
            ids.append(stored.delivery_id)
            publish(stored.delivery_id)
        wait_for(
            lambda: own_worker.output().count("database unavailable") >= 3,
            30,
            what="the worker to meet the outage and back off",
        )
        assert own_worker.proc is not None and own_worker.proc.poll() is None  # alive, just waiting
        assert not any(tickets_for(fake_jira, i["id"]) for i in stranded)

        proxy.start()
        for issue in stranded:
            wait_for(
                lambda issue=issue: tickets_for(fake_jira, issue["id"]),
                60,
                what="the stranded deliveries to be processed once the database is back",
            )
        assert post_sentry(web.url, body(during["id"])).status_code == 202  # Sentry's retry lands
        wait_for(lambda: tickets_for(fake_jira, during["id"]), 30, what="the retried delivery")
        rows = wait_all_finished(direct, timeout=60)
        assert len(rows) == 5 and {r.state for r in rows} == {DeliveryState.DONE}, [
            (r.id, r.state, r.last_error) for r in rows
        ]
        for issue in (first, during, *stranded):
            assert len(tickets_for(fake_jira, issue["id"])) == 1
    finally:
        web.stop()
        beat.stop()
        own_worker.stop()
        proxy.stop()
        broker.stop()
        web_engine.dispose()
        direct.dispose()


# ------------------------------------------------------------------ Jira and Sentry failing, transiently


def _iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("make_fault", "creates"),
    [
        (lambda: Fault("POST", JIRA_CREATE, status=503, headers={"Retry-After": "1"}), 2),
        (lambda: Fault("POST", JIRA_CREATE, status=500), 2),
        (lambda: Fault("POST", JIRA_CREATE, drop=True), 2),
        (lambda: Fault("POST", JIRA_CREATE, status=201, after=True, drop=True), 1),
        (lambda: Fault("POST", JIRA_CREATE, status=201, after=True, delay=10), 1),
        (lambda: Fault("POST", JIRA_CREATE, status=429, headers={"X-RateLimit-Reset": _iso_in(3)}), 2),
        (lambda: Fault("POST", JIRA_SEARCH, status=502, times=2), 1),
        (lambda: Fault("POST", JIRA_SEARCH, delay=30), 1),
    ],
    ids=[
        "503",
        "500-before",
        "dropped",
        "dropped-after-create",
        "timeout-after-create",
        "429-ratelimit-reset",
        "search-502-twice",
        "search-hangs",
    ],
)
def test_transient_jira_failures_are_retried_into_exactly_one_ticket(
    fworker: FaultStack,
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    engine: Engine,
    make_fault: Any,
    creates: int,
) -> None:
    fault = make_fault()
    fake_jira.faults.append(fault)
    issue = fake_sentry.file_issue(project="billing-api", title=f"Jira fails: {fault.status} {fault.path}")
    wait_linked(engine, issue["id"])
    assert len(tickets_for(fake_jira, issue["id"])) == 1
    calls = fake_jira.calls.calls("POST", JIRA_CREATE)
    assert len(calls) == creates
    delivery = finished_delivery(engine, issue["id"])
    assert delivery.state == DeliveryState.DONE and delivery.attempts >= 2
    if creates == 2:  # the second try came after a backoff, and not before the server's time
        assert gaps(calls)[0] >= (2.0 if fault.status == 429 else 0.9)


def test_a_failed_search_after_an_ambiguous_create_does_not_forget_that_create(
    fstack: FaultStack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    """Create answered 500 after it worked; the next try's search fails; Jira's search still lags
    when the try after that looks. The create attempt must be remembered through the failed search,
    or that try creates a second ticket."""
    fstack.start_worker("lagging-worker", jira_search_lag_seconds=10, task_max_retries=10)
    fake_jira.search_lag = 6.0
    fake_jira.faults.append(Fault("POST", JIRA_CREATE, status=500, after=True))
    issue = fake_sentry.file_issue(project="billing-api", title="created, then the search fails")
    wait_for(lambda: fake_jira.calls.count("POST", JIRA_CREATE) == 1, 30, what="the ambiguous create")
    fake_jira.faults.append(Fault("POST", JIRA_SEARCH, status=502))
    wait_linked(engine, issue["id"], timeout=60)
    assert fake_jira.calls.count("POST", JIRA_CREATE) == 1
    assert len(tickets_for(fake_jira, issue["id"])) == 1
    fstack.stop_worker()


def test_sentry_rate_limit_reset_is_waited_for(
    fworker: FaultStack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    reset = str(int(time.time()) + 4)
    fake_sentry.faults.append(
        Fault("POST", SENTRY_EXTERNAL, status=429, headers={"X-Sentry-Rate-Limit-Reset": reset})
    )
    issue = fake_sentry.file_issue(project="billing-api", title="Sentry says slow down")
    wait_linked(engine, issue["id"])
    posts = fake_sentry.calls.calls("POST", SENTRY_EXTERNAL)
    assert len(posts) == 2 and posts[1].at >= int(reset) - 0.5
    assert len(fake_sentry.external_issues(issue["id"])) == 1
    # The Jira side was done and recorded before the Sentry side failed: the retry did not repeat it.
    assert len(fake_jira.calls.calls("POST", r"/remotelink$")) == 1
    assert len(tickets_for(fake_jira, issue["id"])) == 1


@pytest.mark.parametrize(
    "make_fault",
    [
        lambda: Fault("GET", r"/issues/\d+/$", status=503),
        lambda: Fault("GET", r"/issues/\d+/$", status=500, times=2),
        lambda: Fault("GET", r"/issues/\d+/$", drop=True),
        lambda: Fault("GET", r"/issues/\d+/$", delay=60),
        lambda: Fault("POST", SENTRY_EXTERNAL, status=201, after=True, drop=True),
    ],
    ids=["503", "500-twice", "dropped", "hangs", "external-issue-dropped-after"],
)
def test_transient_sentry_failures_are_retried(
    fworker: FaultStack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, make_fault: Any
) -> None:
    # An alert rule fires: the worker must read the issue from Sentry before it can file it.
    fake_sentry.webhooks.enabled = False
    issue = fake_sentry.file_issue(project="billing-api", title="alerted while Sentry struggles")
    fake_sentry.webhooks.enabled = True
    fake_sentry.faults.append(make_fault())
    fake_sentry.trigger_alert(issue["id"])
    wait_linked(engine, issue["id"])
    assert len(tickets_for(fake_jira, issue["id"])) == 1
    assert len(fake_sentry.external_issues(issue["id"])) == 1
    (delivery,) = [d for d in wait_all_finished(engine) if d.resource == "event_alert"]
    # A retry that only had the backlinks left to do reports "already linked": ignored, not done.
    assert delivery.state in (DeliveryState.DONE, DeliveryState.IGNORED) and delivery.attempts >= 2


# ------------------------------------------------------------------ permanent failures: dead letters


@pytest.mark.parametrize(
    ("service", "fault"),
    [
        (
            "jira",
            Fault(
                "POST",
                JIRA_CREATE,
                status=400,
                body={"errorMessages": [], "errors": {"summary": "Summary is required."}},
            ),
        ),
        ("jira", Fault("POST", JIRA_CREATE, status=401)),
        (
            "jira",
            Fault(
                "POST",
                JIRA_CREATE,
                status=403,
                body={"errorMessages": ["You do not have permission to create issues in this project."]},
            ),
        ),
        (
            "jira",
            Fault(
                "POST",
                JIRA_CREATE,
                status=404,
                body={"errorMessages": ["Project 'PAY' does not exist."], "errors": {}},
            ),
        ),
        (
            "sentry",
            Fault("POST", SENTRY_EXTERNAL, status=403, body={"detail": "You do not have permission."}),
        ),
        ("sentry", Fault("POST", SENTRY_EXTERNAL, status=404, body={"detail": "Installation not found."})),
    ],
    ids=["jira-400-validation", "jira-401", "jira-403", "jira-404", "sentry-403", "sentry-404"],
)
def test_permanent_failures_become_dead_letters_that_retry_or_drop(
    fworker: FaultStack,
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    engine: Engine,
    service: str,
    fault: Fault,
) -> None:
    fault = dataclasses.replace(fault, times=1)
    (fake_jira if service == "jira" else fake_sentry).faults.append(fault)
    issue = fake_sentry.file_issue(project="billing-api", title=f"refused by {service} with {fault.status}")
    (letter,) = wait_for(lambda: letters(engine), 30, what="a dead letter")
    assert str(fault.status) in letter.error and issue["id"] in letter.payload
    assert the_delivery(engine, issue["id"]).attempts == 1  # permanent: not retried
    assert link_of(engine, issue["id"]) is None or service == "sentry"  # no claim left pending
    listed = syncer_cli(fworker.env, "dead-letters", "list")
    assert (
        listed.returncode == 0 and f"{letter.id:>6}" in listed.stdout and str(fault.status) in listed.stdout
    )
    scraped = httpx.get(f"{fworker.url}/metrics", timeout=10).text
    assert 'syncer_dead_letters{state="open"} 1' in scraped
    assert 'syncer_dead_letters_total{reason="permanent",source="sentry"} 1' in scraped

    retried = syncer_cli(fworker.env, "dead-letters", "retry", str(letter.id))
    assert retried.returncode == 0, retried.stderr
    wait_linked(engine, issue["id"], timeout=30)  # the fault is gone: this time it goes through
    assert len(tickets_for(fake_jira, issue["id"])) == 1
    assert syncer_cli(fworker.env, "dead-letters", "list").stdout.strip().endswith("0 open dead letter(s)")


def test_a_dead_letter_can_be_dropped_and_retries_run_out_into_one(
    fworker: FaultStack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    # Jira refuses with 429 for good: the retries run out (SYNCER_TASK_MAX_RETRIES=4), a person decides.
    fake_jira.faults.append(Fault("POST", JIRA_CREATE, status=429, times=None))
    issue = fake_sentry.file_issue(project="billing-api", title="Jira is down for the day")
    (letter,) = wait_for(lambda: letters(engine), 60, what="the retries to run out")
    assert "gave up after 5 attempts" in letter.error and "429" in letter.error
    assert fake_jira.calls.count("POST", JIRA_CREATE) == 5
    scraped = httpx.get(f"{fworker.url}/metrics", timeout=10).text
    assert 'syncer_delivery_retries_total{source="sentry"} 4' in scraped
    assert 'syncer_dead_letters_total{reason="retries_exhausted",source="sentry"} 1' in scraped
    dropped = syncer_cli(fworker.env, "dead-letters", "drop", str(letter.id))
    assert dropped.returncode == 0, dropped.stderr
    assert "0 open dead letter(s)" in syncer_cli(fworker.env, "dead-letters", "list").stdout
    assert tickets_for(fake_jira, issue["id"]) == []
    assert link_of(engine, issue["id"]) is not None  # the claim, released: a later event starts afresh


# ------------------------------------------------------------------ slow and hung APIs


@pytest.mark.parametrize("service", ["jira", "sentry"])
def test_every_call_has_a_read_timeout(
    clean: None, environment: None, fake_sentry: FakeSentry, fake_jira: FakeJira, service: str
) -> None:
    """A hung API costs one read timeout, not a worker: clients built from the settings, as workers
    build them, give up on an answer that never comes."""
    from syncer.runtime import Runtime
    from syncer.settings import current_settings

    settings = Settings(
        **{
            **current_settings().model_dump(),
            "http_read_timeout": 0.5,
            "http_connect_timeout": 0.5,
            "rate_limit_max_wait_seconds": 1,
            "claim_ttl_seconds": 5,
        }
    )
    rt = Runtime(settings)
    issue = fake_sentry.file_issue(project="billing-api", title="asked of a hung API")
    key = fake_jira.person_create("OPS", "asked of a hung API")
    rt.jira.deployment  # noqa: B018 - connected (serverInfo read) before Jira starts hanging
    fake = fake_jira if service == "jira" else fake_sentry
    fake.faults.append(Fault("*", r".", delay=60, times=None))
    reads = (
        [lambda: rt.jira.get_ticket(key), lambda: rt.jira.find_by_label("x")]
        if service == "jira"
        else [lambda: rt.sentry.get_issue(issue["id"]), lambda: rt.sentry.issue_tags(issue["id"])]
    )
    writes = (
        [lambda: rt.jira.add_comment(key, "x")]
        if service == "jira"
        else [lambda: rt.sentry.add_note(issue["id"], "x")]
    )
    try:
        for call in reads + writes:
            with pytest.raises(TransientError) as raised:
                call()
            if call in writes:  # sent, then no answer: it may have happened
                assert isinstance(raised.value, AmbiguousError)
    finally:
        fake.faults.clear()


# ------------------------------------------------------------------ rate limits shared across workers


def windows(calls: list[Call], width: float = 1.0) -> int:
    """The most calls that arrived within any `width` seconds."""
    times = sorted(c.at for c in calls)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] > width:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.mark.slow
def test_two_workers_share_one_request_rate_per_api(
    fstack: FaultStack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    rate = 6
    limits = {
        "jira_max_rps": rate,
        "sentry_max_rps": rate,
        "rate_limit_max_wait_seconds": 3,
        "claim_ttl_seconds": 10,
    }
    first = fstack.start_worker("limited-1", **limits)
    second = start_worker("limited-2", {**fstack.env, **as_env(limits)}, fstack.workdir, concurrency=8)
    fstack.started.append(second)
    try:
        fake_sentry.webhooks.enabled = False
        issues = [fake_sentry.file_issue(project="billing-api", title=f"burst {n}") for n in range(12)]
        fake_sentry.webhooks.enabled = True
        fake_jira.calls.reset()
        fake_sentry.calls.reset()
        for issue in issues:  # all at once: far more demand than 6 calls a second
            fake_sentry.trigger_alert(issue["id"])
        for issue in issues:
            wait_linked(engine, issue["id"], timeout=120)
        jira_calls, sentry_calls = fake_jira.calls.calls(), fake_sentry.calls.calls()
        assert len(jira_calls) >= 3 * rate and len(sentry_calls) >= 2 * rate  # enough to overrun
        # GCRA spaces calls 1/rate apart: at most rate + 1 land in any one second (one more for
        # arrival jitter on a busy machine).
        assert windows(jira_calls) <= rate + 2, windows(jira_calls)
        assert windows(sentry_calls) <= rate + 2, windows(sentry_calls)
        assert all(len(tickets_for(fake_jira, i["id"])) == 1 for i in issues)
        # Both did work (syncer's own line per finished delivery: "delivery 12 done: created ...").
        assert " done: " in first.output() and " done: " in second.output()
    finally:
        second.stop()
        fstack.stop_worker()


def limiter(fstack: FaultStack, **kwargs: Any) -> RateLimiter:
    options = {"service": "jira", "base_url": "http://127.0.0.1", "max_rps": 0.0, "max_wait": 5.0, **kwargs}
    return RateLimiter(fstack.redis(), **options)


def jira_client(fake_jira: FakeJira, throttle: RateLimiter | None) -> JiraClient:
    return JiraClient(
        fake_jira.url, email="bot@example.com", token=JIRA_TOKEN, timeout=(2, 5), throttle=throttle
    )


def test_writes_to_one_ticket_are_spaced_across_clients(fstack: FaultStack, fake_jira: FakeJira) -> None:
    key = fake_jira.person_create("OPS", "commented on by two workers at once")
    other = fake_jira.person_create("OPS", "a ticket of its own")
    clients = [jira_client(fake_jira, limiter(fstack, issue_write_interval=0.3)) for _ in range(2)]
    for client in clients:
        client.deployment  # noqa: B018 - connect first, so that only the comments race

    def comment(client: JiraClient, target: str) -> None:
        for n in range(4):
            client.add_comment(target, f"comment {n}")

    threads = [threading.Thread(target=comment, args=(c, key)) for c in clients]
    threads.append(threading.Thread(target=comment, args=(clients[0], other)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    on_key = fake_jira.calls.calls("POST", rf"/issue/{key}/comment$")
    assert len(on_key) == 8
    assert min(gaps(on_key)) >= 0.25, gaps(on_key)  # 0.3 s apart, less a little arrival jitter
    assert len(fake_jira.comments(key)) == 8 and len(fake_jira.comments(other)) == 4


def test_a_429_holds_back_every_client_of_that_api(fstack: FaultStack, fake_sentry: FakeSentry) -> None:
    issue = fake_sentry.file_issue(project="billing-api", title="read by two workers")
    one, two = (
        SentryClient(
            fake_sentry.url,
            ORG,
            SENTRY_TOKEN,
            throttle=limiter(fstack, service="sentry", base_url=fake_sentry.url, max_rps=100),
        )
        for _ in range(2)
    )
    fake_sentry.faults.append(
        Fault(
            "GET",
            r"/issues/\d+/$",
            status=429,
            headers={"X-Sentry-Rate-Limit-Reset": str(int(time.time()) + 2)},
        )
    )
    with pytest.raises(TransientError) as raised:
        one.get_issue(issue["id"])
    assert raised.value.retry_after is not None and raised.value.retry_after > 0
    refused_at = time.time()
    two.get_issue(issue["id"])  # waits for the reset instead of earning a 429 of its own
    calls = fake_sentry.calls.calls("GET", r"/issues/\d+/$")
    assert len(calls) == 2 and calls[1].at >= refused_at + 0.5


def test_a_wait_beyond_the_limit_is_a_retry_not_a_stalled_thread(fstack: FaultStack) -> None:
    slow = limiter(fstack, max_rps=0.2, max_wait=1.0)  # one call every five seconds
    slow.before("GET", "http://127.0.0.1/rest/api/2/search/jql")
    with pytest.raises(TransientError) as raised:
        slow.before("GET", "http://127.0.0.1/rest/api/2/search/jql")
    assert raised.value.retry_after is not None and 3.0 < raised.value.retry_after <= 5.0


def test_without_redis_the_limiter_steps_aside(fake_jira: FakeJira) -> None:
    gone = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    throttle = RateLimiter(gone, service="jira", base_url=fake_jira.url, max_rps=1.0, max_wait=1.0)
    client = jira_client(fake_jira, throttle)
    for _ in range(3):  # well over one a second, and none refused
        assert client.find_by_label("nothing-has-this") == []


# ------------------------------------------------------------------ the load script


@pytest.mark.slow
def test_the_load_script_loses_nothing_and_duplicates_nothing() -> None:
    """`python -m bench.load --smoke`: real web, worker and beat processes under a steady stream of
    signed webhooks; it exits 1 when a delivery was lost or a ticket duplicated."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.load", "--smoke"],
        env=environ_with({}),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lost 0  duplicated tickets 0  missing tickets 0" in done.stdout, done.stdout
