"""K-medoids as the released PointPrompt code calls it: scikit-learn-extra's `KMedoids` with its
defaults (method "alternate", init "heuristic", euclidean metric, max_iter 300), written here
because that package does not load with numpy 2 (docs/pointprompt.md "Strategies as released").

The algorithm, step by step as that estimator takes it, so ties fall the same way:

1. D = the euclidean distance matrix in the input's precision. For float32 input (the released
   code passes float32 pixel coordinates) the squared distances are formed in float64, rounded
   to float32, and their float32 square root taken, which is what scikit-learn's
   `pairwise_distances` does for float32; float64 input stays float64.
2. Initial medoids ("heuristic"): the k points with the smallest row sums of D, in the order
   `np.argpartition(row_sums, k - 1)[:k]` gives them (that order is the clusters' order).
3. Up to max_iter times: every point joins the first medoid (in medoid order) at the smallest
   distance; then, cluster by cluster, the member with the smallest in-cluster distance sum
   (the first such member in index order) replaces the medoid when its sum is strictly smaller
   than the medoid's own. An empty cluster keeps its medoid. Stop when no medoid changed.

The result's `centers` are the medoids' input rows in cluster order (`cluster_centers_`).

Speed without changing a bit: D is never gathered. Its row sums are taken block by block (rows
of 256, each summed whole, as `np.sum(D, axis=1)` sums them), the assignment's k rows and each
cluster's cost block are computed from the coordinates by the same formula (so they hold the
same float32 values in the same order), and a cluster holding every point reuses the row sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MedoidFit:
    medoid_indices: np.ndarray  # (k,) int, cluster order
    centers: np.ndarray  # (k, d) rows of the input, cluster order
    labels: np.ndarray  # (n,) the cluster of every point at the last assignment
    n_iter: int  # the index of the last iteration run (scikit-learn-extra's n_iter_)


_BLOCK = 256  # rows of a distance block: a few MB at most, in cache


class _Distances:
    """Blocks of the euclidean distance matrix of `x`, each entry computed as
    `euclidean_matrix` computes it (the same branch for every block)."""

    def __init__(self, x: np.ndarray):
        if x.ndim != 2 or not len(x):
            raise ValueError(f"points must be a non-empty (n, d) array, got shape {x.shape}")
        self.dtype = np.float32 if x.dtype == np.float32 else np.float64
        spans = x.max(axis=0).astype(np.float64) - x.min(axis=0)
        self.integer = bool(np.all(x == np.round(x)) and float(np.sum(spans * spans)) < 2**31)
        # float32 arithmetic is exact for integer coordinates below 2**24 whose differences
        # square below 2**24, and one float32 addition of two exact squares rounds once, like
        # the int32 sum rounded to float32: the same bits, in fewer passes
        self.float32 = (
            self.integer
            and self.dtype == np.float32
            and x.shape[1] <= 2
            and float(np.max(np.abs(x))) < 2**24
            and float(np.max(spans)) <= 4096
        )
        if self.float32:
            self.columns = [np.ascontiguousarray(c, np.float32) for c in x.T]
        elif self.integer:
            self.columns = [np.ascontiguousarray(c, np.int32) for c in x.T]
        else:
            self.columns = [np.ascontiguousarray(c, np.float64) for c in x.T]

    def block(self, rows: np.ndarray, cols: np.ndarray | slice) -> np.ndarray:
        """D[rows][:, cols] (rows and cols: index arrays or slices), C-contiguous."""
        out = None
        for column in self.columns:
            diff = column[rows][:, None] - column[cols][None, :]
            np.multiply(diff, diff, out=diff)
            if out is None:
                out = diff
            else:
                out += diff
        if self.float32:
            return np.sqrt(out, out=out)
        return np.sqrt(out.astype(self.dtype))

    def row_sums(self, members: np.ndarray | None = None) -> np.ndarray:
        """np.sum(D[np.ix_(members, members)], axis=1) (all points when None), by blocks."""
        n = len(self.columns[0]) if members is None else len(members)
        sums = np.empty(n, self.dtype)
        cols = slice(None) if members is None else members
        for start in range(0, n, _BLOCK):
            part = slice(start, min(start + _BLOCK, n))
            rows = part if members is None else members[part]
            np.sum(self.block(rows, cols), axis=1, out=sums[part])
        return sums


def euclidean_matrix(points: np.ndarray) -> np.ndarray:
    """(n x n) euclidean distances of the rows of `points`, in their dtype (float32 or float64),
    equal bit for bit to scikit-learn's `pairwise_distances(points)` when the coordinates are
    integers (pixel positions): exact squared distances (int32 for pixels, else float64) rounded
    once to the dtype, then the dtype's square root."""
    x = np.asarray(points)
    distances = _Distances(x)
    return distances.block(slice(None), slice(None))


def kmedoids_alternate(points: np.ndarray, n_clusters: int, max_iter: int = 300) -> MedoidFit:
    """K-medoids by the alternate (Voronoi iteration) method from the heuristic start."""
    x = np.asarray(points)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if (
        isinstance(n_clusters, bool)
        or not isinstance(n_clusters, int | np.integer)
        or n_clusters < 1
    ):
        raise ValueError(f"the number of medoids must be an integer >= 1, got {n_clusters!r}")
    if x.ndim != 2 or n_clusters > len(x):
        raise ValueError(
            f"the number of medoids ({n_clusters}) must be at most the number of points "
            f"({len(x) if x.ndim == 2 else x.shape})"
        )
    distances = _Distances(x)
    every = distances.row_sums()  # np.sum(D, axis=1)
    medoids = np.argpartition(every, n_clusters - 1)[:n_clusters]
    labels = np.argmin(distances.block(medoids, slice(None)), axis=0)
    n_iter = 0
    # a cluster whose members and medoid are those it had when last looked at cannot change:
    # skip its cost sums (the same decision as before), which most clusters are in late rounds
    settled: dict[int, tuple[int, np.ndarray]] = {}
    for n_iter in range(max_iter):  # noqa: B007 (the last index is the result's n_iter)
        before = medoids.copy()
        labels = np.argmin(distances.block(medoids, slice(None)), axis=0)
        for k in range(n_clusters):
            members = np.flatnonzero(labels == k)
            if not len(members):
                continue
            last = settled.get(k)
            if last is not None and last[0] == medoids[k] and np.array_equal(last[1], members):
                continue
            settled[k] = (int(medoids[k]), members)
            costs = every if len(members) == len(x) else distances.row_sums(members)
            best = int(np.argmin(costs))
            # the medoid's own cost; the first member's when the medoid is not among them
            own = costs[int(np.argmax(members == medoids[k]))]
            if costs[best] < own:
                medoids[k] = members[best]
        if np.array_equal(before, medoids):
            break
    return MedoidFit(medoids, x[medoids], labels, n_iter)
