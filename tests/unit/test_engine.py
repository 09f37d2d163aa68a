"""The worker's engine without Kafka: it serves from snapshots while its trainer learns, redeliveries are answered
but not learned again, a forgotten user leaves the replay buffer and every checkpoint, and a restart resumes from
the newest checkpoint that loads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stream_rec.learning import checkpoint, open_side
from stream_rec.sequences import Step, step_of
from stream_rec.serving.accepted import Accepted
from stream_rec.serving.engine import Engine
from stream_rec.settings import ModelSettings, Settings
from stream_rec.wire.events import Event


def batch(users: int, per_user: int) -> list[Accepted]:
    out, histories = [], {u: [] for u in range(users)}
    for n in range(per_user):
        for u in range(users):
            event = Event(f"u{u}", f"i{(u + n) % 7}", "view", 1.7e9 + 60 * n + u, f"e-{u}-{n}")
            before = list(histories[u])
            histories[u].append(step_of(event)._replace(user=None))
            out.append(Accepted(event, before, list(histories[u]), True, "events:0", 1 + len(out)))
    return out


def process(engine: Engine, accepted: list[Accepted]) -> list:
    """Serve, then learn all of it here and now (the trainer's thread not started) and publish."""
    outputs = engine.serve(accepted)
    engine.submit(accepted, time.monotonic())
    while engine.learning.trainer.step():
        pass
    engine.learning.trainer.stop()  # publishes what was learned
    return outputs


@pytest.fixture
def engine(settings: Settings) -> Engine:
    model = ModelSettings(dim=8, batch=8, replay_size=500, drift=False)
    return Engine(settings.model_copy(update={"k": 3, "model": model, "learn_in": "thread"}), open_side)


def test_a_redelivery_is_answered_without_learning_it_again(engine: Engine) -> None:
    events = batch(users=4, per_user=6)
    process(engine, events)
    steps, examples = engine.learning.learner.steps, engine.learning.learner.examples
    again = [Accepted(a.event, [], a.after, learn=False) for a in events[-4:]]
    outputs = process(engine, again)
    assert [o.recommendation["event_id"] for o in outputs] == [a.event.event_id for a in again]
    assert (engine.learning.learner.steps, engine.learning.learner.examples) == (steps, examples)


def test_forget_drops_the_users_examples_and_leaves_one_checkpoint(engine: Engine) -> None:
    process(engine, batch(users=4, per_user=20))
    for _ in range(3):
        steps = engine.learning.learner.steps
        process(engine, batch(users=4, per_user=2))
        assert engine.learning.learner.steps > steps, "learned on: a checkpoint is written only when something changed"
        assert engine.checkpoint() is not None
    assert len(checkpoint.candidates(engine.settings.checkpoint_dir)) == 3
    assert any(event.user == "u1" for _, event in engine.learning.learner.replay.examples)
    dropped = engine.forget("u1")
    assert dropped > 0 and not any(event.user == "u1" for _, event in engine.learning.learner.replay.examples)
    path = engine.checkpoint(replace_all=True)
    assert checkpoint.candidates(engine.settings.checkpoint_dir) == [path]
    learner, offsets = checkpoint.load(path)
    assert offsets == {"events:0": 80} and {e.user for _, e in learner.replay.examples} == {"u0", "u2", "u3"}


def test_a_restarted_engine_resumes_from_the_newest_checkpoint_that_loads(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    process(engine, batch(users=3, per_user=10))
    good = engine.checkpoint()
    process(engine, batch(users=3, per_user=4))
    bad = engine.checkpoint()
    assert good and bad and good != bad
    bad.write_bytes(b"")
    with caplog.at_level("INFO"):
        restarted = Engine(engine.settings, open_side)
    assert (
        restarted.learning.offsets == {"events:0": 30}
        and restarted.learning.learner.steps == checkpoint.load(good)[0].steps
    )
    assert "skipped checkpoint" in caplog.text and f"resumed the model from {good}" in caplog.text
    history: list[Step] = batch(users=1, per_user=3)[-1].after
    assert restarted.recommend(history)["items"], "it serves"


def test_as_served_an_event_is_scored_against_the_list_published_last_before_it(engine: Engine) -> None:
    process(engine, batch(users=4, per_user=6))
    engine.metrics.scored = engine.metrics.hits = 0
    t = 1.8e9
    first, second, third = (Event("u0", item, "view", t + n, f"as-served-{n}") for n, item in enumerate("xyz"))
    history = [step_of(first)._replace(user=None)]
    accepted = [
        Accepted(first, [], history, True, "events:0", 1, (), ["x", "q"]),  # served ["x", "q"] before the batch
        Accepted(second, history, [*history, step_of(second)._replace(user=None)], True, "events:0", 2, (), ["x"]),
    ]
    outputs = engine.serve(accepted)
    for_first = [i["item_id"] for i in outputs[0].recommendation["items"]]
    assert engine.metrics.scored == 2, "the first against the list before the batch, the second against the first's"
    assert engine.metrics.hits == 1 + ("y" in for_first)
    engine.serve([Accepted(third, [], [], False, "events:0", 3, (), ["z"])])  # a redelivery: answered, not scored
    assert engine.metrics.scored == 2
