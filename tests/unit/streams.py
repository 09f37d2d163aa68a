"""Toy streams shared by the unit tests."""

from __future__ import annotations

import random

from stream_rec.learning.learner import Example
from stream_rec.sequences import Step

T0 = 1.6e9


def planted(users: int = 30, items: int = 20, length: int = 12, seed: int = 0) -> list[Example]:
    """Users' streams of random items where ``a`` comes often and is always followed by ``b``."""
    rng = random.Random(seed)
    catalogue = [f"i{k}" for k in range(items)]
    examples: list[Example] = []
    for u in range(users):
        history: list[Step] = []
        t = T0 + 1000 * u
        for _ in range(length):
            item = "b" if history and history[-1].item == "a" else "a" if rng.random() < 0.3 else rng.choice(catalogue)
            step = Step(item, "view", t, user=f"u{u}")
            examples.append((list(history), step))
            history.append(step)
            t += 60
    return examples
