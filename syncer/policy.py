"""The TOML policy: who owns which Sentry issues, and how status flows between Sentry and Jira.

The file is read once at start and validated completely, so a mistake stops the process with a
message naming the file, the key path (`routes[2].when.level`) and what is wrong, instead of
surfacing later as a wrong ticket. Every table forbids unknown keys: a typo is an error, not a
setting that silently does nothing. Patterns (globs, regexes: `syncer.core.patterns`) are compiled
here, at load time, so routing never meets a bad one.

`Policy()`, everything defaulted, is a valid object for code and tests that build policies
directly. A policy *file* must also name `defaults.jira_project` unless `defaults.action` is
"ignore": `parse_policy` checks that, because a file without it would fail on the first issue no
route claims.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
import types
from collections.abc import Callable, Mapping
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetPydanticSchema,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from syncer.core.patterns import NameGlob, OwnerPattern, Pattern, PatternError, TextGlob, TextPattern
from syncer.core.people import People, Person
from syncer.errors import ConfigError

LEVELS = ("fatal", "error", "warning", "info", "debug")
SENTRY_PRIORITIES = ("high", "medium", "low")  # Sentry's issue priority (PriorityLevel)
# getsentry/sentry src/sentry/api/utils.py MAX_STATS_PERIOD: an issue search covers 90 days at most
# (and exactly that when it names no range), so a longer backfill window would silently be cut.
MAX_LOOKBACK_HOURS = 90 * 24


def _invalid(message: str) -> PydanticCustomError:
    # The message goes through the context, never the template, so braces in user text are safe.
    return PydanticCustomError("policy_value", "{message}", {"message": message})


def _invalid_key(key: str, message: str) -> PydanticCustomError:
    """A problem found by a table-level check, reported at `key` inside that table."""
    return PydanticCustomError("policy_key", "{key}: {message}", {"key": key, "message": message})


# --- field types ----------------------------------------------------------------------------------

_TOML_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    str: "a string",
    list: "an array",
    dict: "a table",
}


def toml_type(value: Any) -> str:
    return next((name for kind, name in _TOML_TYPES.items() if isinstance(value, kind)), "a date/time")


def _one_or_many(value: Any) -> Any:
    """Conditions take a single value or an array of them."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        if not value:
            raise _invalid("an empty array matches nothing; leave the key out to match everything")
        return tuple(value)
    raise _invalid(f"expected a string or an array of strings, got {toml_type(value)}")


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _name(value: str) -> str:
    if not value.strip():
        raise _invalid("must not be empty")
    return value.strip()


def _label(value: str) -> str:
    # Jira refuses labels with spaces, and caps them at 255 characters.
    if not value or any(char.isspace() for char in value) or len(value) > 255:
        raise _invalid(f"{json.dumps(value)} is not a Jira label (1 to 255 characters, no spaces)")
    return value


# What a ticket's label may take from its Sentry issue, written `{project}`, `{tags.environment}`.
LABEL_VALUES = ("project", "project_name", "level", "platform")
_LABEL_VALUE = re.compile(r"\{([^{}]*)\}")


def _ticket_label(value: str) -> str:
    _label(value)
    for name in _LABEL_VALUE.findall(value):
        if name not in LABEL_VALUES and not (name.startswith("tags.") and name[5:]):
            raise _invalid(f"{json.dumps(value)}: {{{name}}} is not a value a label can take from Sentry "
                           f"({', '.join('{' + v + '}' for v in LABEL_VALUES)} or {{tags.<key>}})")
    if "{" in _LABEL_VALUE.sub("", value) or "}" in _LABEL_VALUE.sub("", value):
        raise _invalid(f"{json.dumps(value)}: a brace without its pair (values are written {{project}})")
    return value


def _project_key(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value):
        raise _invalid(f"{json.dumps(value)} is not a Jira project key, like OPS")
    return value


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _assignee(value: str) -> str:
    # Jira Cloud finds people by e-mail (we demand an exact match); Server/DC also by username,
    # so any single word is accepted, but something with an @ must be a whole address.
    if not value or any(char.isspace() for char in value):
        raise _invalid(f"{json.dumps(value)} should be an e-mail address (or, on Jira Server/DC, a username)")
    if "@" in value and not _EMAIL.fullmatch(value):
        raise _invalid(f"{json.dumps(value)} is not a valid e-mail address")
    return value


