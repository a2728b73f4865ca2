"""Transition screens: the fields a transition asks for, and the values the policy gives them.

`GET /issue/{key}/transitions?expand=transitions.fields` lists, for each transition, "the fields
associated with the issue transition screen. Use this information to populate `fields` and `update`
in a transition request" (Transition.fields, a map of field id -> FieldMetadata: `required`, `schema`,
`name`, `key`, `hasDefaultValue`, `allowedValues`; Atlassian's Jira REST v2 OpenAPI description, Get
transitions). Only what the screen shows may be set: a field that is not on it is a 400, and a
required field left out is a 400 too. So the screen decides what the POST carries, and a required
field the policy has no value for is said before anything is sent, with the values Jira would take.

Shapes, from the field's `schema` (the same as on create; wire-formats.md, "Create-meta"): select
`{"value": v}`, multi-select `[{"value": v}]`, cascading `{"value": a, "child": {"value": b}}`,
versions and components `[{"name": n}]` (one `{"name": n}` where the schema is not an array),
resolution, priority and other named values `{"name": n}`, numbers as numbers, text and dates as text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from syncer.errors import PermanentError

SHOWN_ALLOWED = 12  # allowed values a message lists before "..."
NAMED = ("component", "version", "resolution", "priority", "group", "securitylevel")


@dataclass(frozen=True)
class ScreenField:
    """One field of a transition's screen (a FieldMetadata)."""

    id: str
    name: str
    required: bool
    has_default: bool
    type: str  # schema.type: option, array, version, resolution, number, string, user, ...
    items: str  # schema.items, for arrays
    allowed: tuple[Mapping[str, Any], ...] | None  # None: Jira lists no fixed set of values

    @property
    def label(self) -> str:
        """How messages name it: `"Root cause" (customfield_10050)`, or `"Resolution"`."""
        if self.name and self.name.casefold() != self.id.casefold():
            return f'"{self.name}" ({self.id})'
        return f'"{self.name or self.id}"'

    def allowed_names(self) -> list[str]:
        return [name for option in self.allowed or () if (name := _option_name(option))]

    def describe_allowed(self) -> str:
        names = self.allowed_names()
        if not names:
            return "any value of its type"
        shown = ", ".join(names[:SHOWN_ALLOWED])
        return shown + (f", ... ({len(names)} in all)" if len(names) > SHOWN_ALLOWED else "")


class ScreenRefused(PermanentError):
    """A transition's screen needs what the policy does not give (or gives in a form it cannot take)."""

    def __init__(self, message: str, field: ScreenField) -> None:
        super().__init__(message, status=400)
        self.field = field


def parse_screen(raw: Any) -> tuple[ScreenField, ...] | None:
    """A transition's `fields`, or None when Jira did not list them."""
    if not isinstance(raw, Mapping):
        return None
    found = []
    for field_id, meta in raw.items():
        if not isinstance(meta, Mapping):
            continue
        schema = meta.get("schema")
        schema = schema if isinstance(schema, Mapping) else {}
        allowed = meta.get("allowedValues")
        found.append(ScreenField(
            id=_text(meta.get("fieldId")) or _text(meta.get("key")) or str(field_id),
            name=_text(meta.get("name")),
            required=meta.get("required") is True,
            has_default=meta.get("hasDefaultValue") is True,
            type=_text(schema.get("type")),
            items=_text(schema.get("items")),
            allowed=(tuple(v for v in allowed if isinstance(v, Mapping))
                     if isinstance(allowed, list) else None),
        ))
    return tuple(found)


# The policy's value for a field (by id or name): (the key it was set under, the value), or None.
Lookup = Callable[[ScreenField], tuple[str, Any] | None]


def lookup(values: Mapping[str, Any], field: ScreenField) -> tuple[str, Any] | None:
    """The configured value for a screen's field, by id or by name (any case); of several, the last
    (the policy puts its most specific table's entries last)."""
    for key, value in reversed(list(values.items())):
        if key == field.id or key.strip().casefold() == field.name.casefold():
            return key, value
    return None


