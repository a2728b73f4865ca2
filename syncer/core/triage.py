"""Triage figures: how fast tickets are made and closed per team, what each route catches, and how
much falls to [defaults] with no owner. Pure: the store's rows and the clock's `now` in, figures out;
`markdown` and `as_dict` are the report's two shapes (`syncer report`, the console's copy button).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

# The route windows are fixed (a driver compares day, week and month), whatever `--since` says.
ROUTE_WINDOWS: tuple[tuple[str, timedelta], ...] = (
    ("24h", timedelta(hours=24)), ("7d", timedelta(days=7)), ("30d", timedelta(days=30)),
)
AGE_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("under 1d", timedelta(days=1)), ("1d-7d", timedelta(days=7)), ("7d-30d", timedelta(days=30)),
    ("over 30d", None),
)
DEFAULTS_ROUTE = "defaults"  # core.routing's route_name when no route matched
MAX_SINCE = timedelta(days=3660)

_SINCE = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_since(text: str) -> timedelta:
    """`24h`, `7d`, `4w` as a duration; a ValueError that says what is expected otherwise."""
    found = _SINCE.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a duration: give a number of hours, days or weeks, "
                         "e.g. 24h, 7d or 4w")
    span = int(found.group(1)) * _UNITS[found.group(2)]
    if not timedelta(0) < span <= MAX_SINCE:
        raise ValueError(f"{text!r}: give more than nothing and at most {MAX_SINCE.days} days")
    return span


class Ticket(Protocol):
    """What the figures need of a ticket (`syncer.store.triage.TicketRow` has it)."""

    @property
    def team(self) -> str | None: ...
    @property
    def first_seen(self) -> datetime | None: ...
    @property
    def ticketed_at(self) -> datetime: ...
    @property
    def resolved_at(self) -> datetime | None: ...
    @property
    def open(self) -> bool: ...


@dataclass(frozen=True)
class Spread:
    """A duration's middle and its slow tail over `count` tickets (None when there are none)."""

    count: int
    p50: timedelta | None
    p90: timedelta | None


@dataclass(frozen=True)
class Week:
    week: str  # ISO week, e.g. "2026-W49"
    made: int
    resolved: int


@dataclass(frozen=True)
class TeamFigures:
    team: str | None  # None: tickets that [defaults] filed, which no team owns
    made: int
    resolved: int
    to_ticket: Spread  # Sentry's first seen -> ticket made
    to_resolve: Spread  # ticket made -> ticket done
    regressions: int
    reopens: int
    open_by_age: tuple[tuple[str, int], ...]
    weeks: tuple[Week, ...]

    @property
    def open(self) -> int:
        return sum(count for _, count in self.open_by_age)


@dataclass(frozen=True)
class RouteFigures:
    """A route's issues per window of `ROUTE_WINDOWS` (same order)."""

    route: str
    matched: tuple[int, ...]
    tickets: tuple[int, ...]
    ignored: tuple[int, ...]


@dataclass(frozen=True)
class Report:
    since: datetime
    until: datetime
    team: str | None  # the one team asked for, or None for all
    teams: tuple[TeamFigures, ...]
    routes: tuple[RouteFigures, ...]
    # Per window of ROUTE_WINDOWS: the share of matched issues that reached [defaults]; None when no
    # issue was matched in it (or a team was asked for: [defaults] is no team's).
    no_owner_share: tuple[float | None, ...]


def percentile(values: Sequence[timedelta], q: float) -> timedelta | None:
    """Nearest-rank percentile: a duration some ticket actually took, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def spread(values: Sequence[timedelta]) -> Spread:
    return Spread(len(values), percentile(values, 0.5), percentile(values, 0.9))


def iso_week(moment: datetime) -> str:
    year, week, _ = moment.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def weeks_between(since: datetime, until: datetime) -> list[str]:
    """Every ISO week the window touches, oldest first."""
    found: list[str] = []
    moment = since
    while moment <= until:
        label = iso_week(moment)
        if label not in found:
            found.append(label)
        moment += timedelta(days=1)
    if iso_week(until) not in found:
        found.append(iso_week(until))
    return found


def age_bucket(age: timedelta) -> str:
    for label, limit in AGE_BUCKETS:
        if limit is None or age < limit:
            return label
    return AGE_BUCKETS[-1][0]


def team_figures(
    team: str | None, tickets: Iterable[Ticket], *, since: datetime, now: datetime,
    regressions: int = 0, reopens: int = 0,
) -> TeamFigures:
    """One team's figures over the window from `since` to `now`."""
    made: list[Ticket] = []
    resolved: list[Ticket] = []
    ages = dict.fromkeys((label for label, _ in AGE_BUCKETS), 0)
    for ticket in tickets:
        if ticket.ticketed_at >= since:
            made.append(ticket)
        if ticket.resolved_at is not None and ticket.resolved_at >= since:
            resolved.append(ticket)
        if ticket.open:
            ages[age_bucket(now - ticket.ticketed_at)] += 1
    to_ticket = [max(timedelta(0), t.ticketed_at - t.first_seen) for t in made if t.first_seen is not None]
    to_resolve = [max(timedelta(0), t.resolved_at - t.ticketed_at) for t in resolved if t.resolved_at]
    weekly = {label: [0, 0] for label in weeks_between(since, now)}
    for t in made:
        weekly.setdefault(iso_week(t.ticketed_at), [0, 0])[0] += 1
    for t in resolved:
        assert t.resolved_at is not None
        weekly.setdefault(iso_week(t.resolved_at), [0, 0])[1] += 1
    return TeamFigures(
        team=team, made=len(made), resolved=len(resolved), to_ticket=spread(to_ticket),
        to_resolve=spread(to_resolve), regressions=regressions, reopens=reopens,
        open_by_age=tuple(ages.items()),
        weeks=tuple(Week(label, counts[0], counts[1]) for label, counts in sorted(weekly.items())),
    )


