"""[enrichment] `new_release` through a real web app and worker against the fakes: an alert whose
event names a release the ticket was not told of gets one comment naming it, once per release."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy.engine import Engine

from syncer.core.growth import release_news
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.policy import EnrichmentPolicy
from syncer.store.schema import DeliveryState
from tests.conftest import FIXTURES, clean_redis
from tests.harness import SyncerProcess, audit_of, deliveries, link_of, private_stack, wait_for
from tests.test_tickets import wait_ticket


@pytest.fixture(scope="module")
def release_worker(
    environment: None, engine: Engine, process_env: dict[str, str], fake_sentry: FakeSentry,
    fake_jira: FakeJira, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SyncerProcess, redis.Redis]]:
    env = {**process_env, "SYNCER_CONFIG": str(FIXTURES / "policies" / "enrichment_release.toml")}
    with private_stack(engine, env, fake_sentry, fake_jira, tmp_path_factory.mktemp("release"),
                       "release-worker") as stack:
        yield stack


def alerts_done(engine: Engine, issue_id: str, count: int) -> bool:
    rows = [d for d in deliveries(engine, "sentry")
            if d.resource == "event_alert" and f'"issue_id":"{issue_id}"' in d.payload]
    return len(rows) == count and all(d.state not in DeliveryState.UNFINISHED for d in rows)


def test_a_new_release_is_told_once_on_the_ticket(
    clean: None, release_worker: tuple[SyncerProcess, redis.Redis], fake_sentry: FakeSentry,
    fake_jira: FakeJira, engine: Engine,
) -> None:
    clean_redis(release_worker[1])
    issue = fake_sentry.file_issue(project="misc-app", title="KeyError: 'plan'", release="1.0")
    key = wait_ticket(fake_jira, engine, issue["id"], timeout=60)["key"]
    try:
        fake_sentry.trigger_alert(issue["id"], release="1.0")  # the issue.created webhook named none
        wait_for(lambda: alerts_done(engine, issue["id"], 1), 60, what="the first alert")
        link = link_of(engine, issue["id"])
        assert link is not None and link.noted_release == "1.0" and fake_jira.comments(key) == []
        fake_sentry.trigger_alert(issue["id"], release="2.0")
        [comment] = wait_for(lambda: fake_jira.comments(key), 60, what="the release comment")
        assert "seen in release 2.0" in comment["body"] and "last told: 1.0" in comment["body"]
        # The audit line is written after Jira took the comment: seen a moment later, not at once.
        enriched = wait_for(
            lambda: [a.detail for a in audit_of(engine, issue["id"]) if a.action == "enriched"],
            30, what="the enrichment's audit line")
        assert enriched == ["seen in release 2.0"]
        fake_sentry.trigger_alert(issue["id"], release="2.0")  # same release: nothing more
        wait_for(lambda: alerts_done(engine, issue["id"], 3), 60, what="the third alert")
        assert len(fake_jira.comments(key)) == 1
    finally:
        fake_sentry.reset()
        fake_jira.reset()


def test_release_news_once_per_release_and_throttled() -> None:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    policy = EnrichmentPolicy(new_release=True, min_hours_between=24)
    told = {"noted_release": "1.0", "noted_at": now - timedelta(hours=25), "now": now}
    assert release_news(policy, release="1.1", **told)
    assert not release_news(policy, release="1.0", **told)  # already told
    assert not release_news(policy, release="", **told)  # the event named none
    assert not release_news(policy, release="1.1", **{**told, "noted_at": now - timedelta(hours=2)})
    assert not release_news(EnrichmentPolicy(), release="1.1", **told)  # off by default
