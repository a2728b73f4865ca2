"""What syncer stores: links, the inbox of deliveries, dead letters, the audit trail, caches,
Sentry installations.

Idempotency lives here as constraints, not as hopes:
- one live link per Sentry issue (`Link.live_sentry_issue_id` is unique; it is cleared when a link
  is broken or superseded, so history is kept while a new ticket may be opened);
- one inbox row per delivery (`Delivery` is unique on source + delivery key).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, DateTime, Index, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which has no time zones) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def When(**kwargs: Any) -> Any:
    """A UTC timestamp column."""
    return Field(sa_type=UTCDateTime, **kwargs)


class LinkState:
    PENDING = "pending"  # claimed: a ticket is being created or looked up for this issue
    ACTIVE = "active"
    BROKEN = "broken"  # the ticket was deleted; kept for audit
    UNLINKED = "unlinked"  # undone by a person (`syncer links unlink`)
    SUPERSEDED = "superseded"  # a regression long after closing opened a newer ticket
    MERGED = "merged"  # its issue was merged into one that has its own ticket; kept for audit

    LIVE = (PENDING, ACTIVE)


class Link(SQLModel, table=True):
    __tablename__ = "links"

    id: int | None = Field(default=None, primary_key=True)
    sentry_issue_id: str = Field(index=True, max_length=40)
    # Equal to sentry_issue_id while the link is live, NULL otherwise: the unique constraint on it
    # is the claim that makes "exactly one ticket per issue" hold under any race.
    live_sentry_issue_id: str | None = Field(default=None, unique=True, max_length=40)
    sentry_project: str = Field(default="", max_length=200)
    jira_issue_id: str | None = Field(default=None, index=True, max_length=40)
    jira_key: str | None = Field(default=None, max_length=100)
    state: str = Field(default=LinkState.PENDING, index=True, max_length=20)
    claim_token: str | None = Field(default=None, max_length=64)
    claimed_at: datetime | None = When(default=None)
    # Set before the create call: after an ambiguous failure the next attempt must look for the
    # ticket (allowing for Jira search lag) before it may create again.
    create_attempted_at: datetime | None = When(default=None)
    route: str = Field(default="", max_length=200)
    team: str | None = Field(default=None, max_length=200)

    # Each side's state as we last saw it, and the source's own timestamp of that state: the
    # watermark that makes late or out-of-order deliveries harmless.
    sentry_status: str = Field(default="", max_length=40)
    sentry_substatus: str = Field(default="", max_length=60)
    # Sentry's issue priority (high/medium/low) the ticket's priority last followed, so a change
    # is noticed (`[priorities] follow_sentry`); "" before Sentry had priorities.
    sentry_priority: str = Field(default="", max_length=20)
    sentry_changed_at: datetime | None = When(default=None)
    jira_status: str = Field(default="", max_length=200)
    jira_status_category: str = Field(default="", max_length=40)
    jira_changed_at: datetime | None = When(default=None)
    synced_at: datetime | None = When(default=None)
    changed_by: str = Field(default="", max_length=200)

    # The links that let a person find one side from the other, done after the ticket exists.
    remote_link_done: bool = False
    sentry_link_done: bool = False
    reopen_commented_at: datetime | None = When(default=None)
    reopens_since_comment: int = 0
    previous_link_id: int | None = Field(default=None, foreign_key="links.id")
    # Since when Jira answers 404 for the ticket without having sent `jira:issue_deleted` (issue
    # security, a permission change: Jira tells neither from a deletion). The link stays active, so
    # no second ticket is made for the issue, until the ticket answers again or a person unlinks it.
    unreachable_since: datetime | None = When(default=None)
    created_at: datetime = When(default_factory=utcnow)
    # Indexed: an incremental reconcile reads the links a webhook (or anything else) changed lately.
    updated_at: datetime = When(default_factory=utcnow, index=True)
    # The triage figures' moments (`syncer report`): Sentry's first-seen time of the issue, when its
    # ticket was made or adopted (not when it was claimed: a Jira outage may lie between), and since
    # when the ticket is in Jira's done category (cleared when it leaves it).
    sentry_first_seen: datetime | None = When(default=None)
    ticketed_at: datetime | None = When(default=None, index=True)
    resolved_at: datetime | None = When(default=None, index=True)
    # The issue's events and users when its ticket last heard of them ([enrichment]); NULL until
    # reconciliation first sees the pair, which then only records them.
    noted_count: int | None = Field(default=None)
    noted_users: int | None = Field(default=None)
    noted_at: datetime | None = When(default=None)
    # The last release the ticket was told the issue was seen in (`new_release`); NULL until a
    # webhook first names one, which then only records it.
    noted_release: str | None = Field(default=None, max_length=200)


class DeliveryState:
    RECEIVED = "received"  # stored; not yet handed to the broker
    QUEUED = "queued"  # handed to the broker
    PROCESSING = "processing"
    DONE = "done"
    IGNORED = "ignored"  # understood, nothing to do (unknown event, own echo, no route...)
    DEAD = "dead"  # retries exhausted or permanent failure: see dead_letters

    UNFINISHED = (RECEIVED, QUEUED, PROCESSING)


class Delivery(SQLModel, table=True):
    """The inbox: every webhook delivery, stored before it is answered."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("source", "delivery_key", name="uq_deliveries_source_key"),
        Index("ix_deliveries_state_due", "state", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=20)  # sentry | jira
    delivery_key: str = Field(max_length=200)
    resource: str = Field(default="", max_length=100)
    action: str = Field(default="", max_length=100)
    received_at: datetime = When(default_factory=utcnow)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(default=DeliveryState.RECEIVED, max_length=20)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    outcome: str = Field(default="", max_length=500)
    # When a worker should have picked the row up (now, or after a retry's countdown): the sweeper
    # re-enqueues rows that are past due, which covers a broker that was down and a worker that died.
    due_at: datetime = When(default_factory=utcnow)
    started_at: datetime | None = When(default=None)
    finished_at: datetime | None = When(default=None)


