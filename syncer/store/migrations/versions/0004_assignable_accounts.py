"""account_cache per Jira project (assignability is a project's), with the problem of a miss

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A cache: rebuilt, not migrated (its rows were site-wide answers; the new ones are per project).
    op.drop_table("account_cache")
    op.create_table(
        "account_cache",
        sa.Column("project", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=True),
        sa.Column("problem", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("project", "email"),
    )


def downgrade() -> None:
    op.drop_table("account_cache")
    op.create_table(
        "account_cache",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email"),
    )
