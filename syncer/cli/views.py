"""What the commands print for a person at a terminal.

Each command's part imports its domain lazily, as the commands do: printing one command's output
does not load the others' code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncer.sync.reconcile.report import Report

# --- reconcile ------------------------------------------------------------------------------------


def reconcile_progress(report: Report) -> str:
    """One line, rewritten in place on a terminal as the run goes."""
    return (
        f"reconcile: {report.links_checked:,}/{report.links_total:,} links checked, "
        f"{report.drifted:,} drifted, {report.repaired:,} repaired, {report.failed:,} failed"
    )


def reconcile_report(report: Report) -> str:
    """The drift table, the backfill, the sweep, and a summary."""
    from syncer.sync.reconcile.report import BackfillResult, RepairResult

    lines: list[str] = []
    if report.rows:
        header = ("LINK", "JIRA NOW", "SENTRY NOW", "STORED (JIRA | SENTRY)", "ACTION", "RESULT")
        table = [header] + [
            (
                f"{row.sentry_issue_id} <-> {row.jira_key or '?'}",
                row.jira_state,
                row.sentry_state,
                row.stored_state,
                row.action,
                row.result + (f": {row.detail}" if row.detail and row.result != RepairResult.WOULD else ""),
            )
            for row in report.rows
        ]
        lines += _columns(table, (34, 26, 26, 40, 60, 0))
        if report.rows_omitted:
            lines.append(f"... and {report.rows_omitted:,} more drifted links, not listed")
        lines.append("")
    window = f"first seen in the last {report.backfill_window_hours} h"
    if report.backfill_window_hours:
        lines.append(
            f"backfill: unresolved issues {window}: {report.backfill_seen:,}; without a link and sent to "
            f"Jira by a route: {len(report.backfill):,}; without a link and ignored by a route: "
            f"{report.backfill_ignored:,}"
        )
        for b in report.backfill:
            would = b.result == BackfillResult.WOULD
            lines.append(
                f"  {b.sentry_issue_id} {b.short_id} (first seen {b.first_seen}): route {b.route}, "
                f"team {b.team}, {b.project}: {'would create or link' if would else b.result}"
                + (f": {b.detail}" if b.detail and not would else "")
            )
    else:
        lines.append("backfill: off (reconcile.lookback_hours = 0)")
    s = report.sweep
    if report.dry_run:
        lines.append(
            f"sweep: {s.overdue:,} overdue deliveries and {s.dead_letters:,} dead letters would be "
            "handed out again"
        )
    else:
        lines.append(
            f"sweep: {s.requeued:,} of {s.overdue:,} overdue deliveries re-enqueued, {s.retried:,} of "
            f"{s.dead_letters:,} old dead letters retried" + (f" ({s.note})" if s.note else "")
        )
    for error in report.errors:
        lines.append(f"error: {error}")
    calls = ", ".join(f"{side} {n:,}" for side, n in report.api_calls.items())
    lines.append(f"API calls: {calls}")
    lines.append(report.summary() + (" (dry run: nothing was changed)" if report.dry_run else ""))
    return "\n".join(lines)


# --- tables ---------------------------------------------------------------------------------------


def _columns(table: Sequence[Sequence[str]], limits: Sequence[int]) -> list[str]:
    """Rows as aligned columns, each cell cut to its column's limit (0: no limit)."""
    cut = [[_fit(cell, limits[i]) for i, cell in enumerate(row)] for row in table]
    widths = [max(len(row[i]) for row in cut) for i in range(len(cut[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cut]


def _fit(cell: str, limit: int) -> str:
    return cell if not limit or len(cell) <= limit else cell[: limit - 1] + "…"
