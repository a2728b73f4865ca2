"""The one place that reads the environment: `Settings`, validated, secrets typed so they never print.

Everything else receives a `Settings` object; no module calls `os.getenv`.
The ownership mapping and status policy live in the TOML file (see `syncer.policy`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

import httpx
from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from syncer.errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SYNCER_", extra="ignore", frozen=True, populate_by_name=True
    )

    config: Path = Path("syncer.toml")
    database_url: str = "sqlite:///syncer.db"
    broker_url: str = "redis://localhost:6379/0"
    # Where locks and rate-limit buckets live; defaults to the broker when it is Redis.
    redis_url: str | None = None

    # The API's base: https://sentry.io, a region's host for SaaS organisations outside the US
    # (https://de.sentry.io), or a self-hosted install, with the path it is served under if any
    # (https://ops.example.com/sentry); "/api/0/" is added to it, the path kept.
    sentry_url: str = "https://sentry.io"
    # Where people open issues, when that is not the API's host: the organisation's own address on
    # SaaS (https://acme.sentry.io; region hosts serve the API only). Links in tickets use it.
    sentry_web_url: str | None = None
    sentry_org: str | None = None
    sentry_token: SecretStr | None = None
    sentry_client_secret: SecretStr | None = None
    sentry_app_id: str | None = None
    sentry_installation_uuid: str | None = None
    # Sentry-Hook-Timestamp is not signed, so this only narrows replays of captured deliveries.
    sentry_timestamp_window_seconds: int = Field(default=900, ge=0)

    # The base URL Sentry (its screens) and Slack reach `syncer web` at: an origin, no path.
    public_url: str | None = None
    # How long a create or link submitted in Sentry's issue screen is waited for before the answer
    # (Sentry's own wait for it is `safe_urlopen`'s default of 30 s).
    ui_wait_seconds: float = Field(default=15.0, gt=0, le=25)
    # The link form's ticket search reaches Jira while Sentry waits about a second for options.
    ui_search_timeout_seconds: float = Field(default=0.8, gt=0, le=5)

    jira_url: str | None = None
    jira_email: str | None = None
    jira_token: SecretStr | None = None
    jira_pat: SecretStr | None = None
    jira_webhook_secret: SecretStr | None = None
    # Unsigned Jira webhooks are accepted only when an operator says so explicitly.
    jira_webhook_unsigned: bool = False

    # Slack (optional): the bot token posts and reads, the signing secret checks Slack's requests.
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_url: str = "https://slack.com/api/"
    # Slack allows about one message a second per channel ("Posting messages", api.slack.com rate
    # limits); the Web API's tiers allow 20-100 calls a minute per method.
    slack_max_rps: float = Field(default=1.0, ge=0)

    # Jira Cloud search may miss an issue created this recently; after an ambiguous create we wait
    # this long for the label search to show it before creating again.
    jira_search_lag_seconds: float = Field(default=30.0, ge=0)
    # How long what a worker saw of a Jira workflow (a status's transitions and screens, a project's
    # statuses) is trusted before it is read again; 0 reads them on every move.
    jira_workflow_cache_seconds: float = Field(default=600.0, ge=0)

    # `$PORT` first: the contract, the Procfile and platforms (Heroku, Cloud Run, ...) set it.
    port: int = Field(default=8000, ge=1, le=65535, validation_alias=AliasChoices("PORT", "SYNCER_PORT"))
    http_connect_timeout: float = Field(default=5.0, gt=0)
    http_read_timeout: float = Field(default=20.0, gt=0)
    # Inbox rows stored but not finished within this many seconds are handed out again.
    sweep_after_seconds: int = Field(default=60, ge=5)
    # A delivery failing transiently (outages, 429s, our own rate limit) is retried until this long
    # after it was stored; Jira Cloud incidents last hours, so the default is a day.
    retry_window_seconds: float = Field(default=86400.0, gt=0)
    # An optional further cap on counted tries (our own rate limit's waits are not counted); unset:
    # only the window ends the retries.
    task_max_retries: int | None = Field(default=None, ge=0)
    retry_backoff_cap_seconds: int = Field(default=600, ge=1)
    delivery_retention_days: int = Field(default=14, ge=1)
    log_level: str = "INFO"
    # auto: text on a terminal, one JSON object a line otherwise (syncer.logs).
    log_format: Literal["auto", "text", "json"] = "auto"

    # Client-side request rates, shared by every worker through Redis; 0 turns a limit off. Jira
    # Cloud budgets an app at about 10 calls a second; Sentry's per-endpoint limits are of that order.
    jira_max_rps: float = Field(default=10.0, ge=0)
    sentry_max_rps: float = Field(default=10.0, ge=0)
    # Jira Cloud also limits writes per issue: writes to one ticket are spaced at least this far apart.
    jira_issue_write_interval_seconds: float = Field(default=0.5, ge=0)
    # A call that would wait longer than this for its turn is not made; the delivery is retried later.
    rate_limit_max_wait_seconds: float = Field(default=10.0, ge=0)
    # The share of each API's rate kept for status changes (syncer.ratelimit, syncer.lanes): a status
    # call waits at most about 1 / (share * rate) behind a storm, and the storm still has the whole
    # rate while no status change wants it. 0: one bucket for everything.
    rate_limit_status_share: float = Field(default=0.2, ge=0, lt=1)
    # How often beat sweeps the inbox for deliveries that are overdue.
    sweep_every_seconds: float = Field(default=15.0, gt=0)
    # A ticket-creation claim not renewed for this long is presumed dead (its worker was killed).
    claim_ttl_seconds: float = Field(default=90.0, gt=0)
    # A link's lock (status changes, repairs) not renewed for this long is presumed dead: the next
    # worker waits this long after a killed one. Renewed between calls, so it must outlast one call.
    link_lock_seconds: float = Field(default=60.0, gt=0)
    # `syncer worker` processes, each a Celery worker of threads; "auto": one per CPU (one process
    # is held to one core by its GIL). `syncer worker --processes` overrides it.
    worker_processes: str = "auto"

    # The console (`GET /console`, syncer.web.console): off unless a token or a trusted header is set.
    # The operator token signs a person in as an operator, the viewer token as a viewer.
    console_token: SecretStr | None = None
    console_viewer_token: SecretStr | None = None
    # A header an authenticating proxy sets to the signed-in person (oauth2-proxy: X-Forwarded-Email),
    # matched against the allow-lists below: comma-separated e-mails or globs (`*@example.com`).
    console_trusted_header: str | None = None
    console_operators: str = ""
    console_viewers: str = ""

    @field_validator("worker_processes")
    @classmethod
    def _auto_or_count(cls, value: str) -> str:
        value = value.strip().lower()
        if value != "auto" and not (value.isdigit() and int(value) >= 1):
            raise ValueError('must be "auto" or a whole number of at least 1')
        return value

    @field_validator("claim_ttl_seconds", "link_lock_seconds")
    @classmethod
    def _claim_outlives_one_call(cls, value: float, info: ValidationInfo) -> float:
        # The claim is renewed just before the create call. Were it to expire while that call waits
        # for its rate-limit turn and then for Jira's answer, a second worker could create again.
        names = ("http_connect_timeout", "http_read_timeout", "rate_limit_max_wait_seconds")
        longest = sum(float(info.data.get(name, 0)) for name in names)
        if value <= longest:
            raise ValueError(f"must be longer than connect + read timeout + rate-limit wait ({longest:g}s)")
        return value

    @field_validator("sentry_url", "sentry_web_url", "jira_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("slack_url")
    @classmethod
    def _slack_api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value if value.endswith("/") else value + "/"  # slack_sdk joins method names onto it

    @property
    def slack_enabled(self) -> bool:
        """Slack is set up: syncer posts to team channels and takes Slack's requests."""
        return self.slack_bot_token is not None and self.slack_signing_secret is not None

    @field_validator("database_url")
    @classmethod
    def _sqlalchemy_url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be an SQLAlchemy URL such as sqlite:///syncer.db")
        return value

    def require_services(self) -> None:
        """What `web`, `worker` and `beat` need before they can start; names each missing variable."""
        missing = [
            name
            for name, value in (
                ("SYNCER_SENTRY_ORG", self.sentry_org),
                ("SYNCER_SENTRY_TOKEN", self.sentry_token),
                ("SYNCER_SENTRY_CLIENT_SECRET", self.sentry_client_secret),
                ("SYNCER_JIRA_URL", self.jira_url),
            )
            if not value
        ]
        if not self.jira_pat and not (self.jira_email and self.jira_token):
            missing.append("SYNCER_JIRA_EMAIL + SYNCER_JIRA_TOKEN (Cloud) or SYNCER_JIRA_PAT (Server/DC)")
        if not self.jira_webhook_secret and not self.jira_webhook_unsigned:
            missing.append(
                "SYNCER_JIRA_WEBHOOK_SECRET (or SYNCER_JIRA_WEBHOOK_UNSIGNED=true to accept unsigned)"
            )
        if missing:
            raise ConfigError("missing required settings: " + "; ".join(missing))

    def http_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.http_read_timeout, connect=self.http_connect_timeout)

    @property
    def sentry_links_url(self) -> str:
        """The base of links to Sentry's issue pages (`SYNCER_SENTRY_WEB_URL`, else the API's)."""
        return self.sentry_web_url or self.sentry_url

    @property
    def lock_redis_url(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        return self.broker_url if self.broker_url.startswith(("redis://", "rediss://")) else None

    def describe(self) -> dict[str, str]:
        """Safe to print: secrets appear only as set/unset."""
        out: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                out[name] = "(set)"
            elif value is None:
                out[name] = "(unset)"
            else:
                out[name] = str(value)
        for name in ("database_url", "broker_url", "redis_url"):
            out[name] = _hide_password(out[name])
        return out


def _hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Not one URL SQLAlchemy can read (a broker's failover list, say): shown only when it
        # holds no credentials.
        return url if "@" not in url else "(set, not shown: not a single URL)"


def load_settings() -> Settings:
    """Read and validate the environment; a bad value names its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "SYNCER_" + "_".join(str(p) for p in err["loc"]).upper()
            if name == "SYNCER_PORT" and "PORT" in os.environ:
                name = "PORT"  # the alias that won (see `port`)
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid environment: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def current_settings() -> Settings:
    """The process-wide settings, read once (workers and the web app)."""
    return load_settings()
