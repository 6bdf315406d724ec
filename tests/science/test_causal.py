"""Deletion/insertion curves against RISE's own per-step loop, and the RISE blur kernel against
its definition (scipy's gaussian_filter of a Dirac delta, applied per channel)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import nn

from interventions.causal import (
    causal_auc,
    causal_curve,
    deletion_curve,
    insertion_curve,
    rise_blur,
    rise_gaussian_kernel,
)
from interventions.models import build_demo_cnn


def _rise_gkern(klen, nsig):
    """RISE's gkern, verbatim in spirit: a delta smoothed by gaussian_filter, on the diagonal
    of a (3, 3, klen, klen) conv kernel."""
    inp = np.zeros((klen, klen))
    inp[klen // 2, klen // 2] = 1
    k = gaussian_filter(inp, nsig)
    kern = np.zeros((3, 3, klen, klen))
    for c in range(3):
        kern[c, c] = k
    return torch.from_numpy(kern.astype("float32"))


def _rise_loop(model, img, explanation, mode, step):
    """RISE CausalMetric.single_run: one forward per step, pixels copied in place."""
    _, _, h, w = img.shape
    hw = h * w
    with torch.no_grad():
        c = int(model(img).argmax(1))
        if mode == "deletion":
            start, finish = img.clone(), torch.zeros_like(img)
        else:
            start, finish = F.conv2d(img, _rise_gkern(11, 5), padding=5), img.clone()
        n_steps = (hw + step - 1) // step
        scores = np.empty(n_steps + 1)
        order = np.argsort(-explanation.reshape(hw), kind="stable")
        for i in range(n_steps + 1):
            scores[i] = float(torch.softmax(model(start), 1)[0, c])
            if i < n_steps:
                coords = order[step * i : step * (i + 1)]
                start.view(1, 3, hw)[0, :, coords] = finish.view(1, 3, hw)[0, :, coords]
    auc = (scores.sum() - scores[0] / 2 - scores[-1] / 2) / (scores.shape[0] - 1)
    return scores, auc


def _model():
    torch.manual_seed(0)
    return build_demo_cnn(num_classes=6).eval()


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_curves_equal_rise_loop(mode):
    model = _model()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    saliency = torch.rand(2, 32, 32, dtype=torch.float64)
    assert all(len(torch.unique(s)) == s.numel() for s in saliency)  # tie-free
    step = 37  # 1024 pixels: 28 steps, the last one partial
    curve = causal_curve(model, x, saliency, mode=mode, step=step, batch_size=7)
    assert curve.scores.shape == (2, 29)
    for b in range(2):
        scores, auc = _rise_loop(model, x[b : b + 1], saliency[b].numpy(), mode, step)
        assert np.abs(curve.scores[b] - scores).max() <= 1e-6
        assert curve.auc[b] == pytest.approx(auc, abs=1e-6)


def test_default_step_gives_225_scores_on_224():
    model = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 5)).eval()
    torch.manual_seed(2)
    x = torch.randn(1, 3, 224, 224)
    saliency = np.random.default_rng(0).random((224, 224))
    curve = deletion_curve(model, x, saliency)
    assert curve.scores.shape == (1, 225)
    probs = torch.softmax(model(x), 1)[0].detach()
    pred = int(probs.argmax())
    assert curve.scores[0, 0] == pytest.approx(float(probs[pred]), abs=1e-6)
    zero_prob = float(torch.softmax(model(torch.zeros_like(x)), 1)[0, pred].detach())
    assert curve.scores[0, -1] == pytest.approx(zero_prob, abs=1e-6)
    ins = insertion_curve(model, x, saliency, class_idx=pred)
    assert ins.scores[0, -1] == pytest.approx(float(probs[pred]), abs=1e-6)


def test_blur_kernel_equals_definition():
    delta = np.zeros((11, 11))
    delta[5, 5] = 1.0
    assert np.abs(rise_gaussian_kernel(11, 5) - gaussian_filter(delta, 5)).max() < 1e-12
    for klen, sig in [(5, 1.0), (7, 3.0), (3, 2.0)]:
        d = np.zeros((klen, klen))
        d[klen // 2, klen // 2] = 1.0
        assert np.abs(rise_gaussian_kernel(klen, sig) - gaussian_filter(d, sig)).max() < 1e-12
    torch.manual_seed(3)
    x = torch.randn(2, 3, 20, 24)
    assert torch.allclose(rise_blur(x), F.conv2d(x, _rise_gkern(11, 5), padding=5), atol=1e-6)


def test_auc_formula_and_ordering():
    assert causal_auc(np.array([1.0, 0.5, 0.0])) == pytest.approx((1.5 - 0.5 - 0.0) / 2)
    assert causal_auc(np.ones(225)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2"):
        causal_auc(np.array([1.0]))
    # ties keep pixel order (stable): a constant map deletes in raster order
    model = _model()
    x = torch.randn(1, 3, 16, 16)
    flat = causal_curve(model, x, torch.zeros(16, 16), step=16)
    raster = causal_curve(model, x, -torch.arange(256.0).reshape(16, 16), step=16)
    assert np.array_equal(flat.scores, raster.scores)
    assert flat.scores.shape == (1, math.ceil(256 / 16) + 1)


def test_bad_input_is_named():
    model = _model()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="mode"):
        causal_curve(model, x, torch.rand(16, 16), mode="erase")
    with pytest.raises(ValueError, match="saliency must have shape"):
        causal_curve(model, x, torch.rand(8, 8))
    with pytest.raises(ValueError, match="step"):
        causal_curve(model, x, torch.rand(16, 16), step=0)
    with pytest.raises(ValueError, match="NaN"):
        causal_curve(model, x, torch.full((16, 16), float("nan")))
