"""The online learner: the step, its guards and the model's state; a serving snapshot is what inference reads.

A step takes a micro-batch of (history, next event) examples, mixes in replayed ones (replay.py), computes a
softmax loss over the items (full while the vocabulary is small, else sampled: sampling.py, with every item the
evidence offers in the set), skips and counts a step whose loss is not finite, clips the gradient and updates.
Item tables are sparse, so a step costs in proportion to its batch, not to the vocabulary; model/tables.py keeps them in
step with the vocabulary. River's ADWIN watches the running loss: when it rises (the stream changed), the
learning rate is raised for ``drift_steps`` steps. The loss is that of the new mode (the sequence model's logits
plus the evidence of counting, model/head.py), and where users come back to their own items of the repeat / new
mixture (scoring.py builds the head's inputs; evidence.py counts what followed and went with what).

An event whose item is seen for the first time is counted but is no target: no ranking could have held it.
Item counts (taken after each call's steps, so an example never sees its own) feed the popularity prior.

:meth:`OnlineLearner.snapshot` copies the model and the vocabulary into a :class:`~stream_rec.serving.scoring.Scorer`;
:meth:`OnlineLearner.state_dict` is everything a checkpoint holds.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from river import drift
from torch import nn

from ..items import evidence
from ..items.features import Batch, encode_histories, repeats_of
from ..items.transitions import Transitions, groups_of
from ..items.vocab import Vocabulary
from ..model import SequenceModel
from ..model.head import segment_log_softmax
from ..model.tables import ItemTables
from ..sequences import Example
from ..serving.scoring import COSINE_SCALE, Scorer, evidence_of, modes, seen_rows
from ..settings import ModelSettings
from . import sampling
from .optim import SparseAdagrad
from .replay import ReplayBuffer, spare_the_collector

__all__ = ["Example", "OnlineLearner"]

_INITIAL_ROWS = 1024

# Sparse gradients are built by torch itself; checking their invariants on every step costs time for nothing.
torch.sparse.check_sparse_tensor_invariants.disable()


class OnlineLearner:
    """Learns next-item prediction from a stream of examples; :meth:`snapshot` scores items for histories."""

    def __init__(self, settings: ModelSettings | None = None) -> None:
        self.settings = s = settings or ModelSettings()
        if s.replay_size:
            spare_the_collector()
        self.vocab = Vocabulary(capacity=s.capacity, min_count=s.min_count)
        self._rng = random.Random(s.seed)
        self._gen = torch.Generator().manual_seed(s.seed)
        with torch.random.fork_rng():
            torch.manual_seed(s.seed)
            self.model = SequenceModel(
                min(_INITIAL_ROWS, s.capacity + 1), s.dim, s.encoder, s.fusion, s.max_len, s.bptt
            )
        self.repeats = s.repeats
        self.transitions = Transitions(evidence.LIMIT, evidence.GROUP_ITEMS)  # the counts behind the evidence
        self._dense = [p for p in self.model.parameters() if all(p is not q for q in self._sparse)]
        self.optimizers = self._make_optimizers()
        self._base_lr = [[group["lr"] for group in opt.param_groups] for opt in self.optimizers]
        self.tables = ItemTables(self.model, self.vocab, s.capacity, self._gen, self.optimizers)
        self._drift = drift.ADWIN() if s.drift else None  # on the running loss
        self._boost_left = 0  # steps left at the boosted learning rate
        self.drifts = 0
        self.replay = ReplayBuffer(s.replay_size)
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
            mixed = fresh + self.replay.sample(n_replay, self._rng) if n_replay else fresh
            self._step(mixed, len(fresh))
            self.replay.add(fresh, self._rng)
        if self.settings.evidence:
            self._count(examples)  # after the steps: an example never sees its own counts
        self.model.item_count.index_add_(0, torch.tensor(rows, dtype=torch.long), torch.ones(len(rows)))
        self.model.item_count[0] = 0.0
        self.examples += len(examples)

    def _count(self, examples: Sequence[Example]) -> None:
        """Count what the evidence reads (evidence.py): each event after the steps of its history, with the items
        near it, and under its side-feature groups (its category)."""
        vocab, window, groups = self.vocab, self.settings.evidence_window, self.settings.groups
        for history, event in examples:
            row = vocab.index(event.item)
            if not row:
                continue
            item: str = vocab.item(row)  # type: ignore[assignment]  # the vocabulary's own strings: counts share them
            # Only items with rows are counted (a key never outlives its row), as the vocabulary's own strings.
            before = [vocab.item(vocab.index(step.item)) for step in history[-window:]]
            evidence.record(self.transitions, before, item, groups_of(event) if groups else [], window)

    def _observe(self, examples: Sequence[Example]) -> None:
        steps = [step for history, event in examples for step in (*history[-1:], event)]
        self.transitions.forget(self.tables.observe(steps))

    def _step(self, examples: Sequence[Example], n_fresh: int) -> None:
        """One gradient step; the examples after the first ``n_fresh`` are replayed (already learned once)."""
        s = self.settings
        histories = [h for h, _ in examples]
        batch = encode_histories(histories, self.vocab, s.max_len)
        targets = torch.tensor([self.vocab.index(e.item) for _, e in examples])  # [B]
        self.model.train()
        user, _ = self.model(batch)  # [B, D]
        # A replayed example's own counts are in the evidence now: they are left out, or the evidence would look
        # sure of every replayed target.
        offered = evidence_of(
            s, histories, self.vocab, self.transitions, [None] * n_fresh + [e for _, e in examples[n_fresh:]]
        )
        offered_rows = torch.from_numpy(offered.rows)
        candidates, labels, log_q = sampling.candidates(  # [C], [B], [C]
            self.vocab, targets, s.negatives, s.full_softmax_below, self._gen, offered_rows
        )
        emb = self.model.item_vectors(candidates)  # [C, D]
        bias = F.embedding(candidates, self.model.item_bias.weight, sparse=True).squeeze(-1)  # [C]
        if s.popularity:
            bias = bias + self.model.item_prior(candidates)
        logits = self._affinity(user, emb, bias)  # [B, C]: the sequence model's
        head = self.model.head
        scale = head.explore_scale()
        owner = torch.from_numpy(offered.batch)
        at = (owner, torch.searchsorted(candidates, offered_rows))  # each offered item's place: [N], [N]
        add = head.evidence_scores(user, owner, torch.from_numpy(offered.values))  # [N]
        mask = self._seen_mask(examples, batch, candidates, labels) if s.exclude_seen else None

        def new_mode(neural: torch.Tensor, added: torch.Tensor) -> torch.Tensor:  # [B, C] logits
            scores = sampling.corrected(neural.index_put(at, added, accumulate=True), log_q, labels, at)
            if mask is not None:
                scores = scores.masked_fill(mask, float("-inf"))  # never recommended, so nothing to learn there
            return scores

        rows, fresh = torch.arange(len(examples)), slice(0, n_fresh)
        # The sequence model learns from every example with the head held fixed; the head from the new ones, the
        # way it will be served (model/head.py).
        learn_model = new_mode(logits * scale.detach(), add.detach())
        log_p = F.log_softmax(learn_model, dim=1)[rows, labels]  # [B]
        head_logits = new_mode(logits.detach() * scale, add)[fresh]
        log_p_head = F.log_softmax(head_logits, dim=1)[rows[fresh], labels[fresh]]  # [n_fresh]
        if self.repeats:
            log_p, log_p_head = self._mixture(user, batch, offered, targets, log_p, log_p_head)
        if s.scoring == "sigmoid":
            # A binary loss per item: the target against every other candidate (masked ones left out).
            truth = torch.zeros_like(learn_model)
            truth[rows, labels] = 1.0
            weight = torch.isfinite(learn_model).float()
            scores = learn_model.nan_to_num(0.0, neginf=0.0)
            loss = F.binary_cross_entropy_with_logits(scores, truth, weight=weight) - log_p_head.sum() / len(examples)
        else:
            loss = -(log_p.sum() + log_p_head.sum()) / len(examples)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            self.skipped_steps += 1  # a NaN step would poison every weight it touches
            return
        loss.backward()
        nn.utils.clip_grad_norm_(self._dense, self.settings.clip)
        boost = self.settings.drift_boost if self._boost_left > 0 else 1.0
        for opt, bases in zip(self.optimizers, self._base_lr, strict=True):
            for group, base in zip(opt.param_groups, bases, strict=True):
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
            return COSINE_SCALE * F.normalize(user, dim=-1) @ F.normalize(emb, dim=-1).T + bias
        return user @ emb.T + bias

    def _mixture(
        self,
        user: torch.Tensor,
        batch: Batch,
        offered: evidence.Evidence,
        targets: torch.Tensor,
        log_p_new: torch.Tensor,
        log_p_head: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of each target under the repeat / new mixture (model/head.py): ``[B]`` with the head
        held fixed, from the new mode's ``log_p_new`` (for the sequence model to learn from), and ``[n_fresh]``
        with the head learning, from ``log_p_head`` (the new mode's with the head's weights)."""
        b, n_fresh = len(targets), len(log_p_head)
        repeats = repeats_of(batch)
        log_gates, scores = modes(self.model, user, repeats, offered)
        log_p_repeat = torch.full((b,), -math.inf)
        if len(scores):
            log_choice = segment_log_softmax(scores, repeats.batch, b)  # [N]
            is_target = repeats.rows == targets[repeats.batch]  # [N]: at most one per history
            log_p_repeat = log_p_repeat.index_put((repeats.batch[is_target],), log_choice[is_target])
        # An unavailable mode has gate -inf: nothing added.
        model = torch.stack([log_p_repeat.detach(), log_p_new], dim=1)  # [B, 2]
        head = torch.stack([log_p_repeat[:n_fresh], log_p_head], dim=1)  # [n_fresh, 2]
        return (
            torch.logsumexp(log_gates.detach() + model, dim=1),
            torch.logsumexp(log_gates[:n_fresh] + head, dim=1),
        )

    def _seen_mask(
        self, examples: Sequence[Example], batch: Batch, candidates: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """``[B, C]``: True where a candidate is one of the example's history items (never its target).

        Where seen items are never recommended, pushing them down teaches the model nothing it will use.
        """
        owner, seen = seen_rows([h for h, _ in examples], self.vocab, batch)
        mask = torch.zeros(len(examples), len(candidates), dtype=torch.bool)
        if len(seen):
            seen_rows_t, owner_t = torch.from_numpy(seen), torch.from_numpy(owner)
            at = torch.searchsorted(candidates, seen_rows_t).clamp(max=len(candidates) - 1)  # candidates are sorted
            hit = candidates[at] == seen_rows_t
            mask[owner_t[hit], at[hit]] = True
        mask[torch.arange(len(examples)), labels] = False
        return mask

    # -- serving and state -------------------------------------------------------------------------------------

    def snapshot(self) -> Scorer:
        """A frozen copy of the model and the vocabulary to rank with (tens of milliseconds at 100,000 items)."""
        model, vocab, transitions = copy.deepcopy(self.model), self.vocab.copy(), self.transitions.snapshot()
        return Scorer(self.settings, model, vocab, transitions, steps=self.steps)

    def state_dict(self) -> dict[str, Any]:
        """Copies of everything the learner's future depends on: it can be packed and written while it learns on.

        Tensors are under ``"tensors"``; everything else is plain JSON-able data, but for ``"replay"`` (the
        buffer's examples, never changed once made), the drift detector's window (river's own bytes) and the
        transition counts (JSON bytes, :meth:`Transitions.to_json`).
        """
        tensors = {f"model.{name}": _copy(value) for name, value in self.model.state_dict().items()}
        optimizers = []
        for j, opt in enumerate(self.optimizers):
            state = opt.state_dict()
            scalars: dict[str, dict[str, Any]] = {}
            for index, values in state["state"].items():
                for key, value in values.items():
                    if torch.is_tensor(value):
                        tensors[f"opt{j}.{index}.{key}"] = _copy(value)
                    else:
                        scalars.setdefault(str(index), {})[key] = value
            optimizers.append({"param_groups": state["param_groups"], "scalars": scalars})
        tensors["rng.torch"] = self._gen.get_state()
        counters = {
            "steps": self.steps, "skipped_steps": self.skipped_steps, "examples": self.examples,
            "drifts": self.drifts, "boost_left": self._boost_left, "last_loss": self.last_loss,
            "rng": self._rng.getstate(),
        }  # fmt: skip
        drift_window = None
        if self._drift is not None:
            # river keeps ADWIN's window in Rust; its own serialisation is plain bytes (bincode).
            drift_window = bytes(self._drift._helper.__getstate__())
            counters["drift_detected"] = self._drift.drift_detected
        return {
            "settings": self.settings, "tensors": tensors, "optimizers": optimizers,
            "vocab": self.vocab.state_dict(), "counters": counters, "drift": drift_window,
            "replay": list(self.replay.examples), "transitions": self.transitions.to_json(),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Become the learner ``state`` (:meth:`state_dict`) describes; a malformed state raises ``ValueError`` (or
        ``KeyError``, ``TypeError``, ``RuntimeError``), a damaged drift window a ``ValueError``."""
        tensors = state["tensors"]
        self.vocab = Vocabulary.from_state_dict(state["vocab"])
        self.tables = ItemTables(self.model, self.vocab, self.settings.capacity, self._gen, self.optimizers)
        self.tables.grow_to(tensors["model.item_emb.weight"].shape[0])
        self.model.load_state_dict({key[6:]: value for key, value in tensors.items() if key.startswith("model.")})
        for j, (opt, saved) in enumerate(zip(self.optimizers, state["optimizers"], strict=True)):
            opt_state: dict[int, dict[str, Any]] = {}
            for key, value in tensors.items():
                if key.startswith(f"opt{j}."):
                    _, index, name = key.split(".", 2)
                    opt_state.setdefault(int(index), {})[name] = value
            for index, scalars in saved["scalars"].items():
                opt_state.setdefault(int(index), {}).update(scalars)
            opt.load_state_dict({"state": opt_state, "param_groups": saved["param_groups"]})
        self._gen.set_state(tensors["rng.torch"])
        self.transitions = Transitions.from_json(state["transitions"], self.vocab, evidence.LIMIT, evidence.GROUP_ITEMS)
        counters = state["counters"]
        self.steps, self.skipped_steps = counters["steps"], counters["skipped_steps"]
        self.examples = counters["examples"]
        self.drifts, self._boost_left = counters.get("drifts", 0), counters.get("boost_left", 0)
        self.last_loss = counters.get("last_loss", math.nan)
        if self._drift is not None and state.get("drift") is not None:
            self._restore_drift(state["drift"], counters.get("drift_detected", False))
        self.replay = ReplayBuffer(self.settings.replay_size)
        self.replay.examples = list(state["replay"])[: self.settings.replay_size]
        version, internal, gauss = counters["rng"]
        self._rng.setstate((version, tuple(internal), gauss))

    def _restore_drift(self, window: bytes, detected: bool) -> None:
        """Put ADWIN's saved window back; malformed bytes are a ``ValueError`` (river's Rust code panics on them)."""
        assert self._drift is not None
        try:
            self._drift._helper.__setstate__(window)
        except BaseException as exc:  # pyo3's PanicException derives from BaseException
            if type(exc).__name__ != "PanicException":
                raise
            raise ValueError(f"the drift detector's state cannot be read ({exc})") from None
        self._drift._drift_detected = detected

    # -- tables ------------------------------------------------------------------------------------------------

    @property
    def _sparse(self) -> list[torch.Tensor]:
        """The tables with sparse gradients: a step touches only the rows its batch reads."""
        m = self.model
        return [m.item_emb.weight, m.item_bias.weight, m.context_emb.weight, m.item_feature_emb.weight]

    def _make_optimizers(self) -> list[torch.optim.Optimizer]:
        s = self.settings
        head = list(self.model.head.parameters())
        dense: list[dict[str, Any]] = [
            {"params": [p for p in self._dense if all(p is not q for q in head)]},
            {"params": head, "lr": s.head_lr},
        ]
        if s.optimizer == "adagrad":
            sparse = SparseAdagrad(self._sparse, lr=s.lr, initial_accumulator_value=s.accumulator_init)
            return [sparse, torch.optim.Adagrad(dense, lr=s.lr)]
        return [torch.optim.SparseAdam(self._sparse, lr=s.lr), torch.optim.Adam(dense, lr=s.lr)]


def _copy(value: torch.Tensor) -> torch.Tensor:
    return value.detach().clone(memory_format=torch.contiguous_format)
