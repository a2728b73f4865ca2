"""What a reconciliation found and did: the report its callers print (`syncer.cli.views`), turn
into JSON (`syncer reconcile --json`) or count (the run's metrics)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RepairResult(StrEnum):
    """What became of one drifted link."""

    WOULD = "would"  # dry run: it would be repaired
    REPAIRED = "repaired"
    RECORDED = "recorded"  # nothing to change on either side; the link now says what they say
    SKIPPED = "skipped"  # a webhook changed the link meanwhile: the next run looks again
    FAILED = "failed"


class BackfillResult(StrEnum):
    """What became of one unlinked issue in the lookback window."""

    WOULD = "would"  # dry run: its ticket would be created or linked
    CREATED = "created"
    LINKED = "linked"
    SKIPPED = "skipped"  # another worker is making its ticket right now: the next run looks again
    FAILED = "failed"
    NOTHING = "nothing"  # the ticket path decided there was nothing to do


@dataclass
class Row:
    """One drifted link: a line of the drift table."""

    link_id: int
    sentry_issue_id: str
    jira_key: str
    jira_state: str
    sentry_state: str
    stored_state: str
    kind: str
    action: str
    reason: str
    result: RepairResult
    detail: str = ""


@dataclass
class BackfillRow:
    """An unlinked issue in the lookback window that a route sends to Jira."""

    sentry_issue_id: str
    short_id: str
    first_seen: str
    route: str
    team: str
    project: str
    result: BackfillResult
    detail: str = ""


@dataclass
class Sweep:
    overdue: int = 0  # inbox rows stored, never processed in time
    requeued: int = 0
    dead_letters: int = 0  # old enough to be retried now
    retried: int = 0
    note: str = ""


@dataclass
class ReadScope:
    """Which links the run read: the changes since `changes_since` and a slice of the full pass, or
    (mode "full") every link."""

    mode: str = "incremental"
    changes_since: datetime | None = None  # the window's start, the safety margin included
    changed_in_jira: int = 0  # tickets Jira's search found updated in the window
    changed_in_sentry: int = 0  # issues Sentry's search found seen in the window
    changed_here: int = 0  # links changed in the database in the window, not already among those
    changed_links: int = 0  # active links of all these: the ones read for the changes
    slice_size: int = 0  # links a slice holds for the pass to cover every link in full_pass_hours
    slice_first: int | None = None  # link ids of this run's slice
    slice_last: int | None = None
    slice_links: int = 0
    slice_wrapped: bool = False  # the slice reached the last link: the next run starts a new cycle
    cycle_started_at: datetime | None = None

    def describe(self) -> str:
        """One line for a person."""
        if self.mode == "full":
            return "read: every link (a full run)"
        since = f"{self.changes_since:%Y-%m-%d %H:%M:%S} UTC" if self.changes_since else "?"
        window = (
            f"changes since {since}: {self.changed_in_jira:,} tickets in Jira, {self.changed_in_sentry:,} "
            f"issues in Sentry, {self.changed_here:,} more links changed here; "
            f"{self.changed_links:,} links read"
        )
        if self.slice_first is None:
            part = "full pass: no links"
        else:
            part = (
                f"full pass: links {self.slice_first}-{self.slice_last} ({self.slice_links:,} of a slice "
                f"of {self.slice_size:,})"
            )
            if self.slice_wrapped:
                part += "; the next run starts the pass again"

        if self.cycle_started_at is not None:
            part += f", cycle begun {self.cycle_started_at:%Y-%m-%d %H:%M} UTC"
        return f"read: {window}; {part}"

    def as_dict(self) -> dict[str, Any]:
        found = vars(self).copy()
        for key in ("changes_since", "cycle_started_at"):
            found[key] = found[key].isoformat() if found[key] is not None else None
        return found


@dataclass
class Report:
    run: str
    dry_run: bool
    started_at: datetime
    links_total: int = 0  # active links when the run started
    links_checked: int = 0
    unchecked: int = 0  # links of pages that could not be read
    drift: Counter[str] = field(default_factory=Counter)
    drifted: int = 0
    rows: list[Row] = field(default_factory=list)  # at most `keep_rows` of them
    keep_rows: int | None = None
    rows_omitted: int = 0
    would: int = 0  # dry run: links it would repair
    repaired: int = 0
    recorded: int = 0
    skipped: int = 0
    failed: int = 0
    backfill_window_hours: int = 0
    backfill_seen: int = 0  # issues in the window
    backfill_ignored: int = 0  # unlinked, but their route ignores them
    backfill: list[BackfillRow] = field(default_factory=list)
    sweep: Sweep = field(default_factory=Sweep)
    scope: ReadScope = field(default_factory=ReadScope)
    errors: list[str] = field(default_factory=list)
    api_calls: dict[str, int] = field(default_factory=dict)
    duration_seconds: float = 0.0

    @property
    def cause(self) -> str:
        """What the audit lines and links record as the reason for this run's changes."""
        return f"reconcile:{self.run}"

    def add(self, row: Row) -> None:
        """Count one drifted link by its result; keep its row while there is room."""
        self.drifted += 1
        if row.result == RepairResult.WOULD:
            self.would += 1
        elif row.result == RepairResult.REPAIRED:
            self.repaired += 1
        elif row.result == RepairResult.RECORDED:
            self.recorded += 1
        elif row.result == RepairResult.SKIPPED:
            self.skipped += 1
        elif row.result == RepairResult.FAILED:
            self.failed += 1
        if self.keep_rows is None or len(self.rows) < self.keep_rows:
            self.rows.append(row)
        else:
            self.rows_omitted += 1

    @property
    def backfill_failed(self) -> int:
        return sum(1 for row in self.backfill if row.result == BackfillResult.FAILED)

    @property
    def backfill_skipped(self) -> int:
        return sum(1 for row in self.backfill if row.result == BackfillResult.SKIPPED)

    @property
    def backfilled(self) -> int:
        return sum(
            1 for row in self.backfill if row.result in (BackfillResult.CREATED, BackfillResult.LINKED)
        )

    @property
    def unreachable(self) -> int:
        """Links whose ticket Jira answers 404 for without having sent a deletion."""
        return self.drift["ticket_unreachable"]

    @property
    def ok(self) -> bool:
        """In sync, or repaired: nothing failed, every link was read, and no ticket is unreachable
        (no run can repair that: a person grants the bot access again, or unlinks the issue)."""
        return not (self.failed or self.backfill_failed or self.unchecked or self.errors or self.unreachable)

    def summary(self) -> str:
        """One line: the run's log line, and the last line of its terminal report."""
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.drift.items()))
        parts = [
            f"{self.links_checked:,} of {self.links_total:,} links checked in {self.duration_seconds:.1f}s",
            f"{self.drifted:,} drifted" + (f" ({kinds})" if kinds else ""),
        ]
        if self.dry_run:
            parts.append(f"would repair {self.would:,}")
        else:
            parts.append(
                f"repaired {self.repaired:,}, recorded {self.recorded:,}, skipped {self.skipped:,}, "
                f"failed {self.failed:,}"
            )
        if self.unchecked:
            parts.append(f"{self.unchecked:,} unchecked")
        if self.unreachable:
            parts.append(f"{self.unreachable:,} tickets unreachable (a person must act)")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The shape of `syncer reconcile --json`."""
        return {
            "run": self.run,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "started_at": self.started_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 3),
            "links": {
                "active": self.links_total,
                "checked": self.links_checked,
                "unchecked": self.unchecked,
                "drifted": self.drifted,
                "repaired": self.repaired,
                "recorded": self.recorded,
                "skipped": self.skipped,
                "failed": self.failed,
                "unreachable": self.unreachable,
            },
            "read": self.scope.as_dict(),
            "drift_by_kind": dict(sorted(self.drift.items())),
            "drift": [vars(row) for row in self.rows],
            "drift_rows_omitted": self.rows_omitted,
            "backfill": {
                "window_hours": self.backfill_window_hours,
                "issues_in_window": self.backfill_seen,
                "ignored_by_route": self.backfill_ignored,
                "backfilled": self.backfilled,
                "skipped": self.backfill_skipped,
                "failed": self.backfill_failed,
                "issues": [vars(row) for row in self.backfill],
            },
            "sweep": vars(self.sweep),
            "api_calls": self.api_calls,
            "errors": self.errors,
        }


Progress = Callable[[Report], None]
