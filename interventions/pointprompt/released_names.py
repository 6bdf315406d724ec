"""Names and counts of PointPrompt's released benchmark (docs/pointprompt.md "The released
benchmark protocol"), importable without numpy or torch (the web reads them).

- RELEASED_STRATEGIES: the `--query_strategy` choices of the released `point_sampling/main.py`
  that can run here, under the released spellings.
- UNAVAILABLE: the released choices that cannot run here, with the reason.
- POINT_NUMS: the released per-data-set [inclusion, exclusion] counts (the annotators' mean best
  counts, as the released table gives them), keyed by the released folder names.
"""

from __future__ import annotations

import math
import re

RELEASED_STRATEGIES = ("rand", "shi-tomasi", "kmediod", "entropy", "max_dist")
UNAVAILABLE = {
    "saliency": (
        "needs the released VST saliency network's pretrained weights (T2T-ViT_t-14 and "
        "RGB_VST.pth, Google Drive downloads in the released instructions); they cannot be had "
        "here, and nothing downloads weights at run time"
    ),
}
POINT_NUMS: dict[str, tuple[int, int]] = {
    "Baseball bat": (4, 2),
    "Bird": (9, 1),
    "Bus": (7, 1),
    "Cat": (6, 1),
    "Clock": (8, 3),
    "Cow": (16, 4),
    "Dog": (8, 2),
    "Tie": (4, 2),
    "Stop sign": (8, 1),
    "Dolphin above": (7, 2),
    "Dolphin below": (10, 4),
    "Polyp": (14, 2),
    "Skin": (11, 2),
    "Breast": (4, 1),
    "Salt dome": (5, 3),
    "Chalk group": (8, 5),
}
# count sources of the released strategies' baseline rows (BaselineResult.count_source)
RELEASED_COUNT_SOURCES = ("point_nums", "human_mean", "one_point", "fixed")


def dataset_key(name: str) -> str:
    """How a data set's name is matched to the released table: case-insensitive, with `_` and
    `-` read as spaces and runs of white space as one ("stop_sign", "Stop-Sign" = "Stop sign")."""
    return " ".join(re.sub(r"[_\-]", " ", str(name)).split()).casefold()


_BY_KEY = {dataset_key(name): counts for name, counts in POINT_NUMS.items()}


def released_counts(dataset_name: str) -> tuple[int, int] | None:
    """The released (inclusion, exclusion) counts of a PointPrompt data set, or None."""
    return _BY_KEY.get(dataset_key(dataset_name))


def mean_count(counts: list[int]) -> int:
    """The mean of human counts as a released-strategy count: rounded half up, at least 1 (the
    released strategies cannot place 0 points of a kind; every released count is >= 1)."""
    if not counts:
        raise ValueError(
            "no human best-timestep counts to average (the study has no scored timesteps)"
        )
    return max(1, math.floor(sum(counts) / len(counts) + 0.5))
