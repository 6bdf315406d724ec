"""VOICE: variance of induced contrastive explanations (Prabhushankar & AlRegib, J-STSP 2024).

U = Var_{q != P} ContrastCAM(P, q), min-max normalised. Cross-entropy gradients share one
Jacobian J = dz/dA: dCE(z, q)/dA = J^T (softmax(z) - e_q) = J^T p - J^T e_q. So one forward
pass, one backward of p and one vectorised backward of the one-hot rows e_q (chunked,
``is_grads_batched``) give every contrast map; Grad-CAM only needs the spatial mean of each
row, alpha(q) = Jbar^T p - Jbar[q] with Jbar = mean_uv J (C x K), while Grad-CAM++ needs the full
per-position gradient and is computed chunk by chunk from the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from interventions.explain import (
    CONTRAST_OF,
    class_activation_map,
    forward_with_activations,
    get_method,
    normalise_maps,
)


@dataclass(frozen=True)
class VoiceResult:
    """Maps are (B, H, W) float tensors in [0, 1] on the input's device; ``stats`` holds one
    dict per image: prediction, contrast_class, iou, snr, logit_pred, log_prob_pred."""

    explanation: Tensor
    contrast: Tensor
    uncertainty: Tensor
    stats: list[dict[str, float | int]]


def contrast_class_sets(logits: Tensor, contrast_classes: str | int = "all") -> Tensor:
    """(B, Q) contrast classes per image: ``"all"`` -> every class but the prediction P (in
    class order, Q = C - 1); an int k -> the k most likely classes after P."""
    batch, n_classes = logits.shape
    if n_classes < 2:
        raise ValueError("VOICE needs a classifier with at least 2 classes")
    pred = logits.argmax(dim=1)
    if contrast_classes == "all":
        every = torch.arange(n_classes, device=logits.device).expand(batch, n_classes)
        keep = every != pred[:, None]
        return every[keep].reshape(batch, n_classes - 1)
    if isinstance(contrast_classes, bool) or not isinstance(contrast_classes, int):
        raise ValueError(
            f"contrast_classes must be 'all' or a positive int k (top-k), got {contrast_classes!r}"
        )
    if not 1 <= contrast_classes <= n_classes - 1:
        raise ValueError(
            f"contrast_classes k must lie in 1..{n_classes - 1} for {n_classes} classes, "
            f"got {contrast_classes}"
        )
    return logits.topk(contrast_classes + 1, dim=1).indices[:, 1:]


def _one_hot_rows(classes: Tensor, n_classes: int, dtype: torch.dtype) -> Tensor:
    """(Q, B, C): row j of image b is e_{classes[b, j]} (grad outputs for a batched backward)."""
    return torch.nn.functional.one_hot(classes.T, n_classes).to(dtype)


def jacobian_rows(
    logits: Tensor, activations: Tensor, classes: Tensor, chunk_size: int = 128
) -> Iterator[tuple[slice, Tensor]]:
    """Yield (column slice, J rows (B, Qc, K, u, v)) with J[b, j] = dz_{classes[b, j]}/dA_b,
    ``chunk_size`` classes per vectorised backward pass (``is_grads_batched``)."""
    n_classes = logits.shape[1]
    n_rows = classes.shape[1]
    for lo in range(0, n_rows, chunk_size):
        cols = slice(lo, min(lo + chunk_size, n_rows))
        rows = _one_hot_rows(classes[:, cols], n_classes, logits.dtype)
        try:
            (jac,) = torch.autograd.grad(
                logits, activations, grad_outputs=rows, retain_graph=True, is_grads_batched=True
            )
        except RuntimeError:  # an op without a batching rule: plain backward per row
            jac = torch.stack(
                [
                    torch.autograd.grad(logits, activations, grad_outputs=r, retain_graph=True)[0]
                    for r in rows
                ]
            )
        yield cols, jac.transpose(0, 1)


def voice_stats(
    explanation: np.ndarray, uncertainty: np.ndarray, threshold: float = 0.1
) -> tuple[float, float]:
    """(IoU, SNR) as in the VOICE code: IoU of (U > 0.1) and (E > 0.1) as (I + 1e-6) / (U + 1e-6);
    SNR = mean(U) / std(U) (ddof 0), 0 when std is 0."""
    u_bin = uncertainty > threshold
    e_bin = explanation > threshold
    inter = float(np.logical_and(u_bin, e_bin).sum())
    union = float(np.logical_or(u_bin, e_bin).sum())
    iou = (inter + 1e-6) / (union + 1e-6)
    u64 = uncertainty.astype(np.float64)
    std = float(u64.std())
    snr = float(u64.mean() / std) if std > 0 else 0.0
    return iou, snr


def voice(
    model: nn.Module,
    x: Tensor,
    layer: str | nn.Module,
    method: str = "gradcam",
    contrast_classes: str | int = "all",
    chunk_size: int = 128,
) -> VoiceResult:
    """VOICE for Grad-CAM (``"gradcam"``) or Grad-CAM++ (``"gradcam++"``): explanation of the
    prediction P, ContrastCAM(P, second most likely class), and the uncertainty map
    U = normalise(Var_q ContrastCAM(P, q)) over the contrast classes (Prabhushankar & AlRegib
    2024). One forward pass for the whole batch; variance with ddof 0 (the reference's ddof 1
    differs by a constant factor that the normalisation removes)."""
    if method not in CONTRAST_OF:
        raise ValueError(f"VOICE method must be one of {sorted(CONTRAST_OF)}, got {method!r}")
    explain_method = get_method(method)
    contrast_method = get_method(CONTRAST_OF[method])
    per_position = method == "gradcam++"

    logits, activations = forward_with_activations(model, x, layer)
    acts = activations.detach()
    z = logits.detach()
    batch, n_classes = z.shape
    size = x.shape[-2:]
    probs = torch.softmax(z, dim=1)
    pred = z.argmax(dim=1)
    second = z.topk(2, dim=1).indices[:, 1]
    contrast_set = contrast_class_sets(z, contrast_classes)

    # J^T p, the part of every contrast gradient that does not depend on q.
    (grad_p,) = torch.autograd.grad(logits, activations, grad_outputs=probs, retain_graph=True)
    grad_p_mean = grad_p.mean(dim=(-2, -1))

    # Explanation (signal e_P) and the displayed contrast (signal p - e_second) from J rows.
    ((_, jac_pair),) = list(
        jacobian_rows(logits, activations, torch.stack([pred, second], dim=1), chunk_size=2)
    )
    if per_position:
        w_expl = explain_method.weighting(jac_pair[:, 0], acts)
        w_con = contrast_method.weighting(grad_p - jac_pair[:, 1], acts)
    else:
        jbar_pair = jac_pair.mean(dim=(-2, -1))
        w_expl = jbar_pair[:, 0]
        w_con = grad_p_mean - jbar_pair[:, 1]
    explanation = class_activation_map(acts, w_expl, size)
    contrast = class_activation_map(acts, w_con, size)

    # Variance over the contrast maps, merged chunk by chunk in float64 (Chan et al. 1979).
    count = 0
    mean = torch.zeros((batch, *size), dtype=torch.float64, device=x.device)
    sq_dev = torch.zeros_like(mean)
    for _cols, jac in jacobian_rows(logits, activations, contrast_set, chunk_size):
        if per_position:
            weights = contrast_method.weighting(grad_p.unsqueeze(1) - jac, acts.unsqueeze(1))
        else:
            weights = grad_p_mean.unsqueeze(1) - jac.mean(dim=(-2, -1))
        maps = class_activation_map(acts, weights, size).double()
        n_chunk = maps.shape[1]
        chunk_mean = maps.mean(dim=1)
        chunk_sq_dev = (maps - chunk_mean.unsqueeze(1)).pow(2).sum(dim=1)
        delta = chunk_mean - mean
        merged = count + n_chunk
        mean = mean + delta * (n_chunk / merged)
        sq_dev = sq_dev + chunk_sq_dev + delta.pow(2) * (count * n_chunk / merged)
        count = merged
        del jac, maps
    variance = sq_dev / count
    uncertainty = normalise_maps(variance).to(explanation.dtype)

    log_probs = torch.log_softmax(z, dim=1)
    stats: list[dict[str, float | int]] = []
    e_np = explanation.cpu().numpy()
    u_np = uncertainty.cpu().numpy()
    for b in range(batch):
        iou, snr = voice_stats(e_np[b], u_np[b])
        p = int(pred[b])
        stats.append(
            {
                "prediction": p,
                "contrast_class": int(second[b]),
                "iou": iou,
                "snr": snr,
                "logit_pred": float(z[b, p]),
                "log_prob_pred": float(log_probs[b, p]),
            }
        )
    return VoiceResult(explanation, contrast, uncertainty, stats)