class DeadLetterState(StrEnum):
    """Where a dead letter stands; stored as its text (the column is a plain string)."""

    OPEN = "open"  # waiting for a person, or for reconcile's automatic retry
    RETRIED = "retried"  # its delivery was put back into the inbox
    DROPPED = "dropped"  # a person decided it needs nothing more


class DeadLetter(SQLModel, table=True):
    """Work that failed for good: kept with its error and payload until retried or dropped."""

    __tablename__ = "dead_letters"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int | None = Field(default=None, foreign_key="deliveries.id", index=True)
    kind: str = Field(default="delivery", max_length=40)
    subject: str = Field(default="", max_length=200)  # e.g. "sentry issue 123"
    error: str = Field(sa_column=Column(Text, nullable=False))
    payload: str = Field(default="", sa_column=Column(Text, nullable=False))
    state: str = Field(default=DeadLetterState.OPEN.value, max_length=20)  # a DeadLetterState
    created_at: datetime = When(default_factory=utcnow)
    retried_at: datetime | None = When(default=None)
    retries: int = 0


class AuditEntry(SQLModel, table=True):
    """One change syncer made (or decided not to make), with its cause."""

    __tablename__ = "audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = When(default_factory=utcnow, index=True)
    link_id: int | None = Field(default=None, index=True)
    sentry_issue_id: str = Field(default="", index=True, max_length=40)
    jira_key: str = Field(default="", max_length=100)
    side: str = Field(default="", max_length=20)  # jira | sentry | syncer
    action: str = Field(max_length=100)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    cause: str = Field(default="", max_length=200)  # delivery:<id> | reconcile:<run> | cli


class RoutedIssue(SQLModel, table=True):
    """A route's first decision for an issue, ignored ones included (a link records only those that
    got a ticket): what the per-route figures count, and the share that fell to [defaults]."""

    __tablename__ = "routed_issues"

    sentry_issue_id: str = Field(primary_key=True, max_length=40)
    route: str = Field(primary_key=True, max_length=200)  # "defaults" when no route matched
    team: str | None = Field(default=None, max_length=200)
    action: str = Field(max_length=20)  # create | ignore
    decided_at: datetime = When(default_factory=utcnow, index=True)


