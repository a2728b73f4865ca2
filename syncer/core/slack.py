"""An issue's message in its team's Slack channel, and the release-watch summary: data in, Block Kit
out. No I/O: `syncer.sync.slack` gathers the facts and sends what this renders.

Sentry text is escaped for mrkdwn (api.slack.com/reference/surfaces/formatting, "Escaping text"):
`&`, `<` and `>` become entities, so a title cannot open a link, mention `<!channel>` or a person.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from syncer.core.issue import SentryIssue

# Button action ids: what a click on each asks for (`syncer.sync.slack` acts on them).
CREATE_TICKET = "create_ticket"
RESOLVE = "resolve"
ASSIGN_TO_ME = "assign_to_me"
BUTTON_MEANINGS = {CREATE_TICKET: "ticket", RESOLVE: "resolve", ASSIGN_TO_ME: "acknowledge"}

# Block Kit limits (api.slack.com/reference/block-kit/blocks): section text 3,000 characters, a
# field 2,000; a notification's `text` is shown in full by few clients, so it stays short too.
TITLE_LIMIT = 200
CULPRIT_LIMIT = 300


def escape(text: str) -> str:
    """Sentry text, made inert for mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


@dataclass(frozen=True)
class MessageFacts:
    """Everything an issue's message shows, as of now."""

    issue: SentryIssue
    sentry_url: str
    route: str
    team: str
    action: str  # the route's: create | notify
    ticket_key: str = ""
    ticket_url: str = ""
    ticket_status: str = ""
    ticket_done: bool = False
    acknowledged_by: str = ""  # a Slack user ID


def state_words(facts: MessageFacts) -> str:
    issue = facts.issue
    if issue.status == "resolved":
        words = "Resolved"
    elif issue.status == "ignored":
        words = "Archived"
    elif issue.substatus == "regressed":
        words = "Regressed" + (f" in {issue.last_release}" if issue.last_release else "")
    else:
        words = "Unresolved"
    if facts.ticket_key:
        words += f", ticket {'closed' if facts.ticket_done else facts.ticket_status or 'open'}"
    return words


def render_message(facts: MessageFacts) -> tuple[str, list[dict[str, Any]]]:
    """(notification text, blocks) of the issue's message."""
    issue = facts.issue
    title = escape(_cut(issue.title or issue.short_id or f"Sentry issue {issue.id}", TITLE_LIMIT))
    project = escape(issue.project_slug or issue.project_name or "?")
    state = state_words(facts)
    text = f"{title} ({project}, {escape(issue.level or '?')}): {state}"
    heading = f"*<{facts.sentry_url}|{title}>*"
    if issue.short_id:
        heading += f"  `{escape(issue.short_id)}`"
    if issue.culprit:
        heading += f"\n{escape(_cut(issue.culprit, CULPRIT_LIMIT))}"
    ticket = (
        f"<{facts.ticket_url}|{escape(facts.ticket_key)}>"
        if facts.ticket_key and facts.ticket_url
        else escape(facts.ticket_key)
        or ("none yet: examine first" if facts.action == "notify" else "being made")
    )
    fields = [
        ("Project", project),
        ("Level", escape(issue.level or "?")),
        ("First release", escape(issue.first_release) if issue.first_release else "unknown"),
        ("Seen", f"{issue.count} events, {issue.user_count} users"),
        ("Route", f"{escape(facts.route)} \u2192 team {escape(facts.team)}"),
        ("Ticket", ticket),
        ("State", state),
        ("Acknowledged", f"<@{facts.acknowledged_by}>" if facts.acknowledged_by else "not yet"),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "block_id": "issue", "text": {"type": "mrkdwn", "text": heading}},
        {
            "type": "section",
            "block_id": "facts",
            "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in fields],
        },
    ]
    buttons = []
    if facts.action == "notify" and not facts.ticket_key:
        buttons.append(_button(CREATE_TICKET, "Create ticket", issue.id, style="primary"))
    if issue.status != "resolved":
        buttons.append(_button(RESOLVE, "Resolve", issue.id))
    buttons.append(_button(ASSIGN_TO_ME, "Assign to me", issue.id))
    blocks.append({"type": "actions", "block_id": "act", "elements": buttons})
    return text, blocks


def _button(action_id: str, label: str, value: str, *, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "value": value,
        "text": {"type": "plain_text", "text": label},
    }
    if style:
        button["style"] = style
    return button


def fingerprint(text: str, blocks: Sequence[dict[str, Any]]) -> str:
    """What a message shows, as a hash: an update that would show the same is not sent."""
    return hashlib.sha256(json.dumps([text, list(blocks)], sort_keys=True).encode()).hexdigest()


def regression_reply(issue: SentryIssue) -> str:
    """The thread reply saying what regressed (and in which release, when Sentry knows)."""
    where = f" in release {escape(issue.last_release)}" if issue.last_release else ""
    return f"Regressed{where}: {escape(_cut(issue.title, TITLE_LIMIT))} ({issue.count} events so far)"


@dataclass(frozen=True)
class ReleaseLine:
    title: str
    url: str
    regressed: bool


def render_release(release: str, lines: Sequence[ReleaseLine]) -> tuple[str, list[dict[str, Any]]]:
    """The release watch's summary: the release's new issues and regressions in one channel."""
    new = [line for line in lines if not line.regressed]
    back = [line for line in lines if line.regressed]
    text = (
        f"Release {escape(release)}: {_counted(len(new), 'new issue')}, {_counted(len(back), 'regression')}"
    )
    parts = [f"*Release {escape(release)}*: {len(new)} new, {len(back)} regressed"]
    for heading, group in (("New", new), ("Regressed", back)):
        if group:
            shown = [f"\u2022 <{line.url}|{escape(_cut(line.title, 120))}>" for line in group[:20]]
            if len(group) > 20:
                shown.append(f"\u2026 and {len(group) - 20} more")
            parts.append(f"*{heading}*\n" + "\n".join(shown))
    return text, [{"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n\n".join(parts), 3000)}}]


def _counted(number: int, unit: str) -> str:
    return f"{number} {unit}{'' if number == 1 else 's'}"
