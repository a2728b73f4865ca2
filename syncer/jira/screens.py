"""Transition screens: the fields a transition asks for, and the values the policy gives them.

`GET /issue/{key}/transitions?expand=transitions.fields` lists, for each transition, "the fields
associated with the issue transition screen. Use this information to populate `fields` and `update`
in a transition request" (Transition.fields: a map of field id -> FieldMetadata, with `required`,
`schema`, `name`, `key`, `hasDefaultValue`, `allowedValues`; the `expand` "accepts
transitions.fields, which returns information about the fields in the transition screen for each
transition. Fields hidden from the screen are not returned": Atlassian's Jira REST v2 OpenAPI
description, Get transitions,
https://developer.atlassian.com/cloud/jira/platform/rest/v2/api-group-issues/#api-rest-api-2-issue-issueidorkey-transitions-get).
Only what the screen shows may be set: a field not on it is a 400, a required one left out is a 400
too. So the screen decides what the POST carries, and a required field the policy has no value for
is said before anything is sent, with the values Jira would take.

A FieldMetadata is the create screen's FieldCreateMetadata less `fieldId` (its `key` says it), so the
create screen's reading and shapes serve here too (`syncer.jira.createmeta`, `syncer.core.fields`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from syncer.core.fields import Person, ValueRefused, describe_allowed, shape
from syncer.errors import PermanentError
from syncer.jira.createmeta import FieldMeta, parse_field

# A transition screen's field: the create screen's kind.
ScreenField = FieldMeta


class ScreenRefused(PermanentError):
    """A transition's screen needs what the policy does not give (or gives in a form it cannot take)."""

    def __init__(self, message: str, field: ScreenField) -> None:
        super().__init__(message, status=400)
        self.field = field


def parse_screen(raw: Any) -> tuple[ScreenField, ...] | None:
    """A transition's `fields`, or None when Jira did not list them."""
    if not isinstance(raw, Mapping):
        return None
    found = (parse_field({"fieldId": field_id, **meta}) for field_id, meta in raw.items()
             if isinstance(meta, Mapping))
    return tuple(field for field in found if field is not None)


def lookup(values: Mapping[str, Any], field: ScreenField) -> tuple[str, Any] | None:
    """The configured value for a screen's field, by id or by name (any case); of several, the last
    (the policy puts its most specific table's entries last): (the key it was set under, the value)."""
    for key, value in reversed(list(values.items())):
        if key == field.id or key.strip().casefold() == field.name.casefold():
            return key, value
    return None


def fill(screen: tuple[ScreenField, ...] | None, values: Mapping[str, Any], *, resolution: str | None,
         into_done: bool, user_ref: Callable[[str], Mapping[str, Any]], where: str,
         hint: str) -> dict[str, Any]:
    """The `fields` of a transition's POST: every field on the screen the policy sets, in Jira's
    shape, and, on a transition into a done status, the resolution from `resolution`
    (`close_resolution`) unless the policy names one itself. A required field without a value (and
    no default of Jira's) is a ScreenRefused naming it and what it takes; `where` names the ticket
    and transition, `hint` the policy table to set it in. A user field's value is an account
    (accountId on Cloud, username on Data Center).

    With no screen listed (None) only the resolution is sent, as before screens were read."""
    if screen is None:
        return {"resolution": {"name": resolution}} if into_done and resolution else {}
    chosen: dict[str, Any] = {}
    for field in screen:
        given = lookup(values, field)
        if given is None and field.id == "resolution" and into_done and resolution:
            given = ("close_resolution", resolution)
        if given is None:
            if field.required and not field.has_default and field.id != "comment":
                also = " (or, for a resolution, close_resolution)" if field.id == "resolution" else ""
                takes = describe_allowed(field) or "any value of its type"
                raise ScreenRefused(f"{where} requires {field.label}, and the policy gives it no value "
                                    f"(it takes: {takes}); set it in {hint}{also}", field)
            continue
        key, value = given
        try:
            chosen[field.id] = shape(field, value, person=Person, user_ref=user_ref)
        except ValueRefused as refused:
            raise ScreenRefused(f"{where}: {key} = {value!r} cannot go into {field.label}: {refused}; "
                                f"fix it in {hint}", field) from None
    return chosen
