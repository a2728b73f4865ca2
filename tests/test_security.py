"""Security promises, each tested the way it could break:

- signatures are compared in constant time (a source check: timing tests are too noisy to be proof);
- secrets never reach logs, errors, metrics, stored rows or CLI output, even when the APIs fail and
  echo our own token back (real processes, known secrets, every byte they print searched);
- outbound calls go to the configured Sentry and Jira only: URLs in payloads and redirects in
  answers lead nowhere (a receiver on another port must see nothing);
- values placed into JQL are quoted and escaped.
"""

from __future__ import annotations

import ast
import base64
import json
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncer.fakes.base import Fault, WebhookInbox, compact_json, hmac_sha256_hex
from syncer.fakes.jira import FakeJira, start_fake_jira
from syncer.fakes.sentry import FakeSentry, start_fake_sentry
from syncer.fakes.slack import start_fake_slack
from syncer.jira.client import JiraClient
from syncer.sentry import webhooks as sentry_webhooks
from syncer.sentry.client import SentryClient
from syncer.store import migrate
from syncer.store.engine import make_engine
from syncer.store.schema import DeadLetter, Delivery, DeliveryState, Link, LinkState
from tests.conftest import INSTALLATION_UUID, JIRA_TOKEN, JIRA_WEBHOOK_SECRET, ORG, SENTRY_TOKEN, post_sentry
from tests.harness import BEAT_READY, REPO, SyncerProcess, environ_with, free_port, start_worker, wait_for

PACKAGE = REPO / "syncer"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


# ------------------------------------------------------------------ constant-time comparisons


def _secretish(node: ast.expr) -> bool:
    names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
    names += [n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)]
    # Not "token": claim tokens and page tokens are nonces of our own or Jira's, not credentials (the
    # one credential compared, the ?token= of unsigned Jira webhooks, is checked by name below).
    return any(word in name.lower() for name in names for word in ("secret", "signature", "digest", "hmac"))


