"""The fake Sentry's records (users, teams, projects, issues, tag values) and the answer its
handlers raise to end a request early. Plain data: `syncer.fakes.sentry` owns the rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response

RESOLVE_STATUSES = frozenset({"resolved", "resolvedInNextRelease"})
UPDATE_STATUSES = frozenset({"resolved", "resolvedInNextRelease", "unresolved", "ignored", "muted"})
IGNORED_SUBSTATUSES = frozenset(
    {"archived_until_escalating", "archived_until_condition_met", "archived_forever"}
)
UNRESOLVED_SUBSTATUSES = frozenset({"escalating", "ongoing", "regressed", "new"})
PRIORITIES = ("low", "medium", "high")
# What a snooze (archived until a condition is met) is made of, as `statusDetails` names them.
IGNORE_CONDITION_FIELDS = (
    "ignoreCount", "ignoreWindow", "ignoreUserCount", "ignoreUserWindow", "ignoreUntil", "ignoreDuration",
)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_ms(when: datetime | float | str | None, default: float) -> int:
    """Milliseconds since the epoch of a datetime, Unix seconds or ISO text; `default` (seconds) for None."""
    if when is None:
        return int(default * 1000)
    if isinstance(when, datetime):
        aware = when if when.tzinfo else when.replace(tzinfo=UTC)
        return int(aware.timestamp() * 1000)
    if isinstance(when, str):
        return to_ms(parse_iso(when), default)
    return int(float(when) * 1000)


def parse_iso(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def base36(n: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


@dataclass
class User:
    id: int
    name: str
    email: str
    username: str

    def actor(self) -> dict[str, Any]:
        # Webhook actors carry the user's numeric id (an int, unlike the REST API's strings).
        return {"type": "user", "id": self.id, "name": self.name}

    def serialize(self) -> dict[str, Any]:
        return {"id": str(self.id), "name": self.name, "username": self.username, "email": self.email}


@dataclass
class Team:
    id: int
    slug: str


@dataclass
class Project:
    id: int
    slug: str
    name: str
    platform: str
    short_counter: int = 0


@dataclass(frozen=True, slots=True)
class TagValue:
    """One value of one tag key on one issue: how often it was seen, and when first and last."""

    value: str
    count: int
    first_seen: int  # ms since epoch
    last_seen: int


TagTable = dict[str, tuple[TagValue, ...]]  # key -> its values, most frequent first


@dataclass
class Snooze:
    """An `archived_until_condition_met` issue's condition: Sentry's GroupSnooze. The counts at
    the start let the serializer report `ignoreCount` as what is left to go, as Sentry does."""

    count: int | None = None
    window: int | None = None  # minutes
    user_count: int | None = None
    user_window: int | None = None
    until: int | None = None  # ms since epoch
    count_at_start: int = 0
    users_at_start: int = 0
    actor: dict[str, Any] | None = None


@dataclass(slots=True)
class Issue:
    id: int
    short_id: str
    project: Project
    title: str
    culprit: str
    level: str
    platform: str
    logger: str
    metadata: dict[str, Any]
    status: str
    substatus: str | None
    status_details: dict[str, Any]
    first_seen: int  # ms since epoch
    last_seen: int
    count: int
    user_count: int
    priority: str
    is_unhandled: bool
    priority_locked_at: int | None = None  # ms; set when a person chose the priority
    assignee: tuple[str, int] | None = None
    snooze: Snooze | None = None
    tags: TagTable = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    external: dict[str, dict[str, Any]] = field(default_factory=dict)  # service type -> link
    first_release: str | None = None  # the release of its first event (version), if events name one
    last_release: str | None = None  # the release of its latest event


class Reply(Exception):
    """Answer the request with this status and body (raised from inside a handler)."""

    def __init__(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    def response(self) -> Response:
        if self.body is None:
            return Response(status_code=self.status, headers=self.headers)
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)
