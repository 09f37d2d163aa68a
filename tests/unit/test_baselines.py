"""The baselines through the common interface: markov, recent-markov, decayed popularity, river's MF, the
session-kNN methods and sequential rules (and their own-items-first variants)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from stream_rec.learning.learner import Example
from stream_rec.recommenders.base import Recommender
from stream_rec.recommenders.category import CategoryPopularity
from stream_rec.recommenders.decayed import DecayedPopularity
from stream_rec.recommenders.knn import SKNN, VSKNN, SequentialRules
from stream_rec.recommenders.markov import Markov, RecentMarkov
from stream_rec.recommenders.own import OwnFirst
from stream_rec.recommenders.popularity import CountOrder
from stream_rec.recommenders.river_mf import RiverMF
from stream_rec.sequences import Step

T0 = 1.6e9
ITEMS = 30

BASELINES: dict[str, Callable[[], Recommender]] = {
    "markov": Markov,
    "recent-markov": RecentMarkov,
    "decayed-popularity": lambda: DecayedPopularity(half_life_events=50, refresh_every=1),
    "river-biasedmf": lambda: RiverMF("biased", seed=3),
    "river-funkmf": lambda: RiverMF("funk", lr=0.05, seed=3),
    "sknn": SKNN,
    "vsknn": VSKNN,
    "sr": SequentialRules,
    "recent-sknn": lambda: OwnFirst(SKNN()),
    "recent-vsknn": lambda: OwnFirst(VSKNN()),
    "recent-sr": lambda: OwnFirst(SequentialRules()),
    "category": CategoryPopularity,
    "recent-category": lambda: OwnFirst(CategoryPopularity()),
}


def planted(users: int = 40, length: int = 15, seed: int = 0) -> list[Example]:
    """Users' streams of random items where ``a`` comes often and is always followed by ``b``."""
    rng = random.Random(seed)
    catalogue = [f"i{k}" for k in range(ITEMS)]
    examples: list[Example] = []
    for u in range(users):
        history: list[Step] = []
        for n in range(length):
            item = "b" if history and history[-1].item == "a" else "a" if rng.random() < 0.3 else rng.choice(catalogue)
            step = Step(item, "view", T0 + 1000 * u + 60 * n, user=f"u{u}")
            examples.append((list(history), step))
            history.append(step)
    return examples


def view(*items: str) -> list[Step]:
    return [Step(item, "view", T0 + 60 * k) for k, item in enumerate(items)]


@pytest.fixture(params=sorted(BASELINES))
def trained(request: pytest.FixtureRequest) -> Recommender:
    rec = BASELINES[request.param]()
    rec.learn_many(planted())
    return rec


def test_names() -> None:
    assert [BASELINES[name]().name for name in sorted(BASELINES)] == sorted(BASELINES)


def test_fewer_items_than_k_gives_all_known(trained: Recommender) -> None:
    assert len(trained.rank(view("a"), k=1000)) == ITEMS + 2


def test_exclude_seen(trained: Recommender) -> None:
    history = view("a", "b", "i0", "i1", "i2")
    ranking = trained.rank(history, k=10, exclude_seen=True)
    assert len(ranking) == 10
    assert not {item for item, _ in ranking} & {s.item for s in history}


def test_untrained_ranks_nothing_but_the_users_own_items() -> None:
    for name, make in BASELINES.items():
        own_first = name.startswith("recent-")
        assert [item for item, _ in make().rank(view("a", "b"), k=5)] == (["b", "a"] if own_first else [])


@pytest.mark.parametrize("name", ["markov", "recent-markov", "sknn", "vsknn", "sr", "recent-sknn", "recent-sr"])
def test_planted_transition_is_learned(name: str) -> None:
    rec = BASELINES[name]()
    rec.learn_many(planted())
    # With exclude_seen, recent-markov's own items are excluded and it ranks as markov does.
    assert rec.rank(view("i5", "a"), k=1, exclude_seen=True)[0][0] == "b"
    # Where the last item has no followers, the list is popularity: "a" is the most frequent item.
    assert rec.rank(view("never-seen"), k=1, exclude_seen=True)[0][0] == "a"


