"""An incremental reconcile's lookups reach links through a selective index, whatever the
planner knows: SQLite's plans without statistics (it gathers none unless told to), read with
EXPLAIN QUERY PLAN for the statements the store really sends. `ix_links_state` is the trap:
nearly every link is active, yet without statistics `state = 'active'` looks as selective as
an id, and a plan through it reads every link."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from syncer.store import links
from syncer.store.schema import utcnow


def plans(engine: Engine, call: Callable[[], Any]) -> list[str]:
    """The query plan of each SELECT that `call` sent, one line per statement."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    with engine.connect() as connection:
        return [
            "; ".join(str(row[-1]) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))
            for sql, params in sent
        ]


@pytest.fixture
def sqlite(engine: Engine) -> Engine:
    if engine.dialect.name != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    return engine


@pytest.mark.parametrize(
    ("lookup", "index"),
    [
        (lambda e: links.active_for_tickets(e, ["10001", "10002"]), "ix_links_jira_issue_id"),
        (lambda e: links.active_for_issues(e, ["4001", "4002"]), "ix_links_sentry_issue_id"),
        (lambda e: links.changed_since(e, utcnow() - timedelta(minutes=15)), "ix_links_updated_at"),
        (lambda e: links.active_by_ids(e, [1, 2, 3]), "INTEGER PRIMARY KEY"),
    ],
    ids=["by-ticket", "by-issue", "changed-here", "by-id"],
)
def test_the_change_lookups_use_a_selective_index(
    sqlite: Engine, lookup: Callable[[Engine], Any], index: str
) -> None:
    (plan,) = plans(sqlite, lambda: lookup(sqlite))
    assert index in plan and "ix_links_state" not in plan, plan
    assert "SCAN links" not in plan, plan  # no walk through every row
