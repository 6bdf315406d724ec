"""PointPrompt's stats.csv as released (interventions/pointprompt/features.py): hand-worked
cases per column, each released quirk as such, and the whole table against a plain,
separately written loop implementation (pointprompt_reference.py) on generated exports."""

from __future__ import annotations

import io
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from interventions.pointprompt import features as F

sys.path.insert(0, str(Path(__file__).parent))
from pointprompt_reference import generated_export, reference_stats  # noqa: E402

# the released DataFrame's columns, in order (gather_statistics.py, read by hand)
RELEASED_COLUMNS = [
    "Dataset", "Student", "Image ID", "Number of rounds", "Best round", "Best round length",
    "Best timestamp", "First # points", "First # green points", "First # red points",
    "First score", "Best # points", "Best # green points", "Best # red points", "Best score",
    "Last # points", "Last # green points", "Last # red points", "Last score", "Best-first gap",
    "Mask size", "CC Density", "Texture score", "Contrast", "Dissimilarity", "Homogeneity",
    "Energy", "Correlation", "ASM", "BK Contrast", "BK Dissimilarity", "BK Homogeneity",
    "BK Energy", "BK Correlation", "BK ASM", "Obj Density", "Merged", "Split", "Compact",
    "Current timestamp", "Current round", "Current # points", "Current # green points",
    "Current # red points", "Current score", "Current is best", "Prompt coverage", "Max spread",
    "Avg min distance", "Inc/Exc distance", "Max spread exc", "Inc efficiency", "Exc encasing",
    "Inc encasing",
]  # fmt: skip


