"""river's matrix factorisation models (``reco.BiasedMF``, ``reco.FunkMF``) used as top-k rankers.

river's reco models learn ratings one ``(user, item, y)`` at a time and predict one pair at a time. Implicit
feedback has only positives, so each event is learned as ``y = 1`` together with ``negatives`` items drawn
uniformly from the items seen so far as ``y = 0`` (the usual sampled-negative reading of one-class data). To
rank, the item factors (and biases) are kept in one matrix, refreshed for the items a batch touched, and every
known item is scored against the user's factors in one product: a top-k is one numpy call, not one
``predict_one`` per item.

river's optimizers update the factor arrays in place, so the rows copied here are the model's own values.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from river import reco

from ..sequences import Step
from .base import Example, Ranking, Recommender

__all__ = ["RiverMF"]


class RiverMF(Recommender):
    """A river reco model (``biased``: BiasedMF, ``funk``: FunkMF) learned with sampled negatives.

    Parameters
    ----------
    kind
        ``"biased"`` (user and item biases plus factors) or ``"funk"`` (factors only).
    n_factors
        Length of the user and item factor vectors.
    lr
        Learning rate of river's SGD for factors and biases.
    l2
        L2 penalty on the factors (and biases).
    negatives
        Items drawn uniformly from those seen so far, learned as ``y = 0`` with each event.
    seed
        Seeds the factor initialisation and the negative draws.

    Examples
    --------
    >>> from stream_rec.sequences import Step
    >>> mf = RiverMF("biased", seed=1)
    >>> stream = [([], Step(item, "view", 0.0, user=user)) for user in "uvw" for item in "ab" * 20]
    >>> mf.learn_many(stream)
    >>> sorted(item for item, _ in mf.rank([Step("a", "view", 0.0, user="u")], k=2))
    ['a', 'b']
    """

    def __init__(
        self, kind: str = "biased", n_factors: int = 32, lr: float = 0.01, l2: float = 0.001, negatives: int = 4,
        seed: int = 0,
    ) -> None:  # fmt: skip
        if kind not in ("biased", "funk"):
            raise ValueError(f"kind must be 'biased' or 'funk', got {kind!r}")
        self.kind = kind
        self.n_factors = n_factors
        self.lr = lr
        self.l2 = l2
        self.negatives = negatives
        self.seed = seed
        self.name = f"river-{kind}mf"
        from river import optim, reco  # (with scipy: on first use, so that a serving worker never loads it)

        init = optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed)
        self.model: reco.BiasedMF | reco.FunkMF
        if kind == "biased":
            self.model = reco.BiasedMF(
                n_factors=n_factors, bias_optimizer=optim.SGD(lr), latent_optimizer=optim.SGD(lr),
                l2_bias=l2, l2_latent=l2, latent_initializer=init, seed=seed,
            )  # fmt: skip
        else:
            self.model = reco.FunkMF(n_factors=n_factors, optimizer=optim.SGD(lr), l2=l2, initializer=init, seed=seed)
        self._rng = random.Random(seed)
        self._items: list[str] = []  # row -> item id
        self._rows: dict[str, int] = {}  # item id -> row
        self._factors = np.zeros((0, n_factors))  # [rows, F], the item factors as of the last learn
        self._bias = np.zeros(0)  # [rows]

    def learn_many(self, examples: Sequence[Example]) -> None:
        touched: set[str] = set()
        for _, event in examples:
            if event.user is None:
                raise ValueError(f"{self.name} needs the user of each event (Step.user)")
            self._add(event.item)
            self.model.learn_one(event.user, event.item, 1.0)
            touched.add(event.item)
            for _ in range(self.negatives if len(self._items) > 1 else 0):
                other = self._items[self._rng.randrange(len(self._items))]
                if other != event.item:
                    self.model.learn_one(event.user, other, 0.0)
                    touched.add(other)
        biases = getattr(self.model, "i_biases", None)  # BiasedMF's; FunkMF has none
        for item in touched:
            row = self._rows[item]
            self._factors[row] = self.model.i_latents[item]
            if biases is not None:
                self._bias[row] = biases[item]

    def rank_many(self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False) -> list[Ranking]:
        n = len(self._items)
        out: list[Ranking] = []
        for history in histories:
            user = history[-1].user if history else None
            # A user the model has not learned yet has no factors: rank by the item biases alone (river would
            # make up random factors on lookup).
            known = user is not None and user in self.model.u_latents
            scores = self._bias[:n].copy()
            if known:
                scores += self._factors[:n] @ self.model.u_latents[user]
            if exclude_seen:
                rows = [self._rows[s.item] for s in history if s.item in self._rows]
                scores[rows] = -np.inf
            m = min(k, n)
            top = np.argpartition(-scores, m - 1)[:m] if 0 < m < n else np.arange(n)
            top = top[np.argsort(-scores[top], kind="stable")][:k]
            out.append([(self._items[r], float(scores[r])) for r in top.tolist() if scores[r] != -np.inf])
        return out

    def _add(self, item: str) -> None:
        if item in self._rows:
            return
        row = self._rows[item] = len(self._items)
        self._items.append(item)
        if row == len(self._factors):  # grow by doubling so that adding stays O(1) amortised
            size = max(64, 2 * row)
            self._factors = np.resize(self._factors, (size, self.n_factors))
            self._bias = np.resize(self._bias, size)
