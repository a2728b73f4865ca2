"""Ticket enrichment ([enrichment]): whether a linked issue has grown enough since its ticket was
last told to be worth one comment. Pure: the counts and times in, the comment's reason or None."""

from __future__ import annotations

from datetime import datetime, timedelta

from syncer.policy import EnrichmentPolicy


def growth(policy: EnrichmentPolicy, *, count: int, users: int, noted_count: int, noted_users: int,
           noted_at: datetime | None, now: datetime) -> str | None:
    """The reason for a comment ("events 120 -> 1,250 (x10)", "users reached 100"), or None: not
    grown enough, or the ticket was told less than `min_hours_between` ago."""
    if noted_at is not None and now - noted_at < timedelta(hours=policy.min_hours_between):
        return None
    reasons = []
    factor = policy.events_factor
    if factor > 1 and noted_count > 0 and count >= noted_count * factor:
        reasons.append(f"events {noted_count:,} -> {count:,} (x{count // noted_count})")
    crossed = [mark for mark in policy.users_at if noted_users < mark <= users]
    if crossed:
        reasons.append(f"users reached {max(crossed):,} (now {users:,})")
    return "; ".join(reasons) or None


def release_news(policy: EnrichmentPolicy, *, release: str, noted_release: str, noted_at: datetime | None,
                 now: datetime) -> bool:
    """Whether the ticket should be told its issue is seen in `release`: `new_release` is on, the
    release is not the one it was last told of, and it was not told anything `min_hours_between` ago."""
    if not policy.new_release or not release or release == noted_release:
        return False
    return noted_at is None or now - noted_at >= timedelta(hours=policy.min_hours_between)


def enabled(policy: EnrichmentPolicy) -> bool:
    """Whether reconciliation compares counts (`new_release` is the webhooks' work, not its)."""
    return policy.events_factor > 1 or bool(policy.users_at)
