"""The fake Sentry's issue search: the query language (the parts syncer uses) and the time window
an issue list covers (`statsPeriod`, `start`/`end`, and Sentry's 90-day default)."""

from __future__ import annotations

import bisect
import itertools
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta

from syncer.fakes.sentry_model import IGNORED_SUBSTATUSES, UNRESOLVED_SUBSTATUSES, Issue, Reply, parse_iso

Predicate = Callable[[Issue], bool]
OwnerLookup = Callable[[str], "tuple[str, int] | None"]

# getsentry/sentry src/sentry/api/utils.py: MAX_STATS_PERIOD, the range of a search that names none.
DEFAULT_PERIOD = timedelta(days=90)
FOREVER = 2**62

_TOKEN = re.compile(r'(!?)([A-Za-z_.]+):("(?:[^"\\]|\\.)*"|\S+)|"((?:[^"\\]|\\.)*)"|(\S+)')
_RELATIVE = re.compile(r"^([<>]=?)?([+-])(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_STATS_PERIOD = re.compile(r"^(\d+)([smhdw]?)$")  # sentry.utils.dates.parse_stats_period; no unit: seconds
_STATUSES = {"unresolved": "unresolved", "resolved": "resolved", "ignored": "ignored",
             "archived": "ignored", "muted": "ignored"}


def compile_query(query: str, owner: OwnerLookup) -> Predicate:
    """Sentry's issue search, the parts syncer uses: `is:`, `firstSeen:`/`lastSeen:`/`age:`,
    `level:`, `project:`, `assigned:`, `times_seen:`, `issue.priority:`, other `key:value` as tag
    filters, `!` to negate, and free text matched against title and culprit. `owner` resolves an
    `assigned:` value to ("user"|"team", id)."""
    checks: list[Predicate] = []
    for match in _TOKEN.finditer(query):
        negate, key, value, quoted, word = match.groups()
        if key is None:
            checks.append(_text_search((quoted if quoted is not None else word).lower()))
            continue
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1]
        check = _term(key, value, owner)
        checks.append(_negated(check) if negate else check)
    return lambda issue: all(check(issue) for check in checks)


def search_window(params: Mapping[str, str], *, default: timedelta | None) -> tuple[int, int] | None:
    """[low, high] in ms of the events an issue list looks at, from `statsPeriod` or `start`+`end`,
    else `default` back from now (None: no bound). As getsentry/sentry
    `api/utils.py:get_date_range_from_stats_period` parses them, with its error texts."""
    now = time.time()
    period = params.get("statsPeriod")
    if period is not None:
        match = _STATS_PERIOD.match(period)
        if match is None:
            raise Reply(400, {"detail": f"Invalid statsPeriod: {period!r}"})
        seconds = int(match.group(1)) * _UNITS.get(match.group(2) or "s", 1)
        return int((now - seconds) * 1000), int(now * 1000)
    start, end = params.get("start"), params.get("end")
    if start or end:
        if not (start and end):
            raise Reply(400, {"detail": "start and end are both required"})
        try:
            low, high = parse_iso(start), parse_iso(end)
        except ValueError:
            raise Reply(400, {"detail": f"{start!r} is not a valid ISO8601 date query"}) from None
        if low >= high:
            raise Reply(400, {"detail": "start must be before end"})
        return int(low.timestamp() * 1000), int(high.timestamp() * 1000)
    if default is None:
        return None
    return int((now - default.total_seconds()) * 1000), int(now * 1000)


def keyset_page(
    keys: Sequence[tuple[int, int]], issues: Mapping[int, Issue], predicate: Predicate, sort: str, *,
    limit: int, cursor: str | None,
) -> tuple[list[Issue], tuple[str, bool], tuple[str, bool]]:
    """One page, largest sort key first, of the issues whose (sort value, id) are `keys` (ascending):
    (issues, (prev cursor, has results), (next cursor, has results)). The cursor has Sentry's
    `value:offset:is_prev` shape; here `value` is the sort key and `offset` the id at the edge of the
    page (keyset pagination, so 100,000 issues stay fast)."""
    boundary: tuple[int, int] | None = None
    backwards = False
    if cursor:
        try:
            value, offset, is_prev = cursor.split(":")
            boundary, backwards = (int(value), int(offset)), is_prev == "1"
        except ValueError:
            raise Reply(400, {"detail": "Invalid cursor parameter."}) from None
    found: list[Issue] = []
    if backwards and boundary is not None:
        at = bisect.bisect_right(keys, boundary)
        while at < len(keys) and len(found) <= limit:
            issue = issues[keys[at][1]]
            if predicate(issue):
                found.append(issue)
            at += 1
        more_before = len(found) > limit
        found = found[:limit][::-1]
        more_after = True
    else:
        at = (bisect.bisect_left(keys, boundary) if boundary else len(keys)) - 1
        while at >= 0 and len(found) <= limit:
            issue = issues[keys[at][1]]
            if predicate(issue):
                found.append(issue)
            at -= 1
        more_after = len(found) > limit
        found = found[:limit]
        above = bisect.bisect_right(keys, (sort_value(found[0], sort), found[0].id)) if found else len(keys)
        more_before = boundary is not None and any(
            predicate(issues[key[1]]) for key in itertools.islice(keys, above, None)
        )

    def cursor_of(issue: Issue, prev: bool) -> str:
        return f"{sort_value(issue, sort)}:{issue.id}:{1 if prev else 0}"

    prev = (cursor_of(found[0], True), more_before) if found else ("0:0:1", False)
    nxt = (cursor_of(found[-1], False), more_after) if found else (cursor or "0:0:0", False)
    return found, prev, nxt


