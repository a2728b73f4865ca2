"""The console: `GET /console`, server-rendered pages for operators and triage drivers.

Off unless configured (`syncer.web.console.access`); every read goes through `syncer.store`, every
action through the same code as its CLI command (`syncer dead-letters retry|drop`, `links unlink`)
or onto the broker (a reconcile run). The pages are Jinja2 templates (autoescaped) under
`templates/`, one stylesheet and one small script under `static/`: no build step, nothing from
another site, and every page works without JavaScript (only "copy as markdown" needs it).
"""

from __future__ import annotations

from syncer.web.console.pages import Actions, Figures, mount

__all__ = ["Actions", "Figures", "mount"]
