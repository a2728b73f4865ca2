"""A comment's copy on the other side, and how a copy is known again (so it is never copied back).

Pure. A copy names its original with a tag (`sentry-note:12`, `jira-comment:10001`): a retried
delivery finds a copy it made before its answer was lost, and the other side's webhook for the copy
is recognised as ours even when its author is not our integration (a person editing our comment).
"""

from __future__ import annotations

from syncer.core.render import escape_wiki

FROM_SENTRY, FROM_JIRA = "sentry-note:", "jira-comment:"


def sentry_tag(note_id: str) -> str:
    return f"({FROM_SENTRY}{note_id})"


def jira_tag(comment_id: str) -> str:
    return f"({FROM_JIRA}{comment_id})"


def is_copy(text: str) -> bool:
    """Whether the text is one of our copies (either way)."""
    return FROM_SENTRY in text or FROM_JIRA in text


def jira_body(text: str, author: str, issue_url: str, note_id: str) -> str:
    """The Jira comment (wiki markup) for a Sentry note: the person's words kept inert, who wrote
    them, and a link back to the issue."""
    who = escape_wiki(author or "Someone")
    return f"{escape_wiki(text)}\n\n— {who} on [the Sentry issue|{issue_url}] {sentry_tag(note_id)}"[:32767]


def sentry_text(text: str, author: str, key: str, ticket_url: str, comment_id: str) -> str:
    """The Sentry note (Markdown) for a Jira comment."""
    return f"{text}\n\n— {author or 'Someone'} on Jira [{key}]({ticket_url}) {jira_tag(comment_id)}"[:10000]


def wanted_in_sentry(text: str, mode: str, marker: str) -> bool:
    """`[comments] to_sentry`: "all", or "marked" (the marker anywhere, any case)."""
    if mode == "all":
        return True
    return mode == "marked" and marker.casefold() in text.casefold()
