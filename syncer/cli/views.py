"""What the commands print for a person at a terminal.

Each command's part imports its domain lazily, as the commands do: printing one command's output
does not load the others' code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncer.cli.online import Report as OnlineReport
    from syncer.core.issue import SentryIssue
    from syncer.core.routing import Decision
    from syncer.core.triage import Report as TriageReport
    from syncer.policy import Conditions, Policy, Route
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
    lines.append(report.scope.describe())
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


# --- check-config --online -----------------------------------------------------------------------


def online_report(report: OnlineReport, *, jira_url: str) -> str:
    """What the checks looked at, then each problem under the place in the policy it names."""
    lines = [f"Online checks (Jira {jira_url}):"]
    lines += [f"  checked  {name}" for name in report.checked]
    if report.ok:
        lines.append("No problems found online.")
        return "\n".join(lines)
    lines += ["", f"Problems found online ({len(report.problems)}):"]
    by_place: dict[str, list[str]] = {}
    for problem in report.problems:
        by_place.setdefault(problem.where, []).append(problem.message)
    for where, messages in by_place.items():
        lines.append(f"  {where}:")
        lines += [f"    - {message}" for message in messages]
    return "\n".join(lines)


# --- report ---------------------------------------------------------------------------------------


def triage_report(report: TriageReport, format: str) -> str:
    """`syncer report`: Markdown (readable at a terminal, pasteable into a digest) or JSON."""
    from syncer.core.triage import as_dict, markdown

    if format == "json":
        return json.dumps(as_dict(report), indent=2) + "\n"
    return markdown(report)


# --- tables ---------------------------------------------------------------------------------------


def _columns(table: Sequence[Sequence[str]], limits: Sequence[int]) -> list[str]:
    """Rows as aligned columns, each cell cut to its column's limit (0: no limit)."""
    cut = [[_fit(cell, limits[i]) for i, cell in enumerate(row)] for row in table]
    widths = [max(len(row[i]) for row in cut) for i in range(len(cut[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cut]


def _fit(cell: str, limit: int) -> str:
    return cell if not limit or len(cell) <= limit else cell[: limit - 1] + "…"


# --- routing: `syncer check-config` and `syncer route explain` ------------------------------------


def format_explanation(decision: Decision, issue: SentryIssue, chosen: str = "") -> str:
    """What `syncer route explain` prints: the issue, each route tried and why it failed, the result.
    `chosen`: what an alert rule's settings laid over the routes (syncer.core.choices)."""
    from syncer.core.routing import quoted, route_label

    heading = f"Sentry issue {issue.id}" + (f" ({quoted(issue.short_id)})" if issue.short_id else "")
    lines = [f"{heading}: {quoted(issue.title)}", f"  {_issue_facts(issue)}", ""]
    if not decision.checks:
        lines.append("  (no routes configured)")
    for check in decision.checks:
        label = route_label(check.index, check.name)
        lines.append(f"  {label}: matches" if check.matched else f"  {label}: no match, {check.reason}")
    if decision.route_index is None:
        lines.append("  no route matched, so [defaults] apply")
    if chosen:
        lines.append(f"  then the {chosen}")
    lines.append("")
    if decision.target is None:
        if chosen and "notify only" in chosen:
            lines.append(f"Result: no ticket ({chosen})")
        elif decision.route_index is None:
            lines.append('Result: ignored ([defaults] has action = "ignore")')
        else:
            lines.append(f"Result: ignored ({route_label(decision.route_index, decision.route_name)})")
        return "\n".join(lines)
    target = decision.target
    owner = f"team {target.team}" if target.team else "[defaults]"
    if decision.action == "notify":
        lines.append(f"Result: notify {owner} in Slack, no ticket until someone asks for one there")
        lines.append(f"  channel     {_channel(decision)}")
    else:
        lines.append(f"Result: create a ticket for {owner}")
    if decision.action == "create" and _channel(decision) != "(none)":
        lines.append(f"  channel     {_channel(decision)} (posted there too)")
    lines += [
        f"  project     {target.jira_project}",
        f"  issue type  {target.issue_type}",
        f"  components  {', '.join(target.components) or '(none)'}",
        f"  assignee    {target.assignee_email or '(unassigned)'}",
        f"  labels      {', '.join(target.labels) or '(none)'} (plus the issue's own sentry-<id>)",
        f"  priority    {target.priority or '(left to Jira)'}",
    ]
    return "\n".join(lines)


def _channel(decision: Decision) -> str:
    return decision.slack_channel or "(none)"


def _issue_facts(issue: SentryIssue) -> str:
    from syncer.core.routing import counted, quoted

    facts = [
        f"project {quoted(issue.project_slug)}",
        f"level {quoted(issue.level)}",
        f"platform {quoted(issue.platform)}",
        f"type {quoted(issue.issue_type)}",
        f"category {quoted(issue.issue_category)}",
        counted(issue.count, "event"),
        counted(issue.user_count, "user"),
        "owner " + (quoted(issue.assigned_to.as_owner()) if issue.assigned_to else "(none)"),
    ]
    return ", ".join(facts)


def routing_rows(policy: Policy) -> list[tuple[str, str, str]]:
    """The routing table's rows, (route, conditions, outcome), `[defaults]` last: what `syncer
    check-config` prints and the console's routes page shows."""
    rows = [
        (
            f"[{index}] {route.display_name(index)}",
            _describe_when(route.when),
            _describe_outcome(policy, route),
        )
        for index, route in enumerate(policy.routes)
    ]
    rows.append(("[defaults]", "no route matched", _describe_outcome(policy, None)))
    return rows


def format_routing_table(policy: Policy) -> str:
    """What `syncer check-config` prints: each route's conditions and outcome, then the defaults."""
    rows = routing_rows(policy)
    head_width = max(len(head) for head, _, _ in rows)
    # Align the arrows unless one long condition would push every line far to the right.
    when_width = min(max(len(when) for _, when, _ in rows), 60)
    lines = ["Routes, tried in order (the first whose conditions all hold wins):"]
    for head, when, outcome in rows:
        lines.append(f"  {head:<{head_width}}  {when:<{when_width}}  \u2192 {outcome}")
    return "\n".join(lines)


def _describe_when(when: Conditions) -> str:
    from syncer.policy import toml_key

    parts: list[str] = []
    for key in when.given:
        value = getattr(when, key)
        if key == "tags":
            parts += [f"tags.{toml_key(tag)} = {_describe_values(globs)}" for tag, globs in value.items()]
        elif isinstance(value, int):
            parts.append(f"{key} = {value}")
        else:
            parts.append(f"{key} = {_describe_values(value)}")
    return ", ".join(parts) or "every issue"


def _describe_values(values: Sequence[object]) -> str:
    from syncer.core.patterns import Pattern

    shown = [str(v) if isinstance(v, Pattern) else json.dumps(v, ensure_ascii=False) for v in values]
    return shown[0] if len(shown) == 1 else f"[{', '.join(shown)}]"


def _describe_outcome(policy: Policy, route: Route | None) -> str:
    from syncer.core.routing import ticket_target

    if route is not None and route.ignores:
        return "ignore"
    notify = ""
    if route is not None and route.team is not None:
        channel = policy.teams[route.team].slack_channel
        if route.notifies:
            notify = f"notify {channel}, ticket when asked for: "
        elif channel:
            notify = f"post to {channel}: "
    if route is None and policy.defaults.action == "ignore":
        return "ignore"
    if route is None and policy.defaults.jira_project is None:
        return "create, but [defaults] names no jira_project"
    team_name = route.team if route else None
    target = ticket_target(policy, team_name, route, level="")
    team = policy.teams[team_name] if team_name else None
    # ticket_target folds the level's priority in; the table shows the configured one instead.
    configured = next(
        (p for p in (route.priority if route else None, team.priority if team else None,
                     policy.defaults.priority) if p is not None),
        None,
    )
    by_priority = any(p is not None for p in (policy.priorities.high, policy.priorities.medium,
                                              policy.priorities.low))
    by_issue = "by Sentry priority, else level" if by_priority else "by level"
    priority = {None: by_issue, "": "left to Jira"}.get(configured, configured)
    details = [
        target.jira_project,
        target.issue_type,
        f"components [{', '.join(target.components)}]",
        f"assignee {target.assignee_email or '(none)'}",
        f"labels [{', '.join(target.labels)}]",
        f"priority {priority}",
    ]
    return (f"team {team_name}: " if team_name else "") + notify + ", ".join(details)
