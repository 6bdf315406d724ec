"""GradTrust against its gradient definition computed directly (one backward per image, the
last layer's .grad read off), and the baselines against their formulas."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from interventions.trust import (
    entropy,
    grad_trust,
    last_linear_layer,
    margin,
    max_logit,
    softmax_confidence,
    trust_scores,
)


def _direct_grad_trust(model, x1, k, squared):
    model.zero_grad()
    logits = model(x1)
    target = torch.full_like(logits, 1.0 / logits.shape[1])
    F.mse_loss(logits, target).backward()
    g = model.fc.weight.grad.double()
    v = (g.pow(2) if squared else g).var(dim=1, unbiased=True)  # ddof cancels in the ratio
    ranked = logits[0].topk(k + 1).indices
    return float(v[ranked[0]] / v[ranked[1:]].mean())


@pytest.mark.parametrize("squared", [False, True])
def test_grad_trust_equals_direct_gradients(squared):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(3, 3, 32, 32)
    for k in (1, 3, 9):
        batch = grad_trust(model, x, top_k=k, squared=squared)
        for b in range(3):
            single = grad_trust(model, x[b : b + 1], top_k=k, squared=squared)[0]
            assert single == pytest.approx(
                _direct_grad_trust(model, x[b : b + 1], k, squared), rel=1e-6
            )
            # batched convolutions round differently from single-image ones
            assert batch[b] == pytest.approx(single, rel=1e-4)
    assert last_linear_layer(model) == "fc"


def test_grad_trust_bad_top_k():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    with pytest.raises(ValueError, match="top_k"):
        grad_trust(model, torch.randn(1, 3, 32, 32), top_k=4)


def test_baselines_equal_formulas():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    p = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(1, keepdims=True)
    assert np.allclose(softmax_confidence(logits), p.max(1))
    assert np.allclose(entropy(logits), -(p * np.log(p)).sum(1))
    srt = np.sort(p, 1)
    assert np.allclose(margin(logits), srt[:, -1] - srt[:, -2])
    assert np.allclose(max_logit(logits), [2.0, 0.0])
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    scores = trust_scores(model, torch.randn(2, 3, 32, 32))
    assert {"prediction", "grad_trust", "softmax", "entropy", "margin", "logit"} <= set(scores)
    assert all(np.isfinite(v).all() and v.shape == (2,) for v in scores.values())
