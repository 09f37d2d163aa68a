"""Checkpoint files: atomic, found by step, and never unpickled (a hostile file is a clear error)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from stream_rec.errors import SettingsMismatch, StreamRecError
from stream_rec.learning import checkpoint
from stream_rec.learning.learner import OnlineLearner
from stream_rec.sequences import Step
from stream_rec.settings import ModelSettings
from tests.unit.streams import planted


def resign(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write a hand-made checkpoint with a digest that matches it: what the restore's own checks must refuse."""
    from safetensors.torch import save_file

    fields = {key: value for key, value in metadata.items() if key != "digest"}
    save_file(tensors, str(path), metadata={**fields, "digest": checkpoint._digest(tensors, fields)})


def parts(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A checkpoint's tensors and metadata."""
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}, dict(f.metadata())  # noqa: SIM118


class Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled!",))


def test_foreign_or_hostile_files_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hostile = tmp_path / "checkpoint-000000000001.safetensors"
    hostile.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(StreamRecError, match="cannot read checkpoint"):
        checkpoint.load(hostile)
    assert "unpickled!" not in capsys.readouterr().out
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(StreamRecError):
        checkpoint.load(garbage)


def test_save_is_atomic_and_latest_finds_the_newest(tmp_path: Path) -> None:
    learner = OnlineLearner(ModelSettings(dim=8, batch=16))
    learner.learn(planted(users=5))
    assert checkpoint.latest(tmp_path) is None
    for steps in (3, 12, 7):
        checkpoint.save(learner, checkpoint.path_for(tmp_path, steps))
    assert checkpoint.latest(tmp_path) == checkpoint.path_for(tmp_path, 12)
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind"
    restored, offsets = checkpoint.load(checkpoint.latest(tmp_path))  # type: ignore[arg-type]
    assert offsets == {} and restored.steps == learner.steps and len(restored.vocab) == len(learner.vocab)


@pytest.mark.parametrize("format", ["1", "6"])
def test_an_older_format_is_a_clear_error(tmp_path: Path, format: str) -> None:
    """Format 6 had the mixture of three modes, whose weights and counts mean nothing to the head of two modes."""
    path = checkpoint.save(OnlineLearner(ModelSettings(dim=8)), tmp_path / "checkpoint-000000000001.safetensors")
    tensors, metadata = parts(path)
    resign(tensors, path, {**metadata, "format": f"stream-rec-checkpoint/{format}"})
    with pytest.raises(StreamRecError, match=r"older checkpoint.*move it away"):
        checkpoint.load(path)


def test_the_drift_detector_comes_back_as_it_was(tmp_path: Path) -> None:
    learner = OnlineLearner(ModelSettings(dim=8, batch=8, drift=True))
    learner.learn(planted(users=8))
    learner.updater.boost_left = 17
    path = checkpoint.save(learner, tmp_path / "c.safetensors")
    restored, _ = checkpoint.load(path)
    a, b = learner.updater.detector, restored.updater.detector
    assert a is not None and b is not None and a.width > 0
    assert (b.width, b.estimation, b.variance) == (a.width, a.estimation, a.variance)
    assert restored.updater.boost_left == 17 and restored.last_loss == learner.last_loss
    detections = 0
    for x in [0.1] * 200 + [5.0] * 200:  # a jump of the loss: both see it at the same point
        a.update(x)
        b.update(x)
        assert a.drift_detected == b.drift_detected
        detections += a.drift_detected
    assert detections > 0


