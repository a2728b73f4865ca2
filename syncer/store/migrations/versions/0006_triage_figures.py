"""links' triage moments (first seen, ticketed, resolved) and routed_issues, for `syncer report`

Old rows get what can be derived: a ticket's time is its link's creation, a done ticket's resolution
its last Jira change, a route's decision its link's creation; Sentry's first-seen time is unknown
for them (NULL: left out of the first-seen figures).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("sentry_first_seen", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("ticketed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_links_ticketed_at", ["ticketed_at"])
        batch.create_index("ix_links_resolved_at", ["resolved_at"])
    op.create_table(
        "routed_issues",
        sa.Column("sentry_issue_id", sa.String(length=40), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("team", sa.String(length=200), nullable=True),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sentry_issue_id", "route"),
    )
    op.create_index("ix_routed_issues_decided_at", "routed_issues", ["decided_at"])
    op.execute("UPDATE links SET ticketed_at = created_at WHERE jira_issue_id IS NOT NULL")
    op.execute(
        "UPDATE links SET resolved_at = COALESCE(jira_changed_at, updated_at) "
        "WHERE jira_status_category = 'done' AND jira_issue_id IS NOT NULL"
    )
    op.execute(
        "INSERT INTO routed_issues (sentry_issue_id, route, team, action, decided_at) "
        "SELECT sentry_issue_id, route, MAX(team), 'create', MIN(created_at) FROM links "
        "WHERE route <> '' GROUP BY sentry_issue_id, route"
    )


def downgrade() -> None:
    op.drop_index("ix_routed_issues_decided_at", table_name="routed_issues")
    op.drop_table("routed_issues")
    with op.batch_alter_table("links") as batch:
        batch.drop_index("ix_links_resolved_at")
        batch.drop_index("ix_links_ticketed_at")
        batch.drop_column("resolved_at")
        batch.drop_column("ticketed_at")
        batch.drop_column("sentry_first_seen")
