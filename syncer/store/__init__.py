"""Persistence: the only code that touches SQL.

schema (tables), engine (connections), migrate (Alembic), deliveries (the inbox of webhooks), links,
dead letters, audit, accounts, advisory (PostgreSQL advisory locks, for `syncer.locks` without Redis).
"""
