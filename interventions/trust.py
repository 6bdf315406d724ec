"""Prediction trust scores: GradTrust and the softmax, entropy, margin and logit baselines.

GradTrust (Prabhushankar & AlRegib, MIPR 2024): backpropagate the loss to a uniform target,
L = mean_c (z_c - 1/C)^2 (the reference's MSE), to the last linear layer's weights W (C x D);
per class row c take v_c = Var_d dL/dW[c, d]; GradTrust = v_P / mean_{q in top-k} v_q, where P
is the predicted class and the top-k counterfactual classes are the k most likely after P.
Per-image weight gradients come from one backward pass: dL/dW = (dL/dout) (outer) (layer input).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from interventions.explain import captured_inputs_and_outputs


def last_linear_layer(model: nn.Module, n_classes: int | None = None) -> str:
    """Module path of the last ``nn.Linear`` (with ``n_classes`` outputs when given)."""
    found = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and (n_classes is None or module.out_features == n_classes)
    ]
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer"
            + (f" with {n_classes} outputs" if n_classes is not None else "")
            + "; pass last_layer= explicitly"
        )
    return found[-1]


def last_layer_weight_gradients(
    model: nn.Module, x: Tensor, last_layer: str | None = None
) -> tuple[Tensor, Tensor]:
    """Per-image dL/dW (B, C_out, D) of the last linear layer for L = mean_c (z_c - 1/C)^2
    (each image's loss on its own, as with batch size 1), and the logits (B, C)."""
    with torch.enable_grad():
        layer_path = last_layer
        if layer_path is None:
            with torch.no_grad():
                n_classes = model(x[:1]).shape[1]
            layer_path = last_linear_layer(model, n_classes)
        with captured_inputs_and_outputs(model, layer_path) as store:
            logits = model(x.detach())
        layer_in, layer_out = store["input"], store["output"]
        if layer_in.ndim != 2 or layer_in.shape[0] != x.shape[0]:
            raise ValueError(
                f"last layer {layer_path!r} must see a (B, D) input, got {tuple(layer_in.shape)}"
            )
        n_classes = logits.shape[1]
        target = torch.full_like(logits, 1.0 / n_classes)
        loss = ((logits - target) ** 2).mean(dim=1).sum()  # sum of independent per-image losses
        (grad_out,) = torch.autograd.grad(loss, layer_out)
    return grad_out.detach().unsqueeze(2) * layer_in.detach().unsqueeze(1), logits.detach()


def grad_trust(
    model: nn.Module,
    x: Tensor,
    top_k: int | None = None,
    last_layer: str | None = None,
    squared: bool = False,
) -> np.ndarray:
    """GradTrust per image (B,): Var_d(dL/dW[P]) / mean_{q in top-k after P} Var_d(dL/dW[q])
    for the loss to a uniform target (Prabhushankar & AlRegib 2024). ``top_k`` defaults to
    min(5, C - 1); ``squared=True`` takes the variance of the squared gradients (the released
    code's gradient energy). A zero denominator gives inf (or 1.0 when the numerator is 0 too)."""
    grads, logits = last_layer_weight_gradients(model, x, last_layer)
    n_classes = logits.shape[1]
    if grads.shape[1] != n_classes:
        raise ValueError(
            f"last layer has {grads.shape[1]} outputs but the model has {n_classes} classes"
        )
    if n_classes < 2:
        raise ValueError("GradTrust needs at least 2 classes")
    k = min(5, n_classes - 1) if top_k is None else top_k
    if not 1 <= k <= n_classes - 1:
        raise ValueError(f"top_k must lie in 1..{n_classes - 1}, got {top_k}")
    g = grads.double()
    per_class = (g.pow(2) if squared else g).var(dim=2, unbiased=False)  # (B, C)
    ranked = logits.topk(k + 1, dim=1).indices
    numerator = per_class.gather(1, ranked[:, :1])[:, 0]
    denominator = per_class.gather(1, ranked[:, 1:]).mean(dim=1)
    ratio = torch.where(
        denominator > 0,
        numerator / torch.where(denominator > 0, denominator, torch.ones_like(denominator)),
        torch.where(
            numerator > 0, torch.full_like(numerator, float("inf")), torch.ones_like(numerator)
        ),
    )
    return ratio.cpu().numpy()


def softmax_confidence(logits: Tensor) -> np.ndarray:
    """max_c softmax(z)_c per image (Hendrycks & Gimpel 2017)."""
    return torch.softmax(logits.detach().double(), dim=1).amax(dim=1).cpu().numpy()


def entropy(logits: Tensor) -> np.ndarray:
    """Shannon entropy -sum_c p_c log p_c of softmax(z) in nats (higher = less certain)."""
    log_p = torch.log_softmax(logits.detach().double(), dim=1)
    return (-(log_p.exp() * log_p).sum(dim=1)).cpu().numpy()


def margin(logits: Tensor) -> np.ndarray:
    """p_(1) - p_(2): the gap between the two largest softmax probabilities."""
    top2 = torch.softmax(logits.detach().double(), dim=1).topk(2, dim=1).values
    return (top2[:, 0] - top2[:, 1]).cpu().numpy()


def max_logit(logits: Tensor) -> np.ndarray:
    """max_c z_c per image."""
    return logits.detach().double().amax(dim=1).cpu().numpy()


def trust_scores(model: nn.Module, x: Tensor, top_k: int | None = None) -> dict[str, np.ndarray]:
    """All trust scores per image: prediction, grad_trust, softmax, entropy, margin, logit."""
    with torch.no_grad():
        logits = model(x)
    return {
        "prediction": logits.argmax(dim=1).cpu().numpy(),
        "grad_trust": grad_trust(model, x, top_k=top_k),
        "softmax": softmax_confidence(logits),
        "entropy": entropy(logits),
        "margin": margin(logits),
        "logit": max_logit(logits),
    }