def test_markov_breaks_ties_by_popularity() -> None:
    rec = Markov()
    x, y, z, p = (Step(i, "view", 0.0) for i in "xyzp")
    rec.learn_many([([x], y), ([x], z), ([], z), ([], z), ([p], y)])  # x -> y once, x -> z once; z is more popular
    assert [item for item, _ in rec.rank([x], k=2)] == ["z", "y"]


def test_recent_markov_puts_own_recent_items_first() -> None:
    rec = RecentMarkov()
    rec.learn_many(planted())
    markov = Markov()
    markov.learn_many(planted())
    history = view("i1", "i2", "a", "i2")
    items = [item for item, _ in rec.rank(history, k=5)]
    assert items[:3] == ["i2", "a", "i1"]
    assert items[3:] == [item for item, _ in markov.rank(history, k=10) if item not in items[:3]][:2]
    assert rec.rank(history, k=5, exclude_seen=True) == markov.rank(history, k=5, exclude_seen=True)


def test_decayed_popularity_prefers_recent_sightings() -> None:
    rec = DecayedPopularity(half_life_events=2, refresh_every=1)
    rec.learn_many([([], Step(i, "view", 0.0)) for i in ["old"] * 3 + ["new"] * 2])
    assert [item for item, _ in rec.rank([], k=2)] == ["new", "old"]
    assert rec.score("new") == pytest.approx(1 + 2**-0.5)  # sightings 0 and 1 events ago, half-life 2
    plain = DecayedPopularity(half_life_events=1e9, refresh_every=1)
    plain.learn_many([([], Step(i, "view", 0.0)) for i in ["old"] * 3 + ["new"] * 2])
    assert [item for item, _ in plain.rank([], k=2)] == ["old", "new"]


def test_decayed_popularity_survives_rescaling() -> None:
    rec = DecayedPopularity(half_life_events=1, refresh_every=1)
    rec.learn_many([([], Step(f"i{n % 3}", "view", 0.0)) for n in range(1000)])  # 2**1000 would overflow
    assert [item for item, _ in rec.rank([], k=3)] == ["i0", "i2", "i1"]  # i0 last (n = 999)
    assert rec.score("i0") == pytest.approx(1 / (1 - 2**-3))


def test_decayed_popularity_cache_refreshes() -> None:
    rec = DecayedPopularity(half_life_events=1e9, refresh_every=3)
    rec.learn_many([([], Step("a", "view", 0.0))])
    assert rec.rank([], k=2) == [("a", pytest.approx(1.0))]
    rec.learn_many([([], Step("b", "view", 0.0))] * 3)
    assert [item for item, _ in rec.rank([], k=2)] == ["b", "a"]


def test_count_order_matches_a_sort() -> None:
    rng = random.Random(1)
    order = CountOrder()
    counts: Counter[str] = Counter()
    for _ in range(3000):
        item = f"i{min(int(rng.expovariate(0.05)), 200)}"
        order.add(item)
        counts[item] += 1
        ranked = list(order.items())
        assert [order.counts[i] for i in ranked] == sorted(counts.values(), reverse=True)
    assert order.counts == dict(counts)
    assert order.total == 3000 and len(order) == len(counts)


@pytest.mark.parametrize("kind", ["biased", "funk"])
def test_river_mf_learns_users_tastes(kind: str) -> None:
    """Two groups of users, each viewing its own half of the catalogue: a user's own half must rank first."""
    rng = random.Random(0)
    halves = {g: [f"{g}{k}" for k in range(10)] for g in "xy"}
    examples: list[Example] = []
    for n in range(3000):
        user = f"u{n % 20}"
        item = rng.choice(halves["x" if n % 20 < 10 else "y"])
        examples.append(([], Step(item, "view", T0 + n, user=user)))
    rec = RiverMF(kind, lr=0.05, seed=1)
    rec.learn_many(examples)
    for user, half in (("u3", "x"), ("u15", "y")):
        top = [item for item, _ in rec.rank([Step("any", "view", T0, user=user)], k=10)]
        assert sum(item.startswith(half) for item in top) >= 9, (user, top)