def no_owner_share(routes: Sequence[RouteFigures]) -> tuple[float | None, ...]:
    """Per route window, the share of matched issues that no route claimed ([defaults])."""
    shares: list[float | None] = []
    for index in range(len(ROUTE_WINDOWS)):
        total = sum(route.matched[index] for route in routes)
        defaults = sum(route.matched[index] for route in routes if route.route == DEFAULTS_ROUTE)
        shares.append(defaults / total if total else None)
    return tuple(shares)


def by_team(tickets: Iterable[Ticket]) -> dict[str | None, list[Ticket]]:
    grouped: dict[str | None, list[Ticket]] = {}
    for ticket in tickets:
        grouped.setdefault(ticket.team, []).append(ticket)
    return grouped


def team_order(teams: Iterable[str | None]) -> list[str | None]:
    """Named teams alphabetically, the no-team row ([defaults]) last."""
    named = sorted(t for t in teams if t is not None)
    return [*named, None] if None in set(teams) else list(named)


# --- the report's shapes --------------------------------------------------------------------------


def duration_text(span: timedelta | None) -> str:
    """`45s`, `12m`, `3h 20m`, `2d 4h`; `-` for no value."""
    if span is None:
        return "-"
    seconds = int(span.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes}m"
    if days < 1:
        return f"{hours}h {minutes % 60}m" if minutes % 60 else f"{hours}h"
    return f"{days}d {hours % 24}h" if hours % 24 else f"{days}d"


def team_name(team: str | None) -> str:
    return team if team is not None else "(no team: [defaults])"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def markdown(report: Report) -> str:
    """The weekly digest as Markdown: pasteable into a wiki page, a chat or a ticket."""
    days = (report.until - report.since).total_seconds() / 86400
    span = f"{days:g} days" if days >= 1 else f"{days * 24:g} hours"
    title = f"# Triage report: {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC ({span})"
    lines = [title + (f", team {report.team}" if report.team else ""), ""]
    if not report.teams:
        lines += ["No tickets were made, resolved or open in this window.", ""]
    else:
        lines += ["## Teams", ""]
        lines += _table(
            ("team", "made", "resolved", "first seen to ticket p50", "p90", "ticket to resolved p50", "p90",
             "regressions", "reopens", "open"),
            ((team_name(t.team), t.made, t.resolved,
              duration_text(t.to_ticket.p50), duration_text(t.to_ticket.p90),
              duration_text(t.to_resolve.p50), duration_text(t.to_resolve.p90),
              t.regressions, t.reopens, t.open) for t in report.teams),
        )
        lines += ["", "## Open tickets by age", ""]
        lines += _table(("team", *(label for label, _ in AGE_BUCKETS)),
                        ((team_name(t.team), *(count for _, count in t.open_by_age)) for t in report.teams))
        lines += ["", "## Per week (made / resolved)", ""]
        weeks = [w.week for w in report.teams[0].weeks]
        lines += _table(("team", *weeks), (
            (team_name(t.team), *(f"{w.made} / {w.resolved}" for w in t.weeks)) for t in report.teams))
        lines.append("")
    windows = [label for label, _ in ROUTE_WINDOWS]
    lines += [f"## Routes (issues matched, tickets made, ignored; last {', '.join(windows)})", ""]
    if report.routes:
        lines += _table(("route", *(f"matched {w}" for w in windows), *(f"tickets {w}" for w in windows),
                         *(f"ignored {w}" for w in windows)),
                        ((r.route, *r.matched, *r.tickets, *r.ignored) for r in report.routes))
    else:
        lines.append(f"No issue was routed in the last {windows[-1]}.")
    if report.team is None:
        shares = ", ".join(f"{_share(s)} in {w}" for s, w in zip(report.no_owner_share, windows, strict=True))
        lines += ["", f"No owner (reached [defaults]): {shares}."]
    return "\n".join(lines) + "\n"


def _seconds(span: timedelta | None) -> float | None:
    return None if span is None else span.total_seconds()


def _spread_dict(value: Spread) -> dict[str, Any]:
    return {"count": value.count, "p50_seconds": _seconds(value.p50), "p90_seconds": _seconds(value.p90)}


def as_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data: durations in seconds, times in ISO 8601 UTC."""
    windows = [label for label, _ in ROUTE_WINDOWS]

    def per_window(values: Sequence[Any]) -> Mapping[str, Any]:
        return dict(zip(windows, values, strict=True))

    return {
        "since": report.since.astimezone(UTC).isoformat(),
        "until": report.until.astimezone(UTC).isoformat(),
        "team": report.team,
        "teams": [
            {
                "team": t.team, "made": t.made, "resolved": t.resolved,
                "first_seen_to_ticket": _spread_dict(t.to_ticket),
                "ticket_to_resolved": _spread_dict(t.to_resolve),
                "regressions": t.regressions, "reopens": t.reopens, "open": t.open,
                "open_by_age": dict(t.open_by_age),
                "weeks": [{"week": w.week, "made": w.made, "resolved": w.resolved} for w in t.weeks],
            }
            for t in report.teams
        ],
        "routes": [
            {"route": r.route, "matched": per_window(r.matched), "tickets": per_window(r.tickets),
             "ignored": per_window(r.ignored)}
            for r in report.routes
        ],
        "no_owner_share": None if report.team else per_window(report.no_owner_share),
    }
