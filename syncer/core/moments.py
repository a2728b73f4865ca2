"""Times as the core compares and shows them. A time without a zone is taken as UTC (what the
database hands back on SQLite), never as the machine's local time."""

from __future__ import annotations

from datetime import UTC, datetime


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def utc_text(moment: datetime | None) -> str:
    """`2026-01-02T03:04:05Z`, or `(unknown)`."""
    if moment is None:
        return "(unknown)"
    return aware(moment).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
