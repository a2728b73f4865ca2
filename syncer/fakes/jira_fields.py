"""The fake Jira's fields: the system fields a screen can show, custom fields, and how Jira describes and
checks their values.

A field's description is the `FieldCreateMetadata` of Atlassian's OpenAPI description (required, schema,
name, key, fieldId, hasDefaultValue, operations, allowedValues, autoCompleteUrl), the same shape
`expand=transitions.fields` gives per transition. `schema` is a `JsonTypeBean`: `type`, `items` for arrays,
`system` for system fields, `custom` (the type's key) and `customId` for custom fields.

Values come in REST v2's shapes: a select is `{"value": ...}` or `{"id": ...}`, a multi-select a list of
those, a cascading select adds `"child"`, a user picker `{"accountId"}` (Cloud) or `{"name"}` (Data
Center), a number a JSON number, a date `"YYYY-MM-DD"`, text a string, labels a list of strings. A value
of the wrong shape or not among the allowed ones is refused with the message Jira gives for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

CUSTOM_TYPE_KEY = "com.atlassian.jira.plugin.system.customfieldtypes:"

# kind -> (schema without custom keys, the custom type's key suffix, operations)
CUSTOM_KINDS: dict[str, tuple[dict[str, str], str, list[str]]] = {
    "select": ({"type": "option"}, "select", ["set"]),
    "multiselect": ({"type": "array", "items": "option"}, "multiselect", ["add", "set", "remove"]),
    "cascadingselect": ({"type": "option-with-child"}, "cascadingselect", ["set"]),
    "user": ({"type": "user"}, "userpicker", ["set"]),
    "number": ({"type": "number"}, "float", ["set"]),
    "date": ({"type": "date"}, "datepicker", ["set"]),
    "text": ({"type": "string"}, "textfield", ["set"]),
    "textarea": ({"type": "string"}, "textarea", ["set"]),
    "labels": ({"type": "array", "items": "string"}, "labels", ["add", "set", "remove"]),
}

# id -> (name on Cloud, name on Data Center, schema type, items, operations). Cloud renamed "Component/s"
# and "Fix Version/s"; Data Center still shows the old names.
SYSTEM_FIELDS: dict[str, tuple[str, str, str, str | None, list[str]]] = {
    "project": ("Project", "Project", "project", None, ["set"]),
    "issuetype": ("Issue Type", "Issue Type", "issuetype", None, []),
    "summary": ("Summary", "Summary", "string", None, ["set"]),
    "description": ("Description", "Description", "string", None, ["set"]),
    "labels": ("Labels", "Labels", "array", "string", ["add", "set", "remove"]),
    "components": ("Components", "Component/s", "array", "component", ["add", "set", "remove"]),
    "fixVersions": ("Fix versions", "Fix Version/s", "array", "version", ["set", "add", "remove"]),
    "priority": ("Priority", "Priority", "priority", None, ["set"]),
    "assignee": ("Assignee", "Assignee", "user", None, ["set"]),
    "reporter": ("Reporter", "Reporter", "user", None, ["set"]),
    "resolution": ("Resolution", "Resolution", "resolution", None, ["set"]),
}

TEXT_LIMIT = 255  # a single-line text field
TEXTAREA_LIMIT = 32767  # description, comments, multi-line text fields
TOO_LONG = "The entered text is too long. It exceeds the allowed limit of {:,} characters."
PARENT_SHAPE = "Could not find valid 'id' or 'value' in the Parent Option object."
CHILD_SHAPE = "Could not find valid 'id' or 'value' in the Child Option object."


def text_length(text: str) -> int:
    """Jira (Java) counts UTF-16 code units: a character outside the BMP counts twice."""
    return len(text.encode("utf-16-le")) // 2


class FieldError(ValueError):
    """A value Jira refuses, with the message it gives under `errors.<fieldId>`."""


@dataclass
class Option:
    id: str
    value: str
    children: list[Option] = field(default_factory=list)
    disabled: bool = False

    def json(self, base_url: str, *, with_children: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"self": f"{base_url}/rest/api/2/customFieldOption/{self.id}",
                                "value": self.value, "id": self.id, "disabled": self.disabled}
        if with_children and self.children:
            data["children"] = [child.json(base_url) for child in self.children]
        return data


@dataclass
class CustomField:
    id: str  # customfield_NNNNN
    name: str
    kind: str  # a key of CUSTOM_KINDS
    options: list[Option] = field(default_factory=list)

    @property
    def custom_id(self) -> int:
        return int(self.id.removeprefix("customfield_"))

    def schema(self) -> dict[str, Any]:
        base, suffix, _ = CUSTOM_KINDS[self.kind]
        return {**base, "custom": CUSTOM_TYPE_KEY + suffix, "customId": self.custom_id}

    @property
    def operations(self) -> list[str]:
        return list(CUSTOM_KINDS[self.kind][2])


def system_schema(field_id: str) -> dict[str, Any]:
    _, _, kind, items, _ = SYSTEM_FIELDS[field_id]
    schema: dict[str, Any] = {"type": kind}
    if items:
        schema["items"] = items
    schema["system"] = field_id
    return schema


def system_name(field_id: str, *, cloud: bool) -> str:
    cloud_name, dc_name, *_ = SYSTEM_FIELDS[field_id]
    return cloud_name if cloud else dc_name


def field_meta(field_id: str, name: str, schema: Mapping[str, Any], operations: list[str], *, required: bool,
               allowed_values: list[Any] | None = None, auto_complete: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"required": required, "schema": dict(schema), "name": name, "key": field_id,
                            "fieldId": field_id, "hasDefaultValue": False, "operations": list(operations)}
    if allowed_values is not None:
        meta["allowedValues"] = allowed_values
    if auto_complete is not None:
        meta["autoCompleteUrl"] = auto_complete
    return meta


def custom_meta(custom: CustomField, *, required: bool, base_url: str, cloud: bool) -> dict[str, Any]:
    allowed = None
    if custom.kind in ("select", "multiselect", "cascadingselect"):
        allowed = [o.json(base_url, with_children=custom.kind == "cascadingselect")
                   for o in custom.options if not o.disabled]
    auto = None
    if custom.kind == "user":
        auto = f"{base_url}/rest/api/2/user/search?{'query' if cloud else 'username'}="
    return field_meta(custom.id, custom.name, custom.schema(), custom.operations, required=required,
                      allowed_values=allowed, auto_complete=auto)


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


# -- values ------------------------------------------------------------------------------------------

UserLookup = Callable[[Any], Any]  # a REST user reference -> the fake's user, or None when unknown


def _option(options: list[Option], ref: Any, shape_message: str) -> Option:
    if not isinstance(ref, Mapping) or ("id" not in ref and "value" not in ref):
        raise FieldError(shape_message)
    live = [o for o in options if not o.disabled]
    if "id" in ref:
        found = next((o for o in live if o.id == str(ref["id"])), None)
        if found is None:
            raise FieldError(f"Option id '{ref['id']}' is not valid")
        return found
    found = next((o for o in live if o.value == ref["value"]), None)
    if found is None:
        raise FieldError(f"Option value '{ref['value']}' is not valid")
    return found


def check_labels(labels: Any) -> list[str]:
    """Jira's checks of a labels field; the labels without repeats."""
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise FieldError("Could not parse the value for field 'labels'.")
    for label in labels:
        if not label or any(c.isspace() for c in label):
            raise FieldError(f"The label '{label}' contains spaces which is invalid.")
        if text_length(label) > 255:
            raise FieldError(f"The label '{label}' exceeds the maximum length for a single label of 255 "
                             "characters.")
    return list(dict.fromkeys(labels))


