"""Explanations against oracles: the grad-cam package for Grad-CAM, plain per-class loops
(one forward and one backward each, written from the definitions) for the other methods."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from interventions.explain import (
    METHODS,
    class_activation_map,
    contrast_cam,
    counterfactual_cam,
    explain,
    grad_cam,
    grad_cam_pp,
    normalise_maps,
)
from interventions.models import build_demo_cnn


def _resnet(num_classes=10):
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=num_classes).eval()


def _demo_cnn():
    torch.manual_seed(1)
    return build_demo_cnn(num_classes=6).eval()


def reference_cam(model, x1, layer, loss_fn, plus_plus=False):
    """Plain definition for one image: forward, loss.backward(), read dL/dA, weight, map."""
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
    a, g = store["a"].detach()[0], store["a"].grad[0]
    if plus_plus:  # VOICE reference code, including its exp(score) factor
        num = g.pow(2)
        denom = 2 * g.pow(2) + (a * g.pow(3)).sum(dim=(1, 2), keepdim=True)
        denom = torch.where(denom != 0.0, denom, torch.ones_like(denom))
        alpha = num / (denom + 1e-7)
        weights = (alpha * F.relu(score.detach().exp() * g)).sum(dim=(1, 2))
    else:
        weights = g.mean(dim=(1, 2))
    cam = F.relu((weights[:, None, None] * a).sum(0))
    up = F.interpolate(cam[None, None], size=x1.shape[-2:], mode="bilinear", align_corners=False)[
        0, 0
    ]
    lo, hi = up.min(), up.max()
    return (up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)


@pytest.mark.parametrize("which", ["resnet18", "demo"])
def test_grad_cam_equals_grad_cam_package(which):
    model, layer = (_resnet(), "layer4") if which == "resnet18" else (_demo_cnn(), "features.conv4")
    torch.manual_seed(2)
    size = 64 if which == "resnet18" else 96
    x = torch.randn(3, 3, size, size)
    maps, logits = grad_cam(model, x, layer)
    preds = logits.argmax(1).tolist()
    for classes in (preds, [1, 4, 2]):
        maps, _ = grad_cam(model, x, layer, classes)
        with GradCAM(model=model, target_layers=[model.get_submodule(layer)]) as cam:
            oracle = cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])
        assert maps.shape == (3, size, size)
        assert np.abs(maps.numpy() - oracle).max() <= 1e-5


@pytest.mark.parametrize(
    "method,loss,plus_plus",
    [
        ("gradcam", lambda z, c: z[0, c], False),
        ("counterfactual", lambda z, c: -z[0, c], False),
        ("contrast", lambda z, c: F.cross_entropy(z, torch.tensor([c])), False),
        ("gradcam++", lambda z, c: z[0, c], True),
        ("contrast++", lambda z, c: F.cross_entropy(z, torch.tensor([c])), True),
    ],
)
def test_methods_equal_plain_loop(method, loss, plus_plus):
    model = _resnet()
    torch.manual_seed(3)
    x = torch.randn(2, 3, 64, 64)
    for c in (0, 4, 9):
        maps, _ = explain(model, x, "layer4", method, c)
        for b in range(2):
            ref = reference_cam(model, x[b : b + 1], "layer4", lambda z, c=c: loss(z, c), plus_plus)
            assert (maps[b] - ref).abs().max() <= 1e-4, (method, c, b)


def test_named_wrappers_match_registry():
    model = _resnet()
    torch.manual_seed(4)
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(
        grad_cam(model, x, "layer4", 3)[0], explain(model, x, "layer4", "gradcam", 3)[0]
    )
    assert torch.equal(
        grad_cam_pp(model, x, "layer4", 3)[0], explain(model, x, "layer4", "gradcam++", 3)[0]
    )
    assert torch.equal(
        counterfactual_cam(model, x, "layer4", 3)[0],
        explain(model, x, "layer4", "counterfactual", 3)[0],
    )
    assert torch.equal(
        contrast_cam(model, x, "layer4", 5)[0], explain(model, x, "layer4", "contrast", 5)[0]
    )
    # default contrast: the second most likely class of each image
    logits = model(x)
    second = logits.topk(2, dim=1).indices[:, 1]
    assert torch.equal(
        contrast_cam(model, x, "layer4")[0], explain(model, x, "layer4", "contrast", second)[0]
    )
    assert set(METHODS) >= {"gradcam", "gradcam++", "counterfactual", "contrast"}


def test_batch_equals_single_images_and_maps_are_normalised():
    model = _resnet()
    torch.manual_seed(5)
    x = torch.randn(4, 3, 64, 48)
    maps, logits = grad_cam(model, x, "layer4")
    assert maps.shape == (4, 64, 48) and logits.shape == (4, 10)
    for b in range(4):
        single, _ = grad_cam(model, x[b : b + 1], "layer4")
        assert torch.allclose(single[0], maps[b], atol=1e-5)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    assert torch.isfinite(maps).all()


def test_constant_map_is_zero_not_nan():
    acts = torch.ones(2, 3, 4, 4)
    weights = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])  # ReLU -> 0; constant 3
    maps = class_activation_map(acts, weights, (16, 16))
    assert torch.equal(maps, torch.zeros(2, 16, 16))
    assert torch.equal(normalise_maps(torch.full((1, 5, 5), 7.0)), torch.zeros(1, 5, 5))


def test_hooks_removed_also_on_errors():
    model = _resnet()
    layer = model.layer4
    x = torch.randn(1, 3, 64, 64)
    grad_cam(model, x, "layer4")
    assert not layer._forward_hooks and not layer._backward_hooks

    class Exploding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, inp):
            self.conv(inp)
            raise RuntimeError("boom")

    broken = Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        grad_cam(broken, x, "conv")
    assert not broken.conv._forward_hooks


def test_bad_input_is_named():
    model = _resnet()
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match="layer 'layer9' not found"):
        grad_cam(model, x, "layer9")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        grad_cam(model, x[0], "layer4")
    with pytest.raises(ValueError, match="out of range"):
        grad_cam(model, x, "layer4", 10)
    with pytest.raises(ValueError, match="NaN"):
        grad_cam(model, torch.full((1, 3, 64, 64), float("nan")), "layer4")
    with pytest.raises(ValueError, match="unknown CAM method"):
        explain(model, x, "layer4", "scorecam")
    with pytest.raises(ValueError, match="must output"):
        grad_cam(model, x, "fc")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_runs_on_cuda():
    model = _resnet().cuda()
    x = torch.randn(2, 3, 64, 64, device="cuda")
    maps, logits = grad_cam(model, x, "layer4")
    cpu_maps, _ = grad_cam(model.cpu(), x.cpu(), "layer4")
    assert maps.device.type == "cuda"
    assert torch.allclose(maps.cpu(), cpu_maps, atol=1e-4)
