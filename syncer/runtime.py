"""What a process needs to do sync work, built once per process from the settings: the database
engine, the policy, both API clients, and Redis for locks and shared counters."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import redis
from sqlalchemy.engine import Engine

from syncer.db.session import make_engine
from syncer.jira.client import JiraClient
from syncer.metrics import WorkerCounters
from syncer.policy import Policy, load_policy
from syncer.sentry.client import SentryClient
from syncer.settings import Settings, current_settings


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url, pool_size=16)

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
        )

    @cached_property
    def redis(self) -> redis.Redis | None:
        url = self.settings.lock_redis_url
        if not url:
            return None
        return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)

    @property
    def jira_browse_url(self) -> str:
        return f"{self.settings.jira_url}/browse"

    @cached_property
    def counters(self) -> WorkerCounters:
        return WorkerCounters(self.redis)


_lock = threading.Lock()
_runtime: Runtime | None = None


def current() -> Runtime:
    """The process-wide runtime (workers, web)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(current_settings())
        return _runtime
