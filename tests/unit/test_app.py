"""The worker's Faust app is wired to its settings (no broker needed to build it)."""

from __future__ import annotations

from pathlib import Path

from stream_rec.app import create_app
from stream_rec.ceiling import create_ceiling_app
from stream_rec.settings import Settings


def test_the_producer_lingers_as_configured(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"linger": 0.025})
    for app in (create_app(settings), create_ceiling_app(settings)):
        assert app.conf.producer_linger == 0.025
    assert Settings(home=tmp_path).linger > 0, "by default the producer gathers messages"
