"""A serving worker's side of the model updates, without a broker: parts gathered, updates applied in order, a gap
waited out until the next full snapshot, and where a new worker starts reading."""

from __future__ import annotations

from pathlib import Path

from stream_rec.learning.learner import OnlineLearner
from stream_rec.serving.remote import Assembler, RemoteLearning, UpdateHeaders, start_offset
from stream_rec.serving.scoring import Scorer
from stream_rec.serving.snapshots import Packer, parts, to_bytes
from stream_rec.settings import ModelSettings, Settings
from tests.unit.streams import planted


class Kept:
    def __init__(self) -> None:
        self.durations: list[float] = []

    def extend(self, durations: object) -> None:
        self.durations.extend(durations)  # type: ignore[call-overload]


def updates(learner: OnlineLearner, rounds: int, *, full_every: int = 100) -> list[tuple[UpdateHeaders, bytes]]:
    """The messages a trainer publishes over ``rounds`` snapshots of ``learner``, each learning a little more."""
    out, packer = [], Packer()
    for version in range(1, rounds + 1):
        full = (version - 1) % full_every == 0
        if full:
            packer = Packer()
        learner.learn(planted(users=6, items=30, seed=version))
        header, arrays = packer.pack(learner.snapshot().prepare())
        header |= {"published": 0.0, "durations": [0.5]}
        chunks = parts(to_bytes(header, arrays), size=50_000)
        for i, chunk in enumerate(chunks):
            out.append((UpdateHeaders(version, None if full else version - 1, i, len(chunks), 0), chunk))
    return out


def remote(tmp_path: Path) -> tuple[RemoteLearning, list[Scorer]]:
    published: list[Scorer] = []
    settings = Settings(home=tmp_path, model=ModelSettings(dim=8, batch=16), learn_in="kafka")
    return RemoteLearning(settings, published.append, Kept()), published


def test_updates_are_applied_whole_and_in_order(tmp_path: Path) -> None:
    side, published = remote(tmp_path)
    assert len(published) == 1 and published[0].steps == 0, "a model that knows nothing until one comes"
    learner = OnlineLearner(ModelSettings(dim=8, batch=16))
    messages = updates(learner, 3)
    assert sum(h.version == 1 for h, _ in messages) > 1, "a full snapshot takes several messages"
    for offset, (headers, value) in enumerate(messages):
        side.take(offset, headers.encode(), value)
    assert side.version == 3 and side.gaps == 0 and len(published) == 4
    histories = [[event] for _, event in planted(users=3, items=30, seed=9)[:3]]
    assert published[-1].recommend(histories, k=5) == learner.snapshot().prepare().recommend(histories, k=5)


def test_a_gap_waits_for_the_next_full_snapshot(tmp_path: Path) -> None:
    side, published = remote(tmp_path)
    learner = OnlineLearner(ModelSettings(dim=8, batch=16))
    messages = updates(learner, 5, full_every=4)  # full at versions 1 and 5
    lost = {id(value) for headers, value in messages if headers.version == 2 and headers.part == 0}
    for offset, (headers, value) in enumerate(messages):
        if id(value) not in lost:
            side.take(offset, headers.encode(), value)
    assert side.gaps == 2, "version 2 could not be put together, and 3 and 4 build on what was not applied"
    assert side.version == 5 and [s.steps for s in published][-1] == learner.steps


def test_parts_out_of_place_drop_their_update() -> None:
    assembler = Assembler()
    assert assembler.add(UpdateHeaders(1, None, 0, 2, None), b"a") is None
    assert assembler.add(UpdateHeaders(2, 1, 1, 2, 0), b"x") is None, "a part of another update"
    assert assembler.add(UpdateHeaders(1, None, 1, 2, None), b"b") is None, "its update was dropped"
    assert assembler.add(UpdateHeaders(3, 2, 0, 1, 0), b"c") == b"c"


def test_a_new_worker_starts_from_the_newest_full_snapshot() -> None:
    assert start_offset(None) is None, "an empty topic: from its start"
    assert start_offset((41, UpdateHeaders(7, None, 2, 3, None).encode())) == 39, "the newest is a full snapshot"
    assert start_offset((41, UpdateHeaders(9, 8, 0, 1, 30).encode())) == 30, "a change: from its chain's start"
    assert start_offset((41, [("other", b"1")])) is None
