"""The one error taxonomy of syncer.

    SyncerError
    ├── ConfigError          bad environment or TOML: stop, name the key
    │   └── PatternError     a policy pattern that cannot be compiled, or matches nothing useful
    ├── TransientError       worth retrying later (429, 5xx, timeouts, dropped connections)
    │   ├── AmbiguousError   the request may have taken effect (sent, then no clear answer):
    │   │                    look before repeating a non-idempotent write
    │   ├── Busy             a lock is held by another holder (a link's by another worker, the
    │   │   │                reconcile run lock by another run): try again shortly (`syncer.locks`)
    │   │   └── HeldElsewhere
    │   │                    an issue's claim, held by the worker creating its ticket
    │   │                    (`syncer.store.links`): look again once it is linked or has expired
    │   └── Throttled        our own rate limit's next turn is too far off (`syncer.ratelimit`):
    │                        nothing was sent; queue again for that turn, no attempt counted
    ├── LockLost             a lock expired under its holder, who stalled: stop, another may hold it
    └── PermanentError       retrying cannot help (400, 401, 403, 404, validation): dead letter
        └── PayloadError     a webhook body or API answer that is not the shape we need
            ├── BodyTooLarge a webhook body over the size intake accepts
            └── WrongFormat  a signed webhook body of another generation (Sentry's legacy
                             plugin, Jira 5's post-function body): refused at intake, 422

Failures of other libraries are mapped to these in exactly one place: HTTP answers by
`classify_http`, and transport, database and Redis exceptions by `classify_failure` (its table,
`FAILURES`, lists every exception family syncer expects), both used by both clients, and the
database sites by `classify_failure` too.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

import httpx
import redis
import requests
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout


class SyncerError(Exception):
    """Base of every error syncer raises on purpose."""


class ConfigError(SyncerError):
    """Configuration is missing or wrong; the message names the file or variable and the key."""


class PatternError(ConfigError):
    """A pattern that cannot be compiled, or would match nothing (or everything) useful; the message
    is in words a TOML author understands (`syncer.policy` reports it at the key it came from)."""


class TransientError(SyncerError):
    """Retry later. `retry_after` is the server's own hint in seconds, when it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class AmbiguousError(TransientError):
    """The request may or may not have been applied (timeout after sending, 5xx, lost connection)."""


class Busy(TransientError):
    """Another holder has the lock (`syncer.locks`); nothing was done under it."""


class HeldElsewhere(Busy):
    """Another worker holds the issue's claim (`syncer.store.links.take_claim`) right now."""


class Throttled(TransientError):
    """syncer's own client-side rate limit refused the call (`syncer.ratelimit`): nothing was sent,
    and `retry_after` is when the next turn comes. Waiting for a turn is queueing, not failing: a
    delivery refused this way is due again then, without an attempt counted against it."""


class LockLost(SyncerError):
    """A lock expired under its holder (it stalled longer than the lock's expiry): another may
    hold it now, so the holder stops."""


class PermanentError(SyncerError):
    """Retrying the same request cannot succeed."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class PayloadError(PermanentError):
    """Vendor JSON that is not JSON, or not the shape we need: the same bytes will never parse."""


class BodyTooLarge(PayloadError):
    """A webhook body over intake's limit (declared, or streamed past it): answered 413."""

    def __init__(self, limit: int):
        super().__init__(f"body over {limit} bytes", status=413)
        self.limit = limit


class WrongFormat(PayloadError):
    """A webhook body that is authentic but of a format syncer does not take; `format` names it for
    the sender's operator, who set up the wrong kind of webhook."""

    def __init__(self, format_name: str, hint: str):
        super().__init__(f"{format_name}: {hint}", status=422)
        self.format = format_name


# HTTP methods that change something: after one of these, no clear answer means "may have happened".
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Statuses that mean "try again later" on both Sentry and Jira. 409 and 425 are how Jira Cloud says
# "conflict/too early" for concurrent edits; it retries its own webhooks on them, and so do we.
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The server's wait hint, from whichever header it used.

    Jira: `Retry-After` (seconds) or `X-RateLimit-Reset` (ISO time).
    Sentry: `X-Sentry-Rate-Limit-Reset` (epoch seconds); `Retry-After` is not promised.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    now = now or datetime.now(UTC)
    value = lower.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, (when - now).total_seconds())
            except (TypeError, ValueError):
                pass
    value = lower.get("x-sentry-rate-limit-reset")
    if value:
        try:
            return max(0.0, float(value) - now.timestamp())
        except ValueError:
            pass
    value = lower.get("x-ratelimit-reset")
    if value:
        try:
            when = datetime.fromisoformat(value)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - now).total_seconds())
        except ValueError:
            pass
    return None


