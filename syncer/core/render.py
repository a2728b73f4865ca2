"""Ticket text: the Jira `fields` for a new ticket, and the markers that tie it to its Sentry issue.

Pure. Everything Sentry reports about an issue (title, culprit, project slug, even the short id)
is text that whoever triggers an error controls, so it goes into the wiki-markup description only
through `escape_wiki`: it can show up, but it cannot mention people, embed images, pull in macros or
disguise links.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from syncer.core.issue import SentryIssue
from syncer.core.moments import utc_text
from syncer.core.routing import TicketTarget

# Jira's limits, counted as Jira (Java) counts a string's length: in UTF-16 code units, so a
# character outside the BMP (an emoji) counts twice. "Summary must be less than 255 characters", a
# text field's 32,767 (jira.text.field.character.limit), a label's 255 and no spaces in it.
SUMMARY_LIMIT = 255
DESCRIPTION_LIMIT = 32_767
GLOBAL_ID_LIMIT = 255  # Jira's limit on a remote link's globalId
LABEL_LIMIT = 255
DESCRIPTION_TEXT_LIMIT = 2_000  # per field; a ticket is a pointer to Sentry, not a copy of it
# What a cut description ends with: wiki markup of our own, never escaped text.
DESCRIPTION_CUT = "\n\n_(cut by syncer to fit Jira's limit of 32,767 characters; the whole issue is in " \
    "Sentry)_"


def sentry_label(issue_id: str) -> str:
    """The label every ticket carries so either side can be found from the other."""
    return f"sentry-{issue_id}"


def remote_link_global_id(org: str, issue_id: str) -> str:
    """The remote link's globalId: Jira upserts on it, which makes linking idempotent."""
    global_id = f"sentry-issue:{org}:{issue_id}"
    if len(global_id) > GLOBAL_ID_LIMIT:
        # Truncating would let two issues share one link, so refuse instead.
        raise ValueError(f"remote link globalId longer than {GLOBAL_ID_LIMIT} characters: {global_id!r}")
    return global_id


def sentry_issue_url(sentry_url: str, org: str, issue_id: str) -> str:
    """The issue's page on Sentry (`{sentry_url}/organizations/{org}/issues/{id}/`)."""
    return f"{sentry_url.rstrip('/')}/organizations/{quote(org, safe='')}/issues/{quote(issue_id, safe='')}/"


def issue_url(issue: SentryIssue, sentry_url: str, org: str) -> str:
    """A link a person can open: the payload's own link when it points at the configured Sentry (or
    a subdomain of it, like sentry.io's `<org>.sentry.io`), else the built one. A payload must not
    choose where a ticket sends people."""
    for candidate in (issue.web_url, issue.permalink):
        if candidate and _on_sentry(candidate, sentry_url):
            return candidate
    return sentry_issue_url(sentry_url, org, issue.id)


def _on_sentry(url: str, sentry_url: str) -> bool:
    """Whether `url` is on the host (or a subdomain of the host) and port of `sentry_url`."""
    try:
        given, base = urlsplit(url), urlsplit(sentry_url)
        given_port, base_port = given.port, base.port
    except ValueError:
        return False
    host, home = (given.hostname or "").lower(), (base.hostname or "").lower()
    return (
        given.scheme in ("http", "https")
        and "@" not in given.netloc
        and bool(home)
        and (host == home or host.endswith("." + home))
        and given_port == base_port
    )


