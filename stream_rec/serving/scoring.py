"""The serving snapshot: a frozen copy of the learner's model and vocabulary that inference reads.

The learner learns on its own tables; :meth:`OnlineLearner.snapshot` copies the model's weights and the
vocabulary into a :class:`Scorer` at one moment, so every ranking of a scorer comes from one version of the
weights whatever the learner does meanwhile. A scorer gives rows of its own to the items of the histories it
ranks that its vocabulary does not hold yet (a user's newest items: they can be recommended back before the
learner has learned from them), on its own copy; the counts behind the evidence are a frozen view too
(transitions.py).

Ranking is exact over every item (``ranking.top_k`` scores the catalogue a block at a time), or, in a large
catalogue given an index (retrieval.py), over the index's candidates rescored exactly. An item's score is
the new mode's logit (model/head.py: the sequence model's, at the head's scale, plus what the evidence of
counting adds for the items it offers, evidence.py); with the mixture on (the repeat mode, or the evidence's
offered mode), it is the log-probability of the mixture instead; inputs.py builds the head's inputs, for the learner's
training too.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from ..items import evidence
from ..items.features import NO_REPEATS, Batch, encode_histories, encode_repeats, repeats_of
from ..items.transitions import Transitions
from ..items.vocab import Vocabulary
from ..model import SequenceModel
from ..model.head import segment_log_softmax
from ..model.tables import ItemTables
from ..sequences import Step
from ..settings import ModelSettings, Retrieval
from . import ranking
from .inputs import evidence_of, modes, seen_rows, without
from .retrieval import STALE_SHARE, ItemIndex

__all__ = ["COSINE_SCALE", "Recommendation", "Scorer"]
COSINE_SCALE = 10.0  # cosines live in [-1, 1]: a softmax over them needs a temperature


class Recommendation(NamedTuple):
    ranking: list[tuple[str, float]]  # (item_id, score), best first
    explain: list[tuple[str, float]]  # the history items that weighed most, with their weights
    embedding: list[float] | None  # the user vector


class Scorer:
    """Encodes histories and ranks every item for them, from one frozen copy of the model.

    ``steps`` and ``ts`` say which version it is: the learner's step count and the wall-clock time of the copy.
    """

    def __init__(
        self,
        settings: ModelSettings,
        model: SequenceModel,
        vocab: Vocabulary,
        transitions: Transitions,
        *,
        steps: int,
        ts: float | None = None,
        tables: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.settings, self.model, self.vocab, self.transitions = settings, model, vocab, transitions
        self.steps, self.ts = steps, time.time() if ts is None else ts
        self.repeats = settings.repeats
        # The sequence model's logits at the head's scale (model/head.py): baked into the item tables' biases, and
        # applied to the user vectors.
        self.explore_scale = float(model.head.explore_scale().detach())
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + steps)
        self.tables = ItemTables(model, vocab, settings.capacity, generator)
        self.lock = threading.Lock()  # one ranking at a time: giving rows to new items changes the copy
        # What every ranking multiplies (item vectors and biases of every row), made once: the weights are frozen,
        # and only the rows this copy gives to new items change (patched). Rebuilt per call, it cost more than the
        # ranking at large catalogues.
        self._weight: np.ndarray | None = tables[0] if tables is not None else None  # (given: another copy's)
        self._bias: np.ndarray | None = tables[1] if tables is not None else None
        self._stale: set[int] = set()
        self.own_rows: set[int] = set()  # rows this copy gave to items of its own (new ones since the learner's)
        # An approximate index (retrieval.py) where the catalogue is large: what it holds, and the rows scored
        # exactly beside its candidates.
        self.index: ItemIndex | None = None
        self.retrieval: Retrieval | None = None
        self._unknown = np.zeros(0, dtype=np.int64)
        model.eval()

    @property
    def version(self) -> str:
        return f"{self.settings.encoder}-{self.settings.fusion}@{self.steps}"

    def prepare(self) -> Scorer:
        """Make the item tables every ranking multiplies now, so that the first ranking does not (the trainer does
        this before it publishes the snapshot)."""
        with self.lock:
            self._score_tables(torch.zeros(0, self.settings.dim))
        return self

    def prepared(self) -> tuple[np.ndarray, np.ndarray]:
        """The item vectors ``[rows, D]`` and biases ``[rows]`` that rankings multiply, made now where not yet made
        (for a copy of this scorer elsewhere: its ``tables``)."""
        with self.lock:
            self._score_tables(torch.zeros(0, self.settings.dim))
            assert self._weight is not None and self._bias is not None
            return self._weight, self._bias

    def recommend(
        self, histories: Sequence[Sequence[Step]], k: int, exclude_seen: bool = False, n_explain: int = 3
    ) -> list[Recommendation]:
        """Rankings with, for each, the history items that weighed most and the user vector (an empty
        recommendation for an empty history). Without exclusion, the histories' items this copy's vocabulary
        lacks get rows first, so that they can be ranked (a user's newest items)."""
        out = [Recommendation([], [], None) for _ in histories]
        todo = [i for i, h in enumerate(histories) if h]
        if not todo or (exclude_seen and not len(self.vocab)):  # else own items rank before anything is learned
            return out
        todo_histories = [histories[i] for i in todo]
        with self.lock:
            batch, user, weights = self.encode_batch(todo_histories, reserve=not exclude_seen)  # _, [B, D], [B, L]
            rows, values = self.top_k(user, todo_histories, k, exclude_seen, batch)  # [B, k] each, best first
            embeddings = user.numpy().round(5).tolist()
            for row, i in enumerate(todo):
                ranking = [
                    (self.vocab.item(r), float(v))
                    for r, v in zip(rows[row].tolist(), values[row].tolist(), strict=True)
                    if v != float("-inf")
                ]
                explain = self._explain(histories[i], weights[row], user[row], n_explain) if n_explain else []
                out[i] = Recommendation(ranking, explain, embeddings[row])  # type: ignore[arg-type]
        return out

    def _explain(
        self, history: Sequence[Step], weights: torch.Tensor, user: torch.Tensor, n: int
    ) -> list[tuple[str, float]]:
        recent = history[-self.settings.max_len :]
        w = weights[: len(recent)]  # [l]: right-padded, the history's steps are the first columns
        if not bool(w.any()):
            # Fusions without attention: attribute by each history item's affinity with the user vector.
            rows = torch.tensor([self.vocab.index(s.item) for s in recent])
            affinity = self.model.item_emb.weight[rows].detach() @ user  # [l]
            w = torch.softmax(affinity.masked_fill(rows == 0, float("-inf")), dim=0).nan_to_num(0.0)
        merged: dict[str, float] = {}
        for step, weight in zip(recent, w.tolist(), strict=True):
            merged[step.item] = merged.get(step.item, 0.0) + weight
        best = sorted(merged.items(), key=lambda kv: -kv[1])[:n]
        return [(item, round(weight, 4)) for item, weight in best if weight > 0]

    @torch.no_grad()
    def encode_batch(
        self, histories: Sequence[Sequence[Step]], reserve: bool = False
    ) -> tuple[Batch, torch.Tensor, torch.Tensor]:
        """The model's input batch, user vectors ``[B, D]`` and per-step weights ``[B, L]`` for non-empty
        histories; with ``reserve``, the histories' unknown items get rows first."""
        batch = encode_histories(histories, self.vocab, self.settings.max_len)
        if reserve:
            batch, changed = self.tables.reserve(histories, batch, self.settings.max_len)
            self._stale.update(changed)
            self.own_rows.update(changed)
        user, weights = self.model(batch)
        return batch, user, weights

    def encode(self, histories: Sequence[Sequence[Step]]) -> tuple[torch.Tensor, torch.Tensor]:
        """User vectors ``[B, D]`` and per-step weights ``[B, L]`` for non-empty histories."""
        _, user, weights = self.encode_batch(histories)
        return user, weights

    @torch.no_grad()
    def scores(self, user: torch.Tensor, histories: Sequence[Sequence[Step]] | None = None) -> torch.Tensor:
        """Scores ``[B, rows]`` of every row for each user vector; rows holding no item score -inf.

        With ``histories`` (the ones ``user`` encodes), the new mode's logits with the evidence's additions, and
        with the mixture on the log-probabilities of the mixture: the history items get their repeat mode's
        share, the offered items their offered mode's. This is the plain reference for :meth:`top_k`, which ranks
        the same without the whole ``[B, rows]`` matrix.
        """
        u, weight, bias = self._score_tables(user)
        scores = torch.from_numpy(u @ weight.T + bias)  # [B, rows]
        if histories is None:
            return scores
        log_new, (batch, rows, add, share) = self._extra(user, histories)
        index = (torch.from_numpy(batch), torch.from_numpy(rows))
        scores[index] += torch.from_numpy(add)
        if log_new is None:
            return scores
        scores += torch.from_numpy(log_new[:, None]) - torch.logsumexp(scores, dim=1, keepdim=True)
        scores[index] = torch.logaddexp(scores[index], torch.from_numpy(share))
        return scores

    @torch.no_grad()
    def top_k(
        self,
        user: torch.Tensor,
        histories: Sequence[Sequence[Step]],
        k: int,
        exclude_seen: bool = False,
        batch: Batch | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows ``[B, k]`` and their scores for each user (as :meth:`scores` ranks them; exact, see
        ranking.py), leaving out each history's own items where ``exclude_seen``; ``-inf`` marks no item.
        ``batch`` is the histories' encoded batch, where the caller has it (:meth:`encode_batch`)."""
        u, weight, bias = self._score_tables(user)
        exclude = None
        if exclude_seen:
            owner, rows = self.seen_rows(histories, batch)
            pairs = np.unique(owner * self.vocab.rows + rows)  # each (b, row) once
            exclude = (pairs // self.vocab.rows, pairs % self.vocab.rows)
        log_new, extra = self._extra(user, histories, batch, (u, weight, bias), exclude)
        unknown = self._unknown_rows()
        if self.index is None or self.retrieval is None or unknown is None:
            return ranking.top_k(u, weight, bias, k, log_explore=log_new, extra=extra, exclude=exclude)
        index, wanted = self.index, max(k, self.retrieval.candidates)
        candidates = index.search(u, wanted, self.retrieval.probe)
        candidates[candidates >= len(bias)] = -1  # (rows a later copy freed: the index is older)
        if len(unknown):
            candidates[np.isin(candidates, unknown)] = -1  # scored as shared rows instead
        return ranking.top_k_among(
            u, weight, bias, k, candidates, unknown, log_explore=log_new, extra=extra, exclude=exclude,
            sample=index.sample[index.sample < len(bias)], population=index.population,
        )  # fmt: skip

    def use_index(self, index: ItemIndex, settings: Retrieval) -> None:
        """Rank from ``index``'s candidates from now on (an :class:`~stream_rec.serving.retrieval.Indexer` gives
        each snapshot the newest one before it is published)."""
        with self.lock:
            self._unknown = index.unknown(self.vocab)
            self.index, self.retrieval = index, settings

    @property
    def ranks_from_index(self) -> bool:
        """Whether rankings come from an index's candidates now (else every item is scored)."""
        return self.index is not None and self._unknown_rows() is not None

    def _unknown_rows(self) -> np.ndarray | None:
        """The rows ranked beside an index's candidates (see retrieval.py), or None where they are so many that
        scoring every item is as cheap."""
        unknown = self._unknown
        if self.own_rows:
            unknown = np.union1d(unknown, np.fromiter(self.own_rows, dtype=np.int64, count=len(self.own_rows)))
        return None if len(unknown) > STALE_SHARE * self.vocab.rows else unknown

    def seen_rows(self, histories: Sequence[Sequence[Step]], batch: Batch | None) -> tuple[np.ndarray, np.ndarray]:
        """The known rows of every step of ``histories``, with each one's history: ``(owner [N], rows [N])``. Read
        from ``batch`` (their encoding) where it holds every step, else looked up."""
        return seen_rows(histories, self.vocab, batch)

    def _score_tables(self, user: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The user vectors, item vectors and item biases that scores multiply (numpy: its BLAS, OpenBLAS,
        multiplies these shapes 2x faster than torch's MKL on AMD CPUs), at the explore scale; rows holding no
        item get bias -inf."""
        rows = self.vocab.rows
        u = user.numpy()
        if self.settings.scoring == "cosine":
            u = COSINE_SCALE * u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
        if self.explore_scale != 1.0:
            u = u * np.float32(self.explore_scale)
        table = self.model.item_emb.num_embeddings  # rows beyond the vocabulary's are there, unused: cut below
        if self._weight is None or self._bias is None or len(self._bias) != table:
            self._weight, self._bias = self._item_tables(slice(0, table))
            self._stale.clear()
        elif self._stale:
            changed = torch.tensor(sorted(r for r in self._stale if 0 < r < table), dtype=torch.long)
            self._weight[changed.numpy()], self._bias[changed.numpy()] = self._item_tables(changed)
            self._stale.clear()
        bias = self._bias
        bias[self.vocab.inactive_rows()] = -np.inf  # (freed rows stay -inf until an item takes them: stale then)
        return u, self._weight[:rows], bias[:rows]

    @torch.no_grad()
    def _item_tables(self, rows: torch.Tensor | slice) -> tuple[np.ndarray, np.ndarray]:
        """Item vectors ``[R, D]`` and biases ``[R]`` of ``rows``, as rankings multiply them."""
        weight = self.model.item_vectors(rows).detach().numpy().copy()
        if self.settings.scoring == "cosine":
            weight = weight / np.maximum(np.linalg.norm(weight, axis=1, keepdims=True), 1e-12)
        bias_t = self.model.item_bias.weight[rows, 0].detach().clone()
        if self.settings.popularity:
            bias_t += self.model.item_prior(rows).detach()
        return weight, (bias_t * self.explore_scale).numpy()

    def _extra(
        self,
        user: torch.Tensor,
        histories: Sequence[Sequence[Step]],
        encoded: Batch | None = None,
        tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        exclude: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """What ranking adds to the sequence model's scores: with the mixture on, each user's log gate of the new
        mode ``[B]`` (else None); and the special items ``(batch [N], rows [N], add [N], log share [N])``, one
        entry per ``(b, row)``: what the evidence adds to an offered item's logit, and the repeat and offered
        modes' share of an own or offered item (``-inf`` for none). ``tables`` are :meth:`_score_tables`' for
        ``user`` (made here where not given), ``exclude`` the pairs never ranked."""
        n = len(histories)
        offered = self.evidence(histories)
        if exclude is not None:
            offered = without(offered, *exclude, self.vocab.rows)
        add = self.model.head.evidence_scores(user, torch.from_numpy(offered.batch), torch.from_numpy(offered.values))
        if not self.settings.mixture:
            return None, (offered.batch, offered.rows, add.numpy(), np.full(len(add), -np.inf, dtype=np.float32))
        if self.repeats:
            r = (
                repeats_of(encoded)
                if encoded is not None
                else encode_repeats(histories, self.vocab, self.settings.max_len)
            )
        else:
            r = NO_REPEATS
        log_gates, choice = modes(self.model, user, r, offered)  # [B, 3], [N]
        share = log_gates[r.batch, 0] + segment_log_softmax(choice, r.batch, n)
        # The offered mode: a softmax over each user's offered items alone.
        u, weight, bias = tables if tables is not None else self._score_tables(user)
        logit = np.einsum("nd,nd->n", u[offered.batch], weight[offered.rows]) + bias[offered.rows]
        head = self.model.head
        logit *= float((head.offered_scale() / head.explore_scale()).detach())  # (the tables: the new mode's scale)
        logit = torch.from_numpy(logit.astype(np.float32)) + add
        owner = torch.from_numpy(offered.batch)
        offered_share = log_gates[owner, 1] + segment_log_softmax(logit, owner, n)
        keys = torch.cat([owner, r.batch]) * self.vocab.rows
        keys += torch.cat([torch.from_numpy(offered.rows), r.rows])
        unique, inverse = torch.unique(keys, return_inverse=True)  # an own item offered too gets both
        adds = torch.zeros(len(unique)).index_add(0, inverse[: len(add)], add)
        shares = torch.full((len(unique),), -math.inf)
        shares = shares.scatter_reduce(0, inverse[len(add) :], share, "amax")
        offered_part = torch.full((len(unique),), -math.inf).index_put((inverse[: len(add)],), offered_share)
        shares = torch.logaddexp(shares, offered_part)
        return log_gates[:, 2].numpy(), (
            (unique // self.vocab.rows).numpy(),
            (unique % self.vocab.rows).numpy(),
            adds.numpy(),
            shares.numpy(),
        )

    def evidence(self, histories: Sequence[Sequence[Step]]) -> evidence.Evidence:
        """The evidence counting offers for ``histories`` (evidence.py), from this copy's frozen counts."""
        return evidence_of(self.settings, histories, self.vocab, self.transitions)
