"""Trust evaluation: AUROC/AUPR against plain pair-counting and precision-at-rank versions, the
resumable batched driver against trust_scores, and the figures' files."""

import numpy as np
import pytest
import torch
from torch import nn

from interventions.trust import TRUST_SCORE_NAMES, trust_scores
from interventions.trust_eval import (
    evaluate_trust,
    render_trust_plots,
    summarise_rows,
    summarise_trust,
    write_trust_plots,
)


def plain_auroc(score, positive):
    """P(score of a random positive > score of a random negative) + P(tie) / 2."""
    pos, neg = score[positive], score[~positive]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def plain_aupr(score, positive):
    """Mean over positives of the precision among images scored at least as high (no ties)."""
    order = np.argsort(-score)
    hits = positive[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return precision[hits].mean()


def test_summary_equals_plain_versions_and_orients_scores():
    rng = np.random.default_rng(0)
    n = 40
    labels = rng.integers(0, 4, n)
    predictions = np.where(rng.random(n) < 0.6, labels, (labels + 1) % 4)
    correct = labels == predictions
    softmax = rng.random(n) + 0.3 * correct
    entropy = rng.random(n) - 0.3 * correct  # lower = more trustworthy
    summary = summarise_trust({"softmax": softmax, "entropy": entropy}, labels, predictions)
    assert summary.n_images == n and summary.n_correct == int(correct.sum())
    assert summary.accuracy == pytest.approx(correct.mean())
    s, e = summary.scores["softmax"], summary.scores["entropy"]
    assert s.auroc == pytest.approx(plain_auroc(softmax, correct))
    assert s.aupr == pytest.approx(plain_aupr(softmax, correct))
    assert e.auroc == pytest.approx(plain_auroc(-entropy, correct)) and e.auroc > 0.5
    assert e.aupr == pytest.approx(plain_aupr(-entropy, correct))
    assert not e.higher_is_trustworthy and s.note == ""


def test_ties_infinities_and_nans():
    labels = np.array([0, 0, 0, 0, 0, 0])
    predictions = np.array([0, 1, 0, 1, 0, 0])
    correct = labels == predictions
    tied = np.array([1.0, 1.0, 2.0, 0.0, 2.0, 1.0])
    with_inf = np.array([np.inf, 1.0, np.inf, -np.inf, 5.0, 2.0])
    finite_version = np.array([1e300, 1.0, 1e300, -1e300, 5.0, 2.0])
    with_nan = np.array([np.nan, 1.0, 3.0, 0.0, 2.0, np.nan])
    summary = summarise_trust(
        {"softmax": tied, "margin": with_inf, "logit": with_nan}, labels, predictions
    )
    assert summary.scores["softmax"].auroc == pytest.approx(plain_auroc(tied, correct))
    assert summary.scores["margin"].auroc == pytest.approx(plain_auroc(finite_version, correct))
    assert summary.scores["margin"].aupr == pytest.approx(plain_aupr(finite_version, correct))
    nan = summary.scores["logit"]
    keep = ~np.isnan(with_nan)
    assert nan.n_images == 4 and "2 image(s) with a NaN score left out" in nan.note
    assert nan.auroc == pytest.approx(plain_auroc(with_nan[keep], correct[keep]))


@pytest.mark.parametrize("predictions", [[0, 1, 2], [1, 2, 0]], ids=["all-right", "all-wrong"])
def test_undefined_when_all_correct_or_all_wrong(predictions):
    summary = summarise_trust({"softmax": [0.9, 0.5, 0.7]}, [0, 1, 2], predictions)
    s = summary.scores["softmax"]
    assert s.auroc is None and s.aupr is None
    assert "undefined: every prediction is" in s.note
    assert summary.accuracy in (0.0, 1.0)
    assert summarise_trust({}, [], []).accuracy is None


def tiny_model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(6, 4),
    )
    with torch.no_grad():
        model[-1].weight.mul_(8.0)
    return model.eval()


def test_driver_rows_equal_trust_scores_and_resume():
    model = tiny_model()
    x = torch.randn(7, 3, 12, 12) + 2.0 * torch.randn(7, 3, 1, 1)
    labels = [0, 1, 2, 3, 0, 1, 2]
    direct = trust_scores(model, x, mcd_seed=3)
    loaded = []

    def items():
        for i in range(len(x)):
            yield f"img{i}", labels[i], (lambda i=i: loaded.append(i) or x[i])

    calls = []
    rows = list(
        evaluate_trust(model, items(), batch_size=3, progress=lambda *a: calls.append(a),
                       total=7, mcd_seed=3)
    )  # fmt: skip
    assert [r["id"] for r in rows] == [f"img{i}" for i in range(7)]
    assert calls == [(3, 7), (6, 7), (7, 7)]
    for i, row in enumerate(rows):
        assert row["prediction"] == direct["prediction"][i]
        assert row["correct"] == (row["prediction"] == labels[i])
        for name in TRUST_SCORE_NAMES:
            assert row[name] == pytest.approx(float(direct[name][i]), rel=1e-4), name
    # resume: done images are neither loaded nor scored; the rest is unchanged
    loaded.clear()
    done = {"img0", "img1", "img2", "img5"}
    rest = list(evaluate_trust(model, items(), batch_size=2, done_ids=done, mcd_seed=3))
    assert [r["id"] for r in rest] == ["img3", "img4", "img6"] and loaded == [3, 4, 6]
    by_id = {r["id"]: r for r in rows}
    for row in rest:
        for name in TRUST_SCORE_NAMES:
            assert row[name] == pytest.approx(by_id[row["id"]][name], rel=1e-4), name
    assert summarise_rows(rows).scores.keys() == set(TRUST_SCORE_NAMES)


def test_plots_render_png_and_svg(tmp_path):
    rng = np.random.default_rng(1)
    n = 30
    labels = rng.integers(0, 3, n)
    predictions = np.where(rng.random(n) < 0.7, labels, (labels + 1) % 3)
    scores = {name: rng.random(n) + 0.5 for name in TRUST_SCORE_NAMES}
    a = summarise_trust(scores, labels, predictions)
    b = summarise_trust(scores, labels, labels)  # all correct: undefined cells
    files = render_trust_plots({"model A": a, "model B": b}, scores, labels == predictions)
    assert set(files) == {"table.png", "table.svg", "scatter.png", "scatter.svg"}
    for name, data in files.items():
        if name.endswith(".png"):
            assert data.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            assert b"<svg" in data[:1000] and b"GradTrust" in data
    assert b"model A" in files["table.svg"] and b"AUROC" in files["table.svg"]
    again = render_trust_plots({"model A": a, "model B": b}, scores, labels == predictions)
    assert again["table.svg"] == files["table.svg"]  # no date, fixed ids
    paths = write_trust_plots(tmp_path / "plots", files)
    assert sorted(p.name for p in paths) == sorted(files)
    assert (tmp_path / "plots" / "scatter.png").read_bytes() == files["scatter.png"]
