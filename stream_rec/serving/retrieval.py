"""Approximate retrieval over large catalogues: a faiss index of a snapshot's item table, rebuilt beside serving.

Exact ranking scores every item for every event (ranking.py): its cost grows with the catalogue. From a size on
(:class:`~stream_rec.settings.Retrieval`), a snapshot ranks from candidates instead: an inverted-file index
(faiss's ``IndexIVFFlat``) gives each user the ``candidates`` items nearest its vector, which are rescored with
the snapshot's own vectors and merged with what the model's other modes bring (the user's own items, the
evidence of counting), as exact ranking merges them; ranking.py's :func:`~stream_rec.serving.ranking.top_k_among`.

Scores are inner products plus a bias, ``u . w + b``. The index holds ``[w, b, sqrt(M - |w|^2 - b^2)]`` (``M``
the largest ``|w|^2 + b^2``) and is asked with ``[u, 1, 0]``: the squared distance is ``|u|^2 + 1 + M - 2 (u . w
+ b)``, so the nearest items are the best scored (maximum inner product search reduced to nearest neighbours,
Bachrach et al., 2014), and the coarse quantizer's k-means clusters by distance, as it does best.

The index follows a learning model by being rebuilt: an :class:`Indexer` builds one from the newest snapshot in a
thread of its own every ``rebuild_every`` seconds and attaches the newest finished one to each snapshot
published (and to the one serving when a build ends), whole, under the snapshot's lock: a ranking reads the
index it had or the new one, never one half built or half swapped. Between
builds the item vectors move on. Candidates are rescored with the snapshot's vectors, so a stale index costs
recall, never a wrong score, and the rows it does not hold (items admitted since it was built) are scored exactly
beside its candidates.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..items.vocab import Vocabulary
from ..settings import Retrieval

if TYPE_CHECKING:
    from .scoring import Scorer

__all__ = ["Indexer", "ItemIndex", "build_index"]

log = logging.getLogger(__name__)

SAMPLE = 1024  # rows drawn for the estimate of the softmax's normaliser (ranking.top_k_among)
TRAIN_PER_LIST = 32  # k-means training points per list (faiss wants at least 39; fewer, for the build's time)
TRAIN_ITERATIONS = 10
STALE_SHARE = 0.25  # rows an index does not know, as a share of the vocabulary, past which ranking is exact


@dataclass(eq=False)
class ItemIndex:
    """One build: the faiss index over the rows of a snapshot's item table that held items, and what it knew."""

    index: Any  # faiss.IndexIVFFlat
    rows: int  # the table's rows when built: later rows are unknown to it
    clock: int  # the vocabulary's clock when built: rows seen after it moved since
    evicted: int  # items the vocabulary had evicted when built: after more, rows may hold other items
    version: str  # the snapshot's it was built from
    sample: np.ndarray  # uniformly drawn rows of those indexed (for the normaliser's estimate)
    population: int  # rows indexed
    seconds: float  # the build's time
    built: float = field(default_factory=time.time)

    def search(self, user: np.ndarray, n: int, probe: int) -> np.ndarray:
        """The ``n`` best rows for each user vector ``[B, D]`` (``[B, n]``, ``-1`` where there are fewer)."""
        faiss = _faiss()

        query = np.zeros((len(user), user.shape[1] + 2), dtype=np.float32)
        query[:, : user.shape[1]] = user
        query[:, user.shape[1]] = 1.0
        params = faiss.SearchParametersIVF()
        params.nprobe = probe
        _, rows = self.index.search(query, n, params=params)
        return rows

    def unknown(self, vocab: Vocabulary) -> np.ndarray:
        """The rows of ``vocab`` this index does not hold: rows made since it was built, and rows handed to other
        items since (where the vocabulary evicted any: every row seen since); sorted, unique. (A snapshot adds the
        rows it gives to items of its own.) Rows whose vectors learning moved since stay in the index where they
        were, and are found there as long as they moved little: rescored, they rank as they should."""
        newer = np.arange(min(self.rows, vocab.rows), vocab.rows)
        reused = np.zeros(0, dtype=np.int64)
        if vocab.evicted > self.evicted:
            reused = np.flatnonzero(vocab.last_seen[: vocab.rows] > self.clock)
        rows = np.unique(np.concatenate([newer, reused]).astype(np.int64))
        return rows[rows > 0]


def _faiss() -> Any:
    """faiss, on one thread: its OpenMP runtime is not torch's, and its idle threads spinning beside torch's made
    encoding several times slower; one user's search is too small to share, and a build runs beside serving."""
    # Its loader says at INFO which CPU build it found (and that the wheel has no AVX2 one): nothing to act on.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    faiss.omp_set_num_threads(1)
    return faiss