def test_river_mf_needs_users() -> None:
    with pytest.raises(ValueError, match="user"):
        RiverMF().learn_many([([], Step("a", "view", T0))])
    with pytest.raises(ValueError, match="kind"):
        RiverMF("svd")


def users(streams: dict[str, str], t: float = T0) -> list[Example]:
    """Each user's items in order, one example per event."""
    out: list[Example] = []
    for user, items in streams.items():
        steps = [Step(item, "view", t + n, user=user) for n, item in enumerate(items)]
        out.extend((steps[:n], steps[n]) for n in range(len(steps)))
    return out


def test_sknn_scores_by_the_summed_cosine_of_the_neighbours_that_hold_an_item() -> None:
    rec = SKNN()
    rec.learn_many(users({"u1": "ab", "u2": "abc", "u3": "cd"}))
    scores = rec.scores([Step("a", "view", T0, user="me")])
    s1, s2 = 1 / (1 * 2**0.5), 1 / (1 * 3**0.5)  # query {a}: u1 {a, b}, u2 {a, b, c}; u3 shares nothing
    assert scores == pytest.approx({"a": s1 + s2, "b": s1 + s2, "c": s2})


def test_vsknn_weighs_the_querys_newer_items_more() -> None:
    streams = {"old": "ax", "new": "by"}  # "old" shares the query's older item, "new" its newest
    query = [Step("a", "view", T0, user="me"), Step("b", "view", T0 + 1, user="me")]
    plain, weighted = SKNN(), VSKNN()
    for rec in (plain, weighted):
        rec.learn_many(users(streams))
    assert plain.scores(query)["x"] == pytest.approx(plain.scores(query)["y"])
    assert weighted.scores(query)["y"] > weighted.scores(query)["x"]


def test_a_user_is_not_their_own_neighbour() -> None:
    rec = SKNN()
    rec.learn_many(users({"me": "abc", "u2": "az"}))
    assert set(rec.scores([Step("a", "view", T0, user="me")])) == {"a", "z"}


def test_knn_memory_and_candidates_stay_bounded_as_the_stream_grows() -> None:
    rec = SKNN(sample=20, keep=5)
    rec.learn_many(users({f"u{n}": "abcdefgh" for n in range(200)}))
    assert max(len(u) for u in rec.users_of.values()) == 20, "an item keeps its 20 most recent users"
    assert max(len(i) for i in rec.recent.values()) == 5, "a user keeps their 5 newest distinct items"
    assert list(rec.users_of["h"])[-1] == "u199" and "u0" not in rec.users_of["h"]


def test_sequential_rules_weigh_a_follower_by_its_gap() -> None:
    rec = SequentialRules(steps=3)
    rec.learn_many(users({"u1": "abc", "u2": "axc"}))
    assert rec.rules["a"] == pytest.approx({"b": 1.0, "x": 1.0, "c": 1.0})  # c: 1/2 after a, twice
    assert rec.rules["b"] == {"c": 1.0} and rec.scores(view("q", "a"))["c"] == pytest.approx(1.0)


def test_category_popularity_ranks_the_newest_categorised_items_category_by_count() -> None:
    shoes, hats = {"category": "shoes"}, {"category": "hats", "price": 9.5}
    rec = CategoryPopularity()
    bought = [("s1", shoes)] * 2 + [("s2", shoes)] * 3 + [("h1", hats)] * 9 + [("x", {})] * 20
    rec.learn_many([([], Step(item, "view", T0 + k, features=f)) for k, (item, f) in enumerate(bought)])
    history = [Step("h1", "view", T0, features=hats), Step("s1", "view", T0 + 1, features=shoes), *view("x")]
    assert [item for item, _ in rec.rank(history, k=4)] == ["s2", "s1", "x", "h1"]  # then by popularity
    assert [item for item, _ in rec.rank(history, k=2, exclude_seen=True)] == ["s2"], "nothing else unseen"
    assert [item for item, _ in OwnFirst(CategoryPopularity()).rank(history, k=2)] == ["x", "s1"]
