"""How the console words stored things: an audit line's cause, a dead letter's payload."""

from __future__ import annotations

import json
from typing import Any


def cause_of(cause: str) -> str:
    """`delivery:12` → "webhook (delivery 12)", `reconcile:<run>` → "reconcile run <run>", a person's
    own action → who did it."""
    kind, _, rest = cause.partition(":")
    if kind == "delivery" and rest:
        return f"webhook (delivery {rest})"
    if kind == "reconcile" and rest:
        return f"reconcile run {rest}"
    if kind == "console" and rest:
        return f"{rest}, in the console"
    if cause == "cli":
        return "a person, with the syncer command"
    return cause or "(not recorded)"


def payload_summary(payload: str, limit: int = 200) -> str:
    """One line about a webhook body: its event and what it is about, without the rest of it."""
    try:
        body: Any = json.loads(payload)
    except ValueError:
        return "(not JSON)" if payload else "(empty)"
    if not isinstance(body, dict):
        return "(not a JSON object)"
    parts: list[str] = []
    data: dict[str, Any] = body["data"] if isinstance(body.get("data"), dict) else {}
    if isinstance(body.get("action"), str):
        parts.append(f"action {body['action']}")
    if isinstance(body.get("webhookEvent"), str):
        parts.append(str(body["webhookEvent"]))
    issue: dict[str, Any] | None = data["issue"] if isinstance(data.get("issue"), dict) else None
    if issue:
        short = issue.get("shortId") or issue.get("id")
        parts.append(f"Sentry issue {short}: {issue.get('title', '')}".strip())
    ticket: dict[str, Any] | None = body["issue"] if isinstance(body.get("issue"), dict) else None
    if ticket:
        fields: dict[str, Any] = ticket["fields"] if isinstance(ticket.get("fields"), dict) else {}
        parts.append(f"Jira {ticket.get('key', '?')}: {fields.get('summary', '')}".strip())
    text = ", ".join(str(p) for p in parts) or "(no event named)"
    return text if len(text) <= limit else text[: limit - 1] + "…"