def build_index(
    weight: np.ndarray,
    bias: np.ndarray,
    *,
    clock: int,
    version: str,
    settings: Retrieval,
    evicted: int = 0,
    seed: int = 0,
) -> ItemIndex:
    """An index over the rows of ``weight`` ``[R, D]`` whose ``bias`` ``[R]`` is finite (row 0, padding, never)."""
    faiss = _faiss()

    started = time.perf_counter()
    rows = np.flatnonzero(np.isfinite(bias))
    rows = rows[rows > 0]
    if not len(rows):
        raise ValueError("no items to index")
    d = weight.shape[1]
    x = np.empty((len(rows), d + 2), dtype=np.float32)
    x[:, :d], x[:, d] = weight[rows], bias[rows]
    norms = np.einsum("nd,nd->n", x[:, : d + 1], x[:, : d + 1])
    x[:, d + 1] = np.sqrt(np.maximum(norms.max() - norms, 0.0))
    lists = settings.lists or round(4 * math.sqrt(len(rows)))
    lists = max(1, min(lists, len(rows) // 4 or 1))
    quantizer = faiss.IndexFlatL2(d + 2)
    index = faiss.IndexIVFFlat(quantizer, d + 2, lists)
    index.cp.niter, index.cp.seed, index.cp.min_points_per_centroid = TRAIN_ITERATIONS, seed, 1
    rng = np.random.default_rng(seed)
    train = x if len(x) <= TRAIN_PER_LIST * lists else x[rng.choice(len(x), TRAIN_PER_LIST * lists, replace=False)]
    index.train(train)
    index.add_with_ids(x, rows.astype(np.int64))
    sample = rows if len(rows) <= SAMPLE else np.sort(rng.choice(rows, SAMPLE, replace=False))
    return ItemIndex(
        index, len(weight), clock, evicted, version, sample, len(rows), time.perf_counter() - started
    )  # fmt: skip


class Indexer:
    """Keeps an index following the snapshots ``attach`` is given (when ranking from one is on), built in a
    thread beside serving every ``rebuild_every`` seconds; ``build_now`` builds in the caller's thread (tools)."""

    def __init__(self, settings: Retrieval, *, background: bool = True) -> None:
        self.settings = settings
        self.background = background
        self.newest: ItemIndex | None = None
        self.builds = 0
        self.failed = 0
        self._building = False
        self._last_start = -math.inf
        self._latest: Scorer | None = None  # the snapshot attached last
        self._lock = threading.Lock()

    def wanted(self, scorer: Scorer) -> bool:
        """Whether ``scorer`` ranks from an index (once one is built)."""
        mode = self.settings.mode
        return mode == "index" or (mode == "auto" and len(scorer.vocab) >= self.settings.index_from)

    def attach(self, scorer: Scorer) -> Scorer:
        """``scorer``, given the newest index built (where it ranks from one), a build started where one is due.
        The snapshot attached last (the one serving) is given each index built later, as the build ends: a
        model that learns nothing publishes no new snapshot to carry it."""
        if not self.wanted(scorer):
            with self._lock:
                self._latest = None
            return scorer
        now = time.monotonic()
        with self._lock:
            newest, self._latest = self.newest, scorer
            due = not self._building and now - self._last_start >= self.settings.rebuild_every
            if due:
                self._building, self._last_start = True, now
        if newest is not None:
            scorer.use_index(newest, self.settings)
        if due and self.background:
            threading.Thread(target=self._build, args=(scorer,), name="stream-rec-index", daemon=True).start()
        elif due:
            self._build(scorer)
        return scorer

    def build_now(self, scorer: Scorer) -> ItemIndex:
        """An index of ``scorer``'s table, built now in this thread, and ``scorer`` ranking from it."""
        index = _build_for(scorer, self.settings)
        self.newest, self.builds, self._last_start = index, self.builds + 1, time.monotonic()
        scorer.use_index(index, self.settings)
        return index

    def _build(self, scorer: Scorer) -> None:
        if self.background:
            _lower_priority()
        try:
            index = _build_for(scorer, self.settings)
        except Exception as exc:  # serving goes on exactly, or with the older index
            self.failed += 1
            log.warning("item index not built (%s); ranking goes on with %s", exc,
                        "the older one" if self.newest else "every item scored")  # fmt: skip
        else:
            with self._lock:
                self.newest, self.builds, latest = index, self.builds + 1, self._latest
            if latest is not None:
                latest.use_index(index, self.settings)  # whole, between two of its rankings
            log.info("item index of %d items built in %.1f s (%s)", index.population, index.seconds, index.version)
        finally:
            with self._lock:
                self._building = False

    def stats(self) -> dict[str, Any]:
        """The index as the web view shows it."""
        index = self.newest
        return {
            "index_items": index.population if index else 0, "index_version": index.version if index else None,
            "index_age_s": round(time.time() - index.built, 1) if index else None,
            "index_build_s": round(index.seconds, 2) if index else None, "index_builds": self.builds,
        }  # fmt: skip


def _build_for(scorer: Scorer, settings: Retrieval) -> ItemIndex:
    weight, bias = scorer.prepared()
    with scorer.lock:  # the rows the copy gave to items of its own are its own: no other snapshot has them
        rows, own = scorer.vocab.rows, np.fromiter(scorer.own_rows, dtype=np.int64, count=len(scorer.own_rows))
    appended = own[own >= rows - len(own)]  # the copy's rows past the learner's: other items in the next snapshot
    if len(appended):
        rows = int(appended.min())
    bias = bias[:rows].copy()
    bias[own[own < rows]] = -np.inf
    return build_index(
        weight[:rows], bias, clock=scorer.vocab.clock, version=scorer.version, settings=settings,
        evicted=scorer.vocab.evicted, seed=scorer.settings.seed,
    )  # fmt: skip


def _lower_priority() -> None:
    """This thread at a lower priority than serving's (Linux: a thread's niceness is its own), so that a build
    takes what serving leaves of the cores."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
