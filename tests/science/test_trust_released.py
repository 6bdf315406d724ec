"""The released GradTrust demo's scores (olivesgatech/GradTrust demo.py) against plain versions
written here the way the demo computes them: one image at a time, loss.backward(), the weights'
.grad read off, dropout modules switched to train mode after torch.manual_seed."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from interventions.trust import (
    TRUST_SCORE_NAMES,
    TRUST_SCORES,
    grad_trust_released,
    gradnorm,
    mc_dropout,
    odin,
    purview,
    trust_scores,
)

N_CLASSES = 7
RELEASED = (
    "grad_trust_released",
    "nll",
    "odin",
    "mcd",
    "gradnorm",
    "purview_initial",
    "purview_final",
)


def small_cnn(dropout: bool) -> nn.Module:
    layers = [
        nn.Conv2d(3, 8, 3, padding=1, bias=not dropout),  # 10 or 9 parameter tensors
        nn.BatchNorm2d(8),
        nn.ReLU(),
    ]
    if dropout:
        layers.append(nn.Dropout2d(0.2))
    layers += [
        nn.Conv2d(8, 12, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(48, 24),
        nn.ReLU(),
    ]
    if dropout:
        layers.append(nn.Dropout(0.3))
    layers.append(nn.Linear(24, N_CLASSES))
    model = nn.Sequential(*layers)
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
        model[-1].weight.mul_(10.0)  # spread-out logits: varied predictions and confidences
        model[-1].bias.uniform_(-1.0, 1.0)
    return model.eval()


@pytest.fixture(params=[False, True], ids=["plain", "dropout"])
def model_and_images(request):
    torch.manual_seed(2)
    model = small_cnn(request.param)
    x = torch.randn(6, 3, 16, 16) + 3.0 * torch.randn(6, 3, 1, 1)  # per-image colour casts
    assert len(set(model(x).argmax(1).tolist())) > 1  # more than one predicted class
    return model, x


# ----------------------------------------------------------------- plain released versions


def first_weight_with_c_rows(model, n_classes):
    for _name, p in model.named_parameters():
        if p.ndim == 2 and p.shape[0] == n_classes:
            return p
    raise AssertionError("no 2-D parameter with C rows")


def plain_grad_trust(model, x1):
    model.eval().zero_grad()
    out = model(x1)
    c = out.shape[1]
    nn.MSELoss()(out, torch.full((1, c), 1.0 / c)).backward()
    g = first_weight_with_c_rows(model, c).grad.detach().double()
    energy = torch.var(torch.pow(g, 2), 1)
    return float(energy.max() / energy.mean())


def plain_nll(model, x1):
    model.eval()
    with torch.no_grad():
        out = model(x1)
    return float(-F.nll_loss(out, out.argmax(1)))


def plain_odin(model, x1, temper=100.0, noise=0.0014):
    model.eval().zero_grad()
    inputs = x1.clone().requires_grad_(True)
    out = model(inputs)
    labels = torch.tensor(np.argmax(out.detach().numpy(), axis=1))
    nn.CrossEntropyLoss()(out / temper, labels).backward()
    gradient = (torch.ge(inputs.grad, 0).float() - 0.5) * 2
    out = model(inputs.detach() - noise * gradient) / temper
    p = out.detach().double().numpy()
    p = np.exp(p - p.max(1, keepdims=True))
    return float(np.max(p / p.sum(1, keepdims=True)))


def plain_mcd(model, x1, seed, passes=10):
    """The released loop with every pass stacked (the demo stacks only the last one)."""
    torch.manual_seed(seed)
    model.eval()
    for m in model.modules():
        if m.__class__.__name__.startswith("Dropout"):
            m.train()
    predictions = []
    for _ in range(passes):
        with torch.no_grad():
            predictions.append(torch.softmax(model(x1), dim=1).double().numpy())
    model.eval()
    mean = np.mean(np.stack(predictions), axis=0)
    return float(-(-np.sum(mean * np.log(mean + 0.0001), axis=-1))[0])


def plain_gradnorm(model, x1):
    model.eval().zero_grad()
    out = model(x1)
    c = out.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # KLDivLoss 'mean' reduction warning
        loss = nn.KLDivLoss()(torch.full((1, c), 1.0 / c), F.softmax(out, dim=1))
    loss.backward()
    return float(-torch.norm(first_weight_with_c_rows(model, c).grad.double(), p=2))


def plain_purview(model, x1):
    model.eval().zero_grad()  # fresh gradients (the demo keeps GradNorm's)
    out = model(x1)
    loss = nn.BCEWithLogitsLoss(reduction="none")(out, torch.ones_like(out))
    loss.mean().backward()
    gradients = []
    for j, (_n, p) in enumerate(model.named_parameters()):  # noqa: B007 (j used after, as released)
        gradients.append(float((p.grad.double() ** 2).sum()))
    return -np.mean(gradients[: math.floor(j / 2)]), -np.mean(gradients[math.ceil(j / 2) :])


def plain_scores(model, x1, seed=0):
    initial, final = plain_purview(model, x1)
    return {
        "grad_trust_released": plain_grad_trust(model, x1),
        "nll": plain_nll(model, x1),
        "odin": plain_odin(model, x1),
        "mcd": plain_mcd(model, x1, seed),
        "gradnorm": plain_gradnorm(model, x1),
        "purview_initial": initial,
        "purview_final": final,
    }


def rel_diff(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


# ----------------------------------------------------------------- tests


def test_released_scores_equal_plain_versions(model_and_images):
    model, x = model_and_images
    ours = trust_scores(model, x, mcd_seed=11)
    for b in range(len(x)):
        plain = plain_scores(model, x[b : b + 1], seed=11)
        for name in RELEASED:
            assert rel_diff(float(ours[name][b]), plain[name]) <= 1e-4, (name, b)


def test_released_scores_on_resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    ours = trust_scores(model, x)
    for b in range(len(x)):
        plain = plain_scores(model, x[b : b + 1])
        for name in RELEASED:
            assert rel_diff(float(ours[name][b]), plain[name]) <= 1e-4, (name, b)


def test_nll_is_the_predicted_logit(model_and_images):
    model, x = model_and_images
    s = trust_scores(model, x)
    assert np.allclose(s["nll"], s["logit"], rtol=0, atol=0)


def test_grad_trust_released_is_a_function_of_the_logits(model_and_images):
    model, x = model_and_images
    with torch.no_grad():
        z = model.eval()(x).double()
    k = (z - 1.0 / z.shape[1]) ** 4
    assert np.allclose(grad_trust_released(model, x), (k.amax(1) / k.mean(1)).numpy(), rtol=1e-6)


def test_single_score_functions_equal_trust_scores(model_and_images):
    model, x = model_and_images
    s = trust_scores(model, x, mcd_seed=4)
    assert np.allclose(grad_trust_released(model, x), s["grad_trust_released"], rtol=1e-12)
    assert np.allclose(gradnorm(model, x), s["gradnorm"], rtol=1e-12)
    assert np.allclose(odin(model, x), s["odin"], rtol=1e-12)
    assert np.allclose(mc_dropout(model, x, seed=4), s["mcd"], rtol=1e-12)
    initial, final = purview(model, x)
    assert np.allclose(initial, s["purview_initial"]) and np.allclose(final, s["purview_final"])
    vm_initial, vm_final = purview(model, x, per_sample="vmap")
    assert np.allclose(vm_initial, initial, rtol=1e-4) and np.allclose(vm_final, final, rtol=1e-4)


def test_batch_equals_one_at_a_time(model_and_images):
    model, x = model_and_images
    batch = trust_scores(model, x)
    for b in range(len(x)):
        single = trust_scores(model, x[b : b + 1])
        assert single["prediction"][0] == batch["prediction"][b]
        for name in TRUST_SCORE_NAMES:
            assert rel_diff(float(batch[name][b]), float(single[name][0])) <= 1e-4, (name, b)


def test_keys_follow_trust_scores_list(model_and_images):
    model, x = model_and_images
    s = trust_scores(model, x)
    assert list(s) == ["prediction", *TRUST_SCORE_NAMES]
    assert len(set(TRUST_SCORE_NAMES)) == len(TRUST_SCORES) == 12
    assert all(v.shape == (len(x),) and np.isfinite(v).all() for v in s.values())
    only = trust_scores(model, x, scores=["odin", "softmax"])
    assert list(only) == ["prediction", "softmax", "odin"]
    assert np.array_equal(only["odin"], s["odin"])
    with pytest.raises(ValueError, match="unknown trust scores"):
        trust_scores(model, x, scores=["brier"])


def test_mcd_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(0)
    model = small_cnn(dropout=True)
    x = torch.randn(3, 3, 16, 16)
    state = torch.get_rng_state()
    a = mc_dropout(model, x, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(a, mc_dropout(model, x, seed=5))
    assert not np.allclose(a, mc_dropout(model, x, seed=6))
    with pytest.raises(ValueError, match="passes"):
        mc_dropout(model, x, passes=0)


def test_mcd_without_dropout_is_one_pass():
    torch.manual_seed(0)
    model = small_cnn(dropout=False)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        p = torch.softmax(model(x).double(), 1).numpy()
    expected = (p * np.log(p + 1e-4)).sum(1)
    for seed in (0, 1):
        assert np.allclose(mc_dropout(model, x, seed=seed), expected, rtol=1e-12)


def test_modes_restored_and_grads_untouched():
    torch.manual_seed(0)
    model = small_cnn(dropout=True)
    x = torch.randn(2, 3, 16, 16)
    reference = trust_scores(model, x)  # eval model
    model.train()
    model[1].eval()  # a mixed state must come back exactly
    before = [m.training for m in model.modules()]
    s = trust_scores(model, x)
    assert [m.training for m in model.modules()] == before
    assert all(p.grad is None for p in model.parameters())
    for name in TRUST_SCORE_NAMES:  # computed in eval mode whatever the model's mode
        assert np.allclose(s[name], reference[name], rtol=1e-12), name


def test_frozen_parameters_give_the_same_scores(model_and_images):
    model, x = model_and_images
    reference = trust_scores(model, x)
    model.requires_grad_(False)
    frozen = trust_scores(model, x)
    for name in TRUST_SCORE_NAMES:
        assert np.allclose(frozen[name], reference[name], rtol=1e-12), name
    vm_initial, _ = purview(model, x, per_sample="vmap")
    assert np.allclose(vm_initial, reference["purview_initial"], rtol=1e-4)


def test_purview_fresh_gradients_differ_from_accumulated():
    """The demo's purview sees GradNorm's gradients too; ours does not."""
    torch.manual_seed(0)
    model = small_cnn(dropout=False)
    x1 = torch.randn(1, 3, 16, 16)
    plain_gradnorm(model, x1)  # leaves .grad filled, as in the demo
    out = model(x1)
    nn.BCEWithLogitsLoss(reduction="none")(out, torch.ones_like(out)).mean().backward()
    accumulated = [float((p.grad.double() ** 2).sum()) for p in model.parameters()]
    j = len(accumulated) - 1
    initial, final = purview(model, x1)
    assert initial[0] == pytest.approx(plain_purview(model, x1)[0], rel=1e-5)
    assert final[0] != pytest.approx(-np.mean(accumulated[math.ceil(j / 2) :]), rel=1e-5)
