"""What a worker keeps to itself and lets go of: a web view on loopback only, no table pages, one worker per data
folder, damaged checkpoints skipped, a forgotten user gone everywhere, inactive users expired."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from stream_rec.cli import main
from stream_rec.datasets.synthetic import synthetic_events
from stream_rec.learning import checkpoint
from stream_rec.learning.learner import OnlineLearner
from stream_rec.ops.clients import open_consumer, produce
from stream_rec.ops.processes import worker_env
from stream_rec.settings import Settings
from stream_rec.wire.events import Event
from tests.integration.conftest import WorkerProcess, collect, final_states, read_topic
from tests.unit.streams import planted

pytestmark = pytest.mark.kafka


def listening_addresses(port: int) -> set[str]:
    """The local addresses listening on TCP ``port``, from Linux's /proc/net/tcp (and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]) if len(address) == 8 else f"[{address}]")
    return found


def test_the_worker_keeps_to_itself(stream: Callable[..., Settings], tmp_path: Path) -> None:
    settings = stream()
    learner = OnlineLearner(settings.model.model_copy(update={"batch": 8}))  # the worker's shape: it resumes
    examples = planted(users=20)
    learner.learn(examples[:100])
    older = checkpoint.save(learner, checkpoint.path_for(settings.checkpoint_dir, learner.steps))
    learner.learn(examples[100:])
    newest = checkpoint.save(learner, checkpoint.path_for(settings.checkpoint_dir, learner.steps))
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    (settings.checkpoint_dir / "checkpoint-final.safetensors").write_text("not ours")

    recs = open_consumer(settings, settings.topic_recommendations)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_for(r"Ready|ready", timeout=90)
        assert listening_addresses(settings.web_port) == {"127.0.0.1"}, "the web view listens on loopback only"
        with pytest.raises(urllib.error.HTTPError) as page:
            urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/table/user_sequences/", timeout=10)
        assert page.value.code == 404, "Faust's table pages are off"
        second = subprocess.run(
            [sys.executable, "-m", "stream_rec", "worker"], env=worker_env(settings), capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"stream-rec: error: another worker (pid {worker.pid}) is using {settings.worker_dir}; give each "
            "worker a data folder of its own (--data-dir or STREAM_REC_DATA_DIR)"
        ]
        produce(settings, list(synthetic_events(30, users=5, items=20, seed=2)))
        assert len(collect(recs, 30, timeout=60)) == 30, "the first worker serves on"
        assert worker.alive()
    finally:
        worker.stop()
        recs.close()
    log = worker.text()
    assert f"skipped checkpoint {newest.name}" in log and f"resumed the model from {older}" in log
    assert (settings.checkpoint_dir / (newest.name + checkpoint.DAMAGED)).exists()


def test_stream_rec_forget_removes_a_user_everywhere_the_worker_keeps_them(
    stream: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = stream()
    events = list(synthetic_events(400, users=10, items=40, seed=4))
    gone = events[0].user_id
    recs = open_consumer(settings, settings.topic_recommendations)
    worker = WorkerProcess(settings, tmp_path / "worker.log", STREAM_REC_CHECKPOINT_EVERY="1").start()
    try:
        worker.wait_for(r"Ready|ready", timeout=90)
        produce(settings, events)
        assert len(collect(recs, len(events), timeout=120)) == len(events)
        worker.wait_for(r"checkpoint \(cadence\)", timeout=30)
        for name, value in worker_env(settings).items():
            if name.startswith("STREAM_REC_"):
                monkeypatch.setenv(name, value)
        assert main(["forget", gone, "--wait", "60"]) == 0
        assert "done" in capsys.readouterr().out
        produce(settings, [Event(gone, "i-new", "view", 1.9e9, "after-forget")])
        (_, rec), *_ = collect(recs, 1, timeout=60)
        assert rec["event_id"] == "after-forget"
    finally:
        worker.stop()
        recs.close()
    states = final_states(settings)
    assert states[gone][1]["ids"] == ["after-forget"], "the sequence was removed; only the new event is there"
    changelog = [r for r in read_topic(settings.bootstrap, f"{settings.app_id}-user_sequences-changelog")]
    assert any(orjson.loads(r.key) == gone and r.value is None for r in changelog), "a changelog tombstone"
    embeddings = [r for r in read_topic(settings.bootstrap, settings.topic_embeddings) if r.key == gone.encode()]
    assert any(r.value is None for r in embeddings), "a tombstone for the user on the embeddings topic"
    kept = checkpoint.candidates(settings.checkpoint_dir)
    assert kept and not list(settings.checkpoint_dir.glob(f"*{checkpoint.DAMAGED}")), "checkpoints were written"
    for path in kept:  # the one written as the user was forgotten replaced every older one
        learner, _ = checkpoint.load(path)
        users = {event.user for _, event in learner.replay.examples}
        assert gone not in users and len(users) > 1, f"{path.name}: the user's examples left the replay buffer"
    assert "forgot user" in worker.text()


def test_users_inactive_for_the_ttl_expire_with_a_tombstone(stream: Callable[..., Settings], tmp_path: Path) -> None:
    settings = stream()
    recs = open_consumer(settings, settings.topic_recommendations)
    worker = WorkerProcess(settings, tmp_path / "worker.log", STREAM_REC_USER_TTL="3").start()
    try:
        worker.wait_for(r"Ready|ready", timeout=90)
        old = list(synthetic_events(40, users=4, items=20, seed=6))
        produce(settings, old)
        assert len(collect(recs, len(old), timeout=60)) == len(old)
        users = {e.user_id for e in old}
        deadline = time.monotonic() + 30  # a user whose last event came late may expire a scan after the others
        while sum(map(int, re.findall(r"expired (\d+) users", worker.text()))) < len(users):
            assert time.monotonic() < deadline, f"not every user expired:\n{worker.text()[-3000:]}"
            time.sleep(0.2)
        assert worker.alive()
    finally:
        worker.stop()
        recs.close()
    states = final_states(settings)
    for user in {e.user_id for e in old}:
        assert states[user][1] is None, f"{user}: the changelog's last word is a tombstone"
    emb = {r.key for r in read_topic(settings.bootstrap, settings.topic_embeddings) if r.value is None}
    assert emb == {e.user_id.encode() for e in old}, "their embeddings are tombstoned too"