def test_a_damaged_drift_state_is_a_clear_error(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    learner = OnlineLearner(ModelSettings(dim=8, batch=8, drift=True))
    learner.learn(planted(users=4))
    path = checkpoint.save(learner, tmp_path / "c.safetensors")
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
    tensors = load_file(str(path))
    tensors["drift.adwin"] = tensors["drift.adwin"][:7].clone()
    resign(tensors, path, metadata)
    with pytest.raises(StreamRecError, match="drift detector"):
        checkpoint.load(path)


def test_the_replay_buffer_comes_back_as_it_was(tmp_path: Path) -> None:
    learner = OnlineLearner(ModelSettings(dim=8, batch=8, replay_size=50))
    learner.learn(planted(users=8))
    rich = Step("i9", "purchase", 1.5e9, {"device": "mobile", "hour": 13.0}, {"category": "c1"}, "u1")
    learner.replay.examples[0] = ([Step("i1", "view", 1.4e9), rich], rich)
    assert len(learner.replay) == 50
    path = checkpoint.save(learner, tmp_path / "c.safetensors")
    restored, _ = checkpoint.load(path)
    assert restored.replay.examples == [(list(h), e) for h, e in learner.replay.examples]
    smaller, _ = checkpoint.load(path, ModelSettings(dim=8, batch=8, replay_size=20))
    assert smaller.replay.examples == restored.replay.examples[:20]


def test_the_evidence_counts_come_back_as_they_were(tmp_path: Path) -> None:
    learner = OnlineLearner(ModelSettings(dim=8, batch=8, evidence=True))
    learner.learn(planted(users=8))
    counts = sorted(learner.transitions.triples())
    assert len(counts) > 10 and any(n > 1 for *_, n in counts) and any(n % 1 for *_, n in counts), "1/gap weights"
    path = checkpoint.save(learner, tmp_path / "c.safetensors")
    restored, _ = checkpoint.load(path)
    assert sorted(restored.transitions.triples()) == counts
    # Counts of an item the vocabulary does not hold, weights that are no positive number, or no counts: refused.
    tensors, metadata = parts(path)
    damages = (b'{"nowhere": {"i1": 2}}', b'{"\\u001enowhere": {"i1": 2}}', b'{"i1": {"i2": 0}}',
               b'{"i1": {"i2": "1"}}', b"[1, 2]", b"{")  # fmt: skip
    for damaged in damages:
        tensors["transitions.json"] = torch.frombuffer(bytearray(damaged), dtype=torch.uint8)
        resign(tensors, tmp_path / "bad.safetensors", metadata)
        with pytest.raises(StreamRecError, match="transition"):
            checkpoint.load(tmp_path / "bad.safetensors")


def test_the_category_counts_come_back_as_they_were(tmp_path: Path) -> None:
    learner = OnlineLearner(ModelSettings(dim=8, batch=8, evidence=True))
    shoes = {"category": "shoes"}
    learner.learn([([], Step(f"s{k % 3}", "view", 1.6e9 + k, features=shoes)) for k in range(9)])
    counts = sorted(learner.transitions.triples())
    assert [(key, n) for key, _, n in counts] == [("\x1dcategory=shoes", 3)] * 3
    restored, _ = checkpoint.load(checkpoint.save(learner, tmp_path / "c.safetensors"))
    assert sorted(restored.transitions.triples()) == counts


def test_a_damaged_replay_buffer_is_a_clear_error(tmp_path: Path) -> None:
    import zlib

    import orjson
    from safetensors import safe_open
    from safetensors.torch import load_file

    learner = OnlineLearner(ModelSettings(dim=8, batch=8))
    learner.learn(planted(users=4))
    path = checkpoint.save(learner, tmp_path / "c.safetensors")
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
    good = load_file(str(path))
    strings = orjson.loads(zlib.decompress(bytes(good["replay.json.zlib"].numpy())))

    def blob(data: bytes) -> torch.Tensor:
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)

    damages = {
        "not zlib": {"replay.json.zlib": blob(b"not zlib")},
        "an item id that is a number": {
            "replay.json.zlib": blob(zlib.compress(orjson.dumps({**strings, "item": [7] * len(strings["item"])})))
        },
        "a code out of range": {"replay.codes": good["replay.codes"] + 1000},
        "lengths that disagree": {"replay.lengths": good["replay.lengths"] + 1},
        "a column missing": {"replay.ts": good["replay.ts"][:0]},
    }
    for what, damage in damages.items():
        resign({**good, **damage}, path, metadata)
        with pytest.raises(StreamRecError, match="replay buffer"):
            checkpoint.load(path)
            pytest.fail(f"{what}: loaded")


