"""reconcile_cursor: the rolling full pass's position and the incremental window's start;
an index on links.updated_at for the links changed since the last run

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 19:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconcile_cursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("after_link_id", sa.Integer(), nullable=False),
        sa.Column("cycle_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changes_read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_links_updated_at"), "links", ["updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_links_updated_at"), table_name="links")
    op.drop_table("reconcile_cursor")
