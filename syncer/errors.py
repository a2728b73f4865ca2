"""The one error taxonomy of syncer.

    SyncerError
    ├── ConfigError          bad environment or TOML: stop, name the key
    ├── TransientError       worth retrying later (429, 5xx, timeouts, dropped connections)
    │   ├── AmbiguousError   the request may have taken effect (sent, then no clear answer):
    │   │                    look before repeating a non-idempotent write
    │   └── Busy             a lock is held by another holder (a link's by another worker, the
    │       │                reconcile run lock by another run): try again shortly (`syncer.locks`)
    │       └── HeldElsewhere
    │                        an issue's claim, held by the worker creating its ticket
    │                        (`syncer.store.links`): look again once it is linked or has expired
    ├── LockLost             a lock expired under its holder, who stalled: stop, another may hold it
    └── PermanentError       retrying cannot help (400, 401, 403, 404, validation): dead letter
        └── PayloadError     a webhook body or API answer that is not the shape we need

HTTP failures are mapped to these in exactly one place, `classify_http`, used by both clients.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime


class SyncerError(Exception):
    """Base of every error syncer raises on purpose."""


class ConfigError(SyncerError):
    """Configuration is missing or wrong; the message names the file or variable and the key."""


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