def fill(screen: tuple[ScreenField, ...] | None, lookup: Lookup, *, resolution: str | None,
         into_done: bool, user_ref: Callable[[str], Mapping[str, Any]], where: str,
         hint: str) -> dict[str, Any]:
    """The `fields` of a transition's POST. Every field on the screen the policy sets, in Jira's shape;
    the resolution, on a transition into a done status, from `resolution` (`close_resolution`) unless
    the policy names one itself. A required field without a value (and no default of Jira's) is a
    ScreenRefused naming it and what it takes; `where` names the ticket and transition, `hint` the
    policy table to set it in.

    With no screen listed (None) only the resolution is sent, as before screens were read: the
    workflow of a screenless transition sets it by itself, but Jira did not say there is none."""
    if screen is None:
        return {"resolution": {"name": resolution}} if into_done and resolution else {}
    values: dict[str, Any] = {}
    for field in screen:
        given = lookup(field)
        if given is None and field.id == "resolution" and into_done and resolution:
            given = ("close_resolution", resolution)
        if given is None:
            if field.required and not field.has_default and field.id != "comment":
                also = " (or, for a resolution, close_resolution)" if field.id == "resolution" else ""
                raise ScreenRefused(
                    f"{where} requires {field.label}, and the policy gives it no value (it takes: "
                    f"{field.describe_allowed()}); set it in {hint}{also}", field)
            continue
        key, value = given
        try:
            values[field.id] = shape(field, value, user_ref)
        except ValueError as refused:
            raise ScreenRefused(f"{where}: {key} = {value!r} cannot go into {field.label}: {refused}; "
                                f"fix it in {hint}", field) from None
    return values


def shape(field: ScreenField, value: Any, user_ref: Callable[[str], Mapping[str, Any]]) -> Any:
    """`value` as the field takes it; ValueError (in the operator's words) when it cannot."""
    if field.type == "array":
        many = list(value) if isinstance(value, tuple | list) else [value]
        if field.items == "string":
            return [_text_of(v) for v in many]
        return [_one(field, field.items, v, user_ref) for v in many]
    if isinstance(value, tuple | list):
        if field.type in ("component", "version") and value:
            return [_one(field, field.type, v, user_ref) for v in value]
        raise ValueError("takes one value, not an array")
    return _one(field, field.type, value, user_ref)


def _one(field: ScreenField, kind: str, value: Any, user_ref: Callable[[str], Mapping[str, Any]]) -> Any:
    if kind == "option-with-child":
        return _cascade(field, value)
    if isinstance(value, Mapping):
        raise ValueError("a table is only for a cascading select")
    if kind == "option":
        return {"value": _allowed(field, _text_of(value))}
    if kind in NAMED:
        return {"name": _allowed(field, _text_of(value))}
    if kind == "user":
        return dict(user_ref(_text_of(value)))  # an accountId (Cloud) or a username (Data Center)
    if kind == "number":
        if isinstance(value, int | float):
            return value
        try:
            return float(_text_of(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    if field.allowed:  # a type of an app's own with a fixed set of values
        chosen = _allowed(field, _text_of(value))
        return {"value": chosen} if any("value" in option for option in field.allowed) else {"name": chosen}
    return _text_of(value)  # string, date ("2026-03-01"), datetime: text as written


def _cascade(field: ScreenField, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        parent, child = _text_of(value.get("value")), value.get("child")
    else:
        parent, _, rest = _text_of(value).partition(" / ")
        child = rest or None
    chosen: dict[str, Any] = {"value": _allowed(field, parent)}
    if child is not None:
        chosen["child"] = {"value": _text_of(child)}
    return chosen


def _allowed(field: ScreenField, text: str) -> str:
    """`text` as the allowed value spells it (case forgiven); any text when Jira lists none."""
    if field.allowed is None:
        return text
    names = field.allowed_names()
    match = next((n for n in names if n == text), None) or next(
        (n for n in names if n.casefold() == text.casefold()), None)
    if match is None:
        raise ValueError(f"{text!r} is not one of its values ({field.describe_allowed()})")
    return match


def _option_name(option: Mapping[str, Any]) -> str:
    """What an allowed value is called: `value` for options, `name` for everything else."""
    for key in ("value", "name"):
        if isinstance(option.get(key), str):
            return str(option[key])
    return ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected text, got {value!r}")
