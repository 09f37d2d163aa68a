"""The replay buffer: past examples the learner steps on again beside new ones, and their checkpoint form.

A bounded reservoir: while there is room every new example is kept, then each takes the place of a random old
one, so old examples fade out. The learner draws from it with its own random generator, so that a resumed
learner draws exactly what the original would have.

In a checkpoint the buffer is columns (:meth:`ReplayBuffer.to_tensors`): every example's steps one after
another, its event last. ``replay.lengths`` holds each example's number of steps, ``replay.ts`` their times,
``replay.codes`` each step's event type, context and item features as indices into lists of the distinct ones,
which go with the item and user ids into one zlib-compressed JSON object (``replay.json.zlib``). Distinct
contexts are few, so the file stays small and reading it back makes a few dicts, not one per step. Reading it
checks every column: a damaged one is a clear error.

>>> import random
>>> from stream_rec.sequences import Step
>>> buffer = ReplayBuffer(size=2)
>>> a, b, c = (([], Step(x, "view", 1e9, user=x)) for x in "abc")
>>> buffer.add([a, b, c], random.Random(0))
>>> len(buffer), buffer.forget("b") + buffer.forget("c"), len(buffer)
(2, 1, 1)
"""

from __future__ import annotations

import atexit
import gc
import itertools
import random
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import torch

from ..errors import CheckpointError
from ..sequences import Example, Step

__all__ = ["ReplayBuffer", "spare_the_collector"]

_MAX_BYTES = 1 << 30  # inflated: a damaged or hostile blob cannot take all memory


class ReplayBuffer:
    """At most ``size`` past examples."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.examples: list[Example] = []

    def __len__(self) -> int:
        return len(self.examples)

    def add(self, examples: Sequence[Example], rng: random.Random) -> None:
        """Keep ``examples``: appended while there is room, then each in the place of a random old one."""
        if self.size == 0:
            return
        for example in examples:
            if len(self.examples) < self.size:
                self.examples.append(example)
            else:
                self.examples[rng.randrange(self.size)] = example

    def sample(self, n: int, rng: random.Random) -> list[Example]:
        """``n`` distinct examples drawn at random (at most as many as there are)."""
        return rng.sample(self.examples, min(n, len(self.examples)))

    def forget(self, user: str) -> int:
        """Drop every example of ``user``'s (by its event's user); return how many."""
        kept = [example for example in self.examples if example[1].user != user]
        dropped = len(self.examples) - len(kept)
        self.examples = kept
        return dropped

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The examples as checkpoint columns (see the module's docstring)."""
        examples = list(self.examples)  # examples are never changed once made
        if not examples:
            return {}
        with _no_gc():
            steps = [step for history, event in examples for step in (*history, event)]
            events, event_codes = _distinct([s.event for s in steps])
            contexts, context_codes = _distinct([_json_or_none(s.context) for s in steps])
            features, feature_codes = _distinct([_json_or_none(s.features) for s in steps])
            strings = {
                "item": [s.item for s in steps], "user": [s.user for s in steps], "event": events,
                "context": contexts, "features": features,
            }  # fmt: skip
        return {
            "replay.lengths": torch.tensor([len(history) + 1 for history, _ in examples], dtype=torch.int32),
            "replay.ts": torch.tensor([s.ts for s in steps], dtype=torch.float64),
            "replay.codes": torch.tensor([event_codes, context_codes, feature_codes], dtype=torch.int32).reshape(3, -1),
            "replay.json.zlib": torch.frombuffer(bytearray(zlib.compress(orjson.dumps(strings), 1)), dtype=torch.uint8),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], size: int, where: object) -> ReplayBuffer:
        """The buffer of a checkpoint's columns (its newest ``size`` examples); :class:`CheckpointError` naming
        ``where`` if they are damaged."""
        buffer = cls(size)
        if "replay.json.zlib" in tensors:
            buffer.examples = _unpack(tensors, where)[:size]
        return buffer


