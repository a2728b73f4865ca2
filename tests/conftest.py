"""Session-wide real components: one Redis, one pair of fake servers, one database, one web app,
one worker process. Each test starts from empty tables and fresh fakes."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import hypothesis
import psycopg
import pytest
import redis
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncer.fakes.base import FakeServer, WebhookInbox, compact_json, hmac_sha256_hex
from syncer.store import migrate
from syncer.store.engine import make_engine, session_scope
from syncer.store.schema import (
    AccountCache,
    AuditEntry,
    CommentPair,
    DeadLetter,
    Delivery,
    DeliveryState,
    Installation,
    Link,
    ReconcileCursor,
    RoutedIssue,
    SlackMessage,
    SlackRelease,
)
from tests.harness import (
    DATA_CENTER,
    FAKE_JIRA_EMAIL,
    FAKE_JIRA_PAT,
    FAKE_JIRA_SECRET,
    FAKE_JIRA_TOKEN,
    SyncerProcess,
    environ_with,
    redis_answers,
    redis_database,
    start_worker,
    wait_for,
)

if TYPE_CHECKING:
    from syncer.fakes.jira import FakeJira
    from syncer.fakes.sentry import FakeSentry
    from syncer.fakes.slack import FakeSlack
    from syncer.runtime import Runtime

# Property-based tests: quick by default; SYNCER_HYPOTHESIS_PROFILE=thorough digs deeper (by hand, or
# nightly). No deadline: the endpoint properties make real HTTP calls on a shared 2-core machine.
hypothesis.settings.register_profile(
    "quick",
    max_examples=40,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile(os.environ.get("SYNCER_HYPOTHESIS_PROFILE", "quick"))

FIXTURES = Path(__file__).parent / "fixtures"
SENTRY_SECRET = "test-sentry-client-secret"
SENTRY_TOKEN = "test-sentry-token"
JIRA_TOKEN = "test-jira-token"
JIRA_WEBHOOK_SECRET = "test-jira-webhook-secret"
JIRA_PAT = "test-jira-pat"
DC_VERSION = "9.12.15"  # the Data Center most self-hosted sites run (its long-term-support line)
SENTRY_APP_ID = "5c1e5a00-0000-4000-8000-00000000a11e"
INSTALLATION_UUID = "1f7e2b00-0000-4000-8000-0000000005ca"
SLACK_TOKEN = "xoxb-test-slack-bot-token"
SLACK_SECRET = "test-slack-signing-secret"
ORG = "acme"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database of this test session's own on 127.0.0.1:6379 (CI starts one), or a private
    server when none answers. Sessions running side by side never share a broker queue."""
    if not redis_answers("127.0.0.1", 6379) and shutil.which("redis-server") is None:
        pytest.fail("no Redis answers on 127.0.0.1:6379 and redis-server is not installed")
    try:
        with redis_database() as url:
            yield url
    except RuntimeError as exc:  # every database claimed
        pytest.fail(str(exc))


POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of its own on the PostgreSQL at 127.0.0.1:5432, dropped afterwards; the test is
    skipped when none answers."""
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL answers at 127.0.0.1:5432 ({type(exc).__name__})")
    name = f"syncer_test_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("syncer")


@pytest.fixture(scope="session")
def database_url(workdir: Path) -> str:
    url = os.environ.get("SYNCER_TEST_DATABASE_URL") or f"sqlite:///{workdir / 'syncer.db'}"
    migrate.upgrade(make_engine(url))
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Engine:
    return make_engine(database_url)


@pytest.fixture(scope="session")
def fake_sentry() -> Iterator[FakeSentry]:
    from syncer.fakes.sentry import start_fake_sentry

    fake = start_fake_sentry(
        org=ORG,
        token=SENTRY_TOKEN,
        client_secret=SENTRY_SECRET,
        app_id=SENTRY_APP_ID,
        installation_uuid=INSTALLATION_UUID,
    )
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def fake_jira(request: pytest.FixtureRequest) -> Iterator[FakeJira]:
    """The session's Jira: a Cloud site, or a Data Center 9 site for a test marked
    `tests.harness.BOTH_DEPLOYMENTS` in its Data Center run. Everything built on it for the session
    (environment, runtime, web app, worker) is built again for the other site, and pytest runs the tests
    of one site together: the suite switches sites once and back, with one worker running at a time."""
    from syncer.fakes.jira import start_fake_jira

    if getattr(request, "param", None) == DATA_CENTER:
        fake = start_fake_jira(deployment=DATA_CENTER, pat=JIRA_PAT, version=DC_VERSION)
    else:
        fake = start_fake_jira(deployment="Cloud", webhook_secret=JIRA_WEBHOOK_SECRET, token=JIRA_TOKEN)
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def fake_slack() -> Iterator[FakeSlack]:
    """The session's Slack workspace: its events go to the web app (set by `web`)."""
    from syncer.fakes.slack import start_fake_slack

    fake = start_fake_slack(bot_token=SLACK_TOKEN, signing_secret=SLACK_SECRET)
    yield fake
    fake.stop()