def square(h=10, w=10, r0=2, r1=8, c0=2, c1=8):
    m = np.zeros((h, w), dtype=np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


def pts(*xy, dtype=np.int64):
    return np.asarray(xy, dtype=dtype).reshape(-1, 2)


def attempt(green, red, scores=None, rounds=None):
    t = len(green)
    scores = np.asarray(scores if scores is not None else np.linspace(0.1, 0.9, t))
    return F.Attempt(
        rounds=np.asarray(rounds if rounds is not None else [0] * t),
        sort=np.argsort(-scores, kind="stable"),
        scores=scores,
        green=green,
        red=red,
    )


def table(label, attempts, image=None, dataset="Hand", **kw):
    image = np.zeros((*label.shape, 3), np.uint8) if image is None else image
    ctx = F.prepare_image(image, label, 0)
    return F.released_stats(dataset, [ctx], [F.Folder("st1", attempts)], **kw)


def cell(tab, name, row=0):
    return tab.column(name)[row]


DIAG10 = math.sqrt(200)
DIAM_SQ = math.sqrt(50)  # the 6 x 6 square's pixels (2, 2) .. (7, 7)


# ----------------------------------------------------------------------------- columns


def test_columns_are_the_released_ones_in_order():
    assert list(F.COLUMNS) == RELEASED_COLUMNS
    tab = table(square(), [attempt([pts((3, 3)), pts((3, 3), (4, 4))], [pts(), pts((0, 0))])])
    assert tab.columns == RELEASED_COLUMNS
    assert cell(tab, "Student") == "Prompting results/Hand/st1"


def test_general_columns_two_rounds():
    # rounds 0 0 1 1 1, scores -> sort [3, 1, 2, 0, 4]: best is timestep 3, in round 1
    green = [pts((3, 3))] * 2 + [pts((3, 3), (4, 4))] * 2 + [pts((3, 3), (4, 4), (5, 5))]
    red = [pts(), pts((0, 0)), pts((0, 0)), pts((0, 0), (9, 9)), pts()]
    a = attempt(green, red, scores=[0.2, 0.5, 0.4, 0.9, 0.1], rounds=[0, 0, 1, 1, 1])
    tab = table(square(), [a])
    row = dict(zip(tab.columns, tab.rows[0], strict=True))
    assert row["Number of rounds"] == 2
    assert row["Best round"] == 1 and row["Best round length"] == 3
    assert row["Best timestamp"] == 1  # 3 - two round-0 timesteps
    assert (row["First # points"], row["First # green points"], row["First # red points"]) == (
        3, 2, 1,
    )  # fmt: skip
    assert row["First score"] == 0.4  # the first timestep of the best's round (2)
    assert (row["Best # points"], row["Best score"]) == (4, 0.9)
    assert (row["Last # points"], row["Last score"]) == (3, 0.1)  # last timestep
    assert row["Best-first gap"] == pytest.approx(0.5)
    assert tab.column("Current is best") == [0, 0, 0, 1, 0]
    assert tab.column("Current round") == [0, 0, 1, 1, 1]
    assert tab.column("Current timestamp") == [0, 1, 2, 3, 4]
    assert tab.column("Current # red points") == [0, 1, 1, 2, 0]


def test_general_columns_best_in_round_zero_and_the_negative_index_quirk():
    g = [pts((3, 3))] * 3
    r = [pts((0, 0))] * 3
    # best in round 0, last round 1: Last = the last timestep of round 0
    tab = table(square(), [attempt(g, r, scores=[0.9, 0.5, 0.7], rounds=[0, 0, 1])])
    assert cell(tab, "Best timestamp") == 0 and cell(tab, "Last score") == 0.5
    # no round 0 at all and the best not in the last round: last = #round-0 - 1 = -1,
    # which Python reads as the last timestep
    tab = table(square(), [attempt(g, r, scores=[0.9, 0.5, 0.7], rounds=[1, 1, 2])])
    assert cell(tab, "Last score") == 0.7
    assert cell(tab, "Best timestamp") == 0 and cell(tab, "First score") == 0.9


def test_prompt_coverage_and_efficiency_hand_worked():
    # triangle (2,2) (7,2) (2,7) filled: the 21 pixels x + y <= 9 of the 36-pixel square
    tab = table(square(), [attempt([pts((2, 2), (7, 2), (2, 7))], [pts((0, 0))])])
    assert cell(tab, "Prompt coverage") == pytest.approx(21 / 36, abs=1e-12)
    assert cell(tab, "Inc efficiency") == pytest.approx(21 / 36 / 3, abs=1e-12)
    # fewer than 3 green points: 0 (an integer, as released)
    tab = table(square(), [attempt([pts((2, 2), (7, 2))], [pts((0, 0))])])
    assert cell(tab, "Prompt coverage") == 0 and cell(tab, "Inc efficiency") == 0


def test_collinearity_quirk_zeroes_a_real_hull():
    # cross products are taken with the first point and consecutive pairs only: repeating the
    # first point makes every product 0, although (1,1) (5,5) (3,9) span a triangle
    green = pts((1, 1), (5, 5), (1, 1), (3, 9))
    tab = table(square(), [attempt([green], [pts((0, 0))])])
    assert cell(tab, "Prompt coverage") == 0
    tab = table(square(), [attempt([pts((1, 1), (5, 5), (3, 9))], [pts((0, 0))])])
    assert cell(tab, "Prompt coverage") > 0


def test_spread_and_min_distance_hand_worked():
    green = pts((0, 0), (3, 4), (3, 0))
    tab = table(square(), [attempt([green], [pts((0, 0), (6, 8))])])
    assert cell(tab, "Max spread") == pytest.approx(5 / DIAM_SQ, abs=1e-12)
    # sqrt of the MEAN SQUARED nearest-neighbour distance (9, 16, 9), not the mean distance
    assert cell(tab, "Avg min distance") == pytest.approx(math.sqrt(34 / 3) / DIAM_SQ, abs=1e-12)
    assert cell(tab, "Max spread exc") == pytest.approx(10 / DIAG10, abs=1e-12)
    one = table(square(), [attempt([pts((4, 4))], [pts((0, 0))])])
    assert cell(one, "Avg min distance") == 0 and cell(one, "Max spread") == 0
    assert cell(one, "Max spread exc") == 0


def test_chamfer_truncates_squared_distances_to_integers():
    # squared distance 4.5 -> 4 -> 2 per side (the true distance is 2.1213...)
    tab = table(
        square(),
        [attempt([pts((0, 0), dtype=float)], [pts((1.5, 1.5), dtype=float)])],
    )
    assert cell(tab, "Inc/Exc distance") == pytest.approx(2 / DIAG10, abs=1e-12)
    # integer points: exact (3-4-5); two red points: ((5) + (5 + 0) / 2) / 2
    tab = table(square(), [attempt([pts((0, 0))], [pts((3, 4), (0, 0))])])
    assert cell(tab, "Inc/Exc distance") == pytest.approx((0 + 2.5) / 2 / DIAG10, abs=1e-12)


def test_encasing_hand_worked_and_lagged_by_one_row():
    # the square's contour runs through the pixel centres (2,2) (7,2) (7,7) (2,7)
    green = [pts((4, 4)), pts((0, 4))]
    red = [pts((0, 4)), pts((0, 4), (4, 4))]
    a = attempt(green, red)
    released = table(square(), [a])
    corrected = table(square(), [a], variant="corrected")
    own_exc = [2 / DIAG10, 0.0]  # (0,4) is 2 outside; (4,4) is 2 inside: mean 0
    own_inc = [2 / DIAM_SQ, 0.0]  # inside by 2; outside by 2 -> negative -> 0
    assert corrected.column("Exc encasing") == pytest.approx(own_exc, abs=1e-12)
    assert corrected.column("Inc encasing") == pytest.approx(own_inc, abs=1e-12)
    # as released: row j carries timestep j-1's values, row 0 none
    assert released.column("Exc encasing")[0] is None
    assert released.column("Inc encasing")[0] is None
    assert released.column("Exc encasing")[1] == pytest.approx(own_exc[0], abs=1e-12)
    assert released.column("Inc encasing")[1] == pytest.approx(own_inc[0], abs=1e-12)


def test_encasing_takes_the_minimum_over_every_contour():
    # two objects: a green point deep inside the left one is "outside" the right one, so its
    # minimum signed distance is negative and the encasing clamps to 0
    label = np.zeros((12, 30), np.uint8)
    label[2:10, 2:10] = 1
    label[2:10, 20:28] = 1
    a = attempt([pts((5, 5))], [pts((15, 5))])
    tab = table(label, [a], variant="corrected")
    assert cell(tab, "Inc encasing") == 0
    assert cell(tab, "CC Density") == 2


def test_only_one_timestep_everywhere_leaves_out_the_encasing_columns():
    tab = table(square(), [attempt([pts((4, 4))], [pts((0, 0))])])
    assert tab.columns == RELEASED_COLUMNS[:-2]


def test_empty_point_sets_leave_cells_empty_or_raise_when_strict():
    a = attempt([pts((4, 4)), pts()], [pts(), pts((0, 0))])
    tab = table(square(), [a], variant="corrected")
    row0 = dict(zip(tab.columns, tab.rows[0], strict=True))
    row1 = dict(zip(tab.columns, tab.rows[1], strict=True))
    assert row0["Inc/Exc distance"] is None and row0["Max spread exc"] is None
    assert row0["Exc encasing"] == 0  # the released mean of no point is NaN, not > 0: 0
    assert row1["Max spread"] is None and row1["Avg min distance"] is None
    assert row1["Inc efficiency"] is None and row1["Prompt coverage"] == 0
    with pytest.raises(ValueError, match="timestep 0: no green or no red point"):
        table(square(), [a], strict=True)


def test_small_mask_has_no_prompt_or_texture_features():
    label = np.zeros((60, 60), np.uint8)
    label[30, 30] = 1  # 1 pixel < 0.05% of 3600
    tab = table(label, [attempt([pts((30, 30)), pts((30, 30))], [pts((0, 0))] * 2)])
    for name in F.PROMPT_COLUMNS + F.ENCASING_COLUMNS + F.DATA_COLUMNS[3:9]:
        assert all(v is None for v in tab.column(name)), name
    assert cell(tab, "Mask size") == 1 / 3600 and cell(tab, "BK Contrast") is not None


def test_data_level_hand_worked():
    label = square()
    image = np.zeros((10, 10, 3), np.uint8)
    image[..., 1] = 50  # uniform green: one grey level everywhere
    tab = table(label, [attempt([pts((4, 4))], [pts((0, 0))])], image=image)
    row = dict(zip(tab.columns, tab.rows[0], strict=True))
    assert row["Mask size"] == 0.36 and row["CC Density"] == 1
    # every object pair is (v, v) at both angles: each property summed over the two angles
    assert (row["Contrast"], row["Dissimilarity"]) == (0, 0)
    assert row["Homogeneity"] == pytest.approx(2) and row["Energy"] == pytest.approx(2)
    assert row["Correlation"] == 2 and row["ASM"] == pytest.approx(2)
    black = table(label, [attempt([pts((4, 4))], [pts((0, 0))])])
    assert cell(black, "Texture score") == 0  # a black image has no edge


def test_grey_is_opencv_bgr_order_on_the_rgb_image():
    rgb = np.zeros((1, 1, 3), np.uint8)
    rgb[0, 0, 0] = 200  # red, stored RGB: weighted as blue (0.114) as released
    assert int(F._grey(rgb)[0, 0]) == 23


def test_object_density_released_table_given_counts_or_one():
    label = np.zeros((10, 10), np.uint8)
    label[1:4, 1:4] = 1
    label[6:9, 6:9] = 1  # two components
    contexts = [F.prepare_image(np.zeros((10, 10, 3), np.uint8), label, i) for i in range(2)]
    folder = F.Folder("st1", [attempt([pts((2, 2))], [pts((5, 5))])] * 2)

    def objects(dataset, counts=None):
        tab = F.released_stats(dataset, contexts, [folder], counts)
        return [tab.column(c) for c in ("Obj Density", "Merged", "Split", "Compact")]

    assert objects("Cow") == [[4, 29], [1, 1], [0, 0], [0, 0]]  # released table, rows 0, 1
    assert objects("Salt dome") == [[1, 1], [0, 0], [1, 1], [0, 0]]  # not in it: 1
    assert objects("Mine", {0: 2, 1: 3}) == [[2, 3], [0, 1], [0, 0], [1, 0]]
    assert objects("Mine") == [[1, 1], [0, 0], [1, 1], [0, 0]]
    with pytest.raises(ValueError, match="part of a PointPrompt data set's name"):
        objects("Dolphin")  # the released regex search finds it, the exact match does not


def test_released_object_counts_table():
    from interventions.pointprompt.object_counts import COUNTS

    assert sum(len(v) for v in COUNTS.values()) == 6001
    assert len(COUNTS["Breast"]) == 401
    assert (COUNTS["Cow"][181], COUNTS["Bird"][90], COUNTS["Clock"][70]) == (50, 73, 45)
    assert set(F.RELEASED_DATASETS) - set(COUNTS) == {"Salt dome", "Chalk group"}


def test_bad_ground_truth_is_refused():
    with pytest.raises(ValueError, match="image 0's ground truth is empty"):
        F.prepare_image(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), 0)
    with pytest.raises(ValueError, match="0 and 1 only"):
        F.prepare_image(np.zeros((8, 8, 3), np.uint8), square(8, 8) * 255, 0)
    line = np.zeros((40, 40), np.uint8)
    line[10, 5:30] = 1
    with pytest.raises(ValueError, match="one line"):
        F.prepare_image(np.zeros((40, 40, 3), np.uint8), line, 0)


