"""Our Slack Web API client: slack_sdk's `WebClient`, one method per call, every failure one of ours.

slack_sdk's own retry handlers are off (`retry_handlers=[]`): its rate-limit handler sleeps in the
calling thread, which would hold a worker for as long as Slack says. Instead a 429's `Retry-After`
holds our shared limiter (`syncer.ratelimit`, so every worker waits, not only this one) and the
call fails as `TransientError` with that wait: the Slack task is retried then, and nothing else
(tickets, status sync) waits for it.

Slack answers most failures with HTTP 200 and `{"ok": false, "error": ...}` (api.slack.com/web,
"Evaluating responses"); which of those words mean "try again" is `TRANSIENT_ERRORS`.
"""

from __future__ import annotations

import logging
import urllib.error
from collections.abc import Mapping, Sequence
from http.client import HTTPException
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from syncer.errors import PermanentError, TransientError, retry_after_seconds
from syncer.ratelimit import Throttle

# Slack's error words for its own trouble (docs.slack.dev/methods/chat.postMessage, "Errors").
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "service_unavailable",
        "fatal_error",
        "internal_error",
        "request_timeout",
        "team_added_to_org",
    }
)

# slack_sdk logs request and answer bodies at DEBUG (the Authorization header redacted, the message
# text not): keep its lines out of ours unless an operator asks for them by this name.
_sdk_log = logging.getLogger("syncer.slack.sdk")
_sdk_log.setLevel(logging.WARNING)


class SlackClient:
    def __init__(
        self, base_url: str, token: str, *, timeout: float, throttle: Throttle | None = None
    ) -> None:
        # WebClient's timeout is whole seconds, for connecting and for the answer alike.
        self._web = WebClient(
            token=token, base_url=base_url, timeout=max(1, round(timeout)), retry_handlers=[], logger=_sdk_log
        )
        self._base_url = self._web.base_url
        self._throttle = throttle

    def __repr__(self) -> str:
        return f"SlackClient({self._base_url!r})"

    # ------------------------------------------------------------------ the API

    def post_message(
        self,
        channel: str,
        *,
        text: str,
        blocks: Sequence[Mapping[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> tuple[str, str]:
        """(channel ID, ts) of the new message. `channel` may be a name (`#payments-alerts`)."""
        answer = self._call(
            "chat.postMessage",
            channel=channel,
            text=text,
            blocks=list(blocks) if blocks is not None else None,
            thread_ts=thread_ts,
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(answer["channel"]), str(answer["ts"])

    def update_message(
        self, channel_id: str, ts: str, *, text: str, blocks: Sequence[Mapping[str, Any]]
    ) -> None:
        self._call("chat.update", channel=channel_id, ts=ts, text=text, blocks=list(blocks))

    def channel_members(self, channel_id: str) -> set[str]:
        """Every member's user ID, all pages of `conversations.members`."""
        members: set[str] = set()
        cursor = ""
        while True:
            answer = self._call("conversations.members", channel=channel_id, limit=200, cursor=cursor or None)
            members.update(str(m) for m in answer.get("members") or ())
            cursor = str((answer.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return members

    def user_email(self, user_id: str) -> str:
        """The e-mail of the user's profile; "" when the app may not see it (no users:read.email)."""
        answer = self._call("users.info", user=user_id)
        profile = (answer.get("user") or {}).get("profile") or {}
        return str(profile.get("email") or "")

    # ------------------------------------------------------------------ plumbing

    def _call(self, method: str, **args: Any) -> dict[str, Any]:
        url = self._base_url + method
        if self._throttle is not None:
            self._throttle.before("GET" if method.startswith(("users.", "conversations.")) else "POST", url)
        params = {k: v for k, v in args.items() if v is not None}
        try:
            if method.startswith("chat."):
                response = self._web.api_call(method, json=params)
            else:
                response = self._web.api_call(method, params=params)
        except SlackApiError as exc:
            status = int(exc.response.status_code)
            headers = {str(k): str(v) for k, v in (exc.response.headers or {}).items()}
            if self._throttle is not None:
                self._throttle.after("POST", url, status, headers)
            error = (
                str((exc.response.data or {}).get("error") or "")
                if isinstance(exc.response.data, dict)
                else ""
            )
            text = f"slack {method} answered {status}: {error or 'no error named'}"
            if status == 429 or status >= 500 or error in TRANSIENT_ERRORS:
                return self._transient(text, retry_after_seconds(headers), status)
            raise PermanentError(text, status=status) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, HTTPException, SlackClientError) as exc:
            # The message holds the class only: URLError's text can quote the URL.
            raise TransientError(f"slack {method}: no answer ({type(exc).__name__})") from None
        data = response.data
        if not isinstance(data, dict):
            raise PermanentError(f"slack {method} answered something that is not a JSON object")
        return data

    @staticmethod
    def _transient(text: str, retry_after: float | None, status: int) -> dict[str, Any]:
        raise TransientError(text, retry_after=retry_after, status=status)
