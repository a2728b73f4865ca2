"""The triage figures, read and worked out: what `syncer report` prints and the console shows.

Four statements whatever the data (`syncer.store.triage`), so a page may call `figures` per view.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from syncer.core import triage
from syncer.store import triage as stored
from syncer.store.schema import utcnow


def figures(
    engine: Engine, *, since: timedelta = timedelta(days=7), team: str | None = None,
    now: datetime | None = None,
) -> triage.Report:
    """Per team over the last `since` (one team when `team` is given), and per route over the last
    24 h, 7 d and 30 d."""
    now = now or utcnow()
    start = now - since
    tickets = stored.tickets(engine, since=start, team=team)
    back = stored.coming_back(engine, since=start, team=team)
    grouped = triage.by_team(tickets)
    names = triage.team_order({*grouped, *back} if team is None else {team})
    teams = tuple(
        triage.team_figures(name, grouped.get(name, ()), since=start, now=now,
                            regressions=back.get(name, stored.ComingBack()).regressions,
                            reopens=back.get(name, stored.ComingBack()).reopens)
        for name in names
    )
    counts = stored.route_counts(engine, [now - span for _, span in triage.ROUTE_WINDOWS], team=team)
    routes = tuple(triage.RouteFigures(c.route, c.matched, c.tickets, c.ignored) for c in counts)
    return triage.Report(since=start, until=now, team=team, teams=teams, routes=routes,
                         no_owner_share=triage.no_owner_share(routes))