def test_mask_diameter_equals_all_pixel_pairs():
    rng = np.random.default_rng(3)
    for _ in range(5):
        label = (rng.random((15, 17)) < 0.3).astype(np.uint8)
        p = np.argwhere(label == 1)
        brute = math.sqrt(((p[:, None] - p[None]) ** 2).sum(-1).max())
        assert F.mask_diameter(label) == brute


def test_csv_cells_follow_the_column_types():
    tab = table(square(), [attempt([pts((4, 4)), pts((2, 2), (7, 2), (2, 7))], [pts((0, 0))] * 2)])
    out = io.StringIO()
    assert F.write_stats_csv(tab, out) == 2
    lines = out.getvalue().splitlines()
    header = lines[0].split(",")
    first = dict(zip(header, lines[1].split(","), strict=True))
    assert first["Prompt coverage"] == "0.0"  # an int 0 in a float column, as pandas writes it
    assert first["Current timestamp"] == "0" and first["Exc encasing"] == ""
    assert first["Dataset"] == "Hand"


# ----------------------------------------------------------------------------- against the reference


def _empty(v):
    return v is None or (isinstance(v, float) and math.isnan(v))


def assert_tables_equal(ref_columns, ref_rows, ours):
    assert ours.columns == ref_columns
    assert len(ours.rows) == len(ref_rows)
    for k, (a, b) in enumerate(zip(ref_rows, ours.rows, strict=True)):
        for name, x, y in zip(ref_columns, a, b, strict=True):
            if _empty(x) or _empty(y):
                assert _empty(x) and _empty(y), (k, name, x, y)
            elif isinstance(x, str):
                assert x == y, (k, name)
            else:
                assert abs(float(x) - float(y)) <= 1e-9, (k, name, x, y)


