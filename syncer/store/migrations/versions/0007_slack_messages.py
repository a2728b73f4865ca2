"""slack_messages (each owned issue's message in its team's channel) and slack_releases (release
watch threads)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 01:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slack_messages",
        sa.Column("sentry_issue_id", sa.String(length=40), nullable=False),
        sa.Column("team", sa.String(length=200), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("channel_id", sa.String(length=40), nullable=True),
        sa.Column("ts", sa.String(length=40), nullable=True),
        sa.Column("release", sa.String(length=200), nullable=False),
        sa.Column("shown", sa.String(length=64), nullable=False),
        sa.Column("regressions_told", sa.Integer(), nullable=False),
        sa.Column("regressed_in", sa.String(length=200), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sentry_issue_id"),
        sa.UniqueConstraint("channel_id", "ts", name="uq_slack_messages_channel_ts"),
    )
    op.create_index("ix_slack_messages_release", "slack_messages", ["release"])
    op.create_index("ix_slack_messages_regressed_in", "slack_messages", ["regressed_in"])
    op.create_table(
        "slack_releases",
        sa.Column("channel_id", sa.String(length=40), nullable=False),
        sa.Column("release", sa.String(length=200), nullable=False),
        sa.Column("ts", sa.String(length=40), nullable=True),
        sa.Column("shown", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel_id", "release"),
    )


def downgrade() -> None:
    op.drop_table("slack_releases")
    op.drop_index("ix_slack_messages_regressed_in", table_name="slack_messages")
    op.drop_index("ix_slack_messages_release", table_name="slack_messages")
    op.drop_table("slack_messages")