def classify_http(
    service: str,
    method: str,
    status: int,
    headers: Mapping[str, str],
    detail: str = "",
) -> SyncerError:
    """Map one failed HTTP answer to the taxonomy. `detail` must hold no secrets."""
    text = f"{service} {method} answered {status}"
    if detail:
        text = f"{text}: {detail[:300]}"
    if status in TRANSIENT_STATUSES:
        wait = retry_after_seconds(headers)
        # A 5xx on a write may hide a write that happened; 429/408/409/425 were refused before acting.
        if status >= 500 and method.upper() in WRITES:
            return AmbiguousError(text, retry_after=wait, status=status)
        return TransientError(text, retry_after=wait, status=status)
    return PermanentError(text, status=status)


class Fate(Enum):
    """What an exception tells about the request it interrupted."""

    UNSENT = "unsent"  # never reached the other side: safe to repeat, whatever the method
    UNANSWERED = "unanswered"  # sent, then no clear answer: a write may have happened
    REFUSED = "refused"  # the same request can never succeed


@dataclass(frozen=True)
class Failure:
    """One row of `FAILURES`: exceptions of these types, what they mean, and how the message says it
    (`{name}` is the exception's class name; `after_write` replaces `says` after a write)."""

    types: tuple[type[BaseException], ...]
    fate: Fate
    says: str = "{name}"
    after_write: str | None = None


# Every family of other libraries' exceptions that syncer maps, in lookup order: the first row an
# exception is an instance of decides (subclasses before their bases).
FAILURES: tuple[Failure, ...] = (
    # requests, under python-jira. Its ConnectionError covers both a refused connection and one
    # dropped after sending, so it counts as unanswered.
    Failure((requests.exceptions.TooManyRedirects,), Fate.REFUSED,
            "answered with a redirect, which syncer does not follow "
            "(is SYNCER_JIRA_URL the final address, https included?)"),
    Failure((requests.exceptions.ConnectTimeout,), Fate.UNSENT, "connection timed out"),
    Failure((requests.exceptions.RequestException,), Fate.UNANSWERED,
            "{name}", "{name} (the change may have been applied)"),
    # httpx, under the Sentry client.
    Failure((httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout), Fate.UNSENT,
            "could not connect ({name})"),
    Failure((httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL), Fate.REFUSED),
    Failure((httpx.TransportError, httpx.DecodingError), Fate.UNANSWERED, "no answer ({name})"),
    # The database and Redis out of reach (down, restarting, the pool exhausted): what was asked is
    # rolled back or never done, and the same work succeeds once they answer. Other database errors
    # (a constraint, bad SQL) are not here: they are bugs, or handled where they are expected.
    Failure((OperationalError, PoolTimeout), Fate.UNSENT, "database unavailable ({name})"),
    Failure((redis.RedisError,), Fate.UNSENT, "Redis unavailable ({name})"),
)


def classify_failure(
    exc: BaseException, service: str = "", method: str = "", what: str = ""
) -> SyncerError | None:
    """Map another library's exception to the taxonomy by `FAILURES`; None when it is no failure
    that table knows (a bug, or one of ours). The message names `service`, `method` and `what`
    when given, and the exception's class, never its text (which may quote URLs or SQL)."""
    for row in FAILURES:
        if isinstance(exc, row.types):
            break
    else:
        return None
    write = method.upper() in WRITES
    says = row.after_write if write and row.after_write is not None else row.says
    head = " ".join(part for part in (service, method, what) if part)
    text = says.format(name=type(exc).__name__)
    text = f"{head}: {text}" if head else text
    if row.fate is Fate.REFUSED:
        return PermanentError(text)
    if row.fate is Fate.UNANSWERED and write:
        return AmbiguousError(text)
    return TransientError(text)