def render_ticket(issue: SentryIssue, target: TicketTarget, *, sentry_url: str, org: str,
                  tags: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The `fields` for `create_issue(fields=...)`. The caller adds the assignee, which needs a lookup.
    `tags`: the issue's tags, when a label takes a value from them (`label_tags`)."""
    fields: dict[str, Any] = {
        "project": {"key": target.jira_project},
        "issuetype": {"name": target.issue_type},
        "summary": summary(issue),
        "description": description(issue, sentry_url=sentry_url, org=org),
        "labels": ticket_labels(issue, target, tags),
    }
    if target.components:
        fields["components"] = [{"name": name} for name in target.components]
    if target.priority:
        fields["priority"] = {"name": target.priority}
    return fields


def summary(issue: SentryIssue) -> str:
    """One line of plain text (Jira does not render markup in summaries), within Jira's limit."""
    text = " ".join(strip_control(issue.title).split())
    if not _shows_anything(text):
        text = f"Sentry issue {issue.short_id or issue.id}"
    return _truncate(text, SUMMARY_LIMIT)


def _shows_anything(text: str) -> bool:
    """False for text a person would see as blank: `str.split` leaves format characters such as the
    zero-width space (category Cf) in place, and a summary of only those shows nothing in Jira."""
    return any(not char.isspace() and unicodedata.category(char) != "Cf" for char in text)


def ticket_labels(
    issue: SentryIssue, target: TicketTarget, tags: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """The target's labels with the issue's values filled in (a project's name, a tag's values: text
    Sentry reports, so spaces are likely), each made a label Jira takes, and the issue's own label."""
    labels = []
    for template in (*target.labels, sentry_label(issue.id)):
        for label in _filled(template, issue, tags or {}):
            cleaned = jira_label(label)
            if cleaned and cleaned not in labels:
                labels.append(cleaned)
    return labels


LABEL_VALUES_EACH = 10  # a tag's values each make a label, up to this many per label of the policy
_LABEL_VALUE = re.compile(r"\{([^{}]*)\}")


def label_tags(target: TicketTarget) -> set[str]:
    """The tags whose values the target's labels take (`{tags.environment}`): fetched only then."""
    return {name[5:] for label in target.labels for name in _LABEL_VALUE.findall(label)
            if name.startswith("tags.")}


def _filled(template: str, issue: SentryIssue, tags: Mapping[str, Sequence[str]]) -> list[str]:
    """Every label a template makes: one per combination of its values; none when a value it names
    is empty (an issue without the tag gets no `env-` label)."""
    names = _LABEL_VALUE.findall(template)
    if not names:
        return [template]
    fixed = {"project": issue.project_slug, "project_name": issue.project_name, "level": issue.level,
             "platform": issue.platform}
    labels = [""]
    for literal, name in zip(_LABEL_VALUE.split(template)[::2], [*names, None], strict=True):
        if name is None:
            labels = [label + literal for label in labels]
            continue
        values = list(tags.get(name[5:], ())) if name.startswith("tags.") else [fixed.get(name, "")]
        values = [v for v in values if isinstance(v, str) and v.strip()][:LABEL_VALUES_EACH]
        labels = [label + literal + value for label in labels for value in values][:LABEL_VALUES_EACH]
    return labels


def jira_label(text: str) -> str:
    """Text as a label Jira takes: runs of whitespace become one dash (Jira refuses a label with a
    space), cut to Jira's length; "" when nothing is left."""
    return _cut(_label_chars("-".join(strip_control(text).split())), LABEL_LIMIT)


def _label_chars(text: str) -> str:
    # Format characters (zero-width space and kin) are invisible in a label and split words in
    # Jira's search like spaces do.
    return "".join(char for char in text if unicodedata.category(char) != "Cf")


def description(issue: SentryIssue, *, sentry_url: str, org: str) -> str:
    link = safe_url(issue_url(issue, sentry_url, org))
    name = escape_wiki(_one_line(issue.short_id or issue.id))
    opening = f"Sentry issue [{name}|{link}]" if link else f"Sentry issue {name}"
    rows = [
        ("Title", _field(issue.title)),
        ("Culprit", _field(issue.culprit)),
        ("Level", _field(issue.level)),
        ("Project", _field(issue.project_slug)),
        ("First seen", utc_text(issue.first_seen)),
        ("Last seen", utc_text(issue.last_seen)),
        ("Events", str(issue.count)),
        ("Users", str(issue.user_count)),
    ]
    table = "\n".join(f"||{heading}|{value}|" for heading, value in rows)
    footer = (
        f"_Created by syncer. The label {sentry_label(issue.id)} ties this ticket to the Sentry issue; "
        "status changes flow both ways._"
    )
    return within_description_limit(f"{opening}\n\n{table}\n\n{footer}")


def within_description_limit(text: str) -> str:
    """A description Jira will take: a longer one is cut at the last whole line that fits, and
    says so (DESCRIPTION_CUT), so that no escape or entity is left half-way."""
    if _utf16_length(text) <= DESCRIPTION_LIMIT:
        return text
    room = DESCRIPTION_LIMIT - _utf16_length(DESCRIPTION_CUT)
    kept = _cut(text, room)
    # At a line's end; in one enormous line, before any half-written escape or entity.
    kept = kept[:kept.rindex("\n")] if "\n" in kept else re.sub(r"(\\|&#?\w*)$", "", kept)
    return kept.rstrip() + DESCRIPTION_CUT


def _field(text: str) -> str:
    # A table cell must stay on one line; an empty cell would collapse the row. A cut cell ends in
    # an ellipsis, so nobody takes it for the whole text.
    line = _one_line(text)
    if len(line) > DESCRIPTION_TEXT_LIMIT:
        line = line[:DESCRIPTION_TEXT_LIMIT - 1].rstrip() + "\u2026"
    return escape_wiki(line) or "(none)"


def _one_line(text: str) -> str:
    return " ".join(strip_control(text).split())




def _truncate(text: str, limit: int) -> str:
    """`text` within `limit` UTF-16 code units, its cut marked with an ellipsis."""
    if _utf16_length(text) <= limit:
        return text
    return _cut(text, limit - 1).rstrip() + "\u2026"


def _cut(text: str, limit: int) -> str:
    """The longest start of `text` within `limit` UTF-16 code units (never half a surrogate pair)."""
    out = []
    used = 0
    for char in text:
        used += _utf16_length(char)
        if used > limit:
            break
        out.append(char)
    return "".join(out)


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --- escaping -------------------------------------------------------------------------------------

# Characters that reorder displayed text ("Trojan Source"), so a ticket could read differently from
# what it says: removed along with control characters.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def strip_control(text: str) -> str:
    """Remove control characters (except newline and tab) and bidirectional overrides."""
    return _CONTROL.sub("", text)


# Unicode's control characters (category Cc: C0, DEL and C1) but newline and tab, and _BIDI; one
# regular expression instead of a category look-up per character (every ticket renders ~50 fields).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + "".join(sorted(_BIDI)) + "]")


# Jira's renderer honours a backslash before exactly these characters (its BackslashEscape
# component); a backslash before anything else is shown as is.
_WIKI_SPECIAL = frozenset("-#*_+?^~|%{}[]()!@")
_WIKI_ESCAPES = {ord("\\"): "&#92;", **{ord(char): "\\" + char for char in _WIKI_SPECIAL}}
# Block markers that only count at the start of a line and start with a letter, so no backslash
# escape applies: the first letter becomes an HTML entity, which Jira shows as the letter.
_LINE_START_WORD = re.compile(r"^(\s*)(h[1-6]\.|bq\.)", re.MULTILINE)


def escape_wiki(text: str) -> str:
    """Make untrusted text inert in Jira wiki markup: it renders as itself, never as markup.

    Every character Jira lets a backslash escape is escaped, which disarms mentions (`[~name]`),
    links (`[text|url]`), macros (`{code}`, `{noformat}`), images (`!x.png!`), text effects and
    list/table markers. A backslash itself becomes `&#92;`, because `\\\\` is Jira's line break and
    a backslash before an escaped character would cancel that escape (pandoc's Jira writer does the
    same). Line-start `h1.` to `h6.` and `bq.` get their first letter as an entity. Bare URLs are
    left alone: Jira links them, but shows where they go.
    """
    return _LINE_START_WORD.sub(_entity_first_letter, strip_control(text).translate(_WIKI_ESCAPES))


def _entity_first_letter(match: re.Match[str]) -> str:
    indent, marker = match.group(1), match.group(2)
    return f"{indent}&#{ord(marker[0])};{marker[1:]}"


_URL_SAFE = "/:?#&=%;,.@~_-+$"


def safe_url(url: str) -> str:
    """An http(s) URL fit for `[text|url]`: anything else is refused (""), and characters that
    could end the link or start markup are percent-encoded."""
    url = strip_control(url).strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        return ""
    return quote(url, safe=_URL_SAFE)
