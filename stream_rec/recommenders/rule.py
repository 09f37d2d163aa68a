"""The model's own modes as a fixed rule: what the model would rank with nothing learned.

The user's own recent items first (the repeat mode, newest first; none where seen items are excluded), then the
items the evidence of counting offers (evidence.py: what followed the user's last items, what went with them,
the category's popular items) scored by the features at the head's starting weights (model/head.py), then the
most popular items. The sequence model and every learned weight are left out: the difference between this rule
and the model is what learning earns.

>>> from stream_rec.sequences import Step
>>> rule = EvidenceRule()
>>> a, b, c, d = (Step(x, "view", float(n), user="u") for n, x in enumerate("abcd"))
>>> rule.learn_many([([], a), ([a], b), ([a, b], c), ([], d), ([d], d)])
>>> [item for item, _ in rule.rank([a], k=4)]
['a', 'b', 'c', 'd']
>>> [item for item, _ in rule.rank([a], k=4, exclude_seen=True)]
['b', 'c', 'd']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..items import evidence
from ..items.transitions import Transitions, groups_of
from ..items.vocab import Vocabulary
from ..model.head import evidence_start
from ..sequences import Step, last_distinct
from .base import Example, Ranking
from .popularity import PopularityFill

__all__ = ["EvidenceRule"]


class EvidenceRule(PopularityFill):
    """Own items, then the evidence at the head's starting weights, then popularity (module docstring)."""

    name = "rule"

    def __init__(self, window: int = 10, groups: bool = True) -> None:
        super().__init__()
        self.window, self.groups = window, groups
        self.memory = Transitions(evidence.LIMIT, evidence.GROUP_ITEMS)
        self.vocab = Vocabulary(capacity=1 << 40)  # rows for the evidence's arrays; nothing is ever evicted
        self.weights = np.asarray(evidence_start(), dtype=np.float32)

    def learn_many(self, examples: Sequence[Example]) -> None:
        self.vocab.observe(e.item for _, e in examples)
        for history, event in examples:
            self.popularity.add(event.item)
            before = [step.item for step in history[-self.window :]]
            evidence.record(self.memory, before, event.item, groups_of(event) if self.groups else [], self.window)

    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        offered = evidence.gather(histories, self.vocab, self.memory, groups=self.groups, window=self.window)
        scores = offered.values @ self.weights
        items = [self.vocab.item(int(row)) or "" for row in offered.rows]
        starts = np.searchsorted(offered.batch, np.arange(len(histories) + 1))  # (gather's entries are by history)
        out = []
        for b, history in enumerate(histories):
            found = dict(zip(items[starts[b] : starts[b + 1]], scores[starts[b] : starts[b + 1]].tolist(), strict=True))
            own = [] if exclude_seen else last_distinct(history, k)
            others = self._fill(found, k - len(own), {s.item for s in history} if exclude_seen else set(own))
            top = max((s for _, s in others), default=0.0)
            out.append([(item, top + len(own) - i) for i, item in enumerate(own)] + others)
        return out
