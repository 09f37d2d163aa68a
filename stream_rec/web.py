"""Views on the worker's own web server (Faust's): read-only, on 127.0.0.1 unless ``web_bind`` says otherwise.

- ``/stats``: the engine's figures now as JSON (counters, model version and snapshot age, learning queue and
  drops, latency and model freshness p50/p99 over the last minute).
"""

from __future__ import annotations

import faust
from faust.web import Request, Response, View

from .engine import Engine

__all__ = ["add_views"]


def add_views(app: faust.App, engine: Engine) -> None:
    """Register the worker's views on ``app``'s web server."""

    @app.page("/stats")
    async def stats(view: View, request: Request) -> Response:
        return view.json(engine.stats())
