"""Persistence: the only code that touches SQL.

schema (tables), engine (connections), migrate (Alembic), deliveries (the inbox of webhooks), links
(with their claims and audit trail), dead letters, accounts (the e-mail to Jira account cache),
installations (the Sentry installation uuids webhooks carry), health (what `/readyz` and `/metrics`
read), advisory (PostgreSQL advisory locks, for `syncer.locks` without Redis).
"""
