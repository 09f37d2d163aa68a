"""The online learner: the step, its guards and the model's state; a serving snapshot is what inference reads.

A step takes a micro-batch of (history, next event) examples, mixes in replayed ones (replay.py), computes a
softmax loss over the items (full while the vocabulary is small, else sampled: sampling.py, with every item the
evidence offers in the set), skips and counts a step whose loss is not finite, and updates (optim.py: clipped,
the learning rate raised for a while when the running loss rises). Item tables are sparse, so a step costs in
proportion to its batch, not to the vocabulary; model/tables.py keeps them in step with the vocabulary. The loss
is that of the mixture of the repeat, offered and new modes (model/head.py, losses.py; evidence.py counts what
followed and went with what), or of the new mode alone where neither the repeat mode nor the evidence is on.

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

from ..items import evidence
from ..items.features import encode_histories
from ..items.transitions import Transitions
from ..items.vocab import Vocabulary
from ..model import SequenceModel
from ..model.tables import ItemTables
from ..sequences import Example
from ..serving.inputs import evidence_of, seen_rows, without
from ..serving.scoring import Scorer
from ..settings import ModelSettings
from . import losses, sampling
from .optim import Updater
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
        self.updater = Updater(self.model, s)
        self.tables = ItemTables(self.model, self.vocab, s.capacity, self._gen, self.updater.optimizers)
        self.replay = ReplayBuffer(s.replay_size)
        self.steps = 0
        self.skipped_steps = 0
        self.examples = 0
        self.last_loss = math.nan

    # -- learning ----------------------------------------------------------------------------------------------

    def learn(self, examples: Sequence[Example]) -> None:
        """Take gradient steps on ``examples`` (in order, ``settings.batch`` at a time)."""
        s = self.settings
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
        for start in range(0, len(usable), s.batch):
            fresh = usable[start : start + s.batch]
            n_replay = min(len(self.replay), round(len(fresh) * s.replay))
            mixed = fresh + self.replay.sample(n_replay, self._rng) if n_replay else fresh
            self._step(mixed, len(fresh))
            self.replay.add(fresh, self._rng)
        if s.evidence:  # after the steps: an example never sees its own counts
            evidence.count(self.transitions, self.vocab, examples, s.evidence_window, s.groups)
        self.model.item_count.index_add_(0, torch.tensor(rows, dtype=torch.long), torch.ones(len(rows)))
        self.model.item_count[0] = 0.0
        self.examples += len(examples)

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
        if s.exclude_seen:  # never ranked for the user: no evidence to weigh, nor a share of the offered mode
            offered = without(offered, *seen_rows(histories, self.vocab, batch), self.vocab.rows)
        offered_rows = torch.from_numpy(offered.rows)
        candidates, labels, log_q = sampling.candidates(  # [C], [B], [C]
            self.vocab, targets, s.negatives, s.full_softmax_below, self._gen, offered_rows
        )
        emb = self.model.item_vectors(candidates)  # [C, D]
        bias = F.embedding(candidates, self.model.item_bias.weight, sparse=True).squeeze(-1)  # [C]
        if s.popularity:
            bias = bias + self.model.item_prior(candidates)
        logits = losses.affinity(s.scoring, user, emb, bias)  # [B, C]: the sequence model's
        head = self.model.head
        scale = head.explore_scale()
        owner = torch.from_numpy(offered.batch)
        at = (owner, torch.searchsorted(candidates, offered_rows))  # each offered item's place: [N], [N]
        add = head.evidence_scores(user, owner, torch.from_numpy(offered.values))  # [N]
        mask = losses.seen_mask(examples, self.vocab, batch, candidates, labels) if s.exclude_seen else None

        def new_mode(neural: torch.Tensor, added: torch.Tensor) -> torch.Tensor:  # [B, C] logits
            scores = sampling.corrected(neural.index_put(at, added, accumulate=True), log_q, labels, at)
            if mask is not None:
                scores = scores.masked_fill(mask, float("-inf"))  # never recommended, so nothing to learn there
            return scores

        rows, fresh = torch.arange(len(examples)), slice(0, n_fresh)
        # The sequence model learns from every example with the head held fixed; the head from the new ones, the
        # way it will be served (model/head.py).
        learn_model = new_mode(logits * scale.detach(), add.detach())
        head_logits = new_mode(logits.detach() * scale, add)[fresh]
        if s.mixture:
            chosen = head.offered_scale()  # the offered mode's logits: certain items, nothing to correct
            offered_logits = (logits[at] * chosen.detach() + add.detach(), logits.detach()[at] * chosen + add)
            log_p, log_p_head = losses.mixture(
                self.model, user, batch if self.repeats else None, offered, targets, at, labels,
                (learn_model, head_logits), offered_logits,
            )  # fmt: skip
        else:
            log_p = F.log_softmax(learn_model, dim=1)[rows, labels]  # [B]
            log_p_head = F.log_softmax(head_logits, dim=1)[rows[fresh], labels[fresh]]  # [n_fresh]
        if s.scoring == "sigmoid":
            # A binary loss per item: the target against every other candidate (masked ones left out).
            truth = torch.zeros_like(learn_model)
            truth[rows, labels] = 1.0
            weight = torch.isfinite(learn_model).float()
            scores = learn_model.nan_to_num(0.0, neginf=0.0)
            loss = F.binary_cross_entropy_with_logits(scores, truth, weight=weight) - log_p_head.sum() / len(examples)
        else:
            loss = -(log_p.sum() + log_p_head.sum()) / len(examples)
        self.updater.zero_grad()
        if not torch.isfinite(loss):
            self.skipped_steps += 1  # a NaN step would poison every weight it touches
            return
        loss.backward()
        self.last_loss = loss.item()
        self.updater.step(self.last_loss)
        self.steps += 1

    def admit(self, items: Sequence[str]) -> int:
        """Give rows to ``items`` without counting a sighting (a catalogue known up front: they can be ranked
        before their first event); the number of items new to the vocabulary."""
        before = len(self.vocab)
        self.tables.make_room(self.vocab.reserve(items))
        self.transitions.forget(self.vocab.take_gone())
        return len(self.vocab) - before

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
        updater = self.updater
        for j, opt in enumerate(updater.optimizers):
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
            "drifts": updater.drifts, "boost_left": updater.boost_left, "last_loss": self.last_loss,
            "rng": self._rng.getstate(),
        }  # fmt: skip
        drift_window = None
        if (saved := updater.drift_window()) is not None:
            drift_window, counters["drift_detected"] = saved
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
        self.tables = ItemTables(self.model, self.vocab, self.settings.capacity, self._gen, self.updater.optimizers)
        self.tables.grow_to(tensors["model.item_emb.weight"].shape[0])
        self.model.load_state_dict({key[6:]: value for key, value in tensors.items() if key.startswith("model.")})
        updater = self.updater
        for j, (opt, saved) in enumerate(zip(updater.optimizers, state["optimizers"], strict=True)):
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
        updater.drifts, updater.boost_left = counters.get("drifts", 0), counters.get("boost_left", 0)
        self.last_loss = counters.get("last_loss", math.nan)
        if state.get("drift") is not None:
            updater.restore_drift(state["drift"], counters.get("drift_detected", False))
        self.replay = ReplayBuffer(self.settings.replay_size)
        self.replay.examples = list(state["replay"])[: self.settings.replay_size]
        version, internal, gauss = counters["rng"]
        self._rng.setstate((version, tuple(internal), gauss))


def _copy(value: torch.Tensor) -> torch.Tensor:
    return value.detach().clone(memory_format=torch.contiguous_format)