def _slack_channel(value: str) -> str:
    # chat.postMessage takes a name or an ID; the ID survives a rename (Slack: "Channel names
    # may change. Use IDs."), so both are accepted: "#payments-alerts" or "C0123456789".
    if re.fullmatch(r"#[a-z0-9][a-z0-9._-]{0,79}", value) or re.fullmatch(r"[CG][A-Z0-9]{6,}", value):
        return value
    raise _invalid(f"{json.dumps(value)} is not a Slack channel: a name with its # "
                   '("#payments-alerts", lower case) or a channel ID ("C0123456789")')


def _emoji(value: str) -> str:
    name = value.strip().strip(":")
    if not re.fullmatch(r"[a-z0-9_+'-]+", name):
        raise _invalid(f"{json.dumps(value)} is not an emoji name as Slack writes it (\"ticket\", \"jira\")")
    return name


Name = Annotated[str, Field(strict=True), AfterValidator(_name)]
Label = Annotated[str, Field(strict=True), AfterValidator(_label)]
# A label of new tickets: may take values from the Sentry issue (`env-{tags.environment}`).
TicketLabel = Annotated[str, Field(strict=True), AfterValidator(_ticket_label)]
ProjectKey = Annotated[str, Field(strict=True), AfterValidator(_project_key)]
Assignee = Annotated[str, Field(strict=True), AfterValidator(_assignee)]
# A Jira priority name; "" means "leave it to Jira" (some create screens have no priority field).
PriorityName = Annotated[str, Field(strict=True)]
Level = Annotated[Literal["fatal", "error", "warning", "info", "debug"], BeforeValidator(_lower)]
Count = Annotated[StrictInt, Field(ge=0)]
SlackChannel = Annotated[str, Field(strict=True), AfterValidator(_slack_channel)]
Emoji = Annotated[str, Field(strict=True), AfterValidator(_emoji)]
Emojis = Annotated[tuple[Emoji, ...], BeforeValidator(_one_or_many)]

# Fields syncer fills itself, or through a key of its own: `fields` may not set them.
OWN_FIELDS = {
    "project": "the project comes from jira_project",
    "issuetype": "the issue type comes from issue_type",
    "issue type": "the issue type comes from issue_type",
    "summary": "syncer writes the summary from the Sentry issue",
    "description": "syncer writes the description from the Sentry issue",
    "assignee": "use the assignee key",
}


def _field_value(value: Any) -> Any:
    """A value for `fields`, as TOML gives it; converted to Jira's shape later, from the field's schema
    in create-meta (`syncer.core.fields`). Dates become "YYYY-MM-DD", arrays tuples; a table is a
    cascading select's `{ value = "A", child = "B" }`."""
    if isinstance(value, bool):
        raise _invalid("true/false is no Jira field's value (a checkbox field takes an array of options)")
    if isinstance(value, str | int | float):
        if isinstance(value, str) and not value.strip():
            raise _invalid("must not be empty; leave the field out instead")
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        if not value:
            raise _invalid("an empty array sets nothing; leave the field out instead")
        items = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, str | int | float) or (
                    isinstance(item, str) and not item.strip()):
                raise _invalid(f"an array of strings or numbers, not one holding {_show(item)}")
            items.append(item)
        return tuple(items)
    if isinstance(value, dict):
        unknown = set(value) - {"value", "child"}
        if unknown or not isinstance(value.get("value"), str) or not isinstance(value.get("child", ""), str):
            raise _invalid('a table is a cascading select: { value = "parent", child = "child" } '
                           "(child may be left out)")
        return {"value": value["value"], **({"child": value["child"]} if "child" in value else {})}
    raise _invalid(f"expected a string, number, date, array or table, got {toml_type(value)}")


def _fields(value: Any) -> Any:
    if not isinstance(value, dict):
        return value  # pydantic says "expected a table"
    for key in value:
        reason = OWN_FIELDS.get(key.strip().casefold())
        if not key.strip():
            raise _invalid("a field name must not be empty")
        if reason:
            raise _invalid(f"{json.dumps(key)} cannot be set here: {reason}")
    return value


