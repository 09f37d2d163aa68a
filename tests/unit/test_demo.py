"""The demo's 'as served' hit rate: each event against its user's newest list before it; and a baseline served
the same events the same way."""

from __future__ import annotations

from stream_rec.ops.demo import AsServed, Beside
from stream_rec.recommenders import Popularity
from stream_rec.wire.events import Event


def test_each_event_is_scored_against_its_users_newest_list_before_it() -> None:
    score = AsServed()
    score.add("u", "a", ["b", "x"])  # the user's first list: nothing before it to score against
    score.add("u", "b", ["c"])  # against ["b", "x"]: a hit
    score.add("w", "c", ["a"])  # another user: nothing before it
    score.add("u", "d", ["e"])  # against ["c"]: a miss
    assert (score.scored, score.hits) == (2, 1)
    assert score.hit_rate == 0.5


def test_a_baseline_beside_learns_each_event_then_serves_the_users_next_list() -> None:
    beside = Beside("popularity", Popularity(), k=2, exclude_seen=False)
    t = 1.7e9
    for n, (user, item) in enumerate([("u", "a"), ("w", "a"), ("w", "b"), ("u", "a"), ("v", "c"), ("u", "b")]):
        beside.add(Event(user, item, "view", t + n, f"e{n}"), max_len=50)
    # u's lists: after its first event ["a"]; after "a" again (counts a:3, b:1) ["a", "b"]. Scored: u's "a" against
    # ["a"] (hit), w's "b" against ["a"] (miss), u's "b" against ["a", "b"] (hit).
    assert (beside.as_served.scored, beside.as_served.hits) == (3, 2)
    assert [s.item for s in beside.histories["u"]] == ["a", "a", "b"]