class CommentPair(SQLModel, table=True):
    """A comment and its copy on the other side (policy `[comments]`), so that an edit or a deletion
    follows the same copy, and a copy is never copied back."""

    __tablename__ = "comment_pairs"
    __table_args__ = (
        UniqueConstraint("sentry_issue_id", "sentry_note_id", name="uq_comment_pairs_sentry"),
        UniqueConstraint("jira_issue_id", "jira_comment_id", name="uq_comment_pairs_jira"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sentry_issue_id: str = Field(max_length=40)
    jira_issue_id: str = Field(max_length=40)
    # The copy's id is NULL from the claim until the copy is made: NULLs never collide.
    sentry_note_id: str | None = Field(default=None, max_length=40)
    jira_comment_id: str | None = Field(default=None, max_length=40)
    origin: str = Field(max_length=10)  # sentry | jira: where the person wrote it
    created_at: datetime = When(default_factory=utcnow)


class AccountCache(SQLModel, table=True):
    """A person (e-mail) → the Jira account that may be assigned issues in one project, resolved once
    and remembered (misses too, for a while, with why)."""

    __tablename__ = "account_cache"

    project: str = Field(primary_key=True, max_length=100)
    email: str = Field(primary_key=True, max_length=320)
    account_id: str | None = Field(default=None, max_length=200)
    problem: str = Field(default="", max_length=40)  # syncer.jira.client.PROBLEMS, or ""
    reason: str = Field(default="", max_length=500)
    resolved_at: datetime = When(default_factory=utcnow)


class Installation(SQLModel, table=True):
    """A Sentry integration installation, by the uuid its webhooks carry, kept after the inbox's
    retention has pruned those webhooks: reconcile's external-issue links need it."""

    __tablename__ = "installations"

    uuid: str = Field(primary_key=True, max_length=100)
    seen_at: datetime = When(default_factory=utcnow)  # refreshed now and then while webhooks name it
    # When Sentry said `installation.deleted`; cleared by `installation.created` for the same uuid.
    deleted_at: datetime | None = When(default=None)


class SlackMessage(SQLModel, table=True):
    """An issue's message in its team's Slack channel: where it is (channel ID and ts, once
    posted), what chose the team, what it last showed, and who acknowledged the issue there."""

    __tablename__ = "slack_messages"
    __table_args__ = (UniqueConstraint("channel_id", "ts", name="uq_slack_messages_channel_ts"),)

    sentry_issue_id: str = Field(primary_key=True, max_length=40)
    team: str = Field(max_length=200)
    route: str = Field(default="", max_length=200)
    action: str = Field(default="create", max_length=20)  # the route's: create | notify
    channel: str = Field(max_length=200)  # as the policy names it
    channel_id: str | None = Field(default=None, max_length=40)
    ts: str | None = Field(default=None, max_length=40)  # None until posted
    release: str = Field(default="", max_length=200, index=True)  # Sentry's first-seen release
    # A hash of the text and blocks last sent: an update that would show the same is not sent.
    shown: str = Field(default="", max_length=64)
    regressions_told: int = 0  # thread replies about regressions posted so far
    regressed_in: str = Field(default="", max_length=200, index=True)  # the release of its last regression
    acknowledged_by: str = Field(default="", max_length=200)  # a Slack user ID
    acknowledged_at: datetime | None = When(default=None)
    created_at: datetime = When(default_factory=utcnow)
    updated_at: datetime = When(default_factory=utcnow)


class SlackRelease(SQLModel, table=True):
    """A release's summary thread in one channel (release watch): posted once, then updated."""

    __tablename__ = "slack_releases"

    channel_id: str = Field(primary_key=True, max_length=40)
    release: str = Field(primary_key=True, max_length=200)
    ts: str | None = Field(default=None, max_length=40)
    shown: str = Field(default="", max_length=64)
    updated_at: datetime = When(default_factory=utcnow)


class ReconcileCursor(SQLModel, table=True):
    """Where the rolling full pass of reconciliation stands, and when the last incremental run
    started: one row (id 1), written by each run that is not a dry run."""

    __tablename__ = "reconcile_cursor"

    id: int | None = Field(default=None, primary_key=True)
    # The last link id the full pass checked; 0: the next slice starts at the table's beginning.
    after_link_id: int = 0
    # When the current cycle of the full pass began (its first slice), for the report.
    cycle_started_at: datetime | None = When(default=None)
    # When the last run whose change reads all succeeded started: the next run's window begins there.
    changes_read_at: datetime | None = When(default=None)
    updated_at: datetime = When(default_factory=utcnow)