FieldValue = Annotated[Any, BeforeValidator(_field_value)]
# Any Jira field by name ("Root cause", matched without regard to case) or id (customfield_10050).
Fields = Annotated[dict[str, FieldValue], BeforeValidator(_fields)]



def _compiled(
    kind: type[Pattern],
) -> Callable[[Any, GetCoreSchemaHandler], core_schema.CoreSchema]:
    """A pattern field: a string in the file, compiled (so checked) at load, the string again when dumped."""

    def parse(source: str) -> Pattern:
        try:
            return kind.parse(source)
        except PatternError as error:
            raise _invalid(str(error)) from None

    def schema(_source_type: Any, _handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            parse,
            core_schema.str_schema(strict=True),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda p: p.source),
        )

    return schema


NameGlobs = Annotated[
    tuple[Annotated[NameGlob, GetPydanticSchema(_compiled(NameGlob))], ...], BeforeValidator(_one_or_many)
]
TextGlobs = Annotated[
    tuple[Annotated[TextGlob, GetPydanticSchema(_compiled(TextGlob))], ...], BeforeValidator(_one_or_many)
]
TextPatterns = Annotated[
    tuple[Annotated[TextPattern, GetPydanticSchema(_compiled(TextPattern))], ...],
    BeforeValidator(_one_or_many),
]
OwnerPatterns = Annotated[
    tuple[Annotated[OwnerPattern, GetPydanticSchema(_compiled(OwnerPattern))], ...],
    BeforeValidator(_one_or_many),
]
Levels = Annotated[tuple[Level, ...], BeforeValidator(_one_or_many)]


