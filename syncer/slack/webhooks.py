"""Slack's requests to syncer, verified, identified and parsed: Events API callbacks (JSON) and
interactivity payloads (a form with one `payload` field holding JSON), on one URL.

Signing (api.slack.com/authentication/verifying-requests-from-slack): `X-Slack-Signature` is
`v0=` + hex HMAC-SHA256 of `v0:<X-Slack-Request-Timestamp>:<raw body>` with the signing secret;
slack_sdk's `SignatureVerifier` checks it and refuses timestamps more than five minutes off.

Slack retries an event (same `event_id`, `X-Slack-Retry-Num`) when it has no 2xx within 3 seconds,
so the event id is the delivery's key; interactivity payloads are not retried, and their
`trigger_id` names one click.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.signature import SignatureVerifier

from syncer.errors import PayloadError
from syncer.payload import Envelope, as_mapping, decode_object, well_formed

# What syncer acts on, and the events a Slack app set up for it may also send (ignored, named).
HANDLED_EVENTS = frozenset({"reaction_added"})
IGNORED_EVENTS = {
    "reaction_removed": "a reaction taken back changes nothing syncer did",
    "message": "syncer reads reactions and buttons, not messages",
    "app_mention": "syncer takes no commands by mention",
}


def verify(secret: str, body: bytes, timestamp: str | None, signature: str | None) -> bool:
    """Whether Slack signed these bytes, within its five-minute replay window."""
    if not timestamp or not signature or not timestamp.strip().isdigit():
        return False
    try:
        return SignatureVerifier(secret).is_valid(body, timestamp.strip(), signature)
    except (UnicodeDecodeError, ValueError):
        return False


@dataclass(frozen=True)
class Received:
    """What intake learns of a Slack request: the challenge to echo (URL verification), or the
    delivery to store (its key, and the envelope)."""

    challenge: str | None
    key: str = ""
    envelope: Envelope | None = None


def receive(content_type: str, body: bytes) -> Received:
    """PayloadError when the body is neither an Events API object nor an interactivity form."""
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        payload = _form_payload(body)
        kind = str(payload.get("type") or "")
        trigger = str(payload.get("trigger_id") or "")
        actions = payload.get("actions") if isinstance(payload.get("actions"), list) else []
        stamp = str(actions[0].get("action_ts") or "") if actions and isinstance(actions[0], dict) else ""
        if not trigger and not stamp:
            raise PayloadError("interactivity payload without trigger_id or action_ts")
        ignored = (
            "" if kind == "block_actions" else f"interactivity {kind or '(no type)'}: syncer has buttons only"
        )
        return Received(
            None, f"action:{trigger or stamp}"[:200], Envelope("interaction", kind[:100], ignored)
        )
    data = decode_object(body)
    kind = str(data.get("type") or "")
    if kind == "url_verification":
        return Received(str(data.get("challenge") or ""))
    if kind != "event_callback":
        raise PayloadError(f"Slack request of type {kind or '(none)'}: expected event_callback")
    event_id = str(data.get("event_id") or "")
    if not event_id:
        raise PayloadError("event_callback without event_id")
    event = as_mapping(data.get("event"))
    name = str(event.get("type") or "")
    ignored = (
        "" if name in HANDLED_EVENTS else IGNORED_EVENTS.get(name, f"event {name or '(none)'}: not handled")
    )
    return Received(None, f"event:{event_id}"[:200], Envelope("event", name[:100], ignored))


def _form_payload(body: bytes) -> Mapping[str, Any]:
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise PayloadError("interactivity body is not a form") from None
    raw = fields.get("payload")
    if not raw:
        raise PayloadError("interactivity form without a payload field")
    return decode_object(raw[0])


# --- what the workers act on -----------------------------------------------------------------------


@dataclass(frozen=True)
class SlackAct:
    """A person did something to one of syncer's messages: a reaction (`reaction`) or a button
    (`action_id`, with the button's `value`)."""

    user: str
    channel: str
    ts: str
    reaction: str = ""
    action_id: str = ""
    value: str = ""

    @property
    def what(self) -> str:
        return f":{self.reaction}:" if self.reaction else f"button {self.action_id}"


def parse(resource: str, payload: str) -> SlackAct | None:
    """The act a stored delivery records; None when it is not about a message (a reaction to a file)."""
    if resource == "interaction":
        data = _form_payload(payload.encode("utf-8"))
        actions = data.get("actions") if isinstance(data.get("actions"), list) else []
        action = actions[0] if actions and isinstance(actions[0], Mapping) else {}
        container = as_mapping(data.get("container"))
        channel = as_mapping(data.get("channel"))
        user = as_mapping(data.get("user"))
        return SlackAct(
            user=_text(user.get("id")),
            channel=_text(channel.get("id") or container.get("channel_id")),
            ts=_text(container.get("message_ts")),
            action_id=_text(action.get("action_id")),
            value=_text(action.get("value")),
        )
    data = decode_object(payload)
    event = as_mapping(data.get("event"))
    item = as_mapping(event.get("item"))
    if item.get("type") != "message":
        return None
    return SlackAct(
        user=_text(event.get("user")),
        channel=_text(item.get("channel")),
        ts=_text(item.get("ts")),
        reaction=_text(event.get("reaction")),
    )


def _text(value: Any) -> str:
    return well_formed(str(value))[:200] if isinstance(value, str | int) else ""


def challenge_answer(challenge: str) -> bytes:
    return json.dumps({"challenge": challenge}).encode()
