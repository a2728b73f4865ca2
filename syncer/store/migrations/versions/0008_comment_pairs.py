"""comment_pairs: each comment copied between Sentry and Jira, and its copy (policy [comments])

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 01:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "comment_pairs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sentry_issue_id", sa.String(length=40), nullable=False),
        sa.Column("jira_issue_id", sa.String(length=40), nullable=False),
        sa.Column("sentry_note_id", sa.String(length=40), nullable=True),
        sa.Column("jira_comment_id", sa.String(length=40), nullable=True),
        sa.Column("origin", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("sentry_issue_id", "sentry_note_id", name="uq_comment_pairs_sentry"),
        sa.UniqueConstraint("jira_issue_id", "jira_comment_id", name="uq_comment_pairs_jira"),
    )


def downgrade() -> None:
    op.drop_table("comment_pairs")
