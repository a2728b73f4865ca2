"""`syncer sandbox`: the whole service against bundled fake Sentry, Jira and Slack, with a short story.

It starts the fakes in this process, web + worker + beat as children (as `syncer dev` does), files
a few demo Sentry issues, and prints a line for each ticket as it appears: its key, and the team and
route that sent it there; and a line for each change in the fake Slack's channels (the teams' triage
messages posted and updated, reactions). Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session, col, select

from syncer.fakes.jira import start_fake_jira
from syncer.fakes.sentry import start_fake_sentry
from syncer.fakes.slack import start_fake_slack
from syncer.local.dev import EMBEDDED_BROKER, start_services, wait
from syncer.settings import Settings
from syncer.store import deliveries, links
from syncer.store.engine import make_engine
from syncer.store.schema import LinkState, SlackMessage

POLICY = Path(__file__).parents[1] / "fakes" / "sandbox.toml"

# (what happens, how the fake files it)
STORY: list[tuple[str, dict[str, Any]]] = [
    (
        "a billing error",
        {
            "project": "billing-api",
            "title": "ZeroDivisionError: division by zero",
            "culprit": "billing.invoices in compute_total",
            "platform": "python",
        },
    ),
    (
        "a frontend crash",
        {
            "project": "web-app",
            "title": "TypeError: Cannot read properties of undefined",
            "culprit": "app/checkout.js in render",
            "platform": "javascript",
        },
    ),
    (
        "a 404 storm (noise)",
        {
            "project": "api-gateway",
            "title": "NotFound: /favicon.ico",
            "culprit": "gateway.routes in lookup",
            "tags": {"http.status_code": ["404"]},
        },
    ),
    (
        "an info message (noise)",
        {
            "project": "worker-jobs",
            "title": "Retrying job 42",
            "level": "info",
            "culprit": "jobs.retry in schedule",
        },
    ),
    (
        "an experiment's error (notify: the channel examines it first)",
        {"project": "experiments-pricing", "title": "ValueError: price below zero",
         "culprit": "pricing.rules in apply"},
    ),
    (
        "an unowned error",
        {"project": "search-api", "title": "KeyError: 'query'", "culprit": "search.views in handle"},
    ),
]


def _say(text: str) -> None:
    print(text, flush=True)


_WATCHED = 1000  # links read per look: far more than a story files


def _watch(
    database_url: str, expected: int, jira_key_of: Callable[[str], dict[str, Any] | None], timeout: float
) -> int:
    """Print each ticket (and each deliberate ignore) as it appears; returns tickets seen."""
    engine = make_engine(database_url)
    seen_links: set[int] = set()
    seen_ignored: set[int] = set()
    notified: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen_links) + len(seen_ignored) + len(notified) < expected:
        with Session(engine) as session:
            posted = session.exec(select(SlackMessage.sentry_issue_id).where(
                SlackMessage.action == "notify", col(SlackMessage.ts).is_not(None))).all()
        for issue_id in posted:
            if issue_id not in notified:
                notified.add(issue_id)
                _say(f"  no ticket yet: sentry issue {issue_id} waits in Slack for a person to ask for one")
        active = reversed(links.listed(engine, state=LinkState.ACTIVE, limit=_WATCHED))  # oldest first
        ignored = deliveries.ignored(engine, action="created")
        for link in active:
            if link.id in seen_links or link.jira_key is None:
                continue
            seen_links.add(link.id)
            ticket = jira_key_of(link.jira_key) or {}
            assignee = ticket.get("assignee") or "unassigned"
            _say(
                f"  ticket {link.jira_key:<7} <- sentry issue {link.sentry_issue_id}: "
                f"team {link.team or '-'}, "
                f"route {link.route}, assignee {assignee}"
            )
        for delivery in ignored:
            if delivery.id in seen_ignored:
                continue
            seen_ignored.add(delivery.id)
            _say(f"  no ticket: {delivery.outcome}")
        time.sleep(0.3)
    engine.dispose()
    return len(seen_links)


def run_sandbox(*, port: int, issues: int, keep_running: bool) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="syncer-sandbox-"))
    client_secret, jira_secret = secrets.token_hex(16), secrets.token_hex(16)
    sentry = start_fake_sentry(org="acme", client_secret=client_secret)
    jira_email, jira_token = "syncer-bot@example.com", secrets.token_hex(16)
    # The console's login for this sandbox only: printed, since a demo's operator is whoever ran it.
    console_token = secrets.token_hex(16)
    jira = start_fake_jira(webhook_secret=jira_secret, email=jira_email, token=jira_token)
    jira.add_user("acc-driver", "Dee Driver", "driver@example.com")
    jira.add_user("acc-alice", "Alice", "alice@example.com")
    jira.add_user("acc-alice-smith", "Alice Smith", "alice.smith@example.com")
    slack = start_fake_slack(bot_token=f"xoxb-{secrets.token_hex(12)}", signing_secret=secrets.token_hex(16))
    # What a person watching the channels would see change, as it changes.
    slack.watch(lambda change: _say(f"  slack {change}"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SYNCER_")},
        "SYNCER_CONFIG": str(POLICY),
        "SYNCER_DATABASE_URL": f"sqlite:///{workdir / 'syncer.db'}",
        # A demo must not share queues (or locks and rate limits) with a real syncer on this machine:
        # its own embedded broker, in its own folder, unless the caller names a broker.
        "SYNCER_BROKER_URL": os.environ.get("SYNCER_BROKER_URL", EMBEDDED_BROKER),
        "SYNCER_SENTRY_URL": sentry.url,
        "SYNCER_SENTRY_ORG": "acme",
        "SYNCER_SENTRY_TOKEN": sentry.token,
        "SYNCER_SENTRY_CLIENT_SECRET": client_secret,
        "SYNCER_SENTRY_APP_ID": sentry.app_id,
        "SYNCER_JIRA_URL": jira.url,
        "SYNCER_JIRA_EMAIL": jira_email,
        "SYNCER_JIRA_TOKEN": jira_token,
        "SYNCER_JIRA_WEBHOOK_SECRET": jira_secret,
        "SYNCER_LOG_LEVEL": "WARNING",
        "SYNCER_CONSOLE_TOKEN": console_token,
        "SYNCER_SLACK_BOT_TOKEN": slack.bot_token,
        "SYNCER_SLACK_SIGNING_SECRET": slack.signing_secret,
        "SYNCER_SLACK_URL": slack.url,
    }
    settings = Settings(
        database_url=env["SYNCER_DATABASE_URL"], broker_url=env["SYNCER_BROKER_URL"], config=POLICY
    )
    os.chdir(workdir)  # the embedded broker and beat schedule files live with the sandbox
    _say(f"syncer sandbox: fake Sentry {sentry.url}, fake Jira {jira.url}, fake Slack {slack.url}, "
         f"data in {workdir}")
    log = open(workdir / "services.log", "ab")  # noqa: SIM115 - open as long as the children run
    group, broker = start_services(settings, env, port=port, concurrency=4, log=log)
    web = f"http://127.0.0.1:{port}"
    sentry.webhooks.url = f"{web}/webhooks/sentry"
    jira.webhooks.url = f"{web}/webhooks/jira"
    slack.events.url = f"{web}/webhooks/slack"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{web}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if group.first_exited() or time.monotonic() > deadline:
                _say("syncer sandbox: the web process did not start")
                group.stop()
                return 1
            time.sleep(0.2)
        _say(f"syncer sandbox: web on {web}, broker {broker.split('@')[-1]}, logs in {workdir}/services.log")
        _say(f"syncer sandbox: console on {web}/console, sign in with the token {console_token}")
        story = STORY[: max(0, issues)]
        for what, fields in story:
            issue = sentry.file_issue(**fields)
            _say(f"Sentry: {what}: issue {issue['id']} in {fields['project']} ({issue['title']})")

        def ticket(key: str) -> dict[str, Any] | None:
            return jira.issue(key)

        made = _watch(env["SYNCER_DATABASE_URL"], len(story), ticket, timeout=60)
        _say(f"syncer sandbox: {made} ticket(s) in the fake Jira; the rest stayed out by design.")
    except KeyboardInterrupt:
        group.stop()
        return 0
    finally:
        sentry.webhooks.url = None
        jira.webhooks.url = None
    if not keep_running:
        group.stop()
        sentry.stop()
        jira.stop()
        slack.stop()
        return 0
    _say("syncer sandbox: running; resolve or regress issues in the fakes, or press Ctrl-C to stop")
    sentry.webhooks.url = f"{web}/webhooks/sentry"
    jira.webhooks.url = f"{web}/webhooks/jira"
    code = wait(group)
    sentry.stop()
    jira.stop()
    slack.stop()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_sandbox(port=8000, issues=len(STORY), keep_running=True))