class _Table(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- tables ---------------------------------------------------------------------------------------


class Defaults(_Table):
    """`[defaults]`: what a ticket gets when neither its route nor its team says otherwise."""

    jira_project: ProjectKey | None = None
    issue_type: Name = "Bug"
    labels: tuple[TicketLabel, ...] = ("sentry",)
    components: tuple[Name, ...] = ()
    assignee: Assignee | None = None
    priority: PriorityName | None = None  # None: from [priorities] by the issue's level
    action: Literal["create", "ignore"] = "create"  # for issues no route matches
    fields: Fields = Field(default_factory=dict)  # any Jira field by name or id; teams and routes add


class Team(_Table):
    """`[teams.<name>]`: an owner, where its tickets go and who drives them."""

    jira_project: ProjectKey | None = None  # None: the defaults' project
    # None: the defaults' components, but only when the team files into the defaults' project,
    # since components belong to a Jira project and another project would reject them.
    components: tuple[Name, ...] | None = None
    assignee: Assignee | None = None
    labels: tuple[TicketLabel, ...] = ()  # added to the defaults' labels
    priority: PriorityName | None = None
    issue_type: Name | None = None
    fields: Fields = Field(default_factory=dict)  # over the defaults' fields, field by field
    slack_channel: SlackChannel | None = None  # the team's triage channel: its issues are posted there


class Conditions(_Table):
    """A route's `when`: every condition given must hold; `{}` matches every issue."""

    project: NameGlobs | None = None
    level: Levels | None = None
    platform: NameGlobs | None = None
    issue_type: NameGlobs | None = None  # Sentry's issue type or its category
    sentry_owner: OwnerPatterns | None = None
    min_events: Count | None = None
    min_users: Count | None = None
    culprit: TextPatterns | None = None
    title: TextPatterns | None = None
    tags: dict[str, TextGlobs] | None = None  # fetched from Sentry, so routing looks at them last

    @field_validator("tags")
    @classmethod
    def _tags_not_empty(cls, tags: dict[str, TextGlobs] | None) -> dict[str, TextGlobs] | None:
        if tags is not None and not tags:
            raise _invalid("an empty table matches everything; leave the key out instead")
        return tags

    @property
    def given(self) -> list[str]:
        """The names of the conditions this route sets, in the order routing tests them."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class Route(_Table):
    """`[[routes]]`: when the conditions hold, send the issue to a team, or ignore it."""

    name: Name | None = None
    when: Conditions
    team: Name | None = None
    # "create" is implied by `team`; "notify": post to the team's Slack channel, no ticket until a
    # person asks for one there (the "examine first" flow).
    action: Literal["create", "notify", "ignore"] | None = None
    labels: tuple[TicketLabel, ...] = ()  # added to the team's labels
    priority: PriorityName | None = None  # beats the team's and the defaults'
    fields: Fields = Field(default_factory=dict)  # over the team's and the defaults', field by field

    @model_validator(mode="after")
    def _one_outcome(self) -> Self:
        if self.action == "ignore":
            if self.team is not None:
                raise _invalid_key("team", 'give either team = "..." or action = "ignore", not both')
            if self.labels:
                raise _invalid_key("labels", 'has no effect on a route with action = "ignore"')
            if self.priority is not None:
                raise _invalid_key("priority", 'has no effect on a route with action = "ignore"')
            if self.fields:
                raise _invalid_key("fields", 'has no effect on a route with action = "ignore"')
        elif self.team is None:
            raise _invalid_key("team", 'missing: a route needs team = "<name>" or action = "ignore"')
        return self

    @property
    def ignores(self) -> bool:
        return self.action == "ignore"

    @property
    def notifies(self) -> bool:
        return self.action == "notify"

    def display_name(self, index: int) -> str:
        return self.name or f"routes[{index}]"


# By field name (as Jira shows it, any case) or id (customfield_10050, fixVersions, resolution).
TransitionFields = dict[Name, FieldValue]  # shaped from the screen's schema: syncer.jira.screens
# What a project or team may set differently: what follows a workflow's status names and screens.
OVERRIDABLE = ("wont_fix", "close_to", "reopen_to", "close_resolution", "on_archive", "archive_to",
               "on_archive_forever", "archive_forever_to")


class StatusOverride(_Table):
    """`[status.projects.<KEY>]` or `[status.teams.<name>]`: the settings that depend on a workflow,
    for one Jira project (its tickets) or one team (the tickets it files). Unset keys inherit."""

    wont_fix: tuple[Name, ...] | None = None
    close_to: Name | None = None
    reopen_to: Name | None = None
    close_resolution: Name | None = None
    on_archive: Literal["nothing", "label", "transition"] | None = None
    archive_to: Name | None = None
    on_archive_forever: Literal["nothing", "label", "transition"] | None = None
    archive_forever_to: Name | None = None
    transition_fields: TransitionFields = Field(default_factory=dict)

    def given(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in OVERRIDABLE if getattr(self, name) is not None}


class StatusPolicy(_Table):
    """`[status]`: how a status change on one side moves the other."""

    resolve_on: tuple[Literal["new", "indeterminate", "done"], ...] = ("done",)  # Jira status categories
    wont_fix: tuple[Name, ...] = ("Won't Do", "Duplicate")  # Jira statuses that archive instead
    sentry_resolution: Literal["resolved", "resolvedInNextRelease"] = "resolved"
    close_to: Name = "Done"
    reopen_to: Name = "To Do"
    close_resolution: Name = "Done"  # for transition screens that demand a resolution
    new_ticket_after_days: Count = 30  # 0: every regression of a closed ticket opens a new one
    reopen_comment_cooldown_minutes: Count = 60
    on_archive: Literal["nothing", "label", "transition"] = "nothing"
    archive_label: Label = "sentry-archived"
    archive_to: Name | None = None  # required when on_archive = "transition"
    # Sentry's `archived_forever` ("stop telling me") apart from its snoozes (archived until it
    # escalates, or until a count or time is reached); None: as on_archive.
    on_archive_forever: Literal["nothing", "label", "transition"] | None = None
    archive_forever_to: Name | None = None  # required when on_archive_forever = "transition"
    unarchive_from_jira: StrictBool = False
    assignee_to_sentry: StrictBool = False
    assignee_to_jira: StrictBool = False
    # Values for the fields a transition's screen requires (or offers), by field name or id.
    transition_fields: TransitionFields = Field(default_factory=dict)
    # Precedence, least to most specific: [status], then the team's, then the Jira project's (the
    # project's workflow is what the status names and screens belong to).
    teams: dict[str, StatusOverride] = Field(default_factory=dict)
    projects: dict[ProjectKey, StatusOverride] = Field(default_factory=dict)

    def archive_action(self, substatus: str) -> tuple[str, str | None]:
        """What an archive of this Sentry substatus does to the ticket: (mode, status to move to)."""
        if substatus == "archived_forever" and self.on_archive_forever is not None:
            return self.on_archive_forever, self.archive_forever_to
        return self.on_archive, self.archive_to

    @property
    def archive_statuses(self) -> tuple[str, ...]:
        """The Jira statuses an archive moves tickets to: a ticket there is parked by syncer."""
        return tuple(to for mode, to in ((self.on_archive, self.archive_to),
                                         (self.on_archive_forever, self.archive_forever_to))
                     if mode == "transition" and to)

    @property
    def labels_archives(self) -> bool:
        return "label" in (self.on_archive, self.on_archive_forever)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        self._check("")
        for kind, table in (("teams", self.teams), ("projects", self.projects)):
            for name, override in table.items():
                self._merged((override,))._check(f"{kind}.{toml_key(name)}.")
        return self

    def _check(self, where: str) -> None:
        if self.on_archive == "transition" and self.archive_to is None:
            raise _invalid_key(f"{where}archive_to", 'required when on_archive = "transition"')
        if self.on_archive_forever == "transition" and self.archive_forever_to is None:
            raise _invalid_key(f"{where}archive_forever_to",
                               'required when on_archive_forever = "transition"')
        if self.close_to.casefold() in {name.casefold() for name in self.wont_fix}:
            # Resolving in Sentry would move the ticket to a status that archives the issue again.
            raise _invalid_key(f"{where}close_to", f"{json.dumps(self.close_to)} is also listed in wont_fix")

    def for_ticket(self, project: str | None, team: str | None = None) -> StatusPolicy:
        """The settings for one ticket: [status], overridden by its team's, then by its project's."""
        layers = tuple(o for o in (self.teams.get(team or ""), self._project(project)) if o is not None)
        return self._merged(layers) if layers else self

    def _project(self, key: str | None) -> StatusOverride | None:
        # Jira's project keys are upper case; the file may write them otherwise.
        wanted = (key or "").upper()
        return next((o for k, o in self.projects.items() if k.upper() == wanted), None) if wanted else None

    def _merged(self, layers: tuple[StatusOverride, ...]) -> StatusPolicy:
        update: dict[str, Any] = {"teams": {}, "projects": {}}
        fields = dict(self.transition_fields)
        for layer in layers:
            update.update(layer.given())
            for key, value in layer.transition_fields.items():
                fields.pop(key, None)  # re-added last: the more specific entry is found first
                fields[key] = value
        update["transition_fields"] = fields
        return self.model_copy(update=update)


class ReconcilePolicy(_Table):
    """`[reconcile]`: the periodic repair of drift and backfill of missed issues."""

    interval_minutes: Annotated[StrictInt, Field(ge=1)] = 10
    lookback_hours: Count = 24  # 0: no backfill of unlinked issues; at most MAX_LOOKBACK_HOURS
    # Which side wins when both changed since the last sync: "jira", "sentry", or "newest"
    # (the side whose last change is later).
    precedence: Literal["jira", "sentry", "newest"] = "newest"
    # Sentry's issue list and Jira's `id in (...)` searches both stop at 100 per request.
    batch_size: Annotated[StrictInt, Field(ge=1, le=100)] = 100
    # Dead letters at least this old are retried, once per run and at most `dead_letter_retry_cap`
    # of them (0 hours: reconciliation leaves dead letters to people).
    dead_letter_retry_after_hours: Count = 6
    dead_letter_retry_cap: Count = 20
    # Each run reads what changed on either side since the last one, plus the next slice of every
    # link (in id order): the slices cover every link once in this many hours, given
    # `interval_minutes`. The pass catches what no change read can see (a ticket deleted or moved
    # out of the policy's projects, an issue resolved without its webhook).
    full_pass_hours: Annotated[StrictInt, Field(ge=1, le=24 * 90)] = 24

    @field_validator("lookback_hours")
    @classmethod
    def _within_sentrys_search(cls, hours: int) -> int:
        if hours > MAX_LOOKBACK_HOURS:
            raise _invalid(
                f"at most {MAX_LOOKBACK_HOURS} (90 days), got {hours}: Sentry's issue search reaches "
                "no further back (its default and longest window, MAX_STATS_PERIOD)"
            )
        return hours


class Priorities(_Table):
    """`[priorities]`: Sentry's issue priority (high/medium/low), else its level -> Jira priority
    name. "" leaves the priority to Jira. The Sentry priority keys are unset by default: a ticket's
    priority then follows the level, as before Sentry had priorities."""

    fatal: PriorityName = "Highest"
    error: PriorityName = "High"
    warning: PriorityName = "Medium"
    info: PriorityName = "Low"
    debug: PriorityName = "Lowest"
    high: PriorityName | None = None
    medium: PriorityName | None = None
    low: PriorityName | None = None
    # When Sentry's priority of a linked issue changes (it rises when an issue escalates), set the
    # ticket's priority to the new one's mapping. Sentry sends no webhook for the change itself,
    # so it is noticed with the next issue webhook (getsentry/sentry#105591 asks for one).
    follow_sentry: StrictBool = False

    def for_level(self, level: str) -> str | None:
        name = level.lower()
        return getattr(self, name) if name in LEVELS else None

    def for_sentry_priority(self, priority: str) -> str | None:
        name = priority.lower()
        return getattr(self, name) if name in SENTRY_PRIORITIES else None

    def for_issue(self, level: str, sentry_priority: str) -> str | None:
        """Sentry's priority when it has one and it is mapped, else the level."""
        by_priority = self.for_sentry_priority(sentry_priority) if sentry_priority else None
        return by_priority if by_priority is not None else self.for_level(level)


class MergePolicy(_Table):
    """`[merges]`: what happens to a ticket when its Sentry issue is merged into another."""

    # "move": the issue merged into keeps its own ticket, or gains this one when it has none;
    # "close": this ticket's link ends either way (commented, kept), and the issue merged into is
    # left to routing like any other issue.
    on_merge: Literal["move", "close"] = "move"


class EnrichmentPolicy(_Table):
    """`[enrichment]`: one comment on a linked ticket when its issue has grown, never per event."""

    events_factor: Annotated[StrictInt, Field(ge=0)] = 0  # e.g. 10: when events reach ten times; 0: off
    users_at: tuple[Annotated[StrictInt, Field(ge=1)], ...] = ()  # user counts worth a comment
    min_hours_between: Annotated[StrictInt, Field(ge=0)] = 24  # per ticket
    # A comment naming a release the issue is first seen in since its ticket was told (from the
    # alert or issue webhook that names it: no extra Sentry call), once per release.
    new_release: StrictBool = False


class SlackPolicy(_Table):
    """`[slack]`: what people's reactions on an issue's message in its team's channel mean."""

    acknowledge_reactions: Emojis = ("eyes",)
    ticket_reactions: Emojis = ("ticket", "jira")
    resolve_reactions: Emojis = ("white_check_mark", "heavy_check_mark")
    # 👀 also assigns the Sentry issue to the person who reacted, found through [people] by the
    # e-mail of their Slack profile.
    assign_on_acknowledge: StrictBool = False

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        seen: dict[str, str] = {}
        for key in ("acknowledge_reactions", "ticket_reactions", "resolve_reactions"):
            for name in getattr(self, key):
                if name in seen and seen[name] != key:
                    raise _invalid_key(key, f":{name}: is also in {seen[name]}: one meaning per reaction")
                seen[name] = key
        return self

    def meaning(self, reaction: str) -> str | None:
        """acknowledge | ticket | resolve, or None for a reaction that means nothing to syncer. Skin
        tones (`thumbsup::skin-tone-2`) mean what the plain emoji means."""
        name = reaction.split("::", 1)[0]
        for meaning in ("acknowledge", "ticket", "resolve"):
            if name in getattr(self, f"{meaning}_reactions"):
                return meaning
        return None


def _jira_account(value: str) -> str:
    if not value or any(char.isspace() for char in value):
        raise _invalid(f"{json.dumps(value)} is not a Jira account: give the accountId (Cloud) or "
                       "username (Data Center), without spaces")
    return value


def _sentry_user_id(value: str) -> str:
    if not value.isdigit():
        raise _invalid(f"{json.dumps(value)} is not a Sentry user id (digits, as in "
                       "/api/0/organizations/<org>/members/)")
    return value


class PersonEntry(_Table):
    """One `[people]` entry: `"alice@example.com" = { jira = "<accountId or username>", sentry = "42" }`."""

    jira: Annotated[str, Field(strict=True), AfterValidator(_jira_account)]
    sentry: Annotated[str, Field(strict=True), AfterValidator(_sentry_user_id)] | None = None


class CommentPolicy(_Table):
    """`[comments]`: comments copied between a linked issue and its ticket (off unless asked for)."""

    to_jira: StrictBool = False  # every Sentry comment (note) of a person becomes a Jira comment
    # Jira comments to Sentry: "none", "marked" (only those containing `marker`), or "all".
    to_sentry: Literal["none", "marked", "all"] = "none"
    marker: Annotated[str, Field(strict=True, min_length=1, max_length=50)] = "#sentry"
    # Jira Service Management comments visible to customers (jsdPublic on a service project): never
    # copied unless this says so; internal ones follow `to_sentry`.
    customer_visible_to_sentry: StrictBool = False


class Policy(_Table):
    """The whole file: `[defaults]`, `[teams.*]`, `[[routes]]`, `[priorities]`, `[status]`, `[reconcile]`,
    `[merges]`, `[slack]`, `[comments]`, `[enrichment]`, `[people]`."""

    defaults: Defaults = Field(default_factory=Defaults)
    teams: dict[str, Team] = Field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    priorities: Priorities = Field(default_factory=Priorities)
    status: StatusPolicy = Field(default_factory=StatusPolicy)
    reconcile: ReconcilePolicy = Field(default_factory=ReconcilePolicy)
    merges: MergePolicy = Field(default_factory=MergePolicy)
    slack: SlackPolicy = Field(default_factory=SlackPolicy)
    comments: CommentPolicy = Field(default_factory=CommentPolicy)
    enrichment: EnrichmentPolicy = Field(default_factory=EnrichmentPolicy)
    # E-mail -> the person's Jira account and Sentry id, tried before any e-mail search.
    people: dict[str, PersonEntry] = Field(default_factory=dict)

    @field_validator("people")
    @classmethod
    def _people_unique(cls, people: dict[str, PersonEntry]) -> dict[str, PersonEntry]:
        emails: dict[str, str] = {}
        jira_ids: dict[str, str] = {}
        sentry_ids: dict[str, str] = {}
        for email, entry in people.items():
            key = toml_key(email)
            if not _EMAIL.fullmatch(email):
                raise _invalid_key(key, "is not an e-mail address: [people] is keyed by each person's e-mail")
            for seen, value, what in ((emails, email.casefold(), "e-mail"),
                                      (jira_ids, entry.jira.casefold(), "jira account"),
                                      (sentry_ids, entry.sentry, "sentry id")):
                if value is None:
                    continue
                if value in seen:
                    raise _invalid_key(key, f"the same {what} as {toml_key(seen[value])}: one person, "
                                       "one entry")
                seen[value] = email
        return people

    @cached_property
    def directory(self) -> People:
        """`[people]`, indexed by e-mail, Jira account and Sentry id."""
        return People(Person(email.lower(), entry.jira, entry.sentry or "")
                      for email, entry in self.people.items())

    @model_validator(mode="after")
    def _references(self) -> Self:
        names: dict[str, int] = {}
        for index, route in enumerate(self.routes):
            if route.team is not None and route.team not in self.teams:
                hint = _did_you_mean(route.team, self.teams)
                raise _invalid_key(
                    f"routes[{index}].team",
                    f"names team {route.team!r}, which no [teams.*] entry defines{hint}",
                )
            if route.name is not None:
                if route.name in names:
                    raise _invalid_key(
                        f"routes[{index}].name",
                        f"{route.name!r} is already the name of routes[{names[route.name]}]",
                    )
                names[route.name] = index
            if route.notifies and route.team in self.teams and self.teams[route.team].slack_channel is None:
                raise _invalid_key(
                    f"routes[{index}].action",
                    f'"notify" posts to the team\'s Slack channel, and teams.{toml_key(route.team)} '
                    "has no slack_channel",
                )
        for team_name in self.status.teams:
            if team_name not in self.teams:
                hint = _did_you_mean(team_name, self.teams)
                raise _invalid_key(f"status.teams.{toml_key(team_name)}",
                                   f"names a team that no [teams.*] entry defines{hint}")
        for team_name, team in self.teams.items():
            if team.jira_project is None and self.defaults.jira_project is None:
                raise _invalid_key(
                    f"teams.{toml_key(team_name)}.jira_project",
                    "missing, and [defaults] has no jira_project to fall back on",
                )
        return self

    @property
    def uses_slack(self) -> bool:
        """Whether some team has a Slack channel (so syncer posts there)."""
        return any(team.slack_channel for team in self.teams.values())

    @property
    def uses_tags(self) -> bool:
        """Whether routing may need the issue's tags (an extra request to Sentry)."""
        return any(route.when.tags for route in self.routes)


# --- loading --------------------------------------------------------------------------------------


def load_policy(path: Path) -> Policy:
    """Read and validate the policy file; every problem is a ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (set SYNCER_CONFIG, or start from syncer.example.toml)"
        ) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror or error}") from None
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str) -> Policy:
    """Validate policy TOML; `source` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: invalid TOML: {error}") from None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as error:
        raise ConfigError("\n".join(f"{source}: {line}" for line in _describe(error, data))) from None
    if policy.defaults.action == "create" and policy.defaults.jira_project is None:
        raise ConfigError(
            f"{source}: defaults.jira_project: missing; issues that no route matches need a "
            'project (or set defaults.action = "ignore")'
        )
    return policy


def _describe(error: ValidationError, data: Mapping[str, Any]) -> list[str]:
    """One `key.path: problem` line per validation error, in words a TOML author uses."""
    lines = []
    for detail in error.errors(include_url=False):
        loc = _as_written(tuple(detail["loc"]), data)
        kind = detail["type"]
        ctx = detail.get("ctx") or {}
        value = detail.get("input")
        if kind == "policy_key":
            path = ".".join(part for part in (key_path(loc), ctx["key"]) if part)
            lines.append(f"{path}: {ctx['message']}")
            continue
        if kind == "policy_value":
            message = ctx["message"]
        elif kind == "extra_forbidden":
            message = "unknown key" + _did_you_mean(str(loc[-1]), _known_keys(loc))
        elif kind == "missing":
            message = "missing" + (" (write when = {} to match every issue)" if loc[-1] == "when" else "")
        elif kind == "literal_error":
            message = f"{_show(value)} is not one of {ctx['expected']}"
        elif kind in _EXPECTED:
            message = f"expected {_EXPECTED[kind]}, got {toml_type(value)}"
        elif kind in {"greater_than_equal", "less_than_equal"}:
            bound = f">= {ctx['ge']}" if "ge" in ctx else f"<= {ctx['le']}"
            message = f"must be {bound}, got {_show(value)}"
        else:
            message = detail["msg"]
        lines.append(f"{key_path(loc)}: {message}" if loc else message)
    return lines


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "tuple_type": "an array",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


def _as_written(loc: tuple[int | str, ...], data: Mapping[str, Any]) -> tuple[int | str, ...]:
    """Drop the [0] pydantic adds where the file gave one value instead of an array."""
    if not loc or not isinstance(loc[-1], int):
        return loc
    value: Any = data
    for part in loc[:-1]:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return loc
    return loc if isinstance(value, list) else loc[:-1]


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def toml_key(name: str) -> str:
    """A TOML key as written: bare when it can be, quoted otherwise (`tags."http.status_code"`)."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name, ensure_ascii=False)


def key_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's loc as a TOML key path: ("routes", 2, "when", "level") -> routes[2].when.level."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":  # pydantic's marker for a problem in a dict key, not its value
            path += ("." if path else "") + toml_key(part)
    return path


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the table holding loc[-1] accepts, found by walking the models along loc."""
    current: Any = Policy
    for part in loc[:-1]:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field_info = current.model_fields.get(str(part))
            if field_info is None:
                return []
            current = field_info.annotation
        elif get_origin(current) in (tuple, dict):
            current = get_args(current)[-1 if get_origin(current) is dict else 0]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """`Annotated[X, ...]` and `X | None` to X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
        else:
            return annotation
