"""The policy's `fields` in Jira's shapes, from each field's schema in create-meta.

Pure: the caller reads the create screen (`syncer.jira.createmeta`) and says who a person is; this
decides what to send. The operator writes values as a person reads them ("Unknown", "2026-03-01",
["web", "api"], { value = "Hardware", child = "Disk" }); the schema says what Jira wants
(wire-formats.md, checked against Atlassian's REST v2 "Create issue" description and the fields'
JsonTypeBean schemas):

    option              {"value": v}                   single select, radio buttons
    array of option     [{"value": v}, ...]            multi-select, checkboxes
    option-with-child   {"value": a, "child": {"value": b}}   cascading select
    user                {"accountId": id} (Cloud), {"name": n} (Data Center); array: a list of those
    group               {"name": n}; array: a list of those
    number              a JSON number
    date                "YYYY-MM-DD"
    datetime            "YYYY-MM-DDThh:mm:ss.000+0000"
    string              text
    array of string     ["a", "b"]                     labels, and custom labels fields
    component, version  [{"name": n}, ...]             components, fix versions, affects versions
    priority and other  {"name": n}                    (when the allowed values have names)

A value outside the field's `allowedValues` is refused here, naming the values that are allowed,
with the case of the configured value forgiven ("unknown" picks "Unknown"). A cascading select is
written as a table `{ value = "A", child = "B" }`, or as text: "A" (the parent alone) or "A / B".

Each `fields` entry comes with the table it was set in; entries that reach the same field (one by
name, one by id) are merged with the later table winning: route over team over defaults.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from syncer.core.routing import FieldSetting
from syncer.jira.createmeta import CreateMeta, FieldMeta

# Fields a ticket gets from syncer itself (or Jira fills: the reporter is the bot): never "missing".
FILLED_BY_SYNCER = frozenset({"project", "issuetype", "summary", "description", "labels", "reporter"})
SHOWN_ALLOWED = 12  # allowed values a message lists before "..."


class ValueRefused(ValueError):
    """A configured value that cannot go into the field: the message says why, in the operator's words."""


@dataclass(frozen=True)
class FieldProblem:
    """A `fields` entry that cannot be sent: `source` is the table that set it."""

    source: str
    key: str
    message: str
    kind: str = "value_refused"  # or "unknown_field": the screen has no field by that name or id

    def __str__(self) -> str:
        return f"{self.source}.fields: {self.message}"


@dataclass(frozen=True)
class Person:
    """Who a user field names: the account (accountId on Cloud, name on Data Center), or why none."""

    account_id: str | None
    reason: str = ""


@dataclass
class Converted:
    """The `fields` a create sends, by field id, and what had to be left out."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: list[FieldProblem] = field(default_factory=list)
    set_by: dict[str, FieldSetting] = field(default_factory=dict)  # field id -> the entry that won


def convert(
    settings: Sequence[FieldSetting],
    meta: CreateMeta,
    *,
    person: Callable[[str], Person],
    user_ref: Callable[[str], Mapping[str, Any]],
) -> Converted:
    """Every entry in Jira's shape for `meta`'s create screen; an entry naming no field of the screen, or
    with a value the field cannot take, becomes a problem instead. `person` finds who a user field's
    value (an e-mail, or an account id) names; `user_ref` is the deployment's reference to an account."""
    result = Converted()
    for setting in settings:
        found = meta.find(setting.key)
        if found is None:
            result.problems.append(FieldProblem(setting.source, setting.key, _unknown(setting.key, meta),
                                                "unknown_field"))
            continue
        # A later table's entry for this field replaces an earlier one, whatever became of the earlier.
        result.values.pop(found.id, None)
        result.problems = [p for p in result.problems if meta.find(p.key) is not found]
        try:
            result.values[found.id] = shape(found, setting.value, person=person, user_ref=user_ref)
        except ValueRefused as refused:
            result.problems.append(FieldProblem(setting.source, setting.key, f"{found.label}: {refused}"))
            continue
        result.set_by[found.id] = setting
    return result


def missing_required(meta: CreateMeta, given: Iterable[str]) -> list[FieldMeta]:
    """Required fields of the screen without a value: not given, not filled by syncer, no default."""
    have = set(given) | FILLED_BY_SYNCER
    return [f for f in meta.fields if f.required and not f.has_default and f.id not in have]


def allowed_names(meta_field: FieldMeta) -> list[str]:
    return [name for value in meta_field.allowed or () if (name := _option_name(value))]


