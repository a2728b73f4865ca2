"""The web app with the console on (both tokens and a proxy header), for the console's tests."""

from __future__ import annotations

from pydantic import SecretStr
from sqlalchemy.engine import Engine

from syncer import metrics
from syncer.fakes.base import FakeServer
from syncer.runtime import Runtime

OPERATOR_TOKEN = "operator-token-0123456789abcdef"
VIEWER_TOKEN = "viewer-token-0123456789abcdef"
HEADER = "X-Forwarded-Email"


def start_console(runtime: Runtime, engine: Engine) -> FakeServer:
    """`syncer web` as `cmd_web` builds it, with the console configured, on a real socket; the
    session's environment (fakes, Redis, database) otherwise."""
    from syncer.cli.main import console_figures
    from syncer.settings import current_settings
    from syncer.web.app import create_app
    from syncer.worker import app as worker

    settings = current_settings().model_copy(update={
        "console_token": SecretStr(OPERATOR_TOKEN), "console_viewer_token": SecretStr(VIEWER_TOKEN),
        "console_trusted_header": HEADER, "console_operators": "*@ops.example.com",
        "console_viewers": "dee@example.com",
    })
    worker.configure(settings)
    app = create_app(settings, engine, worker.enqueue, worker.broker_check,
                     metrics.WorkerCounters(runtime.redis), start_reconcile=worker.start_reconcile,
                     triage_figures=console_figures, queue_link=worker.queue_link)
    return FakeServer(app).start()