def check_text(value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise FieldError("Operation value must be a string")
    if text_length(value) > limit:
        raise FieldError(TOO_LONG.format(limit))
    return value


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_custom(custom: CustomField, value: Any, find_user: UserLookup) -> Any:
    """The stored form of a value for `custom` (None clears it); FieldError when Jira would refuse it."""
    if value is None:
        return None
    kind = custom.kind
    if kind == "select":
        return _option(custom.options, value, PARENT_SHAPE)
    if kind == "multiselect":
        if not isinstance(value, list):
            raise FieldError("data was not an array")
        return [_option(custom.options, ref, PARENT_SHAPE) for ref in value]
    if kind == "cascadingselect":
        parent = _option(custom.options, value, PARENT_SHAPE)
        child_ref = value.get("child")
        return (parent, None if child_ref is None else _option(parent.children, child_ref, CHILD_SHAPE))
    if kind == "user":
        user = find_user(value) if isinstance(value, Mapping) else None
        if user is None:
            raise FieldError(f"Specify a valid value for {custom.name}")
        return user
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError("Operation value must be a number")
        return float(value)
    if kind == "date":
        unparsable = FieldError(f"Error parsing date string: {value}")
        if not isinstance(value, str) or not _DATE.match(value):
            raise unparsable
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise unparsable from None
    if kind in ("text", "textarea"):
        return check_text(value, TEXT_LIMIT if kind == "text" else TEXTAREA_LIMIT)
    if kind == "labels":
        return check_labels(value)
    raise AssertionError(f"unknown custom field kind {kind!r}")


def render_custom(custom: CustomField, value: Any, base_url: str,
                  user_json: Callable[[Any], Any]) -> Any:
    """A stored value as the issue's `fields` show it."""
    if value is None:
        return None
    if custom.kind == "select":
        return _plain_option(value, base_url)
    if custom.kind == "multiselect":
        return [_plain_option(o, base_url) for o in value]
    if custom.kind == "cascadingselect":
        parent, child = value
        data = _plain_option(parent, base_url)
        if child is not None:
            data["child"] = _plain_option(child, base_url)
        return data
    if custom.kind == "user":
        return user_json(value)
    return list(value) if isinstance(value, list) else value


def _plain_option(option: Option, base_url: str) -> dict[str, Any]:
    data = option.json(base_url)
    data.pop("disabled")
    return data


def display(custom: CustomField, value: Any) -> str | None:
    """A value as a changelog's `fromString`/`toString` shows it."""
    if value is None:
        return None
    if custom.kind == "select":
        return str(value.value)
    if custom.kind == "multiselect":
        return ",".join(o.value for o in value)
    if custom.kind == "cascadingselect":
        parent, child = value
        return f"Parent values: {parent.value}" + (f"Level 1 values: {child.value}" if child else "")
    if custom.kind == "user":
        return str(value.display_name)
    if custom.kind == "labels":
        return " ".join(value)
    return str(value)


def plain(custom: CustomField, value: Any) -> Any:
    """A stored value as a test reads it from `FakeJira.issue()`: option values, account ids, numbers."""
    if value is None:
        return None
    if custom.kind == "select":
        return value.value
    if custom.kind == "multiselect":
        return [o.value for o in value]
    if custom.kind == "cascadingselect":
        parent, child = value
        return (parent.value, child.value if child else None)
    if custom.kind == "user":
        return value.account_id
    return list(value) if isinstance(value, list) else value
