"""The 95% interval of a mean that every analysis page reports: a seeded bootstrap percentile
interval (Efron & Tibshirani 1993, ch. 13). The 2.5th and 97.5th percentiles of the means of
BOOTSTRAP_RESAMPLES resamples drawn with replacement (numpy default_rng(BOOTSTRAP_SEED)); it
stays inside the range of the data (inside [0, 1] for IoU, rates and overlaps), unlike
mean +- t * s / sqrt(n), and the same values always give the same interval. No Django: the
analysis pages import it through `studies.core.intervals`."""

from __future__ import annotations

import math
from collections.abc import Iterable
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


def mean_ci95(values: Iterable[float]) -> MeanCI:
    """Mean with the seeded 95% bootstrap percentile interval (see the module doc).

    n = 0: everything NaN; n = 1: the mean, NaN bounds (one value says nothing about spread).
    The same values always give the same interval."""
    data = np.asarray([v for v in values if v is not None], dtype=np.float64)
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
