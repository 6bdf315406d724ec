"""PointPrompt's strategies as released (interventions/pointprompt/strategies.py) against a plain,
separately written reference that works the released way: the global numpy / torch generators
seeded once, torch tensors, Python lists and loops, one OpenCV histogram per window,
scikit-learn's pairwise_distances under the k-medoids. Same seed, same images in index order:
the same points."""

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import pairwise_distances

from interventions.pointprompt.kmedoids import euclidean_matrix, kmedoids_alternate
from interventions.pointprompt.released_names import (
    POINT_NUMS,
    RELEASED_STRATEGIES,
    dataset_key,
    mean_count,
    released_counts,
)
from interventions.pointprompt.strategies import (
    ReleasedRandom,
    released_iou,
    released_mask,
    released_points,
    run_released,
)

# ---------------------------------------------------------------- the reference, released way


def ref_kmedoids_centers(x: torch.Tensor, k: int) -> np.ndarray:
    """KMedoids(n_clusters=k).fit(x).cluster_centers_ of scikit-learn-extra, written plainly."""
    data = np.asarray(x)
    dist = pairwise_distances(data, metric="euclidean")
    medoids = np.argpartition(np.sum(dist, axis=1), k - 1)[:k]
    for _ in range(300):
        old = np.copy(medoids)
        labels = np.argmin(dist[medoids, :], axis=0)
        for c in range(k):
            idx = np.where(labels == c)[0]
            if len(idx) == 0:
                continue
            costs = np.sum(dist[idx, idx[:, np.newaxis]], axis=1)
            j = np.argmin(costs)
            if costs[j] < costs[np.argmax(idx == medoids[c])]:
                medoids[c] = idx[j]
        if np.all(old == medoids):
            break
    return data[medoids]


