"""What predicts a good prompt: the timestep's score regressed on the released features.

Two models (scikit-learn): a linear one (median imputation, standardisation, ridge regression,
alpha 1) and a tree ensemble (median imputation, random forest). Cross-validated so that no participant and
no image is on both sides of a split: participants are dealt into k groups and images into k
groups (seeded shuffles); the k x k cells (participant group a, image group b) are the combined
grouping, and fold (a, b) tests on cell (a, b) and trains on every row whose participant is not
in group a AND whose image is not in group b (the rows that share one of the two with the test
cell are left out of that fold). Every row is tested exactly once; R^2 is taken on the pooled
out-of-fold predictions, per data set and overall. Permutation importances: the drop in that
pooled R^2 when a feature is shuffled within each fold's test cell.

Features: the released stats.csv columns that describe the prompt, the image or the process up
to the current timestep (`FEATURES`); not the identifiers and not what is derived from the
scores (Best / First / Last ..., the gap, Current is best), which would leak the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from interventions.pointprompt.features import StatsTable

TARGET = "Current score"
FEATURES = (
    "Number of rounds", "Current timestamp", "Current round", "Current # points",
    "Current # green points", "Current # red points",
    "Mask size", "CC Density", "Texture score", "Contrast", "Dissimilarity", "Homogeneity",
    "Energy", "Correlation", "ASM", "BK Contrast", "BK Dissimilarity", "BK Homogeneity",
    "BK Energy", "BK Correlation", "BK ASM", "Obj Density", "Merged", "Split", "Compact",
    "Prompt coverage", "Max spread", "Avg min distance", "Inc/Exc distance", "Max spread exc",
    "Inc efficiency", "Exc encasing", "Inc encasing",
)  # fmt: skip
MODELS = ("linear", "forest")
MIN_PARTICIPANTS, MIN_IMAGES = 5, 10  # below: the report carries a caution
Progress = Callable[[int, int], None]


def design(table: StatsTable):
    """X (n x features, NaN for empty), y, participant, image and data set labels per row."""
    index = {name: k for k, name in enumerate(table.columns)}
    missing = [c for c in (TARGET, "Dataset", "Student", "Image ID") if c not in index]
    if missing:
        raise ValueError(f"the stats table lacks {', '.join(missing)}")
    features = [f for f in FEATURES if f in index]
    x = np.array(
        [[math.nan if row[index[f]] is None else float(row[index[f]]) for f in features]
         for row in table.rows],
        dtype=np.float64,
    ).reshape(len(table.rows), len(features))  # fmt: skip
    y = np.array([float(row[index[TARGET]]) for row in table.rows])
    participants = np.array([row[index["Student"]] for row in table.rows], dtype=object)
    datasets = np.array([row[index["Dataset"]] for row in table.rows], dtype=object)
    images = np.array(
        [f"{row[index['Dataset']]}#{row[index['Image ID']]}" for row in table.rows], dtype=object
    )
    return features, x, y, participants, images, datasets


def cross_classified_splits(
    participants: Sequence, images: Sequence, k: int = 3, seed: int = 0
) -> list[dict]:
    """The folds described in the module doc: dicts with train / test row indices and the
    participant and image groups held out."""
    participants, images = np.asarray(participants, dtype=object), np.asarray(images, dtype=object)
    people, pictures = np.unique(participants), np.unique(images)
    k = min(k, len(people), len(pictures))
    if k < 2:
        raise ValueError(
            f"cross-validation by participant and image needs at least 2 participants and 2 "
            f"images with timesteps; found {len(people)} and {len(pictures)}"
        )
    rng = np.random.default_rng(seed)
    person_group = dict(zip(rng.permutation(people), np.arange(len(people)) % k, strict=True))
    picture_group = dict(zip(rng.permutation(pictures), np.arange(len(pictures)) % k, strict=True))
    pg = np.array([person_group[p] for p in participants])
    ig = np.array([picture_group[i] for i in images])
    folds = []
    for a in range(k):
        for b in range(k):
            test = np.flatnonzero((pg == a) & (ig == b))
            train = np.flatnonzero((pg != a) & (ig != b))
            if len(test) and len(train):
                folds.append(
                    {
                        "participant_group": a,
                        "image_group": b,
                        "train": train,
                        "test": test,
                        "test_participants": sorted(str(p) for p in set(participants[test])),
                        "test_images": sorted(str(i) for i in set(images[test])),
                    }
                )
    return folds


def make_model(name: str, seed: int = 0, trees: int = 100):
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    impute = SimpleImputer(strategy="median", keep_empty_features=True)
    if name == "linear":
        return make_pipeline(impute, StandardScaler(), Ridge(alpha=1.0))
    if name == "forest":
        return make_pipeline(
            impute,
            RandomForestRegressor(
                n_estimators=100, min_samples_leaf=3, random_state=seed, n_jobs=1
            ),
        )
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    if len(y) < 2 or np.all(y == y[0]):
        return math.nan
    return float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def run_regressions(
    table: StatsTable,
    k: int = 3,
    seed: int = 0,
    n_repeats: int = 5,
    progress: Progress | None = None,
    trees: int = 100,
) -> dict:
    """R^2 per model, per data set and overall, and permutation importances, as plain data
    (JSON-ready): {"r2": [...], "importances": [...], "folds": [...], "n_rows", "features"}.

    A feature's importance is the drop in the pooled out-of-fold R^2 when that feature is
    shuffled within each fold's test cell (mean and std over `n_repeats` shuffles): the squared
    errors add up over the folds, so the pooled R^2 of the permuted predictions is exact."""
    if not table.rows:
        raise ValueError("no timesteps to regress on")
    features, x, y, participants, images, datasets = design(table)
    folds = cross_classified_splits(participants, images, k, seed)
    total, done = len(folds) * len(MODELS), 0
    if progress:
        progress(0, total)
    rng = np.random.default_rng(seed)
    predictions = {m: np.full(len(y), math.nan) for m in MODELS}
    sse_perm = {m: np.zeros((n_repeats, len(features))) for m in MODELS}
    for fold in folds:
        train, test = fold["train"], fold["test"]
        shuffles = [[rng.permutation(len(test)) for _ in features] for _ in range(n_repeats)]
        for name in MODELS:
            model = make_model(name, seed, trees).fit(x[train], y[train])
            predictions[name][test] = model.predict(x[test])
            for r in range(n_repeats):
                for j in range(len(features)):
                    shuffled = x[test].copy()
                    shuffled[:, j] = shuffled[shuffles[r][j], j]
                    sse_perm[name][r, j] += np.sum((y[test] - model.predict(shuffled)) ** 2)
            done += 1
            if progress:
                progress(done, total)
    tested = np.zeros(len(y), dtype=bool)
    for fold in folds:
        tested[fold["test"]] = True
    r2_rows = []
    for name in MODELS:
        groups = [(str(d), (datasets == d) & tested) for d in np.unique(datasets)]
        groups.append(("all", tested))
        for group, mask in groups:
            r2_rows.append(
                {
                    "model": name,
                    "dataset": group,
                    "r2": _r2(y[mask], predictions[name][mask]),
                    "n": int(mask.sum()),
                }
            )
    sst = float(np.sum((y[tested] - y[tested].mean()) ** 2))
    importance_rows = []
    for name in MODELS:
        sse = float(np.sum((y[tested] - predictions[name][tested]) ** 2))
        drops = (sse_perm[name] - sse) / sst if sst > 0 else np.full_like(sse_perm[name], math.nan)
        for j, feature in enumerate(features):
            importance_rows.append(
                {
                    "model": name,
                    "feature": feature,
                    "importance": float(drops[:, j].mean()),
                    "std": float(drops[:, j].std()),
                }
            )
    n_people, n_pictures = len(set(participants.tolist())), len(set(images.tolist()))
    caution = ""
    if n_people < MIN_PARTICIPANTS or n_pictures < MIN_IMAGES:
        caution = (
            f"only {n_people} participants and {n_pictures} images with timesteps: every test "
            "fold holds images and participants the models never saw, so with this few R² "
            "mostly measures extrapolation (it can be far below 0)"
        )
    return {
        "caution": caution,
        "n_participants": n_people,
        "n_images": n_pictures,
        "n_rows": len(y),
        "n_tested": int(tested.sum()),
        "features": features,
        "r2": r2_rows,
        "importances": importance_rows,
        "folds": [
            {
                "participant_group": f["participant_group"],
                "image_group": f["image_group"],
                "n_train": len(f["train"]),
                "n_test": len(f["test"]),
                "test_participants": f["test_participants"],
                "test_images": f["test_images"],
                "train_participants": sorted(str(p) for p in set(participants[f["train"]])),
                "train_images": sorted(str(i) for i in set(images[f["train"]])),
            }
            for f in folds
        ],
    }