def _json_or_none(value: dict[str, Any] | None) -> str | None:
    # As text: orjson's bytes keep a larger buffer, and a million of them at once took seconds to allocate.
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@contextmanager
def _no_gc() -> Iterator[None]:
    """Without the cyclic collector, which would rescan the growing heap of a million new tuples many times."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _distinct(values: list[Any]) -> tuple[list[Any], list[int]]:
    """The distinct values in order of appearance, and each value's index among them."""
    index: dict[Any, int] = {}
    codes = [index.setdefault(value, len(index)) for value in values]
    return list(index), codes


def _unpack(tensors: dict[str, torch.Tensor], where: object) -> list[Example]:
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(bytes(tensors["replay.json.zlib"].numpy()), _MAX_BYTES)
        if inflater.unconsumed_tail:
            raise ValueError(f"over {_MAX_BYTES} bytes inflated")
        strings = orjson.loads(data)
        items, users, events = strings["item"], strings["user"], strings["event"]
        contexts = [None if c is None else orjson.loads(c) for c in strings["context"]]
        features = [None if f is None else orjson.loads(f) for f in strings["features"]]
        lengths, ts, codes = tensors["replay.lengths"].tolist(), tensors["replay.ts"].tolist(), tensors["replay.codes"]
        if codes.dtype != torch.int32 or codes.dim() != 2 or codes.shape[0] != 3 or min(lengths, default=1) < 1:
            raise ValueError("its step codes or lengths are malformed")
        if not len(items) == len(users) == len(ts) == codes.shape[1] == sum(lengths):
            raise ValueError("its columns disagree in length")
        if not all(isinstance(value, str) for value in (*items, *events)):
            raise ValueError("item ids and event types must be strings")
        if not all(value is None or isinstance(value, dict) for value in (*contexts, *features)):
            raise ValueError("contexts and item features must be objects")
        sizes = torch.tensor([len(events), len(contexts), len(features)], dtype=torch.int32).unsqueeze(1)
        if bool(((codes < 0) | (codes >= sizes)).any()):
            raise ValueError("a step refers to a value that is not there")
    except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: the replay buffer cannot be read ({exc})") from None
    event_codes, context_codes, feature_codes = codes.tolist()
    with _no_gc():
        steps = [
            Step(item, events[e], t, contexts[c], features[f], user)
            for item, e, t, c, f, user in zip(items, event_codes, ts, context_codes, feature_codes, users, strict=True)
        ]
        replay: list[Example] = []
        start = 0
        for n in lengths:
            replay.append((steps[start : start + n - 1], steps[start + n - 1]))
            start += n
    return replay


_FULL_COLLECTION_EVERY = 100  # gen1 collections between Python's full collections (its default: 10)
_WALK_ALL_EVERY = 10  # full collections between two that walk the frozen objects too
_survivors_frozen = False


def spare_the_collector() -> None:
    """Make Python's full garbage collections rarer and shorter: a full replay buffer is about a million history
    steps (named tuples, which the collector never stops tracking), and each full collection walks them all:
    0.25-0.6 s, 18 times in 30,000 MovieLens events, a tenth of the engine's time and a pause of every thread
    (``bench_engine.py --gc``). The threshold is only raised, never lowered; see ``_freeze_survivors``."""
    young, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, max(full, _FULL_COLLECTION_EVERY))
    _freeze_survivors()


def _freeze_survivors() -> None:
    """Leave what is alive now, and what survives each full collection, out of the next full collections
    (``gc.freeze``): modules, the model and the replay buffer's steps live long, and a full collection need not
    walk them each time. Every ``_WALK_ALL_EVERY``-th full collection walks everything again (``gc.unfreeze``
    first), so a reference cycle among frozen objects that has died since is still reclaimed. Once a process."""
    global _survivors_frozen
    if _survivors_frozen:
        return
    _survivors_frozen = True
    full_collections = itertools.count(1)

    def after(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            if next(full_collections) % _WALK_ALL_EVERY:
                gc.freeze()
            else:
                gc.unfreeze()  # the next full collection walks everything

    def at_exit() -> None:  # everything collected as usual at exit, when extensions check for leaks
        gc.callbacks.remove(after)
        gc.unfreeze()

    gc.freeze()
    gc.callbacks.append(after)
    atexit.register(at_exit)
