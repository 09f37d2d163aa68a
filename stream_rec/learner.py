"""The online learner: it owns the sequence model, the vocabulary, the optimizer, the replay buffer and the step.

A step takes a micro-batch of (history, next event) examples, mixes in replayed ones, computes a softmax loss
over the items (full while the vocabulary is small, else sampled with popularity negatives and the log-Q
correction), skips and counts a step whose loss is not finite, clips the gradient and updates. Item tables are
sparse, so a step costs in proportion to its batch, not to the vocabulary. River's ADWIN watches the running
loss: when it rises (the stream changed), the learning rate is raised for ``drift_steps`` steps.

An event whose item is seen for the first time is counted but is no target: no ranking could have held it.
Item counts (taken after each call's steps, so an example never sees its own) feed the popularity prior.
"""

from __future__ import annotations

import gc
import math
import random
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from river import drift
from torch import nn

from . import ranking
from .features import Batch, Repeats, encode_histories, encode_repeats, item_tokens, repeats_of
from .model import SequenceModel
from .model.repeat import segment_log_softmax
from .optim import SparseAdagrad
from .sequences import Step
from .settings import ModelSettings
from .vocab import Vocabulary

__all__ = ["Example", "OnlineLearner"]

Example = tuple[Sequence[Step], Step]  # (the user's history before the event, the event)
_INITIAL_ROWS = 1024
_FOLLOWERS = 50  # the transition mode offers an item's most frequent followers, at most this many
_SOURCES = 3  # ... of the user's last few distinct items
_COSINE_SCALE = 10.0  # cosines live in [-1, 1]: a softmax over them needs a temperature

# Sparse gradients are built by torch itself; checking their invariants on every step costs time for nothing.
torch.sparse.check_sparse_tensor_invariants.disable()
_FULL_COLLECTION_EVERY = 100  # gen1 collections between Python's full collections (its default: 10)


def _spare_the_collector() -> None:
    """Make Python's full garbage collections rarer: a full replay buffer is about a million history steps (named
    tuples, which the collector never stops tracking), and each full collection walks them all: 0.25-0.6 s, 18
    times in 30,000 MovieLens events, a tenth of the engine's time (``bench_engine.py --gc``). Only raised."""
    young, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, max(full, _FULL_COLLECTION_EVERY))