# Fake Jira sites of a test module's own, for the tests of the fake itself: a Cloud site whose webhooks
# reach `jira_webhooks`, and a Data Center 9 site; each test starts them from `reset()`.


@pytest.fixture(scope="module")
def jira_webhooks() -> Iterator[WebhookInbox]:
    inbox = WebhookInbox().start()
    yield inbox
    inbox.stop()


@pytest.fixture(scope="module")
def cloud_jira_site(jira_webhooks: WebhookInbox) -> Iterator[FakeJira]:
    from syncer.fakes.jira import start_fake_jira

    fake = start_fake_jira(webhook_url=jira_webhooks.url, webhook_secret=FAKE_JIRA_SECRET,
                           email=FAKE_JIRA_EMAIL, token=FAKE_JIRA_TOKEN)
    yield fake
    fake.stop()


@pytest.fixture
def cloud_jira(cloud_jira_site: FakeJira, jira_webhooks: WebhookInbox) -> FakeJira:
    cloud_jira_site.reset()
    jira_webhooks.clear()
    return cloud_jira_site


@pytest.fixture(scope="module")
def dc_jira_site() -> Iterator[FakeJira]:
    from syncer.fakes.jira import start_fake_jira

    fake = start_fake_jira(deployment="DataCenter", pat=FAKE_JIRA_PAT)
    yield fake
    fake.stop()


@pytest.fixture
def dc_jira(dc_jira_site: FakeJira) -> FakeJira:
    dc_jira_site.reset()
    return dc_jira_site


@pytest.fixture(scope="session")
def policy_path() -> Path:
    return FIXTURES / "policies" / "service.toml"


@pytest.fixture(scope="session")
def syncer_env(
    database_url: str, redis_url: str, fake_sentry: FakeSentry, fake_jira: FakeJira, fake_slack: FakeSlack,
    policy_path: Path,
) -> dict[str, str]:
    """The environment every syncer process of the session runs with."""
    return {
        "SYNCER_CONFIG": str(policy_path),
        "SYNCER_DATABASE_URL": database_url,
        "SYNCER_BROKER_URL": redis_url,
        "SYNCER_SENTRY_URL": fake_sentry.url,
        "SYNCER_SENTRY_ORG": ORG,
        "SYNCER_SENTRY_TOKEN": SENTRY_TOKEN,
        "SYNCER_SENTRY_CLIENT_SECRET": SENTRY_SECRET,
        "SYNCER_SENTRY_APP_ID": SENTRY_APP_ID,
        "SYNCER_JIRA_URL": fake_jira.url,
        # Cloud: an e-mail and API token; Data Center: the bot's personal access token alone.
        **(
            {"SYNCER_JIRA_EMAIL": "bot@example.com", "SYNCER_JIRA_TOKEN": JIRA_TOKEN}
            if fake_jira.deployment == "Cloud"
            else {"SYNCER_JIRA_PAT": JIRA_PAT}
        ),
        "SYNCER_JIRA_WEBHOOK_SECRET": JIRA_WEBHOOK_SECRET,
        "SYNCER_JIRA_SEARCH_LAG_SECONDS": "3",
        # Tests change workflows under a running worker; a site's admin does that seldom.
        "SYNCER_JIRA_WORKFLOW_CACHE_SECONDS": "0",
        "SYNCER_SWEEP_AFTER_SECONDS": "5",
        "SYNCER_LOG_LEVEL": "INFO",
        "SYNCER_SLACK_BOT_TOKEN": SLACK_TOKEN,
        "SYNCER_SLACK_SIGNING_SECRET": SLACK_SECRET,
        "SYNCER_SLACK_URL": fake_slack.url,
        "SYNCER_SLACK_MAX_RPS": "50",
    }


@pytest.fixture(scope="session")
def process_env(syncer_env: dict[str, str]) -> dict[str, str]:
    return environ_with(syncer_env)


