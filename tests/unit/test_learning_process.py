"""Learning in a process of its own: a snapshot crosses the pipe whole and ranks as the child's own does, the
engine learns, forgets, checkpoints and resumes through the child, and a worker killed outright takes its
learning process with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stream_rec.items.transitions import Transitions
from stream_rec.learning import checkpoint, open_side
from stream_rec.learning.learner import OnlineLearner
from stream_rec.learning.process import LearningError
from stream_rec.sequences import Step
from stream_rec.serving.engine import Engine
from stream_rec.serving.inspector import mode_shares
from stream_rec.serving.snapshots import Packer, Unpacker, from_bytes, to_bytes
from stream_rec.settings import ModelSettings, Settings
from stream_rec.worker.web import engine_stats, model_view
from tests.unit.streams import T0, planted
from tests.unit.test_engine import batch


def crossed(packer: Packer, unpacker: Unpacker, learner: OnlineLearner):  # type: ignore[no-untyped-def]
    scorer = learner.snapshot().prepare()
    header, arrays = packer.pack(scorer)
    sent, buffers = from_bytes(to_bytes(header, arrays))  # as the model-updates topic carries it
    return scorer, unpacker.unpack(sent, buffers), header


def test_a_snapshot_over_the_pipe_ranks_as_the_one_it_was_made_from() -> None:
    settings = ModelSettings(dim=16, batch=16, evidence=True, capacity=40)
    learner = OnlineLearner(settings)
    packer, unpacker = Packer(), Unpacker()
    histories = [
        [Step("a", "view", T0)],
        [Step("i3", "view", T0), Step("i5", "click", T0 + 60)],
        [Step("i7", "view", T0), Step("fresh-item", "view", T0 + 60)],  # an item the snapshot gives a row of its own
    ]
    sizes = []
    for seed, users in enumerate([15, 15, 15, 1]):  # later snapshots cross as what changed since the one before
        learner.learn(planted(users=users, items=45, seed=seed))
        original, copy, header = crossed(packer, unpacker, learner)
        sizes.append((len(header["vocab"]["changed"]), len(header["transitions"]), sum(header["sizes"])))
        assert copy.version == original.version and copy.steps == learner.steps
        assert copy.recommend(histories, k=8) == original.recommend(histories, k=8)
        assert mode_shares(copy, histories[1], ["b", "i5"]) == mode_shares(original, histories[1], ["b", "i5"])
    assert learner.vocab.evicted > 0, "rows were handed on between snapshots"
    assert sizes[-1][1] < len(learner.transitions), "only the items whose counts changed crossed"
    assert sizes[-1][2] < sizes[0][2] / 2, "of the item tables, only the rows that changed crossed"


def test_transition_counts_follow_by_their_changes() -> None:
    live, mirror, older = Transitions(limit=3), Transitions(), None
    for n, pairs in enumerate([["ab", "ab", "ac", "bc"], ["ca", "ad"], ["bd"]]):
        for prev, nxt in pairs:
            live.add(prev, nxt)
        if n == 2:
            live.forget(["a"])
        frozen = live.snapshot()
        changes = frozen.changes_since(older)
        seen_before = mirror.snapshot()
        mirror.apply(changes)
        assert all(mirror.get(k) == frozen.get(k) for k in "abcd")
        assert set(changes) == [{"a", "b"}, {"a", "c"}, {"a", "b", "c"}][n], "only what changed crosses"
        if n == 2:
            assert changes["a"] is None and mirror.get("a") is None and seen_before.get("a") == {"b": 2, "c": 1, "d": 1}
        older = frozen
    with pytest.raises(RuntimeError):
        live.snapshot().apply({"a": {"b": 1}})


def test_the_engine_learns_forgets_and_checkpoints_through_its_learning_process(settings: Settings) -> None:
    model = ModelSettings(dim=8, batch=8, replay_size=500, drift=False)
    settings = settings.model_copy(update={"k": 3, "model": model, "learn_in": "process", "refresh_every": 0.1})
    engine = Engine(settings, open_side)
    try:
        engine.start()
        events = batch(users=4, per_user=20)
        engine.serve(events)
        engine.submit(events, time.monotonic())
        deadline = time.monotonic() + 60
        while engine_stats(engine)["examples"] < len(events) and time.monotonic() < deadline:
            time.sleep(0.05)
        while engine.serving.steps == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = engine_stats(engine)
        assert stats["examples"] == len(events) and engine.serving.steps > 0, "the child learned and published"
        assert stats["freshness_p50_s"] is not None and stats["learn_dropped"] == 0
        assert {o.recommendation["strategy"] for o in engine.serve(events[-4:])} == {"model"}
        first = engine.checkpoint()
        assert first is not None and model_view(engine)["checkpoint"] == str(first)
        assert engine.forget("u1") > 0
        only = engine.checkpoint(replace_all=True)
        assert checkpoint.candidates(settings.checkpoint_dir) == [only]
        learner, offsets = checkpoint.load(only)  # type: ignore[arg-type]
        assert offsets == {"events:0": len(events)} and "u1" not in {e.user for _, e in learner.replay.examples}
        engine.stop()
        assert engine_stats(engine)["learn_waiting"] == 0
    finally:
        engine.close()
    resumed = Engine(settings, open_side)
    try:
        assert resumed.serving.steps == learner.steps, "a new engine resumes from the child's checkpoint"
    finally:
        resumed.close()


def test_a_worker_killed_outright_takes_its_learning_process_with_it(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from stream_rec.learning import open_side
        from stream_rec.serving.engine import Engine
        from stream_rec.settings import ModelSettings, Settings

        if __name__ == "__main__":
            settings = Settings(home=Path({str(tmp_path)!r}), model=ModelSettings(dim=8), learn_in="process")
            engine = Engine(settings, open_side)
            print(engine.learning._process.pid, flush=True)
            time.sleep(600)
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the learning process outlived its worker"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_learning_process_that_dies_leaves_serving_up_and_says_so(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings.model_copy(update={"model": ModelSettings(dim=8), "learn_in": "process"})
    engine = Engine(settings, open_side)
    try:
        engine.start()
        deadline = time.monotonic() + 60
        while not engine.learning.status().running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.serving.steps == 0 and engine.learning.status().running
        with caplog.at_level("ERROR", logger="stream_rec.learning.process"):
            os.kill(engine.learning._process.pid, signal.SIGKILL)  # type: ignore[union-attr]
            deadline = time.monotonic() + 30
            while engine.learning.status().running and time.monotonic() < deadline:
                time.sleep(0.05)
        assert not engine.learning.status().running and "the learning process ended" in caplog.text
        with pytest.raises(LearningError):
            engine.checkpoint()
        engine.stop()  # nothing left to stop
        events = batch(users=2, per_user=3)
        engine.submit(events, time.monotonic())  # never blocks, learned by no one
        assert len(engine.serve(events)) == len(events), "serving goes on with the last snapshot"
    finally:
        engine.close()
