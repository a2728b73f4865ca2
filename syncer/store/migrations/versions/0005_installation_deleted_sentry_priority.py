"""installations.deleted_at (Sentry's installation.deleted), links.sentry_priority (the priority
the ticket last followed)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 01:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("installations") as table:
        table.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("links") as table:
        table.add_column(
            sa.Column("sentry_priority", sa.String(length=20), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("links") as table:
        table.drop_column("sentry_priority")
    with op.batch_alter_table("installations") as table:
        table.drop_column("deleted_at")
