"""syncer: keeps Sentry issues and Jira tickets in sync."""

__version__ = "0.1.0"
