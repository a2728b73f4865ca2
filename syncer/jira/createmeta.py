"""Create-meta: which fields a project's create screen shows for an issue type, and what each takes.

Read with `GET /rest/api/2/issue/createmeta/{projectIdOrKey}/issuetypes` (the project's issue types)
and `.../issuetypes/{issueTypeId}` (that type's fields), both paged with `startAt`/`maxResults`; the
old `GET /issue/createmeta?expand=projects.issuetypes.fields` is deprecated on Cloud (Atlassian's
Jira Cloud OpenAPI description: getCreateIssueMetaIssueTypes, getCreateIssueMetaIssueTypeId, and
the deprecation notice CHANGE-1304 on getCreateIssueMeta).

Pages differ by deployment: Cloud names the list (`issueTypes`: PageOfCreateMetaIssueTypes;
`fields`: PageOfCreateMetaIssueTypeWithField) and gives `total`; Data Center (8.4 and later) calls it
`values` and says `isLast` (what the `jira` library's `createmeta_issuetypes` and
`createmeta_fieldtypes` read there). Each field is a FieldCreateMetadata: `fieldId`, `key`, `name`,
`required`, `hasDefaultValue`, `schema` (a JsonTypeBean: `type`, `items` for arrays, `system` or
`custom`/`customId`) and, for fields with a fixed set of values, `allowedValues`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncer.errors import PermanentError

ISSUE_TYPES = "issue/createmeta/{project}/issuetypes"
FIELDS = "issue/createmeta/{project}/issuetypes/{type_id}"
PAGE_SIZE = 50  # both operations' default page; Cloud caps maxResults at 200


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


@dataclass(frozen=True)
class FieldMeta:
    """One field of a create screen."""

    id: str  # "customfield_10050", "components"
    name: str  # "Root cause", "Components" (Data Center: "Component/s")
    required: bool
    has_default: bool
    type: str  # schema.type: option, array, user, number, date, datetime, string, option-with-child, ...
    items: str | None  # schema.items, for arrays: option, string, user, component, version, group
    custom: str | None  # schema.custom, the custom field type's key
    # None when Jira lists no allowed values (free text, numbers, users): anything of the right shape.
    allowed: tuple[Mapping[str, Any], ...] | None

    @property
    def label(self) -> str:
        """How messages name it: `"Root cause" (customfield_10050)`, or `"Components"`."""
        if self.name and self.name.casefold() != self.id.casefold():
            return f'"{self.name}" ({self.id})'
        return f'"{self.name or self.id}"'


@dataclass(frozen=True)
class CreateMeta:
    """The create screen of one project and issue type."""

    project: str
    issue_type: str
    issue_type_id: str
    fields: tuple[FieldMeta, ...]

    def find(self, key: str) -> FieldMeta | None:
        """A field by id (exactly, as Jira spells ids) or by name (without regard to case)."""
        wanted = key.strip()
        by_id = next((f for f in self.fields if f.id == wanted), None)
        if by_id is not None:
            return by_id
        folded = wanted.casefold()
        return next((f for f in self.fields if f.name.casefold() == folded), None)

    def has(self, field_id: str) -> bool:
        return any(f.id == field_id for f in self.fields)

    @property
    def where(self) -> str:
        return f"{self.project}/{self.issue_type}"


class NoSuchIssueType(PermanentError):
    """The project offers no issue type of that name to create (or the bot may not create it)."""

    def __init__(self, project: str, issue_type: str, offered: Sequence[str]) -> None:
        names = ", ".join(offered) or "none"
        super().__init__(f"Jira project {project} has no issue type {issue_type!r} to create "
                         f"(it offers: {names})", status=400)
        self.project = project
        self.issue_type = issue_type
        self.offered = tuple(offered)


def page_items(answer: Any, cloud_key: str) -> list[Mapping[str, Any]]:
    """The entries of one create-meta page, Cloud's or Data Center's."""
    if not isinstance(answer, Mapping):
        return []
    items = answer.get(cloud_key)
    if not isinstance(items, list):
        items = answer.get("values")
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def is_last_page(answer: Any, start: int, got: int) -> bool:
    """Whether the page that started at `start` and held `got` entries was the last."""
    if not isinstance(answer, Mapping) or got == 0:
        return True
    if isinstance(answer.get("isLast"), bool):
        return bool(answer["isLast"])
    total = answer.get("total")
    if isinstance(total, int) and not isinstance(total, bool):
        return start + got >= total
    return got < PAGE_SIZE


def parse_issue_type(raw: Mapping[str, Any]) -> tuple[str, str] | None:
    """(id, name) of an IssueTypeIssueCreateMetadata, or None when it has neither."""
    type_id, name = _text(raw.get("id")), _text(raw.get("name"))
    return (type_id, name) if type_id and name else None


def parse_field(raw: Mapping[str, Any]) -> FieldMeta | None:
    field_id = _text(raw.get("fieldId")) or _text(raw.get("key"))
    if not field_id:
        return None
    raw_schema = raw.get("schema")
    schema: Mapping[str, Any] = raw_schema if isinstance(raw_schema, Mapping) else {}
    allowed = raw.get("allowedValues")
    return FieldMeta(
        id=field_id,
        name=_text(raw.get("name")),
        required=raw.get("required") is True,
        has_default=raw.get("hasDefaultValue") is True,
        type=_text(schema.get("type")),
        items=_text(schema.get("items")) or None,
        custom=_text(schema.get("custom")) or None,
        allowed=tuple(v for v in allowed if isinstance(v, Mapping)) if isinstance(allowed, list) else None,
    )
