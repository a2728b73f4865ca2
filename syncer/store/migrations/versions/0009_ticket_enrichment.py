"""links.noted_count / noted_users / noted_at: what a ticket was last told of its issue's growth

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 01:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("noted_count", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("noted_users", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("noted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.drop_column("noted_at")
        batch.drop_column("noted_users")
        batch.drop_column("noted_count")
