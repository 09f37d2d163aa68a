"""The growing item vocabulary: admission, min_count, eviction of the least recently seen, growth, state."""

from __future__ import annotations

import orjson

from stream_rec.items.vocab import Vocabulary


def ids(n: int, prefix: str = "i") -> list[str]:
    return [f"{prefix}{k}" for k in range(n)]


def test_admission_hands_out_rows_in_order() -> None:
    v = Vocabulary(capacity=100)
    assert v.observe(["a", "b", "a", "c"]) == []
    assert [v.index(x) for x in "abc"] == [1, 2, 3]
    assert len(v) == 3 and v.rows == 4  # row 0 is padding
    assert "a" in v and "z" not in v
    assert v.index("z") == 0
    assert v.item(0) is None and v.item(2) == "b"
    assert sorted(v.active_rows().tolist()) == [1, 2, 3]
    assert v.counts[v.index("a")] == 2
    assert v.last_seen[v.index("a")] == 3 and v.clock == 4


def test_min_count_delays_admission() -> None:
    v = Vocabulary(capacity=100, min_count=3)
    v.observe(["a", "b", "a"])
    assert len(v) == 0 and v.index("a") == 0
    v.observe(["a"])
    assert v.index("a") == 1 and "b" not in v
    v.observe(["b", "b"])
    assert v.index("b") == 2


def test_pending_counts_are_bounded() -> None:
    v = Vocabulary(capacity=16, min_count=2)
    v.observe(ids(1000))  # a flood of ids seen once: none admitted, the pending map forgets them
    assert len(v) == 0
    assert len(v._pending) <= 4 * 16 + 1


def test_eviction_of_the_least_recently_seen() -> None:
    v = Vocabulary(capacity=4, evict_fraction=0.5)
    v.observe(["a", "b", "c", "d"])
    v.observe(["a", "b"])  # c and d are now the least recently seen
    evicted = v.observe(["e"])
    assert sorted(evicted) == [3, 4]
    assert "c" not in v and "d" not in v and v.index("c") == 0
    assert v.index("e") == 3  # the lowest freed row is reused first
    assert v.evicted == 2
    assert len(v) == 3 and v.rows == 5  # no growth: the freed rows are reused
    assert v.observe(["f"]) == []  # a free row is left
    assert v.index("f") == 4
    assert v.counts[3] == 1 and v.counts[4] == 1  # reused rows start afresh


def test_memory_stays_bounded() -> None:
    v = Vocabulary(capacity=50)
    for start in range(0, 5000, 100):
        v.observe(ids(100, prefix=f"b{start}-"))
    assert len(v) <= 50
    assert v.rows <= 51
    assert len(v.counts) <= 51 and len(v.last_seen) <= 51
    assert v.evicted == 5000 - len(v)
    assert all(v.item(row) is not None for row in v.active_rows().tolist())
    for item in ids(100, prefix="b4900-")[-40:]:
        assert item in v  # the most recent survive


def test_growth_keeps_rows_and_counts() -> None:
    v = Vocabulary(capacity=5000)
    v.observe(ids(3000))
    v.observe(["i0", "i1"])
    assert len(v) == 3000 and v.rows == 3001
    assert len(v.counts) >= v.rows
    assert v.index("i0") == 1 and v.index("i2999") == 3000
    assert v.counts[1] == 2 and v.counts[3000] == 1
    assert v.evicted == 0


def test_capacity_bounds_the_table() -> None:
    v = Vocabulary(capacity=1500)
    v.observe(ids(1500))
    assert len(v.counts) == 1501
    v.observe(["new"])
    assert len(v.counts) == 1501 and v.evicted == 150


def test_state_dict_round_trip() -> None:
    v = Vocabulary(capacity=6, min_count=1, evict_fraction=0.34)
    v.observe(ids(8))  # forces an eviction, so there are freed rows and reused rows
    v.observe(["i3", "i7", "i7"])
    state = v.state_dict()
    restored = Vocabulary.from_state_dict(orjson.loads(orjson.dumps(state)))  # JSON-safe
    assert restored.state_dict() == state
    assert [restored.index(x) for x in ids(8)] == [v.index(x) for x in ids(8)]
    assert (restored.capacity, restored.min_count, restored.evict_fraction) == (6, 1, 0.34)
    assert (restored.clock, restored.evicted, len(restored), restored.rows) == (
        v.clock,
        v.evicted,
        len(v),
        v.rows,
    )
    # Both go on the same way.
    more = ["x", "i3", "y", "z", "w", "i0"]
    assert restored.observe(more) == v.observe(more)
    assert restored.state_dict() == v.state_dict()


def test_restored_vocabulary_grows() -> None:
    v = Vocabulary(capacity=3000)
    v.observe(ids(10))
    restored = Vocabulary.from_state_dict(v.state_dict())
    restored.observe(ids(2000, prefix="n"))
    assert len(restored) == 2010 and restored.index("n1999") == 2010
    assert restored.counts[2010] == 1


def test_state_dict_is_a_snapshot() -> None:
    v = Vocabulary(capacity=3)
    v.observe(["a", "b", "c"])
    state = v.state_dict()
    frozen = orjson.loads(orjson.dumps(state))
    v.observe(["d", "e"])
    assert state == frozen


def test_reserve_gives_rows_without_counting_and_grows_and_evicts_as_observe_does() -> None:
    v = Vocabulary(capacity=3000)
    v.observe(ids(1000))
    assert v.reserve(ids(1500, prefix="r")) == []  # past the arrays' first size: they grow
    assert len(v) == 2500 and v.index("r1499") == 2500
    assert v.counts[v.index("r7")] == 0 and v.last_seen[v.index("r7")] == v.clock  # fresh, not counted
    v.observe(["r7"])
    assert v.counts[v.index("r7")] == 1
    small = Vocabulary(capacity=10)
    small.observe(ids(10))
    assert small.reserve(["x"]) == [small.index("x")] and small.evicted == 1  # full: the oldest make room


def test_reserve_keeps_min_count() -> None:
    v = Vocabulary(capacity=100, min_count=3)
    v.observe(["a", "a", "b"])
    v.reserve(["a", "b", "c"])
    assert v.index("a") and not v.index("b") and not v.index("c")  # only a's next sighting would admit it


def test_a_copy_follows_the_vocabulary_by_its_changes() -> None:
    v = Vocabulary(capacity=8, min_count=1)
    v.observe(ids(6))
    mirror, older, gone = Vocabulary(), None, []
    for round_ in range(4):  # admissions, then evictions that hand rows on to new items
        changes = v.changes_since(older)
        assert round_ == 0 or len(changes["changed"]) < v.rows, "a change names the changed rows only"
        mirror.apply(changes, v.counts.copy(), v.last_seen.copy())
        assert [mirror.item(r) for r in range(mirror.rows)] == [v.item(r) for r in range(v.rows)]
        assert all(mirror.index(v.item(r) or "") == r for r in v.active_rows().tolist())
        assert all((item in mirror) == (item in v) for item in gone), "an evicted item leaves the copy too"
        assert mirror.inactive_rows().tolist() == v.inactive_rows().tolist() and len(mirror) == len(v)
        older = v.copy()
        v.observe([*ids(3 + round_, f"n{round_}-"), "i0"])
        gone += v.take_gone()
    assert any(item not in v for item in gone), "rows were handed on"