class OnlineLearner:
    """Learns next-item prediction from a stream of examples, and scores items for histories."""

    def __init__(self, settings: ModelSettings | None = None) -> None:
        self.settings = s = settings or ModelSettings()
        torch.set_num_threads(s.threads)
        if s.replay_size:
            _spare_the_collector()
        self.vocab = Vocabulary(capacity=s.capacity, min_count=s.min_count)
        self._rng = random.Random(s.seed)
        self._gen = torch.Generator().manual_seed(s.seed)
        with torch.random.fork_rng():
            torch.manual_seed(s.seed)
            self.model = SequenceModel(
                min(_INITIAL_ROWS, s.capacity + 1), s.dim, s.encoder, s.fusion, s.max_len, s.bptt
            )
        self.repeats = s.repeat and not s.exclude_seen  # with seen items never ranked, repeats cannot be scored
        self.follows = s.transitions is True or (s.transitions == "auto" and self.repeats)  # the transition mode
        self.transitions: dict[int, Counter[int]] = {}  # row -> counts of the rows that followed it (Markov memory)
        self._dense = [p for p in self.model.parameters() if all(p is not q for q in self._sparse)]
        self.optimizers = self._make_optimizers()
        self._base_lr = [opt.param_groups[0]["lr"] for opt in self.optimizers]
        self._drift = drift.ADWIN() if s.drift else None  # on the running loss
        self._boost_left = 0  # steps left at the boosted learning rate
        self.drifts = 0
        self.replay: list[Example] = []
        self.steps = 0
        self.skipped_steps = 0
        self.examples = 0
        self.last_loss = math.nan

    # -- learning ----------------------------------------------------------------------------------------------

    def learn(self, examples: Sequence[Example]) -> None:
        """Take gradient steps on ``examples`` (in order, ``settings.batch`` at a time)."""
        self._observe(examples)
        # An item's first sighting cannot have been recommended (it was unknown): as a target it would only teach
        # that "something new" comes next, and push known, popular items down. Its later sightings teach.
        rows = self.vocab.rows_of([e.item for _, e in examples])
        before = self.model.item_count[torch.tensor(rows, dtype=torch.long)].tolist()  # one gather, not B lookups
        seen = {row for row, count in zip(rows, before, strict=True) if row and count > 0}
        usable = []
        for (history, event), row in zip(examples, rows, strict=True):
            if history and row and row in seen:
                usable.append((history, event))
            seen.add(row)
        b = self.settings.batch
        for start in range(0, len(usable), b):
            fresh = usable[start : start + b]
            n_replay = min(len(self.replay), round(len(fresh) * self.settings.replay))
            mixed = fresh + self._rng.sample(self.replay, n_replay) if n_replay else fresh
            self._step(mixed, len(fresh))
            self._remember(fresh)
        if self.follows:
            self._count_transitions(examples)  # after the steps: an example never sees its own transition
        self.model.item_count.index_add_(0, torch.tensor(rows, dtype=torch.long), torch.ones(len(rows)))
        self.model.item_count[0] = 0.0
        self.examples += len(examples)

    def _count_transitions(self, examples: Sequence[Example]) -> None:
        for history, event in examples:
            if history:
                prev, row = self.vocab.rows_of([history[-1].item, event.item])
                if prev and row:
                    followers = self.transitions.get(prev)
                    if followers is None:
                        followers = self.transitions[prev] = Counter()
                    followers[row] += 1
                    if len(followers) > 4 * _FOLLOWERS:  # bounded: keep the most frequent
                        self.transitions[prev] = Counter(dict(followers.most_common(_FOLLOWERS)))

    def _observe(self, examples: Sequence[Example]) -> None:
        steps = [step for history, event in examples for step in (*history[-1:], event)]
        self._make_room(self.vocab.observe([step.item for step in steps]))
        self._record_features(steps)

    def reserve(self, histories: Sequence[Sequence[Step]], batch: Batch) -> Batch:
        """Give rows to the items of ``histories`` that the vocabulary has not admitted yet (a user's events since
        the last learn call), so that they are encoded and can be ranked (the repeat mode needs only the row).
        ``batch`` encodes ``histories``: only its unknown steps are looked up again; returned with their rows."""
        items = batch.items.numpy()
        b, col = np.nonzero((items == 0) & batch.real_steps())
        length = items.shape[1]
        unknown = [histories[i][-length:][j].item for i, j in zip(b.tolist(), col.tolist(), strict=True)]
        evicted = self.vocab.reserve(unknown) if unknown else []
        self._make_room(evicted)
        self._record_features([h[-1] for h in histories if h])
        if evicted:  # rows of items the batch holds were handed on: look every step up again
            return encode_histories(histories, self.vocab, self.settings.max_len)
        if unknown:
            items[b, col] = self.vocab.rows_of(unknown)  # (the batch's tensor shares this memory)
        return batch

    def _record_features(self, steps: Sequence[Step]) -> None:
        """Note the side-feature tokens of the items of ``steps`` (the newest features an item came with)."""
        described = [s for s in steps if s.features]
        if described:
            rows = torch.tensor(self.vocab.rows_of([s.item for s in described]))
            tokens = torch.tensor([item_tokens(s) for s in described])
            known = rows != 0
            self.model.item_tokens[rows[known]] = tokens[known]

    def _make_room(self, evicted: list[int]) -> None:
        """Keep the tables in step with the vocabulary: grown to its rows, evicted rows reset and forgotten."""
        if self.vocab.rows > self.model.item_emb.num_embeddings:
            self._grow()
        if evicted:
            self._reset_rows(evicted)
            gone = set(evicted)
            for row in evicted:
                self.transitions.pop(row, None)
            for followers in self.transitions.values():  # an evicted row's next item must not inherit its counts
                for row in gone.intersection(followers):
                    del followers[row]

    def _step(self, examples: Sequence[Example], n_fresh: int) -> None:
        """One gradient step; the examples after the first ``n_fresh`` are replayed (already learned once)."""
        batch = encode_histories([h for h, _ in examples], self.vocab, self.settings.max_len)
        targets = torch.tensor([self.vocab.index(e.item) for _, e in examples])  # [B]
        self.model.train()
        user, _ = self.model(batch)  # [B, D]
        histories = [h for h, _ in examples]
        repeats = repeats_of(batch) if self.repeats else None
        mixing = self.repeats or self.follows
        candidates, labels, log_q = self._candidates(targets)  # [C], [B], [C]
        emb = self.model.item_vectors(candidates)  # [C, D]
        bias = F.embedding(candidates, self.model.item_bias.weight, sparse=True).squeeze(-1)  # [C]
        if self.settings.popularity:
            bias = bias + self.model.item_prior(candidates)
        logits = self._affinity(user, emb, bias) - log_q  # [B, C]
        if self.settings.exclude_seen:
            logits = logits.masked_fill(self._seen_mask(examples, batch, candidates, labels), float("-inf"))
        rows = torch.arange(len(examples))
        log_p = F.log_softmax(logits, dim=1)[rows, labels]  # [B]: the explore mode's
        if self.settings.scoring == "sigmoid":
            # A binary loss per item: the target against every other candidate (masked ones left out).
            truth = torch.zeros_like(logits)
            truth[rows, labels] = 1.0
            weight = torch.isfinite(logits).float()
            loss = F.binary_cross_entropy_with_logits(logits.nan_to_num(0.0, neginf=0.0), truth, weight=weight)
            if mixing:  # the mixture head still learns, with the explore mode held fixed
                loss = loss - self._mixture(user, histories, repeats, targets, log_p.detach(), n_fresh).mean()
        else:
            if mixing:
                log_p = self._mixture(user, histories, repeats, targets, log_p, n_fresh)
            loss = -log_p.mean()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            self.skipped_steps += 1  # a NaN step would poison every weight it touches
            return
        loss.backward()
        nn.utils.clip_grad_norm_(self._dense, self.settings.clip)
        boost = self.settings.drift_boost if self._boost_left > 0 else 1.0
        for opt, base in zip(self.optimizers, self._base_lr, strict=True):
            for group in opt.param_groups:
                group["lr"] = base * boost
            opt.step()
        self._boost_left = max(0, self._boost_left - 1)
        self.steps += 1
        self.last_loss = loss.item()
        if self._drift is not None:
            before = self._drift.estimation
            self._drift.update(self.last_loss)
            if self._drift.drift_detected and self._drift.estimation > before:  # the loss rose: the stream changed
                self.drifts += 1
                self._boost_left = self.settings.drift_steps

    def _affinity(self, user: torch.Tensor, emb: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` scores of items (``emb`` [C, D], ``bias`` [C]) for users (``[B, D]``), per ``scoring``."""
        if self.settings.scoring == "cosine":
            return _COSINE_SCALE * F.normalize(user, dim=-1) @ F.normalize(emb, dim=-1).T + bias
        return user @ emb.T + bias

    def _candidates(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Items the softmax runs over (sorted), each target's position among them, and their log sampling odds."""
        s = self.settings
        if len(self.vocab) <= s.full_softmax_below or s.negatives == 0:
            active = torch.from_numpy(np.delete(np.arange(self.vocab.rows), self.vocab.inactive_rows()))  # sorted
            labels = torch.searchsorted(active, targets)
            return active, labels, torch.zeros(len(active))
        # Popularity negatives (counts^0.75 as in word2vec) plus the batch's own targets.
        counts = torch.from_numpy(self.vocab.counts[: self.vocab.rows]).float()
        weights = counts.pow(0.75)
        weights[0] = 0.0
        drawn = torch.multinomial(weights, s.negatives, replacement=True, generator=self._gen)
        candidates, inverse = torch.unique(torch.cat([targets, drawn]), return_inverse=True)
        # log-Q correction: the log of each candidate's chance to be in the set (a draw or a batch target).
        p_draw = weights[candidates] / weights.sum()
        p_target = counts[candidates] / counts.sum()
        miss = (1 - p_draw).pow(s.negatives) * (1 - p_target).pow(len(targets))
        log_q = torch.log1p(-miss).clamp(min=-30.0)
        return candidates, inverse[: len(targets)], log_q

    def _mixture(
        self,
        user: torch.Tensor,
        histories: Sequence[Sequence[Step]],
        repeats: Repeats | None,
        targets: torch.Tensor,
        log_p_explore: torch.Tensor,
        n_fresh: int,
    ) -> torch.Tensor:
        """``[B]`` log-probability of each target under the repeat/transition/explore mixture (model/repeat.py);
        the examples after the first ``n_fresh`` are replayed ones, whose own transitions are counted already."""
        b = len(targets)
        if repeats is None:
            repeats = encode_repeats([[] for _ in histories], self.vocab, self.settings.max_len)
        # A replayed example's own transition is in the counts: left in, the transition mode would look sure of
        # every replayed target, and the gates would learn to trust it far more than it earns on new events.
        left_out = [None] * n_fresh + targets[n_fresh:].tolist()
        log_gates, scores, offered = self._modes(user, histories, repeats, left_out)
        if n_fresh < b:
            # The head learns how far to trust each mode from new events only: on a replayed one the explore mode
            # has seen the answer already, and would look better than it is.
            fresh = torch.arange(b) < n_fresh
            log_gates = torch.where(fresh[:, None], log_gates, log_gates.detach())
            scores = torch.where(fresh[repeats.batch], scores, scores.detach())
        log_p_repeat = torch.full((b,), -math.inf)
        if len(scores):
            log_choice = segment_log_softmax(scores, repeats.batch, b)  # [N]
            is_target = repeats.rows == targets[repeats.batch]  # [N]: at most one per history
            log_p_repeat = log_p_repeat.index_put((repeats.batch[is_target],), log_choice[is_target])
        pairs = zip(offered, targets.tolist(), strict=True)
        log_p_transition = torch.tensor([math.log(o[t] / sum(o.values())) if t in o else -math.inf for o, t in pairs])
        per_mode = torch.stack([log_p_repeat, log_p_transition, log_p_explore], dim=1)  # [B, 3]
        return torch.logsumexp(log_gates + per_mode, dim=1)  # unavailable modes: gate -inf, nothing added

    def _modes(
        self,
        user: torch.Tensor,
        histories: Sequence[Sequence[Step]],
        repeats: Repeats,
        left_out: Sequence[int | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[dict[int, float]]]:
        """The mixture head on a batch: log gates ``[B, 3]``, the own items' repeat scores ``[N]``, and each
        history's transition-mode items with their weights (without the transition from each history's last item
        to its ``left_out`` row, where one is given)."""
        n = len(histories)
        if self.follows:
            left_out = left_out or [None] * n
            offered = [self._followers(h, out) for h, out in zip(histories, left_out, strict=True)]
        else:
            offered = [{} for _ in histories]
        available = torch.ones(n, 3, dtype=torch.bool)  # MODES: repeat, transition, explore
        available[:, 0] = False
        available[repeats.batch, 0] = True
        available[:, 1] = torch.tensor([bool(o) for o in offered])
        # How much each mode has to go on: the user's distinct items, and the transition counts behind its items.
        evidence = torch.stack(
            [
                torch.log1p(torch.bincount(repeats.batch, minlength=n).float()),
                torch.log1p(torch.tensor([float(sum(o.values())) for o in offered])),
            ],
            dim=1,
        )
        log_gates, scores = self.model.repeat(
            user, available, evidence, repeats.positions, repeats.events, repeats.counts
        )
        return log_gates, scores, offered

    def _followers(self, history: Sequence[Step], left_out: int | None = None) -> dict[int, float]:
        """The transition mode's items for a history: what followed its last few distinct items elsewhere in the
        stream (the newest item's followers count fully, each older one's half as much as the one after it, as
        session-based kNN weighs a session's items), at most :data:`_FOLLOWERS` of them, by weight; unseen ones
        only where seen items are never ranked. One count of ``left_out`` after the last item is left out: the
        transition a replayed example taught when it was new."""
        merged: dict[int, float] = {}
        index = self.vocab.index
        sources: dict[int, None] = {}  # the last few distinct known rows, newest first (walked back, not looked up)
        for step in reversed(history):
            row = index(step.item)
            if row:
                sources[row] = None
                if len(sources) == _SOURCES:
                    break
        for j, row in enumerate(sources):
            followers = self.transitions.get(row)
            if followers:
                weight = 0.5**j
                for follower, n in followers.most_common(_FOLLOWERS):
                    if j == 0 and follower == left_out:
                        n -= 1
                    if n > 0:
                        merged[follower] = merged.get(follower, 0.0) + weight * n
        if self.settings.exclude_seen:
            for row in self.vocab.rows_of([s.item for s in history]):
                merged.pop(row, None)
        if len(merged) > _FOLLOWERS:
            merged = dict(sorted(merged.items(), key=lambda kv: -kv[1])[:_FOLLOWERS])
        return merged

    def _seen_mask(
        self, examples: Sequence[Example], batch: Batch, candidates: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """``[B, C]``: True where a candidate is one of the example's history items (never its target).

        Where seen items are never recommended, pushing them down teaches the model nothing it will use.
        """
        owner, seen = self._seen_rows([h for h, _ in examples], batch)
        mask = torch.zeros(len(examples), len(candidates), dtype=torch.bool)
        if len(seen):
            seen_rows, owner_t = torch.from_numpy(seen), torch.from_numpy(owner)
            at = torch.searchsorted(candidates, seen_rows).clamp(max=len(candidates) - 1)  # candidates are sorted
            hit = candidates[at] == seen_rows
            mask[owner_t[hit], at[hit]] = True
        mask[torch.arange(len(examples)), labels] = False
        return mask

    def _remember(self, examples: Sequence[Example]) -> None:
        cap = self.settings.replay_size
        if cap == 0:
            return
        for example in examples:
            if len(self.replay) < cap:
                self.replay.append(example)
            else:
                self.replay[self._rng.randrange(cap)] = example  # reservoir-like: old examples fade out

    # -- scoring -----------------------------------------------------------------------------------------------

    def encode(self, histories: Sequence[Sequence[Step]]) -> tuple[torch.Tensor, torch.Tensor]:
        """User vectors ``[B, D]`` and per-step weights ``[B, L]`` for non-empty histories."""
        _, user, weights = self.encode_batch(histories)
        return user, weights

    @torch.no_grad()
    def encode_batch(
        self, histories: Sequence[Sequence[Step]], reserve: bool = False
    ) -> tuple[Batch, torch.Tensor, torch.Tensor]:
        """:meth:`encode`, with the model's input batch (:meth:`top_k` reads the users' own items from it); with
        ``reserve``, the histories' items get rows first (:meth:`reserve`)."""
        self.model.eval()
        batch = encode_histories(histories, self.vocab, self.settings.max_len)
        if reserve:
            batch = self.reserve(histories, batch)
        user, weights = self.model(batch)
        return batch, user, weights

    @torch.no_grad()
    def scores(self, user: torch.Tensor, histories: Sequence[Sequence[Step]] | None = None) -> torch.Tensor:
        """Scores ``[B, rows]`` of every row for each user vector; rows holding no item score -inf.

        With ``histories`` (the ones ``user`` encodes) and the repeat head on, the scores are the log-probabilities
        of the repeat/explore mixture (model/repeat.py): the history items get their repeat-mode share. This is the
        plain reference for :meth:`top_k`, which ranks the same without the whole ``[B, rows]`` matrix.
        """
        u, weight, bias = self._score_tables(user)
        scores = torch.from_numpy(u @ weight.T + bias)  # [B, rows]
        if histories is None or not (self.repeats or self.follows):
            return scores
        log_explore, (batch, rows, share) = self._mixture_shares(user, histories)
        scores += torch.from_numpy(log_explore[:, None]) - torch.logsumexp(scores, dim=1, keepdim=True)
        index = (torch.from_numpy(batch), torch.from_numpy(rows))
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
            owner, rows = self._seen_rows(histories, batch)
            pairs = np.unique(owner * self.vocab.rows + rows)  # each (b, row) once
            exclude = (pairs // self.vocab.rows, pairs % self.vocab.rows)
        if not (self.repeats or self.follows):
            return ranking.top_k(u, weight, bias, k, exclude=exclude)
        log_explore, boost = self._mixture_shares(user, histories, batch)
        return ranking.top_k(u, weight, bias, k, log_explore=log_explore, boost=boost, exclude=exclude)

    def _seen_rows(self, histories: Sequence[Sequence[Step]], batch: Batch | None) -> tuple[np.ndarray, np.ndarray]:
        """The known rows of every step of ``histories``, with each one's history: ``(owner [N], rows [N])``. Read
        from ``batch`` (their encoding) where it holds every step, else looked up."""
        if batch is None or any(len(h) > batch.items.shape[1] for h in histories):
            rows = np.asarray(self.vocab.rows_of([s.item for h in histories for s in h]), dtype=np.int64)
            owner = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
        else:
            owner, col = np.nonzero(batch.real_steps())
            rows = batch.items.numpy()[owner, col]
        known = rows != 0
        return owner[known], rows[known]

    def _score_tables(self, user: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The user vectors, item vectors and item biases that scores multiply (numpy: its BLAS, OpenBLAS,
        multiplies these shapes 2x faster than torch's MKL on AMD CPUs); rows holding no item get bias -inf."""
        rows = self.vocab.rows
        u, weight = user.numpy(), self.model.item_vectors(slice(0, rows)).detach().numpy()
        if self.settings.scoring == "cosine":
            u = _COSINE_SCALE * u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
            weight = weight / np.maximum(np.linalg.norm(weight, axis=1, keepdims=True), 1e-12)
        bias_t = self.model.item_bias.weight[:rows, 0].detach().clone()
        if self.settings.popularity:
            bias_t += self.model.item_prior(slice(0, rows)).detach()
        bias = bias_t.numpy()
        bias[self.vocab.inactive_rows()] = -np.inf
        return u, weight, bias

    def _mixture_shares(
        self, user: torch.Tensor, histories: Sequence[Sequence[Step]], encoded: Batch | None = None
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The mixture's parts for ranking: each user's log explore gate ``[B]``, and the other modes' shares
        ``(batch [N], rows [N], log share [N])`` of their items, one entry per ``(b, row)``."""
        n = len(histories)
        if self.repeats and encoded is not None:
            r = repeats_of(encoded)
        else:
            r = encode_repeats(
                histories if self.repeats else [[] for _ in histories], self.vocab, self.settings.max_len
            )
        log_gates, choice, offered = self._modes(user, histories, r)  # [B, 3], [N]
        batch, rows = [r.batch], [r.rows]
        shares = [log_gates[r.batch, 0] + segment_log_softmax(choice, r.batch, n)]  # the repeat share
        flat = [b for b, o in enumerate(offered) for _ in o]
        if flat:  # the transition share on the followers of the user's last items
            totals = [sum(o.values()) for o in offered]
            fractions = torch.tensor([count / totals[b] for b, o in enumerate(offered) for count in o.values()])
            batch.append(torch.tensor(flat))
            rows.append(torch.tensor([row for o in offered for row in o]))
            shares.append(log_gates[batch[-1], 1] + fractions.log())
        keys = torch.cat(batch) * self.vocab.rows + torch.cat(rows)
        unique, inverse = torch.unique(keys, return_inverse=True)  # an item in both modes gets both shares
        values = torch.cat(shares)
        top = torch.full((len(unique),), -math.inf).scatter_reduce(0, inverse, values, "amax")
        shift = torch.where(top.isfinite(), top, 0.0)
        log_share = shift + torch.zeros(len(unique)).index_add(0, inverse, (values - shift[inverse]).exp()).log()
        return (
            log_gates[:, 2].numpy(),
            ((unique // self.vocab.rows).numpy(), (unique % self.vocab.rows).numpy(), log_share.numpy()),
        )

    # -- table upkeep ------------------------------------------------------------------------------------------

    @property
    def _sparse(self) -> list[torch.Tensor]:
        """The tables with sparse gradients: a step touches only the rows its batch reads."""
        m = self.model
        return [m.item_emb.weight, m.item_bias.weight, m.context_emb.weight, m.item_feature_emb.weight]

    def _make_optimizers(self) -> list[torch.optim.Optimizer]:
        s = self.settings
        if s.optimizer == "adagrad":
            sparse = SparseAdagrad(self._sparse, lr=s.lr, initial_accumulator_value=s.accumulator_init)
            return [sparse, torch.optim.Adagrad(self._dense, lr=s.lr)]
        return [torch.optim.SparseAdam(self._sparse, lr=s.lr), torch.optim.Adam(self._dense, lr=s.lr)]

    def _grow(self) -> None:
        """Double the item tables (up to capacity), keeping weights and optimizer state."""
        old = self.model.item_emb.num_embeddings
        self.grow_to(min(max(2 * old, self.vocab.rows), self.settings.capacity + 1))

    def grow_to(self, new: int) -> None:
        """Make the item tables ``new`` rows long (no shorter than now), keeping weights and optimizer state."""
        old = self.model.item_emb.num_embeddings
        if new <= old:
            return
        for module, std in ((self.model.item_emb, 0.05), (self.model.item_bias, 0.0)):
            w_old = module.weight
            w_new = nn.Parameter(torch.randn(new, w_old.shape[1], generator=self._gen) * std)
            w_new.data[:old] = w_old.data
            module.weight = w_new
            module.num_embeddings = new
            for opt in self.optimizers:
                for group in opt.param_groups:
                    group["params"] = [w_new if p is w_old else p for p in group["params"]]
                state = opt.state.pop(w_old, None)
                if state is not None:
                    for key, value in state.items():
                        if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == old:
                            grown = torch.full((new, *value.shape[1:]), _fresh(opt, key), dtype=value.dtype)
                            grown[:old] = value
                            state[key] = grown
                    opt.state[w_new] = state
        self.model.item_count = torch.cat([self.model.item_count, torch.zeros(new - old)])
        tokens = self.model.item_tokens
        self.model.item_tokens = torch.cat([tokens, torch.zeros((new - old, tokens.shape[1]), dtype=tokens.dtype)])

    def _reset_rows(self, rows: list[int]) -> None:
        """Give evicted rows a fresh start for the items that will take them."""
        index = torch.tensor(rows)
        with torch.no_grad():
            self.model.item_emb.weight[index] = torch.randn(len(rows), self.settings.dim, generator=self._gen) * 0.05
            self.model.item_bias.weight[index] = 0.0
            self.model.item_count[index] = 0.0
            self.model.item_tokens[index] = 0
        for opt in self.optimizers:
            for param in (self.model.item_emb.weight, self.model.item_bias.weight):
                for key, value in opt.state.get(param, {}).items():
                    if torch.is_tensor(value) and value.dim() > 0:
                        value[index] = _fresh(opt, key)


def _fresh(optimizer: torch.optim.Optimizer, key: str) -> float:
    """The value a new row starts with in an optimizer's per-row state ``key`` (Adagrad's ``sum`` may not be 0)."""
    return float(optimizer.defaults.get("initial_accumulator_value", 0.0)) if key == "sum" else 0.0