@pytest.fixture(scope="session")
def environment(syncer_env: dict[str, str]) -> Iterator[None]:
    """The test process reads the same settings as the worker (web app, runtime, CLI in-process)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("SYNCER_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(syncer_env)
    from syncer.settings import current_settings

    current_settings.cache_clear()
    yield
    for key in syncer_env:
        os.environ.pop(key, None)
    os.environ.update(saved)


@pytest.fixture(scope="session")
def runtime(environment: None) -> Iterator[Runtime]:
    """The test process's Runtime, from the session's environment, as an entry point builds one."""
    from syncer.runtime import Runtime
    from syncer.settings import current_settings

    rt = Runtime(current_settings())
    yield rt
    rt.engine.dispose()


@pytest.fixture(scope="session")
def web(
    environment: None, runtime: Runtime, engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira,
    fake_slack: FakeSlack,
) -> Iterator[FakeServer]:
    """The real web app on a real socket, enqueueing to the session's Redis."""
    from syncer import metrics
    from syncer.settings import current_settings
    from syncer.web.app import create_app
    from syncer.worker import app as worker

    settings = current_settings()
    worker.configure(settings)
    app = create_app(
        settings, engine, worker.enqueue, worker.broker_check, metrics.WorkerCounters(runtime.redis)
    )
    server = FakeServer(app).start()
    fake_sentry.webhooks.url = f"{server.url}/webhooks/sentry"
    fake_jira.webhooks.url = f"{server.url}/webhooks/jira"
    if fake_jira.deployment != "Cloud":
        # Data Center 9 cannot sign its webhooks: the secret rides in the URL (README, Data Center).
        fake_jira.webhooks.url += f"?token={JIRA_WEBHOOK_SECRET}"
    fake_slack.events.url = f"{server.url}/webhooks/slack"
    yield server
    server.stop()


@pytest.fixture(scope="session")
def worker_process(
    web: FakeServer, process_env: dict[str, str], workdir: Path, fake_jira: FakeJira
) -> Iterator[SyncerProcess]:
    # A log of its own per site: the ready line of the other site's worker must not count.
    proc = start_worker("worker1" if fake_jira.deployment == "Cloud" else "worker1-dc", process_env, workdir)
    yield proc
    proc.stop()


def clean_tables(engine: Engine) -> None:
    with session_scope(engine) as session:
        for model in (DeadLetter, AuditEntry, Delivery, Link, AccountCache, Installation, RoutedIssue,
                      SlackMessage, SlackRelease, CommentPair, ReconcileCursor):
            session.execute(delete(model))


def clean_redis(client: redis.Redis) -> None:
    # Only our keys: the broker's own bindings must survive between tests.
    for key in client.scan_iter("syncer:*"):
        client.delete(key)


@pytest.fixture
def clean(
    engine: Engine, redis_client: redis.Redis, fake_sentry: FakeSentry, fake_jira: FakeJira,
    fake_slack: FakeSlack,
) -> None:
    """Start from nothing: the previous test's webhooks and in-flight work must not leak into this one."""
    fake_sentry.reset()
    fake_jira.reset()
    fake_slack.reset()
    wait_for(lambda: not in_flight(engine), timeout=15, what="the previous test's deliveries to settle")
    fake_sentry.reset()
    fake_jira.reset()
    fake_slack.reset()
    clean_tables(engine)
    clean_redis(redis_client)


def in_flight(engine: Engine) -> bool:
    with Session(engine) as session:
        return (
            session.exec(select(Delivery.id).where(Delivery.state == DeliveryState.PROCESSING)).first()
            is not None
        )


@pytest.fixture
def stack(clean: None, worker_process: SyncerProcess, web: FakeServer) -> dict[str, Any]:
    """Everything running, everything empty: a test sends webhooks and watches the fakes."""
    return {"web": web, "worker": worker_process}


def sign_sentry(body: bytes, secret: str = SENTRY_SECRET) -> str:
    return hmac_sha256_hex(secret, body)


def post_sentry(
    base_url: str,
    payload: Any,
    *,
    resource: str = "issue",
    secret: str = SENTRY_SECRET,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    import time

    body = payload if isinstance(payload, bytes) else compact_json(payload)
    sent = {
        "Content-Type": "application/json",
        "Sentry-Hook-Resource": resource,
        "Sentry-Hook-Timestamp": str(int(time.time())),
        "Sentry-Hook-Signature": sign_sentry(body, secret),
        "Request-ID": os.urandom(16).hex(),
    }
    sent.update(headers or {})
    return httpx.post(f"{base_url}/webhooks/sentry", content=body, headers=sent, timeout=10)


def load_fixture(name: str) -> Any:
    import json

    return json.loads((FIXTURES / name).read_text())
