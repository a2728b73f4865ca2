"""Alembic environment. Run through `syncer db upgrade` (see syncer.store.migrate), never alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import syncer.store.schema  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds tables for it.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
