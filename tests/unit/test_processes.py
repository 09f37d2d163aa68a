"""A child process gets exactly its parent's settings, whatever the parent's environment says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stream_rec.ops.processes import isolated, worker_env
from stream_rec.settings import ModelSettings, Retrieval, Settings


def test_a_child_reads_back_exactly_the_settings_it_was_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ModelSettings(dim=16, exclude_seen=True, lr=0.0123, encoder="gru", repeat=False)
    retrieval = Retrieval(mode="index", probe=4)
    settings = Settings(home=tmp_path, k=5, learn_in="process", model=model, retrieval=retrieval,
                        catalogue=tmp_path / "items.txt")  # fmt: skip
    settings = isolated(settings, "t", tmp_path)
    # The parent's own environment says otherwise, and names an instance id the settings do not have.
    monkeypatch.setenv("STREAM_REC_MODEL__DIM", "99")
    monkeypatch.setenv("STREAM_REC_INSTANCE_ID", "elsewhere")
    env = worker_env(settings)
    assert env["STREAM_REC_MODEL__EXCLUDE_SEEN"] == "true" and "STREAM_REC_INSTANCE_ID" not in env
    for name in [n for n in os.environ if n.startswith("STREAM_REC_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("STREAM_REC_"):
            monkeypatch.setenv(name, value)
    assert Settings.load() == settings
