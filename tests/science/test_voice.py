"""VOICE against the plain per-class loop of the reference code: one forward and one backward
pass per contrast class, maps stacked, variance, min-max normalisation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from interventions.voice import contrast_class_sets, voice, voice_stats


def _loop_map(model, x1, layer, loss_fn, plus_plus):
    store = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["a"] = out

    handle = model.get_submodule(layer).register_forward_hook(hook)
    try:
        logits = model(x1)
    finally:
        handle.remove()
    model.zero_grad()
    score = loss_fn(logits)
    score.backward()
    a, g = store["a"].detach()[0].double(), store["a"].grad[0].double()
    if plus_plus:  # exp(score) in float64: in float32 it overflows for a logit of 100
        denom = 2 * g.pow(2) + (a * g.pow(3)).sum(dim=(1, 2), keepdim=True)
        denom = torch.where(denom != 0.0, denom, torch.ones_like(denom))
        weights = (g.pow(2) / (denom + 1e-7) * F.relu(score.detach().double().exp() * g)).sum(
            dim=(1, 2)
        )
    else:
        weights = g.mean(dim=(1, 2))
    cam = F.relu((weights[:, None, None] * a).sum(0))
    up = F.interpolate(cam[None, None], size=x1.shape[-2:], mode="bilinear", align_corners=False)[
        0, 0
    ]
    lo, hi = up.min(), up.max()
    return ((up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)).float(), logits.detach()[0]


def _loop_voice(model, x1, layer, plus_plus, classes=None):
    """The reference algorithm for one image, with NaN-free normalisation."""
    expl, logits = _loop_map(model, x1, layer, lambda z: z[0, z[0].argmax()], plus_plus)
    pred = int(logits.argmax())
    second = int(logits.topk(2).indices[1])
    ce = lambda q: lambda z: F.cross_entropy(z, torch.tensor([q]))  # noqa: E731
    contrast, _ = _loop_map(model, x1, layer, ce(second), plus_plus)
    qs = [q for q in range(logits.numel()) if q != pred] if classes is None else classes
    maps = torch.stack([_loop_map(model, x1, layer, ce(q), plus_plus)[0] for q in qs])
    var = maps.double().var(0, unbiased=True)
    lo, hi = var.min(), var.max()
    unc = ((var - lo) / (hi - lo) if hi > lo else torch.zeros_like(var)).float()
    return expl, contrast, unc, logits, maps


def _resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


def _check_against_loop(result, model, x, layer, plus_plus, topk=None):
    for b in range(x.shape[0]):
        classes = None
        if topk is not None:
            with torch.no_grad():
                classes = model(x[b : b + 1])[0].topk(topk + 1).indices[1:].tolist()
        expl, contrast, unc, logits, maps = _loop_voice(
            model, x[b : b + 1], layer, plus_plus, classes
        )
        assert (result.explanation[b] - expl).abs().max() <= 1e-4
        assert (result.contrast[b] - contrast).abs().max() <= 1e-4
        assert (result.uncertainty[b] - unc).abs().max() <= 1e-4
        st = result.stats[b]
        assert st["prediction"] == int(logits.argmax())
        assert st["contrast_class"] == int(logits.topk(2).indices[1])
        assert st["logit_pred"] == pytest.approx(float(logits.max()), abs=1e-5)
        assert st["log_prob_pred"] == pytest.approx(
            float(torch.log_softmax(logits, 0).max()), abs=1e-5
        )
        u, e = result.uncertainty[b].numpy(), result.explanation[b].numpy()
        inter = np.logical_and(u > 0.1, e > 0.1).sum()
        union = np.logical_or(u > 0.1, e > 0.1).sum()
        assert st["iou"] == pytest.approx((inter + 1e-6) / (union + 1e-6), abs=1e-12)
        assert st["snr"] == pytest.approx(
            u.astype(np.float64).mean() / u.astype(np.float64).std(), rel=1e-9
        )
    return maps


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_voice_equals_per_class_loop(method):
    model = _resnet()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    result = voice(model, x, "layer4", method=method, chunk_size=4)  # several chunks
    assert result.uncertainty.shape == (2, 64, 64)
    _check_against_loop(result, model, x, "layer4", method == "gradcam++")


def test_voice_top_k_contrast_classes():
    model = _resnet()
    torch.manual_seed(2)
    x = torch.randn(2, 3, 64, 64)
    result = voice(model, x, "layer4", contrast_classes=3)
    _check_against_loop(result, model, x, "layer4", False, topk=3)


class _ZeroContrast(nn.Module):
    """conv -> ReLU (A >= 0) -> GAP -> linear. Class 0 is predicted (bias 100); class 1's
    weights exceed class 0's everywhere, so its contrast weights alpha_1 = (W^T p - W_1) / uv are
    all negative and ContrastCAM(0, 1) = ReLU(negative) is all zero."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 5)
        with torch.no_grad():
            self.fc.weight[0] = 1.0
            self.fc.weight[1] = 2.0
            self.fc.bias.zero_()
            self.fc.bias[0] = 100.0

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_voice_with_all_zero_contrast_maps(method):
    model = _ZeroContrast().eval()
    torch.manual_seed(4)
    x = torch.randn(2, 3, 16, 16)
    result = voice(model, x, "relu", method=method)
    maps = _check_against_loop(result, model, x, "relu", method == "gradcam++")
    assert torch.equal(maps[0], torch.zeros_like(maps[0]))  # class 1's map: the case exercised
    for t in (result.explanation, result.contrast, result.uncertainty):
        assert torch.isfinite(t).all()


def test_voice_batch_equals_single_images():
    model = _resnet()
    torch.manual_seed(5)
    x = torch.randn(3, 3, 64, 64)
    batch = voice(model, x, "layer4")
    for b in range(3):
        single = voice(model, x[b : b + 1], "layer4")
        assert torch.allclose(single.uncertainty[0], batch.uncertainty[b], atol=1e-5)
        assert single.stats[0]["prediction"] == batch.stats[b]["prediction"]


def test_contrast_class_sets_and_bad_options():
    logits = torch.tensor([[0.1, 3.0, 0.5, 2.0], [5.0, 1.0, 0.0, 4.0]])
    assert contrast_class_sets(logits, "all").tolist() == [[0, 2, 3], [1, 2, 3]]
    assert contrast_class_sets(logits, 2).tolist() == [[3, 2], [3, 1]]
    with pytest.raises(ValueError, match="contrast_classes"):
        contrast_class_sets(logits, "top")
    with pytest.raises(ValueError, match="1..3"):
        contrast_class_sets(logits, 4)
    with pytest.raises(ValueError, match="VOICE method"):
        voice(_resnet(), torch.randn(1, 3, 32, 32), "layer4", method="contrast")


def test_voice_stats_edge_cases():
    zeros = np.zeros((4, 4))
    iou, snr = voice_stats(zeros, zeros)
    assert iou == pytest.approx(1.0) and snr == 0.0
    e = np.zeros((4, 4))
    e[:2] = 1.0
    u = np.zeros((4, 4))
    u[1:3] = 1.0
    iou, snr = voice_stats(e, u)
    assert iou == pytest.approx((4 + 1e-6) / (12 + 1e-6))
    assert snr == pytest.approx(0.5 / 0.5)