def ref_random(mask, n, mode):
    m = torch.from_numpy(mask) if mode == "inc" else torch.from_numpy(1 - mask)
    px = m.nonzero().float()
    if len(px) < n:
        sel = px.repeat(n // len(px) + 1, 1)[:n]
    else:
        sel = px[torch.randperm(len(px))[:n]]
    return sel.flip(1)


def ref_kmedoid(mask, n, subsample=1800, mode="inc"):
    m = torch.from_numpy(mask) if mode == "inc" else torch.from_numpy(1 - mask)
    px = m.nonzero().float()
    if len(px) < n:
        sel = px.repeat(n // len(px) + 1, 1)[:n]
    else:
        px = px[torch.randperm(len(px))[:subsample]]
        sel = torch.from_numpy(ref_kmedoids_centers(px, n)).type(torch.float32)
    return sel.flip(1)


def ref_erode(mask_t, pct):
    px = mask_t.nonzero().float()
    diameter = torch.norm(px.max(0)[0] - px.min(0)[0]).item()
    size = int(diameter * pct)
    out = cv2.erode(mask_t.numpy().astype(np.uint8), np.ones((size, size), np.uint8), iterations=1)
    return torch.from_numpy(out)


def ref_corners(image_t, mask, n, mode="inc"):
    if mode != "inc":
        mask = 1 - mask
    image = image_t.permute(2, 0, 1).permute(1, 2, 0).numpy()
    eroded = ref_erode(torch.from_numpy(mask.astype("uint8")), 0.06)
    if eroded.sum() < 10:
        eroded = ref_erode(torch.from_numpy(mask.astype("uint8")), 0.02)
    if eroded.sum() < 10:
        eroded = ref_erode(torch.from_numpy(mask.astype("uint8")), 0.01)
    if eroded.sum() < 10:
        eroded = torch.from_numpy(mask.astype("uint8"))
    px = eroded.nonzero().float()
    diameter = torch.norm(px.max(0)[0] - px.min(0)[0]).item()
    corners = cv2.goodFeaturesToTrack(
        image=cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), maxCorners=n, qualityLevel=0.001,
        minDistance=diameter / n, mask=eroded.numpy().astype(np.uint8), blockSize=3, gradientSize=3,
    )  # fmt: skip
    if corners is None:
        corners = np.empty((0, 1, 2))
    corners = torch.from_numpy(corners).type(torch.float32).squeeze(1)
    if len(corners) < n:
        corners = torch.cat(
            (corners, ref_kmedoid(mask, n - corners.shape[0], subsample=2000)), dim=0
        )
    return corners


def ref_entropy_of(window):
    grey = cv2.cvtColor(window, cv2.COLOR_BGR2GRAY)
    hist = cv2.calcHist([grey], [0], None, [256], [0, 256])
    hist /= hist.sum()
    # the released environment (numpy 1.x) kept this sum float32 (value-based casting)
    return -np.sum(hist * np.log2(hist + np.float32(np.finfo(float).eps)))


def ref_grid(image, centre):
    h, w, _ = image.shape
    x, y = int(np.floor(centre[0])), int(np.floor(centre[1]))
    x0 = x - 4 if x - 4 > 0 else 0
    y0 = y - 4 if y - 4 > 0 else 0
    x1 = x0 + 9 if x0 + 9 < w else w
    y1 = y0 + 9 if y0 + 9 < h else h
    return image[y0:y1, x0:x1]


def ref_sample(mask, n, twice):
    inds = np.argwhere(mask == True)  # noqa: E712 (as released)
    amt = int(0.15 * len(inds))
    base = 0.5
    while (amt < n) and (base <= 1.0):
        amt = int(base * len(inds))
        base += 0.1
    if amt < n:
        amt = len(inds)
        n = len(inds)
    pool = np.random.permutation(np.arange(len(inds))) if twice else np.arange(len(inds))
    return inds[np.random.choice(pool, size=amt, replace=False)], n


def ref_select(scores, points, n, best):
    out = []
    if n != 1:
        for _ in range(n):
            idx = scores.index(max(scores))
            out.append([points[idx][1], points[idx][0]])
            scores.pop(idx)
            points.pop(idx)
    else:
        out.append([best[1], best[0]])
    return torch.Tensor(out)


def ref_entropy(point, mask, image, n):
    centre = ref_grid(image, point)
    indices, n = ref_sample(mask, n, twice=True)
    scores, points, best, top = [], [], [0, 0], 0
    e1 = ref_entropy_of(centre)
    for x, y in indices:
        try:
            e2 = ref_entropy_of(ref_grid(image, [x, y]))
        except cv2.error:
            e2 = 0
        diff = abs(e1 - e2)
        points.append([x, y])
        scores.append(diff)
        if diff > top:
            best, top = [x, y], diff
    return ref_select(scores, points, n, best)


def ref_distance(point, mask, n):
    indices, n = ref_sample(mask, n, twice=False)
    scores, points, best, top = [], [], [0, 0], 0
    for x, y in indices:
        d = np.sqrt((x - point[0]) ** 2 + (y - point[1]) ** 2)
        points.append([x, y])
        scores.append(d)
        if top < d:
            best, top = [x, y], d
    return ref_select(scores, points, n, best)


def ref_main(query, images, masks, counts, seed):
    """main.py's loop: seeded once; per image the released order of draws."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    out = []
    for img, current, (inc, exc) in zip(images, masks, counts, strict=True):
        if query == "rand":
            a, b = ref_random(current, inc, "inc"), ref_random(current, exc, "ex")
        elif query == "shi-tomasi":
            img_ = torch.from_numpy(img)
            a, b = ref_corners(img_, current, inc, "inc"), ref_corners(img_, current, exc, "ex")
        elif query in ("entropy", "max_dist"):
            ia, ib = ref_random(current, 1, "inc"), ref_random(current, 1, "ex")
            if query == "entropy":
                pa = ref_entropy(ia.numpy()[0], current, img, inc)
                pb = ref_entropy(ib.numpy()[0], 1 - current, img, exc)
            else:
                pa = ref_distance(ia.numpy()[0], current, inc)
                pb = ref_distance(ib.numpy()[0], 1 - current, exc)
            a, b = np.concatenate((ia, pa)), np.concatenate((ib, pb))
        else:
            a, b = ref_kmedoid(current, inc, mode="inc"), ref_kmedoid(current, exc, mode="ex")
        out.append((np.asarray(a, np.float32), np.asarray(b, np.float32)))
    return out


# ---------------------------------------------------------------- generated data set


def generated_set():
    """Small non-square images (so swapped coordinates matter) with textured objects; one object
    of 6 pixels (the candidate-share ladder and the repeat path), one nearly full mask."""
    rng = np.random.default_rng(21)
    images, masks = [], []
    for i in range(7):
        h, w = (36, 52) if i % 2 else (48, 30)
        yy, xx = np.mgrid[:h, :w]
        image = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
        cy, cx = rng.integers(8, h - 8), rng.integers(8, w - 8)
        mask = ((yy - cy) ** 2 / rng.uniform(20, 90) + (xx - cx) ** 2 / rng.uniform(20, 120)) < 1
        if i == 3:
            mask = np.zeros((h, w), bool)
            mask[5:7, 10:13] = True  # 6 pixels
        if i == 5:
            mask = np.ones((h, w), bool)
            mask[2:4, 3:5] = False  # 4 background pixels
        image[mask] = rng.integers(90, 255, (int(mask.sum()), 3))
        image[::7] //= 2  # some structure for corners and entropy
        images.append(image)
        masks.append(mask.astype(np.uint8))
    return images, masks


COUNTS = [(4, 2), (9, 1), (1, 1), (9, 2), (16, 4), (2, 6), (5, 1)]


@pytest.mark.parametrize("strategy", RELEASED_STRATEGIES)
@pytest.mark.parametrize("seed", [2024, 7])
def test_points_equal_the_released_run(strategy, seed):
    images, masks = generated_set()
    ours = run_released(strategy, images, masks, COUNTS, seed)
    theirs = ref_main(strategy, images, masks, COUNTS, seed)
    for i, ((a, b), (ra, rb)) in enumerate(zip(ours, theirs, strict=True)):
        assert a.dtype == np.float32 and b.dtype == np.float32
        assert np.array_equal(a, ra), (strategy, i, a, ra)
        assert np.array_equal(b, rb), (strategy, i, b, rb)


def test_one_seeded_stream_across_images_in_index_order():
    images, masks = generated_set()
    whole = run_released("rand", images, masks, (2, 2), 11)
    # image 1 alone, freshly seeded, differs from image 1 of the run (the stream carried on) ...
    alone = run_released("rand", images[1:2], masks[1:2], (2, 2), 11)[0]
    assert not np.array_equal(alone[0], whole[1][0])
    # ... and equals it when image 0's draws are taken first, in the released order
    rng = ReleasedRandom(11)
    released_points("rand", images[0], masks[0], 2, 2, rng)
    assert np.array_equal(released_points("rand", images[1], masks[1], 2, 2, rng)[0], whole[1][0])
    # the global generators are left alone
    np.random.seed(3)
    state = np.random.get_state()[1].copy()
    run_released("entropy", images, masks, (2, 2), 11)
    assert np.array_equal(np.random.get_state()[1], state)


def test_order_of_draws_inclusion_then_exclusion():
    images, masks = generated_set()
    rng = ReleasedRandom(5)
    inc, exc = released_points("rand", images[0], masks[0], 3, 3, rng)
    np.random.seed(5)
    torch.manual_seed(5)
    first = ref_random(masks[0], 3, "inc")
    second = ref_random(masks[0], 3, "ex")
    assert np.array_equal(inc, first.numpy()) and np.array_equal(exc, second.numpy())
    # the other way round would give other points
    torch.manual_seed(5)
    assert not np.array_equal(exc, ref_random(masks[0], 3, "ex").numpy())


def test_counts_and_one_point_mode():
    images, masks = generated_set()
    for strategy in RELEASED_STRATEGIES:
        inc, exc = run_released(strategy, images[:1], masks[:1], (4, 2), 0)[0]
        extra = 1 if strategy in ("entropy", "max_dist") else 0  # the initial point kept
        assert (len(inc), len(exc)) == (4 + extra, 2 + extra), strategy
        one = run_released(strategy, images[:1], masks[:1], (1, 1), 0)[0]  # the _1pt mode
        assert (len(one[0]), len(one[1])) == (1 + extra, 1 + extra), strategy
    # green points inside the mask, red outside, for every strategy
    for strategy in RELEASED_STRATEGIES:
        inc, exc = run_released(strategy, images[:1], masks[:1], (4, 2), 1)[0]
        assert masks[0][inc[:, 1].astype(int), inc[:, 0].astype(int)].all(), strategy
        if strategy != "max_dist":  # max_dist's swapped coordinates may leave the region
            assert not masks[0][exc[:, 1].astype(int), exc[:, 0].astype(int)].any(), strategy


def test_swapped_coordinates_of_max_dist_and_the_share_ladder():
    """max_dist measures a candidate's (row, col) against the point's (x, y). Three pixels in
    row 2 (columns 0, 20, 39), three points asked: 15% of 3 is 0, the ladder 0.5 .. 0.9999999999999999
    gives at most int(2.9999) = 2 < 3, so all three are scored (and the count stays 3). From
    (x 39, y 2) the true farthest order is columns 0, 20, 39; the released reading
    sqrt((2 - 39)^2 + (c - 2)^2) gives 39, 20, 0."""
    from interventions.pointprompt.strategies import distance_points

    mask = np.zeros((20, 40), np.uint8)
    mask[2, [0, 20, 39]] = 1
    picked = distance_points(np.array([39.0, 2.0], np.float32), mask, 3, ReleasedRandom(0))
    assert picked.tolist() == [[39.0, 2.0], [20.0, 2.0], [0.0, 2.0]]


def test_single_point_default_when_nothing_beats_zero():
    """With one point asked, the released loop keeps (0, 0) unless a score is above 0: a one-pixel
    region at the initial point itself scores distance 0 and returns (0, 0), outside it."""
    from interventions.pointprompt.strategies import distance_points

    mask = np.zeros((10, 10), np.uint8)
    mask[5, 5] = 1
    picked = distance_points(np.array([5.0, 5.0], np.float32), mask, 1, ReleasedRandom(0))
    assert picked.tolist() == [[0.0, 0.0]]


def test_masks0_and_iou_definitions():
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :2] = True
    masks[2] = True
    assert np.array_equal(released_mask(masks), masks[0])  # masks[0], not the best score
    gt = np.zeros((4, 4), np.uint8)
    gt[1:3] = 1
    assert released_iou(masks[0], gt) == pytest.approx(4 / 12)
    assert released_iou(np.zeros((4, 4)), np.zeros((4, 4))) == 0.0  # empty & empty: 0, not 1
    assert released_iou(masks[0], 1 - masks[0]) == 0.0
    with pytest.raises(ValueError, match="multimask"):
        released_mask(np.zeros((4, 4)))


def test_bad_input_names_the_problem():
    images, masks = generated_set()
    rng = ReleasedRandom(0)
    with pytest.raises(ValueError, match="unknown strategy 'random'"):
        released_points("random", images[0], masks[0], 1, 1, rng)
    with pytest.raises(ValueError, match="saliency.*unavailable.*VST"):
        released_points("saliency", images[0], masks[0], 1, 1, rng)
    with pytest.raises(ValueError, match="inclusion count must be an integer >= 1"):
        released_points("rand", images[0], masks[0], 0, 1, rng)
    with pytest.raises(ValueError, match="exclusion count"):
        released_points("kmediod", images[0], masks[0], 1, 0, rng)
    with pytest.raises(ValueError, match="mask is empty"):
        released_points("entropy", images[0], np.zeros_like(masks[0]), 1, 1, rng)
    with pytest.raises(ValueError, match="covers the whole image"):
        released_points("max_dist", images[0], np.ones_like(masks[0]), 1, 1, rng)
    with pytest.raises(ValueError, match="seed"):
        ReleasedRandom(-1)
    with pytest.raises(ValueError, match="does not match"):
        released_points("rand", images[0], masks[1], 1, 1, rng)


def test_point_nums_table_and_name_matching():
    assert len(POINT_NUMS) == 16 and POINT_NUMS["Cow"] == (16, 4)
    assert released_counts("stop_sign") == released_counts("Stop-Sign ") == (8, 1)
    assert released_counts("Dolphin  below") == (10, 4)
    assert released_counts("demo shapes") is None
    assert dataset_key("Salt_dome") == "salt dome"
    assert mean_count([1, 2]) == 2 and mean_count([1, 1, 2]) == 1 and mean_count([0, 0]) == 1
    with pytest.raises(ValueError, match="no human"):
        mean_count([])


# ---------------------------------------------------------------- k-medoids, hand-worked


def test_kmedoids_hand_worked_line():
    """Points 0, 1, 2, 10, 11 on a line, k = 2. Row sums of distances: 24, 21, 20, 28, 31, so
    the heuristic start is {1, 2} (the two smallest). Assignment: 0, 1 -> medoid 1 (point 0 is
    nearer 1); 2, 10, 11 -> medoid 2. Cluster {0, 1}: costs 1 and 1, a tie: the medoid 1 stays
    (a swap needs a strictly smaller cost), although the first minimum is point 0. Cluster
    {2, 10, 11}: costs 17, 9, 10 -> 10 becomes the medoid. Second round: 2 joins medoid 1;
    {0, 1, 2} costs 3, 2, 3 and {10, 11} ties 1, 1: nothing changes, converged at {1, 10}."""
    x = np.array([[0.0, 0], [1, 0], [2, 0], [10, 0], [11, 0]])
    one_round = kmedoids_alternate(x, 2, max_iter=1)
    assert sorted(one_round.medoid_indices.tolist()) == [1, 3]  # the tie kept medoid 1, not 0
    fit = kmedoids_alternate(x, 2)
    assert sorted(fit.medoid_indices.tolist()) == [1, 3] and fit.n_iter == 1
    assert fit.labels.tolist() == [fit.labels[0]] * 3 + [fit.labels[3]] * 2
    assert np.array_equal(fit.centers, x[fit.medoid_indices])


def test_kmedoids_ties_in_the_assignment_go_to_the_first_medoid():
    """Points 0, 2, 1, 1 (a duplicate) on a line: row sums 4, 4, 2, 2, so the start is the two
    copies of 1. Every point is as near to one copy as to the other: all join the first medoid;
    the second cluster is empty and keeps its medoid; the first cluster's costs 4, 4, 2, 2 tie
    between the two copies, so its medoid stays too."""
    y = np.array([[0.0, 0], [2, 0], [1, 0], [1, 0.0]])
    fit = kmedoids_alternate(y, 2)
    assert fit.labels.tolist() == [0, 0, 0, 0]
    assert sorted(fit.medoid_indices.tolist()) == [2, 3] and fit.n_iter == 0


def test_kmedoids_equals_the_reference_on_pixels():
    rng = np.random.default_rng(4)
    for k in (1, 3, 7):
        pixels = np.argwhere(rng.random((40, 50)) < 0.3).astype(np.float32)
        pixels = pixels[rng.permutation(len(pixels))]
        assert np.array_equal(euclidean_matrix(pixels), pairwise_distances(pixels))
        assert np.array_equal(
            kmedoids_alternate(pixels, k).centers, ref_kmedoids_centers(pixels, k)
        )
    # large images: squared distances above 2**24 round in float32, the same way
    far = np.stack(np.meshgrid(np.arange(0, 3000, 71), np.arange(0, 3000, 73)), -1)
    far = far.reshape(-1, 2).astype(np.float32)
    assert np.array_equal(euclidean_matrix(far), pairwise_distances(far))
    # non-integer float64 input takes the float64 path
    odd = rng.random((30, 2)) * 7
    assert np.allclose(euclidean_matrix(odd), pairwise_distances(odd), atol=1e-12)


def test_kmedoids_bad_input():
    with pytest.raises(ValueError, match="at most the number of points"):
        kmedoids_alternate(np.zeros((2, 2)), 3)
    with pytest.raises(ValueError, match=">= 1"):
        kmedoids_alternate(np.zeros((2, 2)), 0)
