"""What a process needs to do sync work, built once per process from the settings: the database
engine, the policy, both API clients, and Redis for locks and shared counters.

Entry points build it and pass it down (`syncer.cli.main` one per command, `syncer.worker.app` one
per worker process): no module fetches it from a global."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import redis
from sqlalchemy.engine import Engine

from syncer import apicalls, ratelimit
from syncer.jira.client import JiraClient
from syncer.metrics import CountedCalls, WorkerCounters
from syncer.policy import Policy, load_policy
from syncer.sentry.client import SentryClient
from syncer.settings import Settings
from syncer.slack.client import SlackClient
from syncer.store.engine import make_engine


@dataclass
class Runtime:
    settings: Settings
    # Publishes an inbox delivery's id to the workers (the worker's entry point sets it); None: the
    # sweeper hands new deliveries out (`syncer.sync.slack` stores its own work in the inbox).
    enqueue: Callable[[int], None] | None = None
    # Starts a bulk filer (`syncer.sync.filing`; the worker's entry point sets it); None: new issues
    # are never gathered for one, each ticket is made alone.
    file_gathered: Callable[[], None] | None = None
    # Connections kept open: the worker's entry point matches it to its threads, each of which holds
    # one connection at a time (a pool smaller than that opened and closed connections under load).
    db_pool_size: int = 16
    db_pre_ping: bool = True  # see make_engine: the worker, which retries, does without

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url, pool_size=self.db_pool_size,
                           pre_ping=self.db_pre_ping)

    @cached_property
    def policy(self) -> Policy:
        return load_policy(self.settings.config)

    @cached_property
    def sentry(self) -> SentryClient:
        s = self.settings
        assert s.sentry_org and s.sentry_token, "require_services() checks these at start"
        return SentryClient(
            s.sentry_url,
            s.sentry_org,
            s.sentry_token.get_secret_value(),
            timeout=s.http_timeout(),
            throttle=self._throttle("sentry", s.sentry_url, s.sentry_max_rps),
        )

    @cached_property
    def jira(self) -> JiraClient:
        s = self.settings
        assert s.jira_url, "require_services() checks this at start"
        return JiraClient(
            s.jira_url,
            email=s.jira_email,
            token=s.jira_token.get_secret_value() if s.jira_token else None,
            pat=s.jira_pat.get_secret_value() if s.jira_pat else None,
            timeout=(s.http_connect_timeout, s.http_read_timeout),
            workflow_cache_seconds=s.jira_workflow_cache_seconds,
            throttle=self._throttle("jira", s.jira_url, s.jira_max_rps, s.jira_issue_write_interval_seconds),
        )

    @cached_property
    def slack(self) -> SlackClient | None:
        """The Slack Web API client, or None when Slack is not set up."""
        s = self.settings
        if not s.slack_enabled or s.slack_bot_token is None:
            return None
        return SlackClient(s.slack_url, s.slack_bot_token.get_secret_value(), timeout=s.http_read_timeout,
                           throttle=self._throttle("slack", s.slack_url, s.slack_max_rps))

    @cached_property
    def redis(self) -> redis.Redis | None:
        url = self.settings.lock_redis_url
        if not url:
            return None
        return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)

    def _throttle(
        self, service: str, base_url: str, max_rps: float, issue_write_interval: float = 0.0
    ) -> CountedCalls:
        """The API's shared rate limit (in Redis; none when none is configured), with its answers
        recorded for the console (`syncer.apicalls`) and every answered call counted (`/metrics`)."""
        limiter = ratelimit.limiter(
            self.redis,
            service=service,
            base_url=base_url,
            max_rps=max_rps,
            issue_write_interval=issue_write_interval,
            max_wait=self.settings.rate_limit_max_wait_seconds,
            status_share=self.settings.rate_limit_status_share,
        )
        return CountedCalls(service, self.counters, apicalls.recording(self.redis, service, limiter))

    @property
    def jira_browse_url(self) -> str:
        return f"{self.settings.jira_url}/browse"

    @cached_property
    def counters(self) -> WorkerCounters:
        return WorkerCounters(self.redis)

    def with_own_clients(self) -> Runtime:
        """The same settings, engine, policy and Redis, with API clients of its own, so that their
        request counts are one caller's alone (reconciliation runs beside delivery tasks in a worker)."""
        own = Runtime(self.settings, self.enqueue)
        # cached_property keeps its value in the instance's __dict__: share what is not a client.
        for name in ("engine", "policy", "redis", "counters"):
            own.__dict__[name] = getattr(self, name)
        return own