def sort_value(issue: Issue, sort: str) -> int:
    if sort == "date":
        return issue.last_seen
    if sort == "new":
        return issue.first_seen
    return issue.user_count if sort == "user" else issue.count


def seen_within(window: tuple[int, int]) -> Predicate:
    """An issue is in a window when it has an event in it: Sentry's search counts events between
    `date_from` and `date_to` (getsentry/sentry `search/snuba/executors.py`), so an issue last seen
    before the window, or first seen after it, is not found."""
    low, high = window
    return lambda issue: issue.last_seen >= low and issue.first_seen <= high


def date_range(value: str) -> tuple[int, int]:
    """[low, high) in ms for `-24h` (newer than), `+24h` (older than), `>-24h`, `>=ISO`, `<ISO`, `ISO`."""
    now = time.time()
    relative = _RELATIVE.match(value)
    if relative:
        op, sign, amount, unit = relative.groups()
        edge = int((now - int(amount) * _UNITS[unit]) * 1000)
        newer = (sign == "-") if not op else op.startswith(">")
        return (edge, FOREVER) if newer else (-FOREVER, edge)
    op_match = re.match(r"^([<>]=?)?(.+)$", value)
    assert op_match is not None
    op, text = op_match.groups()
    try:
        when = parse_iso(text)
    except ValueError:
        raise Reply(400, {"detail": f"Invalid date: {value}"}) from None
    edge = int(when.timestamp() * 1000)
    if op == ">":
        return edge + 1, FOREVER
    if op == ">=":
        return edge, FOREVER
    if op == "<":
        return -FOREVER, edge
    if op == "<=":
        return -FOREVER, edge + 1
    span = 86400_000 if len(text) <= 10 else 1000
    return edge, edge + span


def _term(key: str, value: str, owner: OwnerLookup) -> Predicate:
    if key == "is":
        return _is(value)
    if key in ("firstSeen", "age", "lastSeen"):
        attr = "last_seen" if key == "lastSeen" else "first_seen"
        low, high = date_range(value)
        return lambda i: low <= getattr(i, attr) < high
    if key == "level":
        return lambda i: i.level == value
    if key == "project":
        return lambda i: i.project.slug == value
    if key in ("assigned", "assigned_or_suggested"):
        if value in ("none", "[]"):
            return lambda i: i.assignee is None
        target = owner(value)
        return lambda i: target is not None and i.assignee == target
    if key in ("times_seen", "timesSeen"):
        number = re.match(r"^([<>]=?)?(\d+)$", value)
        if number is None:
            raise Reply(400, {"detail": f"Invalid number: {value}"})
        op, n = number.group(1), int(number.group(2))
        compare: dict[str | None, Callable[[int], bool]] = {
            ">": lambda c: c > n, ">=": lambda c: c >= n, "<": lambda c: c < n,
            "<=": lambda c: c <= n, None: lambda c: c == n,
        }
        return lambda i: compare[op](i.count)
    if key in ("issue.priority", "priority"):
        return lambda i: i.priority == value
    if key in ("issue.category", "issue.type"):
        return lambda i: value == "error"
    # Anything else is a tag: every value counts, not only the top ones the tags list shows.
    return lambda i: any(v.value == value for v in i.tags.get(key, ()))


def _is(value: str) -> Predicate:
    if value in _STATUSES:
        wanted = _STATUSES[value]
        return lambda i: i.status == wanted
    if value in IGNORED_SUBSTATUSES | UNRESOLVED_SUBSTATUSES:
        return lambda i: i.substatus == value
    if value == "assigned":
        return lambda i: i.assignee is not None
    if value == "unassigned":
        return lambda i: i.assignee is None
    if value == "linked":
        return lambda i: bool(i.external)
    if value == "unlinked":
        return lambda i: not i.external
    raise Reply(400, {"detail": f"Invalid value for \"is\" search, valid values are {sorted(_STATUSES)}"})


def _text_search(text: str) -> Predicate:
    return lambda issue: text in issue.title.lower() or text in issue.culprit.lower()


def _negated(check: Predicate) -> Predicate:
    return lambda issue: not check(issue)