def test_a_snapshot_is_the_state_when_taken_whatever_is_learned_before_it_is_written(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    stream = planted(users=12)
    learner = OnlineLearner(ModelSettings(dim=8, batch=8))
    learner.learn(stream[:60])
    state = checkpoint.snapshot(learner, offsets={"events:0": 60})
    now = checkpoint.save(learner, tmp_path / "now.safetensors", offsets={"events:0": 60})
    learner.learn(stream[60:])  # in place: weights, optimizer sums, replay, counts
    later = checkpoint.write(state, tmp_path / "later.safetensors")
    want, got = load_file(str(now)), load_file(str(later))
    assert want.keys() == got.keys()
    assert all(torch.equal(want[key], got[key]) for key in want)
    changed = load_file(str(checkpoint.save(learner, tmp_path / "after.safetensors")))
    assert not torch.equal(
        changed["model.item_emb.weight"][: len(want["model.item_emb.weight"])], want["model.item_emb.weight"]
    )


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")  # safetensors: header length, JSON header, tensor bytes
    if how == "truncated":
        del data[len(data) // 2 :]
    elif how == "empty":
        data = bytearray()
    elif how == "header byte":
        at = data.index(b'"steps', 8, header) + 2  # a byte inside the JSON header, the JSON still well formed
        data[at] = ord("x") if data[at] != ord("x") else ord("y")
    elif how == "random tensor bytes":
        start = header + (len(data) - header) // 3
        data[start : start + 65_536] = torch.randint(0, 256, (65_536,), generator=torch.Generator().manual_seed(1),
                                                     dtype=torch.uint8).numpy().tobytes()  # fmt: skip
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "empty", "header byte", "random tensor bytes"])
def test_a_damaged_newest_checkpoint_is_moved_aside_for_the_next_newest(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    learner = OnlineLearner(ModelSettings(dim=8, batch=8, replay_size=400))
    stream = planted(users=40)
    learner.learn(stream[:200])
    older = checkpoint.save(learner, checkpoint.path_for(tmp_path, learner.steps), offsets={"events:0": 200})
    learner.learn(stream[200:])
    newest = checkpoint.save(learner, checkpoint.path_for(tmp_path, learner.steps), offsets={"events:0": 480})
    assert os_size(newest) > 140_000, "a checkpoint large enough for 64 KiB of damage inside its tensors"
    _damage(newest, how)
    with pytest.raises(StreamRecError):
        checkpoint.load(newest)
    (tmp_path / "checkpoint-latest.safetensors").write_bytes(b"a stray file")
    (tmp_path / "notes.txt").write_text("not ours")
    with caplog.at_level("WARNING", logger="stream_rec.learning.checkpoint"):
        found = checkpoint.load_newest(tmp_path)
    assert found is not None
    restored, offsets, path = found
    assert path == older and offsets == {"events:0": 200}
    assert restored.steps < learner.steps
    assert newest.name in caplog.text and "skipped" in caplog.text
    assert not newest.exists() and (tmp_path / (newest.name + checkpoint.DAMAGED)).exists()
    assert checkpoint.candidates(tmp_path) == [older], "stray and damaged files are no candidates"


def test_with_every_checkpoint_damaged_there_is_nothing_to_resume(tmp_path: Path) -> None:
    learner = OnlineLearner(ModelSettings(dim=8, batch=8))
    learner.learn(planted(users=5))
    _damage(checkpoint.save(learner, checkpoint.path_for(tmp_path, 1)), "empty")
    assert checkpoint.load_newest(tmp_path) is None
    assert checkpoint.load_newest(tmp_path / "missing") is None


def os_size(path: Path) -> int:
    return path.stat().st_size


def test_the_configured_settings_apply_to_a_resumed_model_unless_they_shape_it(tmp_path: Path) -> None:
    learner = OnlineLearner(ModelSettings(dim=8, batch=8))
    learner.learn(planted(users=4))
    path = checkpoint.save(learner, tmp_path / "checkpoint-000000000003.safetensors")
    # What does not shape the state is the configured value, so that the learner, serving and the agent agree.
    configured = ModelSettings(dim=8, batch=8, lr=0.01, exclude_seen=True, evidence_window=3)
    resumed, _ = checkpoint.load(path, configured)
    assert resumed.settings == configured and resumed.steps == learner.steps
    resumed.learn(planted(users=4))  # and learns on with them
    checkpoint.check_settings(tmp_path, configured)  # nothing to refuse
    # What shapes it is refused in one line that names the setting, and the sound file stays where it is.
    other = ModelSettings(dim=16, batch=8, encoder="gru")
    for refuse in (lambda: checkpoint.load_newest(tmp_path, other), lambda: checkpoint.check_settings(tmp_path, other)):
        with pytest.raises(SettingsMismatch) as refused:
            refuse()
        message = str(refused.value)
        assert "STREAM_REC_MODEL__ENCODER=lstm, STREAM_REC_MODEL__DIM=8" in message and "\n" not in message
        assert "encoder gru, dim 16 is configured" in message
    assert checkpoint.candidates(tmp_path) == [path]
