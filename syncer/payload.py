"""Vendor JSON as it arrives (webhook bodies, API answers): decoded once, its values read defensively.

Both edges (`syncer.sentry.parse`, `syncer.jira.parse` and their webhooks) read with these: a missing
or mistyped value becomes a default, never an exception; only a body that is not JSON, or not an
object, is a `PayloadError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncer.errors import PayloadError
from syncer.lanes import Lane

# The contract: a webhook body over 1 MiB is answered 413. The web tier refuses it at the door, the
# parsers refuse it from anyone else.
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Envelope:
    """What intake stores about a delivery besides its body, read without parsing the event."""

    resource: str
    action: str
    ignored: str = ""  # why syncer will do nothing with it; "" when a handler will run
    lane: Lane = Lane.DEFAULT  # the queue it is published to (syncer.lanes)


def decode_object(raw: bytes | bytearray | str) -> Mapping[str, Any]:
    """A JSON object from its UTF-8 text."""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadError("webhook body is too large")
    try:
        decoded = json.loads(raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise PayloadError(f"webhook body is not JSON: {type(exc).__name__}") from None
    if not isinstance(decoded, dict):
        raise PayloadError("webhook body is not an object")
    return decoded


def well_formed(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD. JSON's `"\\ud800"` decodes to a string that no
    encoder takes (UTF-8, UTF-16, a database column), so it must not get past the edge."""
    if text.isascii():
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_text(value: Any, limit: int = 10_000) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return well_formed(value[:limit])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def as_int(value: Any) -> int:
    # Sentry sends `count` as a string and `userCount` as an int.
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return 0
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else 0  # Python's JSON reads Infinity and NaN
    return 0


def as_time(value: Any) -> datetime | None:
    """ISO-8601 (Sentry; Jira, with offsets as +0000) or epoch milliseconds (Jira's webhook
    `timestamp`) to an aware datetime; None when absent or bad. Python 3.11's `fromisoformat` reads
    `Z` and `+0000` itself."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
