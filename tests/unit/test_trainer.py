"""Serve first, learn beside: a snapshot ranks the same however the learner steps meanwhile, the trainer publishes
what it learned, and a full queue sheds its oldest examples, counted and logged."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from stream_rec.learning import trainer as trainer_module
from stream_rec.learning.learner import OnlineLearner
from stream_rec.learning.trainer import Trainer
from stream_rec.sequences import Step
from stream_rec.serving.scoring import Scorer
from stream_rec.serving.side import Queued
from stream_rec.settings import ModelSettings
from tests.unit.streams import T0, planted


def learned(**kw: object) -> OnlineLearner:
    learner = OnlineLearner(ModelSettings(dim=16, batch=16, **kw))  # type: ignore[arg-type]
    learner.learn(planted(users=30, seed=1))
    return learner


def test_a_snapshot_ranks_alike_while_the_learner_steps_beside_it() -> None:
    learner = learned(evidence=True)
    snapshot = learner.snapshot()
    histories = [[Step("a", "view", T0)], [Step("i3", "view", T0), Step("i5", "click", T0 + 60)]]
    first = snapshot.recommend(histories, k=5)
    stop = threading.Event()
    steps_before = learner.steps

    def keep_learning() -> None:
        seed = 2
        while not stop.is_set():  # steps that change the learner's weights in place, the snapshot ranking meanwhile
            learner.learn(planted(users=10, seed=seed))
            seed += 1

    thread = threading.Thread(target=keep_learning)
    thread.start()
    try:
        deadline = time.monotonic() + 1.5
        rounds = 0
        while time.monotonic() < deadline or rounds < 5:
            assert snapshot.recommend(histories, k=5) == first, "a ranking mixed another version of the weights"
            rounds += 1
    finally:
        stop.set()
        thread.join()
    assert learner.steps > steps_before, "the learner stepped while the snapshot ranked"
    newer = learner.snapshot()
    assert newer.steps > snapshot.steps and newer.version != snapshot.version
    assert newer.recommend(histories, k=5) != first, "a new snapshot sees what was learned since"


def test_the_trainer_learns_what_is_submitted_and_publishes_it() -> None:
    learner = OnlineLearner(ModelSettings(dim=16, batch=16))
    published: list[Scorer] = []
    trainer = Trainer(learner, threading.Lock(), published.append, refresh_every=0.0)
    examples = planted(users=20, seed=3)
    arrived = time.monotonic()
    trainer.submit([Queued(e, arrived, "events:1", n + 1) for n, e in enumerate(examples)])
    while trainer.step():
        pass
    assert published and published[-1].steps == learner.steps > 0
    assert trainer.learned_offsets() == {"events:1": len(examples)}
    assert len(trainer.freshness) == len(examples) and trainer.freshness.percentile(50) is not None
    assert trainer.idle() and trainer.dropped == 0


def test_the_trainers_thread_learns_beside_and_stops_after_draining() -> None:
    learner = OnlineLearner(ModelSettings(dim=16, batch=16))
    published: list[Scorer] = []
    trainer = Trainer(learner, threading.Lock(), published.append, refresh_every=0.05)
    trainer.start()
    for seed in range(3):
        trainer.submit([Queued(e, time.monotonic()) for e in planted(users=10, seed=seed)])
    trainer.stop(drain=30)
    assert trainer.waiting == 0 and learner.examples == 3 * 120
    assert published[-1].steps == learner.steps > 0, "what was learned is published at the stop"


def test_a_full_queue_sheds_its_oldest_examples_counted_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(trainer_module, "LOG_EVERY", 0.0)
    learner = OnlineLearner(ModelSettings(dim=16, batch=16))
    trainer = Trainer(learner, threading.Lock(), lambda _: None, queue_size=10)
    examples = planted(users=5, seed=4)[:25]
    with caplog.at_level("WARNING", logger="stream_rec.learning.trainer"):
        trainer.submit([Queued(e, 0.0, "events:0", n + 1) for n, e in enumerate(examples)])
    assert (trainer.dropped, trainer.waiting) == (15, 10)
    assert "learn_dropped: 15 examples" in caplog.text
    assert trainer.learned_offsets() == {"events:0": 15}, "what gave way is past, as what was learned"
    assert trainer.forget(examples[-1][1].user or "") >= 1


def test_forgetting_a_user_drops_their_waiting_examples() -> None:
    trainer = Trainer(OnlineLearner(ModelSettings(dim=8)), threading.Lock(), lambda _: None)
    examples = planted(users=3, seed=5)
    trainer.submit([Queued(e, 0.0) for e in examples])
    mine = sum(e.user == "u1" for _, e in examples)
    assert trainer.forget("u1") == mine and trainer.waiting == len(examples) - mine


def test_snapshot_weights_are_copies() -> None:
    learner = learned()
    snapshot = learner.snapshot()
    before = snapshot.model.item_emb.weight.detach().clone()
    learner.learn(planted(users=10, seed=9))
    assert torch.equal(snapshot.model.item_emb.weight.detach()[: len(before)], before)


def test_a_snapshots_cached_item_tables_rank_as_tables_made_afresh() -> None:
    learner = learned(evidence=True)
    cached, fresh = learner.snapshot(), learner.snapshot()
    shoe, hat = {"category": "shoes"}, {"category": "hats"}  # side features change a new row's vector
    rounds = [
        [[Step("a", "view", T0)], [Step("i4", "view", T0), Step("new-1", "view", T0 + 1, features=shoe)]],
        [[Step("new-1", "view", T0), Step("new-2", "click", T0 + 1, features=hat)], [Step("i7", "view", T0)]],
        [[Step("i2", "view", T0), Step("new-3", "view", T0 + 1, features=shoe)]],
    ]
    for histories in rounds:  # new items get rows of the snapshot's own: the cache is patched for them
        want = fresh.recommend(histories, k=8)
        fresh._weight = None  # made afresh for every ranking
        assert cached.recommend(histories, k=8) == want


def test_the_thread_gathers_a_batch_or_waits_half_a_refresh_before_it_steps() -> None:
    learner = OnlineLearner(ModelSettings(dim=8, batch=16))
    trainer = Trainer(learner, threading.Lock(), lambda _: None, gather=50, refresh_every=2.0)
    examples = planted(users=10, seed=6)
    trainer.start()
    try:
        trainer.submit([Queued(e, time.monotonic()) for e in examples[:10]])
        time.sleep(0.3)
        assert learner.examples == 0, "ten examples wait for the rest of a batch"
        trainer.submit([Queued(e, time.monotonic()) for e in examples[10:50]])
        deadline = time.monotonic() + 30
        while learner.examples < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert learner.examples == 50, "a whole batch is learned at once"
        trainer.submit([Queued(e, time.monotonic()) for e in examples[50:55]])
        while learner.examples < 55 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert learner.examples == 55, "a few examples are learned once the oldest has waited half a refresh"
    finally:
        trainer.stop()
