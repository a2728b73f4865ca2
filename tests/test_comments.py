"""Comments both ways ([comments]) through a real web app and worker against the fakes: copies,
edits and deletions follow the same copy, and no copy is copied back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.store.schema import Delivery, DeliveryState
from tests.conftest import FIXTURES, clean_redis
from tests.harness import SyncerProcess, private_stack, wait_for
from tests.test_tickets import wait_ticket


@pytest.fixture(scope="module")
def comments_worker(
    environment: None, engine: Engine, process_env: dict[str, str], fake_sentry: FakeSentry,
    fake_jira: FakeJira, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SyncerProcess, redis.Redis]]:
    env = {**process_env, "SYNCER_CONFIG": str(FIXTURES / "policies" / "comments.toml")}
    with private_stack(engine, env, fake_sentry, fake_jira, tmp_path_factory.mktemp("comments"),
                       "comments-worker") as stack:
        yield stack


@pytest.fixture
def pair(clean: None, comments_worker: tuple[SyncerProcess, redis.Redis], fake_sentry: FakeSentry,
         fake_jira: FakeJira, engine: Engine) -> Iterator[tuple[str, str]]:
    """A linked issue and ticket: (Sentry id, Jira key)."""
    clean_redis(comments_worker[1])
    issue = fake_sentry.file_issue(project="misc-app", title="KeyError: 'plan'")
    yield issue["id"], wait_ticket(fake_jira, engine, issue["id"], timeout=60)["key"]
    fake_sentry.reset()
    fake_jira.reset()


def settled(engine: Engine) -> bool:
    with Session(engine) as session:
        rows = session.exec(select(Delivery)).all()
    return all(r.state not in DeliveryState.UNFINISHED for r in rows)


def person_comments(fake_jira: FakeJira, key: str) -> list[dict[str, Any]]:
    return [c for c in fake_jira.comments(key) if c["author"] != fake_jira.bot_account_id]


def test_a_sentry_note_follows_to_jira_through_edit_and_delete(
    pair: tuple[str, str], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    sentry_id, key = pair
    note = fake_sentry.person_comment(sentry_id, "Seen again after the *deploy*", by="alice@example.com")
    [copy] = wait_for(lambda: fake_jira.comments(key), 30, what="the note's copy in Jira")
    assert copy["body"].startswith("Seen again after the \\*deploy\\*")  # the person's words, inert
    assert "Alice Example" in copy["body"] and f"/issues/{sentry_id}/" in copy["body"]
    fake_sentry.person_edit_comment(sentry_id, note["id"], "Seen again after the rollback")
    wait_for(lambda: "rollback" in fake_jira.comments(key)[0]["body"], 30, what="the edit in Jira")
    assert [c["id"] for c in fake_jira.comments(key)] == [copy["id"]]  # the same comment, edited
    fake_sentry.person_delete_comment(sentry_id, note["id"])
    wait_for(lambda: fake_jira.comments(key) == [], 30, what="the copy deleted")
    wait_for(lambda: settled(engine), 30, what="every echo processed")
    # Our own Jira comment came back as comment_created/updated/deleted: none became a Sentry note.
    assert fake_sentry.notes(sentry_id) == []


def test_a_marked_jira_comment_follows_to_sentry_and_its_echo_stops(
    pair: tuple[str, str], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    sentry_id, key = pair
    fake_jira.person_comment(key, "internal chatter, not for Sentry")
    marked = fake_jira.person_comment(key, "#sentry root cause: the cache TTL")
    [note] = wait_for(lambda: fake_sentry.notes(sentry_id), 30, what="the marked comment's copy")
    assert note["data"]["text"].startswith("#sentry root cause: the cache TTL")
    assert f"{fake_jira.url}/browse/{key}" in note["data"]["text"]
    fake_jira.person_edit_comment(key, marked, "#sentry root cause: the cache TTL of 0")
    wait_for(lambda: "TTL of 0" in fake_sentry.notes(sentry_id)[0]["data"]["text"], 30,
             what="the edit in Sentry")
    assert [n["id"] for n in fake_sentry.notes(sentry_id)] == [note["id"]]
    wait_for(lambda: settled(engine), 30, what="every echo processed")
    # Our note's comment.created/updated came back from Sentry: no Jira comment was made of it.
    assert [c["id"] for c in fake_jira.comments(key)] == [c["id"] for c in person_comments(fake_jira, key)]
    fake_jira.person_delete_comment(key, marked)
    wait_for(lambda: fake_sentry.notes(sentry_id) == [], 30, what="the note deleted")


def test_service_desk_comments_customers_see_are_never_copied(
    pair: tuple[str, str], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    sentry_id, key = pair
    fake_jira.set_project_type("OPS", "service_desk")
    fake_jira.person_comment(key, "#sentry Dear customer, we are on it")
    fake_jira.person_comment(key, "#sentry agents only: it is the cache", internal=True)
    wait_for(lambda: fake_sentry.notes(sentry_id), 30, what="the internal comment's copy")
    wait_for(lambda: settled(engine), 30, what="both comments processed")
    assert [n["data"]["text"].split("\n")[0] for n in fake_sentry.notes(sentry_id)] == [
        "#sentry agents only: it is the cache"]
    with Session(engine) as session:
        outcomes = [d.outcome for d in session.exec(select(Delivery).where(
            Delivery.resource == "comment_created", Delivery.state == DeliveryState.IGNORED)).all()]
    assert any("customer sees" in o for o in outcomes)


def test_a_retried_note_finds_the_copy_it_made_before_instead_of_a_second(
    pair: tuple[str, str], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    """A delivery whose Jira comment was made but whose answer was lost left its claim without
    the copy's id; the next attempt finds the copy by its tag."""
    from syncer.core import comments as copies
    from syncer.store import comments

    sentry_id, key = pair
    ticket = fake_jira.issue(key)
    assert ticket is not None
    note_id = "1"  # the fake's first note on a fresh organisation
    assert comments.claim(engine, origin="sentry", sentry_issue_id=sentry_id, jira_issue_id=ticket["id"],
                          sentry_note_id=note_id) is not None
    made_before = fake_jira.person_comment(key, f"Seen again {copies.sentry_tag(note_id)}")
    note = fake_sentry.person_comment(sentry_id, "Seen again", by="alice@example.com")
    assert note["id"] == note_id
    wait_for(lambda: settled(engine) and (p := comments.of_sentry_note(engine, sentry_id, note_id))
             and p.jira_comment_id, 30, what="the claim completed")
    assert [c["id"] for c in fake_jira.comments(key)] == [made_before]
    completed = comments.of_sentry_note(engine, sentry_id, note_id)
    assert completed is not None and completed.jira_comment_id == made_before
