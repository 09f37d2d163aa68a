"""What every test shares: the broker policy and settings isolated from the user's own.

The broker policy: integration tests (marked ``kafka``) talk to the broker at ``STREAM_REC_BROKER``, else the
local one on 127.0.0.1:9092, which ``bash scripts/test`` starts (and stops again) where none is configured; a test
that needs it fails, never skips, when it is down. Every test runs with the user's ``STREAM_REC_*`` settings
removed, except the broker's address and the home folder (where the local broker's jars are), so a user's
``STREAM_REC_K=20`` never changes what a test sees.

Under pytest-xdist (``bash scripts/test`` runs two processes) each test process gives torch its share of the
cores: more torch threads than cores more than doubled the unit tests' time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_rec.ops.probe import is_up
from stream_rec.settings import Settings

BROKER = os.environ.get("STREAM_REC_BROKER", "127.0.0.1:9092")

if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
KEPT = ("STREAM_REC_BROKER", "STREAM_REC_HOME")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("STREAM_REC_") and name not in KEPT:
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def broker() -> str:
    """The broker's address; the test fails at once when none answers there."""
    if not is_up(BROKER):
        pytest.fail(f"no Kafka broker on {BROKER}: start one with `stream-rec kafka start`, or run `bash scripts/test`")
    return BROKER


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings whose home and worker state are the test's own folder."""
    return Settings(home=tmp_path, data_dir=tmp_path / "worker")
