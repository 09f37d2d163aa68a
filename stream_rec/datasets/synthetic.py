"""A seeded generator of realistic behaviour events, for demos and tests when no dataset is at hand.

Random events would teach a sequence model nothing, so the generator plants the structure real shops show and
a recommender should find:

- items fall into clusters (categories) and popularity within and across clusters is Zipf-like;
- each user has sparse interests over clusters that drift slowly from session to session;
- within a session the next item is usually a neighbour of the previous one (a fixed, cluster-local
  item-to-item transition structure), sometimes a popular item of the same cluster, rarely a jump elsewhere;
- each viewed item goes down a funnel view -> click -> add_to_cart -> purchase with falling probability;
- device and location are sticky per user, and ``hour`` follows the event time.

Users are interleaved in event time, so the stream looks like a topic's: ``ts`` never decreases. All
randomness comes from ``random.Random`` instances seeded from ``seed``: the same arguments give the same
events, and a shorter run is a prefix of a longer one.

>>> events = list(synthetic_events(5, users=3, items=20, seed=1))
>>> len(events), all(a.ts <= b.ts for a, b in zip(events, events[1:]))
(5, True)
>>> events == list(synthetic_events(5, users=3, items=20, seed=1))
True
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from ..wire.events import Event

__all__ = ["synthetic_events"]

DEVICES = ("mobile", "desktop", "tablet")
DEVICE_WEIGHTS = (0.6, 0.3, 0.1)
CITIES = ("Berlin", "London", "Paris", "Madrid", "Warsaw", "Milan")
CITY_WEIGHTS = (0.3, 0.25, 0.2, 0.1, 0.1, 0.05)

# Next item in a session: a neighbour of the previous item, a popular item of its cluster, or a new cluster.
P_NEIGHBOUR, P_SAME_CLUSTER = 0.65, 0.25
NEIGHBOUR_WEIGHTS = (0.55, 0.25, 0.2)  # ring offsets +1, +2, -1 in the cluster's item order
# The funnel: P(click | view), P(cart | click), P(purchase | cart), P(favorite | click).
P_CLICK, P_CART, P_PURCHASE, P_FAVORITE = 0.35, 0.3, 0.5, 0.05
MEAN_SESSION_ITEMS = 6.0
MEAN_STEP_S = 40.0  # between items in a session
MEAN_SESSION_GAP_S = 8 * 3600.0  # between a typical user's sessions
INTEREST_DRIFT = 0.05  # share of a user's interest mass moved to one (popularity-drawn) cluster per session


@dataclass(frozen=True, slots=True)
class _Catalogue:
    """The item world shared by all users: clusters, popularity and the item-to-item transitions."""

    cluster_items: list[list[int]]  # cluster -> its items in ring order
    cluster_cum: list[list[float]]  # cluster -> cumulative Zipf weights of its items (same order)
    position: list[int]  # item -> its index in its cluster's ring
    cluster_of: list[int]  # item -> cluster
    cluster_popularity: list[float]  # cluster -> Zipf weight

    @classmethod
    def build(cls, items: int, rng: random.Random) -> _Catalogue:
        n_clusters = max(1, min(items // 20, round(items**0.5)))
        ranks = list(range(items))
        rng.shuffle(ranks)  # item -> global popularity rank
        cluster_of = [i * n_clusters // items for i in range(items)]
        cluster_items: list[list[int]] = [[] for _ in range(n_clusters)]
        for item in range(items):
            cluster_items[cluster_of[item]].append(item)
        position = [0] * items
        cluster_cum = []
        for members in cluster_items:
            rng.shuffle(members)  # the ring order: who follows whom
            for pos, item in enumerate(members):
                position[item] = pos
            cluster_cum.append(list(itertools.accumulate(1.0 / (ranks[i] + 1) for i in members)))
        cluster_popularity = [1.0 / (r + 1) ** 0.7 for r in rng.sample(range(n_clusters), n_clusters)]
        return cls(cluster_items, cluster_cum, position, cluster_of, cluster_popularity)

    def popular_item(self, cluster: int, rng: random.Random) -> int:
        return rng.choices(self.cluster_items[cluster], cum_weights=self.cluster_cum[cluster])[0]

    def neighbour(self, item: int, rng: random.Random) -> int:
        members = self.cluster_items[self.cluster_of[item]]
        offset = rng.choices((1, 2, -1), weights=NEIGHBOUR_WEIGHTS)[0]
        return members[(self.position[item] + offset) % len(members)]


class _User:
    """One user's sticky traits, drifting interests, and a lazy stream of their events."""

    def __init__(self, uid: int, catalogue: _Catalogue, rng: random.Random, start_ts: float) -> None:
        self.user_id = f"u{uid}"
        self.catalogue = catalogue
        self.rng = rng
        self.device = rng.choices(DEVICES, weights=DEVICE_WEIGHTS)[0]
        self.location = rng.choices(CITIES, weights=CITY_WEIGHTS)[0]
        self.activity = rng.paretovariate(1.5)  # a few heavy users, many light ones
        # Gamma(0.3) weights are sparse: most mass on a few clusters, tilted towards popular ones.
        self.interests = [rng.gammavariate(0.3, 1.0) * p for p in catalogue.cluster_popularity]
        self.ts = start_ts + rng.expovariate(self.activity / MEAN_SESSION_GAP_S)

    def events(self) -> Iterator[Event]:
        """This user's events forever, in time order."""
        rng = self.rng
        while True:
            self._drift()
            n_items = 1 + int(rng.expovariate(1.0 / (MEAN_SESSION_ITEMS - 1)))
            item = self._start_item()
            for step in range(n_items):
                if step:
                    item = self._next_item(item)
                    self.ts += 2.0 + rng.expovariate(1.0 / MEAN_STEP_S)
                yield from self._funnel(item)
            self.ts += rng.expovariate(self.activity / MEAN_SESSION_GAP_S)

    def _drift(self) -> None:
        """Slowly move interest mass to a cluster drawn by popularity: tastes change, but not overnight."""
        total = sum(self.interests)
        self.interests = [(1 - INTEREST_DRIFT) * w for w in self.interests]
        cluster = self.rng.choices(range(len(self.interests)), weights=self.catalogue.cluster_popularity)[0]
        self.interests[cluster] += INTEREST_DRIFT * total

    def _start_item(self) -> int:
        cluster = self.rng.choices(range(len(self.interests)), weights=self.interests)[0]
        return self.catalogue.popular_item(cluster, self.rng)

    def _next_item(self, item: int) -> int:
        u = self.rng.random()
        if u < P_NEIGHBOUR:
            return self.catalogue.neighbour(item, self.rng)
        if u < P_NEIGHBOUR + P_SAME_CLUSTER:
            return self.catalogue.popular_item(self.catalogue.cluster_of[item], self.rng)
        return self._start_item()

    def _funnel(self, item: int) -> Iterator[Event]:
        rng = self.rng
        kinds = ["view"]
        if rng.random() < P_CLICK:
            kinds.append("click")
            if rng.random() < P_FAVORITE:
                kinds.append("favorite")
            if rng.random() < P_CART:
                kinds.append("add_to_cart")
                if rng.random() < P_PURCHASE:
                    kinds.append("purchase")
        for i, kind in enumerate(kinds):
            if i:
                self.ts += 1.0 + rng.expovariate(1.0 / 15.0)
            yield self._event(item, kind)

    def _event(self, item: int, kind: str) -> Event:
        ts = round(self.ts, 3)
        return Event(
            user_id=self.user_id,
            item_id=f"i{item}",
            event=kind,
            ts=ts,
            context={
                # Mostly the user's own device: people do switch now and then.
                "device": self.device if self.rng.random() < 0.9 else self.rng.choice(DEVICES),
                "location": self.location,
                "hour": int(ts // 3600 % 24),  # UTC hour
            },
            item={"category": f"c{self.catalogue.cluster_of[item]}"},
        )


def synthetic_events(
    n: int, *, users: int = 500, items: int = 2000, seed: int = 0, start_ts: float = 1_700_000_000.0
) -> Iterator[Event]:
    """``n`` synthetic events from ``users`` users over ``items`` items, in non-decreasing ``ts``.

    Parameters
    ----------
    n
        Number of events.
    users, items
        Sizes of the user and item populations (user ids ``u<k>``, item ids ``i<k>``, categories ``c<k>``).
    seed
        Seed of every random choice; the same arguments give the same events.
    start_ts
        Unix time at or after which the first event happens.
    """
    if n < 0 or users < 1 or items < 2:
        raise ValueError(f"need n >= 0, users >= 1 and items >= 2, got n={n}, users={users}, items={items}")
    return _merged(n, users, items, seed, start_ts)  # checked now, not at the first next()


def _merged(n: int, users: int, items: int, seed: int, start_ts: float) -> Iterator[Event]:
    rng = random.Random(seed)
    catalogue = _Catalogue.build(items, rng)
    # One generator per user (own Random, seeded from the master) merged by time: a heap of their next events.
    streams = [_User(u, catalogue, random.Random(rng.getrandbits(64)), start_ts).events() for u in range(users)]
    heap = [(event.ts, u, event) for u, event in ((u, next(s)) for u, s in enumerate(streams))]
    heapq.heapify(heap)
    for _ in range(n):
        _, u, event = heap[0]
        yield event
        nxt = next(streams[u])
        heapq.heapreplace(heap, (nxt.ts, u, nxt))
