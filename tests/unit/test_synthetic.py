"""The synthetic generator: reproducible, time-ordered, shop-like, and with structure a model can learn."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from itertools import pairwise

import pytest

from stream_rec.datasets.synthetic import synthetic_events
from stream_rec.wire.events import EVENT_TYPES, Event, encode_event, parse_event

N = 20_000


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return list(synthetic_events(N, users=200, items=1000, seed=7))


def view_sequences(events: list[Event]) -> dict[str, list[str]]:
    seqs: dict[str, list[str]] = defaultdict(list)
    for e in events:
        if e.event == "view":
            seqs[e.user_id].append(e.item_id)
    return seqs


def successors(seqs: dict[str, list[str]]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for seq in seqs.values():
        for a, b in pairwise(seq):
            out[a][b] += 1
    return out


def top_successor_share(seqs: dict[str, list[str]], min_count: int = 10) -> float:
    """Mean share of an item's most common successor, over items followed at least ``min_count`` times."""
    shares = [c.most_common(1)[0][1] / c.total() for c in successors(seqs).values() if c.total() >= min_count]
    assert len(shares) >= 50, "too few frequent items to measure"
    return sum(shares) / len(shares)


def test_same_seed_same_events_and_prefix_stable() -> None:
    a = list(synthetic_events(500, users=30, items=100, seed=3))
    assert a == list(synthetic_events(500, users=30, items=100, seed=3))
    assert a[:200] == list(synthetic_events(200, users=30, items=100, seed=3))
    assert a != list(synthetic_events(500, users=30, items=100, seed=4))


def test_global_random_state_is_neither_used_nor_touched() -> None:
    random.seed(1)
    before = random.getstate()
    a = list(synthetic_events(300, users=10, items=50, seed=0))
    assert random.getstate() == before
    random.seed(2)
    assert a == list(synthetic_events(300, users=10, items=50, seed=0))


def test_count_time_order_and_start(events: list[Event]) -> None:
    assert len(events) == N
    assert events[0].ts >= 1_700_000_000.0
    assert all(a.ts <= b.ts for a, b in pairwise(events))
    assert len({e.event_id for e in events}) == N
    # Users are interleaved, not emitted one after the other.
    switches = sum(a.user_id != b.user_id for a, b in pairwise(events))
    assert switches > N / 5


def test_events_fit_the_wire_contract(events: list[Event]) -> None:
    for e in events[:500]:
        assert parse_event(encode_event(e)) == e
    assert {e.event for e in events} <= set(EVENT_TYPES)
    assert len({e.user_id for e in events}) <= 200 and len({e.item_id for e in events}) <= 1000


def test_funnel_proportions(events: list[Event]) -> None:
    counts = Counter(e.event for e in events)
    share = {k: counts[k] / N for k in EVENT_TYPES}
    assert share["view"] > share["click"] > share["add_to_cart"] > share["purchase"] > 0
    assert 0.5 < share["view"] < 0.8
    assert 0.01 < share["purchase"] < 0.08
    assert 0 < share["favorite"] < 0.05


def test_a_purchase_follows_a_cart_of_the_same_item(events: list[Event]) -> None:
    carted: set[tuple[str, str]] = set()
    for e in events:
        if e.event == "add_to_cart":
            carted.add((e.user_id, e.item_id))
        elif e.event == "purchase":
            assert (e.user_id, e.item_id) in carted


def test_context_is_sticky_per_user(events: list[Event]) -> None:
    locations: dict[str, set[str | float]] = defaultdict(set)
    devices: dict[str, Counter[str | float]] = defaultdict(Counter)
    for e in events:
        assert set(e.context) == {"device", "location", "hour"}
        assert e.context["hour"] == int(e.ts // 3600 % 24)
        assert e.item["category"] == str(e.item["category"]) and str(e.item["category"]).startswith("c")
        locations[e.user_id].add(e.context["location"])
        devices[e.user_id][e.context["device"]] += 1
    assert all(len(v) == 1 for v in locations.values())
    main_device_share = sum(c.most_common(1)[0][1] for c in devices.values()) / N
    assert main_device_share > 0.85


def test_popularity_is_skewed(events: list[Event]) -> None:
    views = Counter(e.item_id for e in events if e.event == "view")
    ranked = sorted(views.values(), reverse=True)
    top = sum(ranked[: len(ranked) // 20])  # the top 5% of items
    assert top / sum(ranked) > 0.2


def test_next_item_structure_is_learnable(events: list[Event]) -> None:
    seqs = view_sequences(events)
    planted = top_successor_share(seqs)
    # The same items in a random order per user: what a successor share looks like without structure.
    rng = random.Random(0)
    shuffled = {u: rng.sample(s, len(s)) for u, s in seqs.items()}
    chance = top_successor_share(shuffled)
    assert planted > 0.2
    assert planted > 2 * chance


def test_first_order_markov_beats_popularity(events: list[Event]) -> None:
    """A model of 'next item after this one' must predict far better than 'the most popular item'."""
    seqs = view_sequences(events)
    cut = int(0.8 * len(events))
    train = view_sequences(events[:cut])
    follow = successors(train)
    popular = Counter(i for s in train.values() for i in s).most_common(1)[0][0]
    markov_hits = pop_hits = total = 0
    for user, seq in seqs.items():
        start = len(train.get(user, []))
        for prev, nxt in pairwise(seq[max(start - 1, 0) :]):
            total += 1
            guess = follow[prev].most_common(1)[0][0] if follow.get(prev) else popular
            markov_hits += guess == nxt
            pop_hits += popular == nxt
    assert total > 1000
    assert markov_hits / total > 0.1
    assert markov_hits > 3 * pop_hits


def test_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="users >= 1"):
        synthetic_events(10, users=0)  # raised at the call, not at the first next()
    with pytest.raises(ValueError, match="items >= 2"):
        synthetic_events(10, items=1)
    assert list(synthetic_events(0)) == []
