"""The worker process: the Celery app, its tasks and the beat schedule (app), and the supervisor of
worker processes (supervise)."""
