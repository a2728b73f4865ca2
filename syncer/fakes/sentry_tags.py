"""An issue's tags in the fake Sentry: building a table from what a test gives, merging two issues'
tables, and showing them as Sentry's two tag endpoints do (`issues/endpoints/group_tags.py`, the top
values of each key; `group_tagkey_values.py`, every value of one key)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from syncer.fakes.sentry_model import TagTable, TagValue, iso

# Per key: one value, a list (most frequent first), or a mapping value -> times seen.
TagSpec = Mapping[str, "Sequence[str] | str | Mapping[str, int]"]
TAG_LABELS = {
    "level": "Level", "environment": "Environment", "release": "Release", "url": "URL", "browser": "Browser",
    "os": "OS", "user": "User", "server_name": "Server", "transaction": "Transaction",
}
MAX_VALUES = 1000  # "Returns at most 1000 values when paginated"


def tag_table(tags: TagSpec, count: int, first_seen: int, last_seen: int) -> TagTable:
    table: TagTable = {}
    for key, values in tags.items():
        if isinstance(values, Mapping):
            counted = [(str(v), int(n)) for v, n in values.items()]
        else:
            listed = [values] if isinstance(values, str) else list(values)
            # Decreasing counts so topValues has a stable, meaningful order.
            counted = [(str(v), max(1, count - n)) for n, v in enumerate(listed)]
        counted.sort(key=lambda pair: -pair[1])
        table[str(key)] = tuple(TagValue(v, n, first_seen, last_seen) for v, n in counted)
    return table


def merged_tags(into: TagTable, other: TagTable) -> TagTable:
    """The tags of two merged issues: tag values come from the events, so counts add up."""
    merged: TagTable = {}
    for key in into.keys() | other.keys():
        values: dict[str, TagValue] = {}
        for value in (*into.get(key, ()), *other.get(key, ())):
            seen = values.get(value.value)
            values[value.value] = value if seen is None else TagValue(
                value.value, seen.count + value.count, min(seen.first_seen, value.first_seen),
                max(seen.last_seen, value.last_seen))
        merged[key] = tuple(sorted(values.values(), key=lambda v: -v.count))
    return merged


def tag_value_json(key: str, value: TagValue) -> dict[str, Any]:
    return {"key": key, "name": value.value, "value": value.value, "count": value.count,
            "lastSeen": iso(value.last_seen), "firstSeen": iso(value.first_seen)}


def tag_key_json(key: str, values: Sequence[TagValue], top: int) -> dict[str, Any]:
    """One key in the tags list: totalValues counts every event of the key, the rarer values' too;
    topValues are only the `top` most seen."""
    return {
        "key": key,
        "name": TAG_LABELS.get(key, key),
        "totalValues": sum(v.count for v in values),
        "topValues": [tag_value_json(key, v) for v in values[:top]],
    }


def values_in_order(values: Sequence[TagValue], sort: str | None) -> list[TagValue]:
    """GroupTagKeyValuesEndpoint's orders: date (last seen), age (first seen), count, else the newest
    value first (-id: here the table's order, reversed)."""
    if sort == "date":
        ordered = sorted(values, key=lambda v: -v.last_seen)
    elif sort == "age":
        ordered = sorted(values, key=lambda v: -v.first_seen)
    elif sort == "count":
        ordered = sorted(values, key=lambda v: -v.count)
    else:
        ordered = list(reversed(values))
    return ordered[:MAX_VALUES]