def _run_reference(root, **kw):
    cwd = os.getcwd()
    os.chdir(root)  # the released script runs with relative paths from its folder
    try:
        return reference_stats("Prompting results", "Image datasets", "Generated", **kw)
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize(
    "seed, floats, glcm",
    [(0, False, "skimage"), (1, False, "skimage"), (2, False, "loops"), (3, True, "skimage")],
)
def test_equals_the_plain_reference_on_generated_exports(tmp_path, seed, floats, glcm):
    generated_export(tmp_path, np.random.default_rng(seed), floats=floats)
    columns, rows = _run_reference(tmp_path, glcm=glcm)
    folders = list(dict.fromkeys(Path(r[1]).name for r in rows))  # scandir's order
    ours = F.stats_from_export(tmp_path, "Generated", folders)
    assert len(rows) > 20
    assert any(_empty(v) for row in rows for v in row)  # the empty-cell cases were exercised
    assert_tables_equal(columns, rows, ours)
    corrected = F.stats_from_export(tmp_path, "Generated", folders, variant="corrected")
    c_columns, c_rows = _run_reference(tmp_path, glcm=glcm, lag=False)
    # the reference without the lag has its encasing columns in the rows' own order
    assert set(c_columns) == set(corrected.columns)
    order = [c_columns.index(c) for c in corrected.columns]
    assert_tables_equal(corrected.columns, [[r[k] for k in order] for r in c_rows], corrected)


def test_load_npy_reads_what_np_save_wrote(tmp_path):
    arrays = {
        "ints": np.arange(7, dtype=np.int64),
        "floats": np.linspace(0, 1, 5),
        "empty": np.zeros(0, dtype=np.int64),
        "matrix": np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3)),
    }
    objects = np.empty(2, dtype=object)
    objects[0], objects[1] = pts((1, 2)), pts()
    for name, array in {**arrays, "objects": objects}.items():
        np.save(tmp_path / f"{name}.npy", array, allow_pickle=True)
        got = F.load_npy(tmp_path / f"{name}.npy")
        assert got.dtype == array.dtype and got.shape == array.shape
        if name == "objects":
            assert all((a == b).all() for a, b in zip(got, array, strict=True))
        else:
            assert (got == array).all()
    with pytest.raises(ValueError, match="allow_pickle"):
        F.load_npy(tmp_path / "objects.npy", allow_pickle=False)
