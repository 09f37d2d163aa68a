"""Pure: exact top-k of ``user · item + bias`` (plus a few per-user terms) over a large vocabulary, optionally as
mixture log-probabilities.

The naive way materialises the ``[B, rows]`` score matrix, then runs a log-sum-exp and a top-k over it: several
passes over tens of megabytes of freshly allocated memory per batch, slower than the matrix product itself. Here
the vocabulary is scored a block of columns at a time (the block stays in cache) and each block leaves only

- the maximum of every ``sub``-item slice of each row, and
- each row's sum of ``exp(score)`` (only where a softmax normaliser is asked for; see ``_log_normaliser``).

The ``n`` best items of a row lie in the slices with the ``n`` largest maxima (each such slice holds an item at
least as good as the ``n``-th best), so those few slices are rescored exactly and ranked: the result is the
exact top-k, at the cost of one matrix product plus ``O(B * n * sub)`` work.

Items with ``extra`` terms (the evidence that counting offers for a user, which adds to the item's score, and in
the mixture the user's own items, which also carry a repeat share) score ``logaddexp(score + add, share)``;
``exclude``\\ d items never appear. Both are few per row: they are left out of the slice maxima (so the slices
picked hold the ``k`` best of the other items) and the extra ones are scored on their own.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["Ranked", "top_k", "top_k_among"]

Ranked = tuple[np.ndarray, np.ndarray]  # rows [B, k] int64 and scores [B, k] float32, best first; -inf = none


def top_k(
    user: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    k: int,
    *,
    log_explore: np.ndarray | None = None,
    extra: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    exclude: tuple[np.ndarray, np.ndarray] | None = None,
    block: int | None = None,
    sub: int = 8,
) -> Ranked:
    """The ``k`` best rows of ``weight`` for each user, scored ``s = user @ weight.T + bias``.

    - ``user`` ``[B, D]``, ``weight`` ``[R, D]``, ``bias`` ``[R]`` (``-inf`` marks a row never to rank).
    - ``extra`` ``(batch [N], rows [N], add [N], log_share [N])``: add ``add`` to the score of those ``(b, row)``
      pairs (each pair at most once), then probability mass ``exp(log_share)`` (``-inf``: none), so that
      ``score = logaddexp(s + add, log_share)``.
    - ``log_explore`` ``[B]``: rank by ``log_explore[b] + log_softmax(s[b] + add[b])`` instead (a mixture's share
      of the mode whose logits these are), before the ``log_share``.
    - ``exclude`` ``(batch [M], rows [M])``: never rank those pairs.

    Returns rows ``[B, k]`` and scores ``[B, k]``, best first; where a row has fewer than ``k`` rankable items
    the tail has score ``-inf``. ``block`` items are scored at a time (default: see ``BLOCK_FLOATS``).
    """
    b_size, r_size = user.shape[0], weight.shape[0]
    if block is None:
        block = max(MIN_BLOCK, BLOCK_FLOATS // max(b_size, 1))
    block -= block % sub
    special_batch, special_rows, special_add = _special(extra, exclude)
    # Special pairs by row, so that each block finds its own: they are masked out of its slice maxima.
    by_row = np.argsort(special_rows, kind="stable")
    sorted_rows = special_rows[by_row]
    masked_rows, masked_batch = torch.from_numpy(sorted_rows), torch.from_numpy(special_batch[by_row])
    masked_add = torch.from_numpy(special_add[by_row])
    wanted = min(k, r_size)
    n_sub = -(-r_size // sub)
    # Items x users: the slice maxima then reduce a middle axis over contiguous users (vectorised), where
    # users x items would reduce 8 floats at a time. Every pass writes into buffers made once: fresh large
    # tensors cost page faults that take longer than the arithmetic.
    weight_t, user_t = torch.from_numpy(weight), torch.from_numpy(np.ascontiguousarray(user.T, dtype=np.float32))
    bias_t = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
    buffer = torch.empty(min(block, r_size), b_size)
    slice_max = torch.empty(n_sub, b_size)  # [slices, B]
    normalise = log_explore is not None
    total = torch.zeros(b_size, dtype=torch.float64)  # sum of exp(s), unshifted: see _log_normaliser
    kept_scores, kept_batch = [], []
    for start in range(0, r_size, block):
        scores = torch.mm(weight_t[start : start + block], user_t, out=buffer[: min(block, r_size - start)])
        scores += bias_t[start : start + block, None]  # [w, B]
        width = scores.shape[0]
        lo, hi = np.searchsorted(sorted_rows, (start, start + width))
        mask = (masked_rows[lo:hi] - start, masked_batch[lo:hi])
        kept = scores[mask] + masked_add[lo:hi]
        scores[mask] = -math.inf
        whole = width - width % sub
        first = start // sub
        torch.amax(scores[:whole].view(-1, sub, b_size), dim=1, out=slice_max[first : first + whole // sub])
        if whole < width:
            slice_max[first + whole // sub] = scores[whole:].amax(dim=0)
        if normalise:
            scores[mask] = kept  # (every item is in the normaliser, with its added terms)
            total += scores.mul_(_LOG2E).exp2_().sum(dim=0)  # torch's exp2 is twice as fast as its exp here
            kept_scores.append(kept)
            kept_batch.append(mask[1])
    if normalise:
        lse = _log_normaliser(total, slice_max, kept_scores, kept_batch, user, weight, bias)
    # The slices that can hold a row's `wanted` best items, rescored exactly (a top-k down the slices' axis:
    # no transposed copy of the maxima).
    n_pick = min(wanted, n_sub)
    picked = torch.topk(slice_max, n_pick, dim=0, sorted=False).indices.T.numpy()  # [B, n_pick]
    rows = (picked[:, :, None] * sub + np.arange(sub)).reshape(b_size, -1)  # [B, C]
    outside = rows >= r_size
    rows = np.where(outside, 0, rows)
    cand = np.matmul(weight[rows], user[:, :, None])[:, :, 0] + bias[rows]  # [B, C]
    cand[outside] = -np.inf
    offset = (log_explore - lse).astype(np.float32) if normalise else None  # [B]
    return _finish(user, weight, bias, k, rows, cand, offset, extra, exclude)


def top_k_among(
    user: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    k: int,
    candidates: np.ndarray,
    shared: np.ndarray,
    *,
    log_explore: np.ndarray | None = None,
    extra: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    exclude: tuple[np.ndarray, np.ndarray] | None = None,
    sample: np.ndarray | None = None,
    population: int = 0,
) -> Ranked:
    """As :func:`top_k`, ranking only each user's ``candidates`` ``[B, C]`` (rows, ``-1`` for none: an index's
    answer, its best first or not) and the ``shared`` rows ``[F]`` every user's list holds (the rows an index
    does not know yet; none of them among the candidates), with the extra items as ever.

    With ``log_explore`` the softmax's normaliser over the whole vocabulary is estimated: exactly over what is
    ranked, plus the rest's share from ``sample`` (rows drawn uniformly from ``population`` rows): each sampled
    row scoring below all of a user's candidates stands for ``population / len(sample)`` rows (the ones above are
    the candidates, counted already). Excluded items are left out of it (exclusion comes with no mixture). Its
    error only moves a user's new-mode scores against its own items' shares, never the new items' order among
    themselves.
    """
    b_size, r_size = user.shape[0], weight.shape[0]
    outside = candidates < 0
    rows = np.where(outside, 0, candidates)
    cand = np.matmul(weight[rows], user[:, :, None])[:, :, 0] + bias[rows]  # [B, C]
    cand[outside] = -np.inf
    with np.errstate(invalid="ignore"):
        lowest = np.where(outside, np.inf, cand).min(axis=1, initial=np.inf)  # [B]: the index's worst candidate
    if len(shared):
        rows = np.concatenate([rows, np.broadcast_to(shared, (b_size, len(shared)))], axis=1)
        cand = np.concatenate([cand, user @ weight[shared].T + bias[shared]], axis=1)
    cand = cand.astype(np.float32, copy=False)
    special_batch, special_rows, _ = _special(extra, exclude)
    if len(special_batch):  # they leave the candidate lists, and come back (boosted) as columns of their own
        keys = (np.arange(b_size)[:, None] * r_size + rows).ravel()
        cand.ravel()[_member(keys, special_batch * r_size + special_rows)] = -np.inf
    offset = None
    if log_explore is not None:
        lse = _estimated_normaliser(user, weight, bias, cand, lowest, shared, extra, sample, population)
        offset = (log_explore - lse).astype(np.float32)
    return _finish(user, weight, bias, k, rows, cand, offset, extra, exclude, masked=True)


def _estimated_normaliser(
    user: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    cand: np.ndarray,
    lowest: np.ndarray,
    shared: np.ndarray,
    extra: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
    sample: np.ndarray | None,
    population: int,
) -> np.ndarray:
    """Each user's ``log(sum(exp(s + add)))`` over every row: exact over the ranked rows (scored ``cand``, the
    extra ones masked) and the extra items (with what they add), and the rest estimated from ``sample`` (sorted):
    the sampled rows scoring below ``lowest`` (each user's worst candidate; see :func:`top_k_among`), neither
    extra nor ``shared``."""
    b_size = user.shape[0]
    batch, items, own = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if extra is not None and len(extra[0]):
        batch, items, add = (np.asarray(x) for x in extra[:3])
        own = (np.einsum("nd,nd->n", user[batch], weight[items]) + bias[items] + add).astype(np.float32)
    sampled = np.full((b_size, 0), -np.inf, dtype=np.float32)
    if sample is not None and len(sample):
        sampled = user @ weight[sample].T + bias[sample]  # [B, S]
        sampled[sampled >= lowest[:, None]] = -np.inf  # among the candidates: counted exactly
        for owner, counted in ((batch, items), (slice(None), shared)):  # the extra and shared rows too
            at = np.searchsorted(sample, counted).clip(max=len(sample) - 1)
            found = sample[at] == counted
            sampled[owner[found] if isinstance(owner, np.ndarray) else owner, at[found]] = -np.inf
    top = np.maximum(cand.max(axis=1, initial=-np.inf), sampled.max(axis=1, initial=-np.inf))
    np.maximum.at(top, batch, own)
    top[~np.isfinite(top)] = 0.0
    total = np.exp(cand - top[:, None]).sum(axis=1, dtype=np.float64)
    total += np.bincount(batch, np.exp(own - top[batch]), b_size)
    if sampled.shape[1]:
        total += np.exp(sampled - top[:, None]).sum(axis=1, dtype=np.float64) * (max(population, 1) / sampled.shape[1])
    with np.errstate(divide="ignore"):
        return (top + np.log(total)).astype(np.float32)


def _finish(
    user: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    k: int,
    rows: np.ndarray,
    cand: np.ndarray,
    offset: np.ndarray | None,
    extra: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
    exclude: tuple[np.ndarray, np.ndarray] | None,
    *,
    masked: bool = False,
) -> Ranked:
    """The ``k`` best of the candidate ``rows`` ``[B, C]`` scored ``cand`` (at the mixture's ``offset``): the
    special pairs leave the candidate lists (unless ``masked`` already), then come back (boosted) as columns of
    their own."""
    b_size, r_size = user.shape[0], weight.shape[0]
    if offset is not None:
        # (a user for whom every item is excluded has no normaliser, and nothing for the offset to move)
        offset = np.where(np.isfinite(offset), offset, 0.0).astype(np.float32)
        cand += offset[:, None]
    special_batch, special_rows, _ = _special(extra, exclude)
    if len(special_batch) and not masked:
        keys = (np.arange(b_size)[:, None] * r_size + rows).ravel()
        cand.ravel()[_member(keys, special_batch * r_size + special_rows)] = -np.inf
    if extra is not None and len(extra[0]):
        rows, cand = _with_extra(user, weight, bias, extra, exclude, offset, rows, cand)
    k = min(k, r_size, cand.shape[1])
    best = np.argpartition(-cand, k - 1, axis=1)[:, :k] if k < cand.shape[1] else np.argsort(-cand, axis=1)
    values = np.take_along_axis(cand, best, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(rows, np.take_along_axis(best, order, 1), 1), np.take_along_axis(values, order, 1)


# A block's scores, [block, B] floats, stay within the CPU's cache at this size, and small batches (the worker's)
# get few wide blocks: each block costs a dozen tensor operations, and each of those gives up the interpreter's
# lock and must win it back, which beside a busy event loop costs more than the arithmetic (docs/benchmarks/history.md).
BLOCK_FLOATS = 1 << 19
MIN_BLOCK = 4096

_LOG2E = 1 / math.log(2)
_SAFE = 60.0  # |largest score| under which exp(score) summed over millions of items stays finite in float32


def _log_normaliser(
    total: torch.Tensor,
    slice_max: torch.Tensor,
    kept_scores: list[torch.Tensor],
    kept_batch: list[torch.Tensor],
    user: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
) -> np.ndarray:
    """Each row's ``log(sum(exp(s)))`` from its unshifted sum, recomputed the careful way where that is unsafe.

    Summing ``exp(s)`` without first subtracting the row's maximum saves a pass and a dozen small operations per
    block; it is exact to float32 rounding while the row's best score lies within ``+-_SAFE`` (neither the sum
    overflows nor the best term underflows), which the row's maximum, known from the slice maxima afterwards,
    tells. Other rows (extreme scores, rare) get a shifted log-sum-exp over their whole score row.
    """
    best = slice_max.amax(dim=0)
    if kept_scores:
        best = best.scatter_reduce(0, torch.cat(kept_batch), torch.cat(kept_scores), "amax")
    lse = total.log()
    unsafe = ((best.abs() >= _SAFE) | ~best.isfinite()).nonzero()[:, 0].numpy()
    if len(unsafe):
        scores = torch.from_numpy(np.matmul(user[unsafe], weight.T) + bias)
        lse[torch.from_numpy(unsafe)] = torch.logsumexp(scores.double(), dim=1)
    return lse.numpy()


def _special(
    extra: tuple[np.ndarray, ...] | None, exclude: tuple[np.ndarray, ...] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every special pair, ``(batch, rows, what adds to its score)``: the extra ones, then the excluded ones (-inf:
    never ranked, so no part of a softmax's normaliser either)."""
    parts = [
        (np.asarray(p[0], dtype=np.int64), np.asarray(p[1], dtype=np.int64), np.asarray(add, dtype=np.float32))
        for p, add in (
            (extra, extra[2] if extra else None),
            (exclude, np.full(len(exclude[0]), -np.inf) if exclude else None),
        )
        if p
    ]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def _with_extra(
    user: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    extra: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    exclude: tuple[np.ndarray, np.ndarray] | None,
    offset: np.ndarray | None,
    rows: np.ndarray,
    cand: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Append each row's extra items, scored ``logaddexp(own score + add, share)``, as extra columns."""
    batch, items, add, share = (np.asarray(x) for x in extra)
    own = np.einsum("nd,nd->n", user[batch], weight[items]) + bias[items] + add
    if offset is not None:
        own = own + offset[batch]
    with np.errstate(invalid="ignore"):  # a row never to rank (bias -inf) with no share: -inf, as it should be
        scores = np.logaddexp(own, share).astype(np.float32)
    scores[np.isnan(scores)] = -np.inf
    if exclude is not None and len(exclude[0]):
        r_size = weight.shape[0]
        scores[_member(batch * r_size + items, np.asarray(exclude[0]) * r_size + np.asarray(exclude[1]))] = -np.inf
    # Column j of row b holds the row's j-th extra item.
    order = np.argsort(batch, kind="stable")
    batch, items, scores = batch[order], items[order], scores[order]
    starts = np.searchsorted(batch, np.arange(len(rows)))
    column = np.arange(len(batch)) - starts[batch]
    width = int(column.max()) + 1
    extra_rows = np.zeros((len(rows), width), dtype=rows.dtype)
    extra_scores = np.full((len(rows), width), -np.inf, dtype=np.float32)
    extra_rows[batch, column] = items
    extra_scores[batch, column] = scores
    return np.concatenate([rows, extra_rows], axis=1), np.concatenate([cand, extra_scores], axis=1)


def _member(keys: np.ndarray, among: np.ndarray) -> np.ndarray:
    """``keys`` that are in ``among`` (``np.isin``, faster for many keys among a few)."""
    among = np.sort(among)
    at = np.searchsorted(among, keys).clip(max=len(among) - 1)
    return among[at] == keys
