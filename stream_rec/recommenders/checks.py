"""Checks any recommender can be run against, a user's own included (as river's ``river/checks/`` are).

Each check takes a factory of fresh, identically configured recommenders and raises ``AssertionError`` saying
what is wrong; :func:`check_recommender` runs them all::

    from stream_rec.recommenders.checks import check_recommender
    check_recommender(lambda: MyRecommender(seed=0))

What :class:`~stream_rec.recommenders.Recommender` promises, and these check:

- it changes neither the examples it learns from nor the histories it ranks (the caller owns them: the worker's
  table, evaluate's memory);
- the same examples give the same rankings (a seed fixes every random choice);
- a ranking holds at most ``k`` distinct items it has learned of, best first, and none of the history's items
  when ``exclude_seen`` is asked for;
- it learns: ranked before each chunk of a stream is learned (prequential, as ``stream-rec evaluate`` does), it
  hits more of the stream's items than the same recommender that learned nothing;
- it survives a pickle round trip (how a Python user keeps one), ranking as before.

The stream is :func:`planted`: a small catalogue with categories, where one frequent item is always followed
by another, so that popularity, transitions and sequence models all have something to find.
"""

from __future__ import annotations

import copy
import itertools
import math
import pickle
import random
from collections.abc import Callable, Sequence

from ..sequences import Example, Step
from .base import Ranking, Recommender

__all__ = [
    "CHECKS", "check_deterministic", "check_inputs_unchanged", "check_learns", "check_rankings", "check_recommender",
    "check_round_trip", "planted",
]  # fmt: skip

Factory = Callable[[], Recommender]
K = 5


def planted(users: int = 24, items: int = 30, length: int = 12, seed: int = 0) -> list[Example]:
    """A time-ordered stream of examples: users' random items of their favourite category, where ``a`` comes often
    and is always followed by ``b``; each item carries its category as a side feature.

    >>> stream = planted(users=2, length=3)
    >>> len(stream), [len(history) for history, _ in stream[:3]]
    (6, [0, 0, 1])
    """
    rng = random.Random(seed)
    catalogue = [f"i{n}" for n in range(items)]
    category = {item: f"c{n % 3}" for n, item in enumerate(catalogue)} | {"a": "c0", "b": "c0"}
    histories: list[list[Step]] = [[] for _ in range(users)]
    examples: list[Example] = []
    for t in range(length):  # users interleaved, as a topic holds them
        for u, history in enumerate(histories):
            if history and history[-1].item == "a":
                item = "b"
            elif rng.random() < 0.3:
                item = "a"
            else:
                item = rng.choice([i for i in catalogue if category[i] == f"c{u % 3}"])
            kind = "purchase" if rng.random() < 0.1 else "view"
            step = Step(item, kind, 1.6e9 + 60 * t + u, {"device": "mobile"}, {"category": category[item]}, f"u{u}")
            examples.append((list(history), step))
            history.append(step)
    return examples


def _chunks(stream: Sequence[Example], size: int = 24) -> list[Sequence[Example]]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def _learned(make: Factory, stream: Sequence[Example]) -> Recommender:
    recommender = make()
    for chunk in _chunks(stream):
        recommender.learn_many(chunk)
    return recommender


def _histories(stream: Sequence[Example]) -> list[Sequence[Step]]:
    return [history for history, _ in stream if history][-30:]


def check_inputs_unchanged(make: Factory) -> None:
    """Neither ``learn_many`` nor ``rank_many`` changes what it is given."""
    stream = planted()
    given = copy.deepcopy(stream)
    recommender = _learned(make, given)
    assert given == stream, "learn_many changed the examples it was given"
    histories = _histories(given)
    before = copy.deepcopy(histories)
    recommender.rank_many(histories, K)
    recommender.rank_many(histories, K, exclude_seen=True)
    assert histories == before, "rank_many changed the histories it was given"


def check_deterministic(make: Factory) -> None:
    """Two recommenders from the factory, taught the same, rank the same."""
    stream = planted()
    histories = _histories(stream)
    first, second = (_learned(make, stream).rank_many(histories, K) for _ in range(2))
    assert _same(first, second), "the same examples gave other rankings: is every random choice seeded?"


def check_rankings(make: Factory) -> None:
    """At most k distinct items it learned of, best first; none of the history's with ``exclude_seen``."""
    stream = planted()
    known = {step.item for history, step in stream for step in [*history, step]}
    recommender = _learned(make, stream)
    histories = _histories(stream)
    for exclude_seen in (False, True):
        for history, ranking in zip(histories, recommender.rank_many(histories, K, exclude_seen), strict=True):
            items = [item for item, _ in ranking]
            assert len(items) <= K, f"{len(items)} items ranked where k={K} were asked for"
            assert len(set(items)) == len(items), f"an item ranked twice: {items}"
            assert set(items) <= known, f"items it never learned of: {sorted(set(items) - known)}"
            scores = [score for _, score in ranking]
            assert all(math.isfinite(s) for s in scores), f"scores that are not finite numbers: {scores}"
            assert all(a >= b - 1e-6 * max(1.0, abs(a)) for a, b in itertools.pairwise(scores)), (
                f"not best first: {scores}"
            )
            if exclude_seen:
                seen = {step.item for step in history}
                assert not seen & set(items), f"exclude_seen, yet the history's {sorted(seen & set(items))} ranked"


def check_learns(make: Factory) -> None:
    """Ranked before each chunk is learned, it hits more of the stream than the same one that learned nothing."""
    stream = planted()
    learning, fresh = make(), make()
    hits = untaught = 0
    for chunk in _chunks(stream):
        todo = [(history, step) for history, step in chunk if history]
        if todo:
            histories = [history for history, _ in todo]
            targets = [step.item for _, step in todo]
            hits += _hits(learning.rank_many(histories, K), targets)
            untaught += _hits(fresh.rank_many(histories, K), targets)
        learning.learn_many(chunk)
    assert hits > untaught, f"it did not learn: {hits} hits in the top {K} against {untaught} before learning"


def check_round_trip(make: Factory) -> None:
    """Pickled and unpickled (a recommender of one's own, never bytes from elsewhere), it ranks as before."""
    stream = planted()
    recommender = _learned(make, stream)
    histories = _histories(stream)
    try:
        copied = pickle.loads(pickle.dumps(recommender))  # its own bytes, just made: never bytes from elsewhere
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise AssertionError(f"it cannot be pickled: {exc}") from exc
    assert _same(recommender.rank_many(histories, K), copied.rank_many(histories, K)), "it ranks otherwise unpickled"


CHECKS: tuple[Callable[[Factory], None], ...] = (
    check_inputs_unchanged, check_deterministic, check_rankings, check_learns, check_round_trip,
)  # fmt: skip


def check_recommender(make: Factory) -> None:
    """Every check of :data:`CHECKS`; the first that fails raises, naming itself."""
    for check in CHECKS:
        try:
            check(make)
        except AssertionError as exc:
            raise AssertionError(f"{check.__name__}: {exc}") from exc


def _hits(rankings: Sequence[Ranking], targets: Sequence[str]) -> int:
    return sum(target in {item for item, _ in ranking} for ranking, target in zip(rankings, targets, strict=True))


def _same(a: Sequence[Ranking], b: Sequence[Ranking]) -> bool:
    return all(
        [item for item, _ in x] == [item for item, _ in y]
        and all(math.isclose(s, t, rel_tol=1e-5, abs_tol=1e-6) for (_, s), (_, t) in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    ) and len(a) == len(b)
