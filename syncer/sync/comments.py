"""Comments both ways between a linked issue and its ticket, when the policy's `[comments]` asks.

Sentry `comment.created|updated|deleted` → a Jira comment naming the author with a link back;
Jira `comment_created|updated|deleted` → a Sentry note (all, or only those with the marker; never a
Jira Service Management comment the customer sees, unless the policy says so). Each copy is
recorded with its original (syncer.store.comments), so an edit or a deletion follows the same copy.
No echo loops: a copy carries its original's tag (syncer.core.comments), and the other side's
webhook for it (our token's note, our bot's comment) is recognised and left alone.
"""

from __future__ import annotations

from syncer.core import comments as copies
from syncer.core.render import sentry_issue_url
from syncer.errors import PayloadError
from syncer.jira.webhooks import JiraEvent
from syncer.runtime import Runtime
from syncer.sentry.webhooks import SentryEvent
from syncer.store import comments, links
from syncer.store.schema import LinkState
from syncer.sync.outcome import Outcome


def on_sentry_comment(rt: Runtime, event: SentryEvent, cause: str) -> Outcome:
    if not rt.policy.comments.to_jira:
        return Outcome.ignore("Sentry comments are not copied ([comments] to_jira is off)")
    if event.is_own_echo(rt.settings.sentry_app_id) or copies.is_copy(event.comment):
        return Outcome.ignore("our own note (a copy of a Jira comment), echoed back")
    issue_id, note_id = event.issue_id or "", event.comment_id
    if not issue_id or not note_id:
        raise PayloadError("comment without its issue or note id")
    link = links.live(rt.engine, issue_id)
    if link is None or link.state != LinkState.ACTIVE or not link.jira_key or not link.jira_issue_id:
        return Outcome.ignore(f"sentry issue {issue_id} has no linked ticket")
    key = link.jira_key
    pair = comments.of_sentry_note(rt.engine, issue_id, note_id)
    author = event.actor.name if event.actor else ""
    body = copies.jira_body(event.comment, author,
                            sentry_issue_url(rt.settings.sentry_url, rt.settings.sentry_org or "", issue_id),
                            note_id)
    if event.action == "deleted":
        if pair is None or not pair.jira_comment_id:
            return Outcome.ignore(f"note {note_id} was not copied to {key}")
        rt.jira.delete_comment(key, pair.jira_comment_id)
        comments.forget(rt.engine, pair.id)
        return Outcome(f"deleted the copy of note {note_id} on {key}")
    if pair is not None and pair.jira_comment_id:
        if event.action == "updated":
            rt.jira.edit_comment(key, pair.jira_comment_id, body)
            return Outcome(f"edited the copy of note {note_id} on {key}")
        return Outcome.ignore(f"note {note_id} is copied to {key} already")
    fresh = False
    if pair is None:
        claimed = comments.claim(rt.engine, origin="sentry", sentry_issue_id=issue_id,
                                 jira_issue_id=link.jira_issue_id, sentry_note_id=note_id)
        fresh = claimed is not None
        pair = claimed or comments.of_sentry_note(rt.engine, issue_id, note_id)
        if pair is None:
            raise PayloadError(f"note {note_id}: claimed and gone")
    # Claimed before (a retry, or another delivery): a copy made then is found by its tag.
    made = [] if fresh else rt.jira.comment_ids_containing(key, copies.sentry_tag(note_id))
    comment_id = made[0] if made else rt.jira.post_comment(key, body)
    comments.complete(rt.engine, pair.id, jira_comment_id=comment_id)
    return Outcome(f"copied note {note_id} to {key} as comment {comment_id}")


def on_jira_comment(rt: Runtime, event: JiraEvent, cause: str) -> Outcome:
    policy = rt.policy.comments
    if policy.to_sentry == "none":
        return Outcome.ignore("Jira comments are not copied ([comments] to_sentry is \"none\")")
    ticket = event.ticket
    if ticket is None or not event.comment_id:
        raise PayloadError(f"{event.webhook_event} without its issue or comment id")
    if copies.is_copy(event.comment) or (event.user_id and event.user_id == rt.jira.bot_account_id()):
        return Outcome.ignore("our own comment (a copy of a Sentry note), echoed back")
    link = links.active_for_ticket(rt.engine, ticket.id)
    if link is None:
        return Outcome.ignore(f"ticket {ticket.key or ticket.id} is not linked to a Sentry issue")
    pair = comments.of_jira_comment(rt.engine, ticket.id, event.comment_id)
    if event.webhook_event == "comment_deleted":
        if pair is None or not pair.sentry_note_id:
            return Outcome.ignore(f"comment {event.comment_id} was not copied to Sentry")
        rt.sentry.delete_note(link.sentry_issue_id, pair.sentry_note_id)
        comments.forget(rt.engine, pair.id)
        return Outcome(f"deleted the copy of comment {event.comment_id} on sentry issue "
                       f"{link.sentry_issue_id}")
    if event.comment_customer_visible and not policy.customer_visible_to_sentry:
        return Outcome.ignore("a comment the service desk's customer sees: not copied "
                              "([comments] customer_visible_to_sentry)")
    if not copies.wanted_in_sentry(event.comment, policy.to_sentry, policy.marker):
        return Outcome.ignore(f"comment without the marker {policy.marker!r}")
    key = link.jira_key or ticket.key
    text = copies.sentry_text(event.comment, event.comment_author, key, f"{rt.jira_browse_url}/{key}",
                              event.comment_id)
    if pair is not None and pair.sentry_note_id:
        if event.webhook_event == "comment_updated":
            rt.sentry.edit_note(link.sentry_issue_id, pair.sentry_note_id, text)
            return Outcome(f"edited the copy of comment {event.comment_id} on sentry issue "
                           f"{link.sentry_issue_id}")
        return Outcome.ignore(f"comment {event.comment_id} is copied already")
    fresh = False
    if pair is None:
        claimed = comments.claim(rt.engine, origin="jira", sentry_issue_id=link.sentry_issue_id,
                                 jira_issue_id=ticket.id, jira_comment_id=event.comment_id)
        fresh = claimed is not None
        pair = claimed or comments.of_jira_comment(rt.engine, ticket.id, event.comment_id)
        if pair is None:
            raise PayloadError(f"comment {event.comment_id}: claimed and gone")
    made = [] if fresh else rt.sentry.note_ids_containing(link.sentry_issue_id,
                                                          copies.jira_tag(event.comment_id))
    note_id = made[0] if made else rt.sentry.post_note(link.sentry_issue_id, text)
    comments.complete(rt.engine, pair.id, sentry_note_id=note_id)
    return Outcome(f"copied comment {event.comment_id} to sentry issue {link.sentry_issue_id} "
                   f"as note {note_id}")