def describe_allowed(meta_field: FieldMeta) -> str:
    names = allowed_names(meta_field)
    if not names:
        return ""
    shown = ", ".join(_quoted(n) for n in names[:SHOWN_ALLOWED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > SHOWN_ALLOWED else "")


# --- shapes ---------------------------------------------------------------------------------------


def shape(
    meta_field: FieldMeta,
    value: Any,
    *,
    person: Callable[[str], Person],
    user_ref: Callable[[str], Mapping[str, Any]],
) -> Any:
    """`value` as the field takes it; ValueRefused when it cannot."""
    kind, items = meta_field.type, meta_field.items
    if kind == "array":
        values = list(value) if isinstance(value, tuple | list) else [value]
        if items == "string":
            texts = [_text(v) for v in values]
            if meta_field.id == "labels" or (meta_field.custom or "").endswith(":labels"):
                for label in texts:
                    if any(c.isspace() for c in label):
                        raise ValueRefused(f"{_quoted(label)} is not a label: Jira refuses spaces in labels")
            return texts
        return [_one(meta_field, items or "", v, person=person, user_ref=user_ref) for v in values]
    if isinstance(value, tuple | list):
        raise ValueRefused("takes one value, not an array")
    return _one(meta_field, kind, value, person=person, user_ref=user_ref)


def _one(meta_field: FieldMeta, kind: str, value: Any, *, person: Callable[[str], Person],
         user_ref: Callable[[str], Mapping[str, Any]]) -> Any:
    if kind == "option-with-child":
        return _cascade(meta_field, value)
    if isinstance(value, Mapping):
        raise ValueRefused("a table is only for a cascading select")
    if kind == "option":
        return {"value": _allowed(meta_field, _text(value))}
    if kind == "user":
        found = person(_text(value))
        if found.account_id is None:
            raise ValueRefused(f"no Jira user for {_quoted(_text(value))}: {found.reason}")
        return dict(user_ref(found.account_id))
    if kind == "number":
        return _number(value)
    if kind == "date":
        return _date(value)
    if kind == "datetime":
        return _datetime(value)
    if kind == "string":
        return _text(value)
    if kind in ("group", "component", "version", "priority", "resolution", "securitylevel"):
        return {"name": _allowed(meta_field, _text(value))}
    if meta_field.allowed:  # a type this module does not know, with a fixed set of values
        chosen = _allowed(meta_field, _text(value))
        return {"value": chosen} if any("value" in v for v in meta_field.allowed) else {"name": chosen}
    return value  # a type of an app's own: sent as written


def _cascade(meta_field: FieldMeta, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        parent, child = _text(value["value"]), value.get("child")
    else:
        text = _text(value)
        parent, _, rest = text.partition(" / ")
        child = rest or None
        if child is not None and _find_option(meta_field.allowed or (), text) is not None:
            parent, child = text, None  # an option whose own name has " / " in it
    option = _find_option(meta_field.allowed or (), parent)
    if meta_field.allowed is not None and option is None:
        allowed = describe_allowed(meta_field) or "none"
        raise ValueRefused(f"{_quoted(parent)} is not one of its values (allowed: {allowed})")
    chosen: dict[str, Any] = {"value": _option_name(option) if option is not None else parent}
    if child is None:
        return chosen
    children = option.get("children") if option is not None else None
    if isinstance(children, list):
        kids = [c for c in children if isinstance(c, Mapping)]
        found = _find_option(kids, _text(child))
        if found is None:
            names = ", ".join(_quoted(n) for c in kids if (n := _option_name(c))) or "none"
            raise ValueRefused(f"{_quoted(_text(child))} is not a value under {_quoted(chosen['value'])} "
                               f"(allowed: {names})")
        child = _option_name(found)
    chosen["child"] = {"value": _text(child)}
    return chosen


def _allowed(meta_field: FieldMeta, text: str) -> str:
    """`text` as the allowed value spells it; any text when the field lists none."""
    if meta_field.allowed is None:
        return text
    found = _find_option(meta_field.allowed, text)
    if found is None:
        allowed = describe_allowed(meta_field) or "none"
        raise ValueRefused(f"{_quoted(text)} is not one of its values (allowed: {allowed})")
    return _option_name(found)


def _find_option(options: Iterable[Mapping[str, Any]], text: str) -> Mapping[str, Any] | None:
    options = [o for o in options if not o.get("disabled")]
    exact = next((o for o in options if _option_name(o) == text), None)
    if exact is not None:
        return exact
    folded = text.casefold()
    return next((o for o in options if _option_name(o).casefold() == folded), None)


def _option_name(option: Mapping[str, Any] | None) -> str:
    """What an allowed value is called: `value` for options, `name` for everything else."""
    if option is None:
        return ""
    for key in ("value", "name"):
        if isinstance(option.get(key), str):
            return str(option[key])
    return ""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueRefused(f"expected text, got {value!r}")


def _number(value: Any) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueRefused(f"{_quoted(value)} is not a number") from None
        if math.isfinite(number):
            return int(number) if number.is_integer() and "." not in value else number
    raise ValueRefused(f"{value!r} is not a number")


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date(value: Any) -> str:
    text = _text(value)
    try:
        if _DATE.match(text):
            return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise ValueRefused(f"{_quoted(text)} is not a date: write it as 2026-03-01")


def _datetime(value: Any) -> str:
    text = _text(value)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueRefused(f"{_quoted(text)} is not a date and time: write it as 2026-03-01T09:30:00Z"
                           ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # Jira's own format (what its answers show, and what its date-time fields take).
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}" + when.strftime("%z")


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


def _unknown(key: str, meta: CreateMeta) -> str:
    close = [f.name for f in meta.fields if f.name and _close(key, f.name)]
    hint = f" (did you mean {_quoted(close[0])}?)" if close else ""
    return (f"{_quoted(key)} is not a field of the create screen of {meta.where}{hint}; "
            "fields are named as Jira shows them, or by id (customfield_10050)")


def _close(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a.casefold(), b.casefold()).ratio() >= 0.75
