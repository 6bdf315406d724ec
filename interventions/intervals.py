"""The 95% interval of a mean that every analysis page reports: a seeded bootstrap percentile
interval (Efron & Tibshirani 1993, ch. 13). The 2.5th and 97.5th percentiles of the means of
BOOTSTRAP_RESAMPLES resamples drawn with replacement (numpy default_rng(BOOTSTRAP_SEED)); it
stays inside the range of the data (inside [0, 1] for IoU, rates and overlaps), unlike
mean +- t * s / sqrt(n), and the same values always give the same interval. No Django: the
analysis pages import it through `studies.core.intervals`."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MeanCI:
    n: int
    mean: float
    low: float
    high: float


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
INTERVAL_METHOD = (
    f"95% bootstrap percentile interval ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED})"
)


# A memo of intervals by the exact values (their float64 bytes, in order), for a computation
# that asks for the same intervals again (the stored analysis, studies/prompting/analysis_store.py):
# the same values give the same interval, so a remembered one is the interval itself.
_MEMO: ContextVar[dict | None] = ContextVar("interval_memo", default=None)


@contextmanager
def remembered_intervals(memo: dict) -> Iterator[dict]:
    """Within the block, mean_ci95 reads and fills `memo` ({digest: [n, mean, low, high]});
    a digest not asked for in the block is dropped from it (so the memo stays the size of one
    computation)."""
    used: dict = {}
    token = _MEMO.set((memo, used))
    try:
        yield memo
    finally:
        _MEMO.reset(token)
        memo.clear()
        memo.update(used)


def prefill(series: Iterable[Iterable[float]], workers: int = 2) -> None:
    """Inside `remembered_intervals`: compute the intervals of `series` not remembered yet,
    `workers` at a time (numpy's resampling releases the GIL, so threads use the cores), so
    that the mean_ci95 calls that follow find them. The same intervals as one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    memo = _MEMO.get()
    if memo is None:
        return
    known, _ = memo
    todo: dict[str, np.ndarray] = {}
    for values in series:
        data = np.asarray([v for v in values if v is not None], dtype=np.float64)
        if data.size >= 2:
            key = hashlib.sha1(data.tobytes()).hexdigest()
            if key not in known:
                todo[key] = data
    if not todo:
        return
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for key, ci in zip(todo, pool.map(_mean_ci95, todo.values()), strict=True):
            known[key] = [ci.n, ci.mean, ci.low, ci.high]


def mean_ci95(values: Iterable[float]) -> MeanCI:
    """Mean with the seeded 95% bootstrap percentile interval (see the module doc).

    n = 0: everything NaN; n = 1: the mean, NaN bounds (one value says nothing about spread).
    The same values always give the same interval."""
    data = np.asarray([v for v in values if v is not None], dtype=np.float64)
    memo = _MEMO.get()
    if memo is None or data.size < 2:
        return _mean_ci95(data)
    known, used = memo
    key = hashlib.sha1(data.tobytes()).hexdigest()
    if key in known:
        used[key] = known[key]
        return MeanCI(*known[key])
    ci = _mean_ci95(data)
    used[key] = known[key] = [ci.n, ci.mean, ci.low, ci.high]
    return ci


def _mean_ci95(data: np.ndarray) -> MeanCI:
    n = data.size
    if n == 0:
        return MeanCI(0, math.nan, math.nan, math.nan)
    mean = float(data.mean())
    if n < 2:
        return MeanCI(1, mean, math.nan, math.nan)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = np.empty(BOOTSTRAP_RESAMPLES)
    chunk = max(1, 2_000_000 // n)  # bounded memory for long series
    for start in range(0, BOOTSTRAP_RESAMPLES, chunk):
        stop = min(BOOTSTRAP_RESAMPLES, start + chunk)
        means[start:stop] = data[rng.integers(0, n, (stop - start, n))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return MeanCI(n, mean, float(low), float(high))
