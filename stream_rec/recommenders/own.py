"""The user's own recent items first, then another recommender's list: for data where users come back to what
they had (Taobao's repeat views and purchases), the strongest simple rule there is.

>>> from stream_rec.recommenders.markov import Markov
>>> from stream_rec.sequences import Step
>>> a, b, c = (Step(x, "view", 0.0) for x in "abc")
>>> r = OwnFirst(Markov())
>>> r.learn_many([([], a), ([a], b), ([], c)])
>>> r.name, [item for item, _ in r.rank([c, a, c], k=3)]
('recent-markov', ['c', 'a', 'b'])
"""

from __future__ import annotations

from collections.abc import Sequence

from ..sequences import Step, last_distinct
from .base import Example, Ranking, Recommender

__all__ = ["OwnFirst"]


class OwnFirst(Recommender):
    """The user's own recent items (newest first, distinct), then ``inner``'s list.

    With ``exclude_seen`` the user's items are all left out, so this ranks as ``inner`` does.
    """

    def __init__(self, inner: Recommender) -> None:
        self.inner = inner
        self.name = f"recent-{inner.name}"

    def learn_many(self, examples: Sequence[Example]) -> None:
        self.inner.learn_many(examples)

    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        if exclude_seen:
            return self.inner.rank_many(histories, k, exclude_seen)
        out = []
        for history, rest in zip(histories, self.inner.rank_many(histories, 2 * k), strict=True):
            own = last_distinct(history, k)
            others = [(item, s) for item, s in rest if item not in own][: k - len(own)]
            top = max((s for _, s in others), default=0.0)
            out.append([(item, top + len(own) - i) for i, item in enumerate(own)] + others)
        return out
