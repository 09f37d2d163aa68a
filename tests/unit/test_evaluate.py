"""The prequential harness on tiny streams whose answers are known."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from stream_rec.evaluation.prequential import RECOMMENDERS, evaluate, make_recommender
from stream_rec.learning.learner import Example
from stream_rec.recommenders.base import Ranking, Recommender
from stream_rec.sequences import Step
from stream_rec.settings import ModelSettings, Settings
from stream_rec.wire.events import Event

T0 = 1.6e9
CYCLE = ("a", "b", "c")


def cycles(users: int = 6, length: int = 30) -> list[Event]:
    """Each user walks a -> b -> c -> a ..., starting at a different place; users interleave in time."""
    return [Event(f"u{u}", CYCLE[(u + n) % 3], "view", T0 + 60 * n + u) for n in range(length) for u in range(users)]


def protocol(batch: int = 128, *, exclude_seen: bool = False, seq_len: int = 50) -> Settings:
    """The settings evaluate replays with: chunks of ``batch`` events."""
    return Settings(evaluate_batch=batch, seq_len=seq_len, model=ModelSettings(exclude_seen=exclude_seen))


def events(*pairs: tuple[str, str], kind: str = "view") -> list[Event]:
    return [Event(user, item, kind, T0 + n) for n, (user, item) in enumerate(pairs)]


class Recording(Recommender):
    """Ranks a fixed list and records what the harness passed it."""

    name = "recording"

    def __init__(self, ranking: Ranking | None = None) -> None:
        self.ranking = ranking or []
        self.ranked: list[list[Step]] = []
        self.learned: list[Example] = []
        self.calls: list[str] = []

    def learn_many(self, examples: Sequence[Example]) -> None:
        self.calls.append(f"learn{len(examples)}")
        self.learned.extend(examples)

    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        self.calls.append(f"rank{len(histories)}")
        self.ranked.extend(list(h) for h in histories)
        skips = [{s.item for s in h} if exclude_seen else set() for h in histories]
        return [[(item, score) for item, score in self.ranking if item not in skip][:k] for skip in skips]


def test_markov_learns_a_cycle_and_popularity_cannot() -> None:
    stream = cycles()
    report = evaluate(stream, {name: make_recommender(name) for name in ("markov", "popularity")}, protocol(1), ks=(1,))
    scored = 6 * 29  # every event but each user's first
    assert report["scored"] == scored
    markov, popularity = report["models"]["markov"], report["models"]["popularity"]
    # Misses only while warming up: two first-seen items and one transition not yet learned, at most.
    assert markov["HR@1"] >= (scored - 3) / scored
    assert markov["MRR@1"] == markov["HR@1"] == markov["NDCG@1"]
    assert popularity["HR@1"] < 0.5


def test_rankings_come_from_the_state_before_the_chunk() -> None:
    stream = cycles(users=3, length=4)
    whole = evaluate(stream, {"markov": make_recommender("markov")}, protocol(len(stream)), ks=(1,))
    assert whole["scored"] == 9 and whole["models"]["markov"]["HR@1"] == 0.0  # nothing learned before scoring
    rec = Recording()
    evaluate(stream, {"r": rec}, protocol(5))
    # 12 events in chunks of 5, 5, 2; only users' second and later events are ranked (3 users, first 3 events),
    # and each user's last event again, its own items masked (the last-event view: u0's in the second chunk).
    assert rec.calls == ["rank2", "learn5", "rank5", "rank1", "learn5", "rank2", "rank2", "learn2"]


def test_histories_are_each_users_events_before_the_event_truncated() -> None:
    stream = events(("u1", "a"), ("u2", "x"), ("u1", "b"), ("u1", "c"), ("u1", "d"), ("u2", "y"))
    rec = Recording()
    evaluate(stream, {"r": rec}, protocol(4, seq_len=2))
    # (the last two: each user's last event again, for the last-event view)
    assert [[s.item for s in h] for h in rec.ranked] == [["a"], ["a", "b"], ["b", "c"], ["x"], ["b", "c"], ["x"]]
    assert [([s.item for s in h], e.item) for h, e in rec.learned] == [
        ([], "a"), ([], "x"), (["a"], "b"), (["a", "b"], "c"), (["b", "c"], "d"), (["x"], "y"),
    ]  # fmt: skip


def test_the_last_event_view_scores_each_users_last_event_with_earlier_items_masked() -> None:
    # u1 comes back to a (its own item: masked, so a miss in that view); u2 goes on to c, ranked after a, which
    # is u2's own and masked: first there. u3 has one event: nothing to score.
    stream = events(("u3", "c"), ("u1", "a"), ("u2", "a"), ("u1", "b"), ("u2", "c"), ("u1", "a"))
    ranking = [("a", 3.0), ("c", 2.0), ("b", 1.0)]
    report = evaluate(stream, {"r": Recording(ranking)}, protocol(1), ks=(1, 2))
    figures = report["models"]["r"]
    assert figures["last_n"] == 2
    assert figures["last_HR@1"] == 0.5 and figures["last_HR@2"] == 0.5, "u2's c first; u1's a masked"
    assert figures["last_NDCG@1"] == 0.5
    # The prequential figures do not mask: u1's return to a is a hit there.
    assert figures["HR@1"] == 1 / 3
    masked = evaluate(stream, {"r": Recording(ranking)}, protocol(1, exclude_seen=True), ks=(1,))["models"]["r"]
    assert masked["last_HR@1"] == figures["last_HR@1"], "with exclude_seen, the same view from the same rankings"


def test_a_first_seen_item_is_a_miss_whatever_was_ranked() -> None:
    # The recommender always ranks "z"; the first time z appears it must still count as a miss.
    stream = events(("u0", "x"), ("u0", "z"), ("u0", "z"))
    report = evaluate(stream, {"r": Recording([("z", 1.0)])}, protocol(1), ks=(1,))
    assert report["scored"] == 2
    assert report["models"]["r"]["HR@1"] == 0.5


def test_exclude_seen_drops_repeats() -> None:
    stream = events(("u0", "a"), ("u1", "a"), ("u1", "a"))
    models = {"popularity": make_recommender("popularity")}
    assert evaluate(stream, models, protocol(1), ks=(1,))["models"]["popularity"]["HR@1"] == 1.0
    models = {"popularity": make_recommender("popularity")}
    assert evaluate(stream, models, protocol(1, exclude_seen=True), ks=(1,))["models"]["popularity"]["HR@1"] == 0.0


def test_report_shape_is_json() -> None:
    stream = events(("u0", "a"), ("u0", "b"), ("u1", "a"), ("u1", "b"))
    stream += events(("u0", "a"), ("u1", "b"), kind="purchase")
    seen: list[tuple[int, int]] = []
    report = evaluate(
        stream,
        {name: make_recommender(name) for name in ("popularity", "markov")},
        protocol(2),
        ks=(1, 10),
        progress=lambda done, total: seen.append((done, total)),
        dataset="tiny",
    )
    report = json.loads(json.dumps(report))
    assert seen == [(2, 6), (4, 6), (6, 6)]
    assert (report["dataset"], report["events"], report["scored"]) == ("tiny", 6, 4)
    assert set(report["models"]) == {"popularity", "markov"}
    for model in report["models"].values():
        for key in ("HR@1", "NDCG@1", "MRR@1", "HR@10", "NDCG@10", "MRR@10"):
            assert 0.0 <= model[key] <= 1.0
        assert model["events_per_s"] > 0
        assert set(model["by_event"]) == {"view", "purchase"}
        assert model["by_event"]["purchase"]["n"] == 2
        assert {b: v["n"] for b, v in model["by_history"].items()} == {"1-4": 4, "5-19": 0, "20+": 0}


def test_make_recommender_names() -> None:
    settings = ModelSettings(dim=8, batch=8)
    for name in RECOMMENDERS:
        assert make_recommender(name, settings).name == name
    with pytest.raises(ValueError, match="unknown recommender 'nope'"):
        make_recommender("nope")


def test_the_sequence_model_runs_through_the_harness() -> None:
    report = evaluate(cycles(users=4, length=10), {"gru": make_recommender("gru", ModelSettings(dim=8, batch=8))})
    assert report["scored"] == 36
    assert 0.0 <= report["models"]["gru"]["HR@10"] <= 1.0


def test_exclude_seen_covers_items_older_than_the_truncated_history() -> None:
    # The recommender ranks a, b, c less the history it is given; the harness must also drop the items the
    # user saw that fell out of the one-step history it passes.
    # A first user makes a, b and c known (as views); the second user's purchases are the ones looked at.
    stream = [Event(u, item, kind, T0 + n) for n, (u, item, kind) in enumerate(
        [("w", "a", "view"), ("w", "b", "view"), ("w", "c", "view"),
         ("u0", "a", "purchase"), ("u0", "b", "purchase"), ("u0", "c", "purchase")]
    )]  # fmt: skip
    rec = Recording([("a", 3.0), ("b", 2.0), ("c", 1.0)])
    report = evaluate(stream, {"r": rec}, protocol(1, exclude_seen=True, seq_len=1), ks=(1,))
    assert report["models"]["r"]["by_event"]["purchase"] == pytest.approx(
        {"HR@1": 1.0, "NDCG@1": 1.0, "MRR@1": 1.0, "n": 2}
    )
    assert [[s.item for s in h] for h in rec.ranked] == [["a"], ["b"], ["a"], ["b"]]


def test_rolling_hit_rate_follows_the_stream() -> None:
    # markov misses while it warms up, then hits every time: its rolling hit rate climbs to 1.
    report = evaluate(
        cycles(users=6, length=40), {"markov": make_recommender("markov")}, protocol(1), ks=(1,), window=20
    )
    rolling = report["rolling"]
    assert (rolling["k"], rolling["window"]) == (1, 20)
    curve = rolling["models"]["markov"]
    assert len(curve) == len(rolling["at"]) and rolling["at"][-1] == report["scored"]
    assert curve[0] < 1.0 and curve[-1] == 1.0
    assert sum(curve) / len(curve) <= 1.0
