"""The demo's 'as served' hit rate: each event against its user's newest list from an earlier batch."""

from __future__ import annotations

from stream_rec.demo import AsServed


def test_a_list_from_the_events_own_batch_does_not_score_it() -> None:
    score = AsServed()
    score.add("u", "a", "lstm@1", ["x"])  # the user's first list: nothing before it to score against
    # One batch (version 2): "b" then "c". The list served for "b" was ranked after "c" was learned, so it holds "c";
    # "c" is scored against the list of the batch before (version 1), which does not.
    score.add("u", "b", "lstm@2", ["c"])
    score.add("u", "c", "lstm@2", ["d"])
    assert (score.scored, score.hits) == (2, 0)
    # The next batch: the newest list of version 2 (["d"]) is what the user had been served.
    score.add("u", "d", "lstm@3", ["e"])
    assert (score.scored, score.hits) == (3, 1)
    assert score.hit_rate == 1 / 3


def test_users_are_scored_apart_and_a_first_batch_pair_is_not_scored() -> None:
    score = AsServed()
    score.add("u", "a", "v1", ["b"])
    score.add("u", "b", "v1", ["c"])  # same batch as the user's first list: no list of an earlier batch
    score.add("w", "b", "v2", ["a"])
    assert score.scored == 0
    score.add("w", "a", "v3", [])
    score.add("u", "c", "v3", [])
    assert (score.scored, score.hits) == (2, 2)
