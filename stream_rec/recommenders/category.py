"""Category popularity: the most frequent items of the category (or other side feature) of the user's newest
item that has one, then the most frequent items overall. With the user's own items first (``recent-category``)
it is the strongest simple rule on e-commerce sessions that the project has measured (BENCHMARKS.md); it is
what the model's evidence offers beside the followers (evidence.py), on its own.

The groups are those of :func:`~stream_rec.items.transitions.groups_of`: one per string-valued side feature an event
carries for its item (``item={"category": "shoes"}``), counted in a :class:`~stream_rec.items.transitions.Transitions`
as the model counts them (at most ``4 * limit`` items per group, then its ``limit`` most frequent).

>>> from stream_rec.sequences import Step
>>> shoes, hats = {"category": "shoes"}, {"category": "hats"}
>>> rec = CategoryPopularity()
>>> rec.learn_many([([], Step(item, "view", 0.0, features=f)) for item, f in
...                 [("s1", shoes), ("s2", shoes), ("s2", shoes), ("h1", hats), ("h1", hats), ("h1", hats)]])
>>> [item for item, _ in rec.rank([Step("s9", "view", 1.0, features=shoes)], k=3)]
['s2', 's1', 'h1']
"""

from __future__ import annotations

from collections.abc import Sequence

from ..items.transitions import Transitions, groups_of, newest_groups
from ..sequences import Step
from .base import Example
from .popularity import PopularityFill

__all__ = ["CategoryPopularity"]


class CategoryPopularity(PopularityFill):
    """The newest categorised item's category's most frequent items, then popularity (module docstring)."""

    name = "category"

    def __init__(self, limit: int = 200) -> None:
        super().__init__()
        self.limit = limit
        self.counts = Transitions(limit=limit)  # group key -> its items' counts

    def learn_many(self, examples: Sequence[Example]) -> None:
        for _, event in examples:
            self.popularity.add(event.item)
            for key in groups_of(event):
                self.counts.add(key, event.item)

    def scores(self, history: Sequence[Step]) -> dict[str, float]:
        keys = newest_groups(history)
        return self.counts.merged(keys, self.limit) if keys else {}