def test_secrets_are_compared_only_in_constant_time() -> None:
    """No `==`/`!=` between anything named like a secret, signature or digest anywhere in the
    package, and every verifier goes through hmac.compare_digest."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "fakes" in path.parts:
            continue  # the fake servers play the other side; their timing protects nothing
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
                sides = [node.left, *node.comparators]
                constants = [s for s in sides if isinstance(s, ast.Constant)]
                if any(_secretish(s) for s in sides) and not constants:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == [], offenders
    import inspect

    from syncer.jira import webhooks as jira_webhooks

    for verifier in (
        sentry_webhooks.verify_signature,
        jira_webhooks.verify_signature,
        jira_webhooks.verify_token,
    ):
        assert "hmac.compare_digest(" in inspect.getsource(verifier), verifier.__name__


# ------------------------------------------------------------------ secrets never printed


class PasswordRedis:
    """A private redis-server that demands a password (the broker URL then carries a secret)."""

    def __init__(self, password: str, workdir: Path) -> None:
        self.port = free_port()
        self.password = password
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
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
                str(workdir),
                "--requirepass",
                password,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self._answers(), 10, what="redis-server with a password")

    def _answers(self) -> bool:
        import redis

        try:
            return bool(
                redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.5).ping()
            )
        except redis.RedisError:
            return False

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def database_with_password(tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """A PostgreSQL database reached with a password in its URL when PostgreSQL answers (the local
    server may ignore the password: what matters is that syncer holds and could print it); else a
    fresh SQLite file. Yields (url, password or None)."""
    password = "pg-pass-" + secrets.token_hex(6)
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError:
        yield f"sqlite:///{tmp_path / 'secrets.db'}", None
        return
    name = f"syncer_secrets_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres:{password}@127.0.0.1:5432/{name}", password
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.slow
def test_no_secret_is_ever_printed_or_stored(
    tmp_path: Path, policy_path: Path, database_with_password: tuple[str, str | None]
) -> None:
    """Every process and command runs with known secrets at DEBUG while things go wrong (401s, an API
    that echoes our token back, forged webhooks, dead letters, retries); then everything they wrote
    (logs, CLI output, /metrics, every text column of the database) is searched for the secrets."""
    known = {
        "sentry token": "sentry-tok-" + secrets.token_hex(8),
        "sentry client secret": "sentry-cs-" + secrets.token_hex(8),
        "jira token": "jira-tok-" + secrets.token_hex(8),
        "jira webhook secret": "jira-whs-" + secrets.token_hex(8),
        "redis password": "redis-pw-" + secrets.token_hex(8),
        "slack bot token": "xoxb-" + secrets.token_hex(8),
        "slack signing secret": "slack-ss-" + secrets.token_hex(8),
    }
    database_url, pg_password = database_with_password
    if pg_password:
        known["database password"] = pg_password
    email = "bot@example.com"
    known["jira basic auth"] = base64.b64encode(f"{email}:{known['jira token']}".encode()).decode()
    broker = PasswordRedis(known["redis password"], tmp_path)
    sentry = start_fake_sentry(
        org=ORG,
        token=known["sentry token"],
        client_secret=known["sentry client secret"],
        installation_uuid=INSTALLATION_UUID,
    )
    jira = start_fake_jira(
        token=known["jira token"], webhook_secret=known["jira webhook secret"], email=email
    )
    jira.add_user("acc-driver", "Dee Driver", "driver@example.com")
    slack = start_fake_slack(bot_token=known["slack bot token"], signing_secret=known["slack signing secret"])
    migrate.upgrade(make_engine(database_url))
    port = free_port()
    env = environ_with(
        {
            "SYNCER_CONFIG": str(policy_path),
            "SYNCER_DATABASE_URL": database_url,
            "SYNCER_BROKER_URL": broker.url,
            "SYNCER_SENTRY_URL": sentry.url,
            "SYNCER_SENTRY_ORG": ORG,
            "SYNCER_SENTRY_TOKEN": known["sentry token"],
            "SYNCER_SENTRY_CLIENT_SECRET": known["sentry client secret"],
            "SYNCER_JIRA_URL": jira.url,
            "SYNCER_JIRA_EMAIL": email,
            "SYNCER_JIRA_TOKEN": known["jira token"],
            "SYNCER_JIRA_WEBHOOK_SECRET": known["jira webhook secret"],
            "SYNCER_LOG_LEVEL": "DEBUG",
            "SYNCER_TASK_MAX_RETRIES": "1",
            "SYNCER_RETRY_BACKOFF_CAP_SECONDS": "2",
            "SYNCER_SWEEP_EVERY_SECONDS": "2",
            "SYNCER_JIRA_SEARCH_LAG_SECONDS": "1",
            "SYNCER_SLACK_BOT_TOKEN": known["slack bot token"],
            "SYNCER_SLACK_SIGNING_SECRET": known["slack signing secret"],
            "SYNCER_SLACK_URL": slack.url,
        }
    )
    web = SyncerProcess("web", ["web", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path)
    web.start()
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(f"{base}/healthz"), 60, what="syncer web")
    worker = start_worker("secret-worker", env, tmp_path, concurrency=4)
    beat = SyncerProcess(
        "beat", ["beat", "--schedule", str(tmp_path / "beat-schedule")], env, tmp_path
    ).start(ready_line=BEAT_READY, timeout=60)
    sentry.webhooks.url = f"{base}/webhooks/sentry"
    jira.webhooks.url = f"{base}/webhooks/jira"
    slack.events.url = f"{base}/webhooks/slack"
    outputs: dict[str, str] = {}
    try:
        engine = make_engine(database_url)
        # 1. The happy path, so that every call a sync makes is made once.
        ok = sentry.file_issue(project="billing-api", title="all is well")
        wait_for(lambda: _linked(engine, ok["id"]), 60, what="an ordinary ticket")
        # ... and an issue its team's Slack channel hears of, and a reaction on its message.
        sentry.file_issue(project="checkout-lab-api", title="posted to Slack")
        posted = wait_for(lambda: slack.messages("#payments-alerts"), 60, what="a Slack message")
        slack.person_react("alice", "#payments-alerts", posted[0]["ts"], "eyes")
        wait_for(lambda: "<@" in json.dumps(slack.messages("#payments-alerts")[0]["blocks"]), 60,
                 what="the acknowledgement on the message")

        # 2. Both APIs refuse our credentials; 3. both echo our token back in their error bodies;
        # 4. Jira stays down until the retries run out. One at a time, each ending in a dead letter.
        def dead_letter_after(
            fault_on: FakeJira | FakeSentry, fault: Fault, title: str, alert: bool = False
        ) -> str:
            before = len(_letters(engine))
            fault_on.faults.append(fault)
            sentry.webhooks.enabled = not alert
            filed = sentry.file_issue(project="billing-api", title=title)
            sentry.webhooks.enabled = True
            if alert:
                sentry.trigger_alert(filed["id"])
            wait_for(lambda: len(_letters(engine)) > before, 60, what=f"a dead letter for {title!r}")
            fault_on.faults.clear()
            return str(filed["id"])

        refused = dead_letter_after(
            jira, Fault("POST", r"^/rest/api/2/issue/?$", status=401), "Jira says 401"
        )
        dead_letter_after(
            sentry,
            Fault("GET", r"/issues/\d+/$", status=401, body={"detail": "Invalid token"}),
            "Sentry says 401",
            alert=True,
        )
        dead_letter_after(
            jira,
            Fault(
                "POST",
                r"^/rest/api/2/issue/?$",
                status=400,
                body={
                    "errorMessages": [f"token {known['jira token']} is not valid here"],
                    "errors": {"auth": f"Basic {known['jira basic auth']}"},
                },
            ),
            "Jira echoes the token",
        )
        dead_letter_after(
            sentry,
            Fault(
                "POST",
                r"/external-issues/$",
                status=400,
                body={"detail": f"bad token {known['sentry token']}"},
            ),
            "Sentry echoes the token",
        )
        dead_letter_after(jira, Fault("POST", r"/remotelink$", status=503, times=None), "Jira is down")
        # 5. Forged and replayed webhooks.
        body = compact_json({"action": "created", "data": {}})
        for headers in (
            {"Sentry-Hook-Signature": hmac_sha256_hex("guess", body)},
            {
                "Sentry-Hook-Signature": hmac_sha256_hex(known["sentry client secret"], body),
                "Sentry-Hook-Timestamp": "1000",
            },
        ):
            assert httpx.post(f"{base}/webhooks/sentry", content=body, headers=headers).status_code == 401
        assert httpx.post(f"{base}/webhooks/jira?token=guess", content=b"{}").status_code == 401
        forged = slack.sign(b"{}")
        forged["X-Slack-Signature"] = "v0=" + "0" * 64
        assert httpx.post(f"{base}/webhooks/slack", content=b"{}", headers=forged).status_code == 401
        assert (
            httpx.post(
                f"{base}/webhooks/jira", content=b"{}", headers={"X-Hub-Signature": "sha256=" + "0" * 64}
            ).status_code
            == 401
        )

        outputs["metrics"] = httpx.get(f"{base}/metrics").text
        outputs["readyz"] = httpx.get(f"{base}/readyz").text
        letter_ids = [str(letter.id) for letter in _letters(engine)]
        for args in (
            ("check-config",),
            ("dead-letters", "list"),
            ("dead-letters", "retry", letter_ids[0]),
            ("dead-letters", "drop", letter_ids[1]),
            ("links", "list"),
            ("links", "show", ok["id"]),
            ("route", "explain", ok["id"]),
            ("db", "current"),
            ("reconcile", "--dry-run"),
        ):
            done = subprocess.run(
                [sys.executable, "-m", "syncer", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                cwd=REPO,
            )
            outputs[" ".join(args)] = done.stdout + done.stderr
        assert "(set)" in outputs["check-config"]
        wait_for(lambda: _linked(engine, refused), 60, what="the retried dead letter to go through")
        outputs["database"] = _every_text(engine)
        engine.dispose()
    finally:
        for proc in (beat, worker, web):
            proc.stop()
        outputs["web log"] = web.output()
        outputs["worker log"] = worker.output()
        outputs["beat log"] = beat.output()
        sentry.stop()
        jira.stop()
        slack.stop()
        broker.stop()
    assert (
        "Invalid token" in outputs["database"] or "401" in outputs["database"]
    )  # the failures were recorded
    leaks = [
        (what, where) for where, out in outputs.items() for what, secret in known.items() if secret in out
    ]
    assert leaks == [], leaks


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _linked(engine: Engine, sentry_id: str) -> bool:
    with Session(engine) as session:
        link = session.exec(select(Link).where(Link.live_sentry_issue_id == sentry_id)).first()
    return bool(link and link.state == LinkState.ACTIVE and link.remote_link_done and link.sentry_link_done)


def _letters(engine: Engine) -> list[DeadLetter]:
    with Session(engine) as session:
        query = select(DeadLetter).where(DeadLetter.state == "open").order_by(DeadLetter.id)  # type: ignore[arg-type]
        return list(session.exec(query).all())


def _every_text(engine: Engine) -> str:
    """Every row of every table, as text."""
    from sqlmodel import SQLModel

    chunks = []
    with engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            for row in connection.execute(text(f"SELECT * FROM {table.name}")):
                chunks.append(repr(tuple(row)))
    return "\n".join(chunks)


# ------------------------------------------------------------------ outbound calls: configured URLs only


@pytest.fixture
def elsewhere() -> Iterator[WebhookInbox]:
    """Somewhere syncer must never call: it records whatever reaches it."""
    receiver = WebhookInbox().start()
    yield receiver
    receiver.stop()


def test_urls_in_payloads_lead_nowhere(
    stack: dict[str, Any],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    engine: Engine,
    elsewhere: WebhookInbox,
) -> None:
    """Every URL-shaped field of a Sentry and a Jira webhook points at another server: syncer builds
    its calls (and the links it writes) from its configured base URLs only."""
    fake_sentry.webhooks.enabled = False
    web = stack["web"].url
    evil = f"{elsewhere.url}/steal"
    issue = fake_sentry.issue(
        fake_sentry.file_issue(project="billing-api", title="carries hostile links")["id"]
    )
    issue.update(permalink=evil, web_url=evil, url=evil, project_url=evil)
    created = {
        "action": "created",
        "installation": {"uuid": INSTALLATION_UUID},
        "actor": {"type": "application", "id": "sentry", "name": "Sentry"},
        "data": {"issue": issue},
    }
    assert post_sentry(web, created).status_code == 202
    alerted = fake_sentry.issue(fake_sentry.file_issue(project="billing-api", title="alert with links")["id"])
    alert = {
        "action": "triggered",
        "installation": {"uuid": "../../../../steal"},
        "data": {
            "event": {"issue_id": alerted["id"], "issue_url": evil, "web_url": evil, "url": evil},
            "triggered_rule": evil,
        },
    }
    assert post_sentry(web, alert, resource="event_alert").status_code == 202
    wait_for(lambda: _linked(engine, issue["id"]), 30, what="the ticket for the hostile issue")
    key = _link(engine, issue["id"]).jira_key
    assert key is not None
    jira_update = {
        "timestamp": 1767225600123,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": "someone", "self": evil},
        "issue": {
            "id": _link(engine, issue["id"]).jira_issue_id,
            "key": key,
            "self": evil,
            "fields": {
                "status": {"name": "Done", "self": evil, "statusCategory": {"key": "done", "self": evil}},
                "project": {"key": "PAY", "self": evil},
            },
        },
        "changelog": {"items": [{"field": "status", "fromString": "To Do", "toString": "Done"}]},
    }
    body = compact_json(jira_update)
    answer = httpx.post(
        f"{web}/webhooks/jira",
        content=body,
        headers={"X-Hub-Signature": "sha256=" + hmac_sha256_hex(JIRA_WEBHOOK_SECRET, body)},
    )
    assert answer.status_code == 202

    def finished() -> bool:
        with Session(engine) as session:
            rows = session.exec(select(Delivery)).all()
        return bool(rows) and all(r.state not in DeliveryState.UNFINISHED for r in rows)

    wait_for(finished, 60, what="every delivery processed")
    assert elsewhere.received == []
    ticket = fake_jira.issue(key)
    assert ticket is not None and elsewhere.url not in ticket["description"]
    assert all(elsewhere.url not in link["object"]["url"] for link in fake_jira.remote_links(key))
    assert f"{fake_sentry.url}/organizations/{ORG}/issues/{issue['id']}/" in ticket["description"]


def _link(engine: Engine, sentry_id: str) -> Link:
    with Session(engine) as session:
        link = session.exec(select(Link).where(Link.live_sentry_issue_id == sentry_id)).first()
    assert link is not None
    return link


def test_redirects_from_the_apis_are_not_followed(
    clean: None, fake_sentry: FakeSentry, fake_jira: FakeJira, elsewhere: WebhookInbox
) -> None:
    from syncer.errors import PermanentError

    jira = JiraClient(fake_jira.url, email="bot@example.com", token=JIRA_TOKEN, timeout=(2, 5))
    sentry = SentryClient(fake_sentry.url, ORG, SENTRY_TOKEN)
    issue = fake_sentry.file_issue(project="billing-api", title="redirected")
    key = fake_jira.person_create("OPS", "redirected")
    jira.deployment  # noqa: B018 - connected before the redirects start
    for fake in (fake_jira, fake_sentry):
        fake.faults.append(
            Fault("*", r".", status=307, times=None, headers={"Location": f"{elsewhere.url}/x"})
        )
    try:
        for call in (
            lambda: jira.get_ticket(key),
            lambda: jira.add_comment(key, "hi"),
            lambda: sentry.get_issue(issue["id"]),
            lambda: sentry.add_note(issue["id"], "hi"),
        ):
            with pytest.raises(PermanentError):
                call()
    finally:
        fake_jira.faults.clear()
        fake_sentry.faults.clear()
    assert elsewhere.received == []


# ------------------------------------------------------------------ JQL


def test_label_lookups_are_quoted_and_escaped(clean: None, fake_jira: FakeJira) -> None:
    odd = ['say"hi"', "back\\slash", 'end\\"', "\\", '"']
    keys = {label: fake_jira.person_create("OPS", f"labelled {label}", [label]) for label in odd}
    victim = fake_jira.person_create("OPS", "must not be found", ["victim"])
    client = JiraClient(fake_jira.url, email="bot@example.com", token=JIRA_TOKEN, timeout=(2, 5))
    for label, key in keys.items():
        assert [t.key for t in client.find_by_label(label)] == [key], label
    for injection in (
        'x" OR labels = "victim',
        'x\\" OR labels = victim OR labels = "x',
        "victim' OR '1'='1",
    ):
        assert client.find_by_label(injection) == [], injection
    assert [t.key for t in client.find_by_label("victim")] == [victim]


def test_the_readme_says_what_an_operator_must_protect() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### What an operator must protect", 1)[1].split("\n## ", 1)[0]
    for thing in (
        "SYNCER_SENTRY_TOKEN",
        "SYNCER_SENTRY_CLIENT_SECRET",
        "SYNCER_JIRA_TOKEN",
        "SYNCER_JIRA_WEBHOOK_SECRET",
        "database",
        "Redis",
    ):
        assert thing in section, thing
