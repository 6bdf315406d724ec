"""RISE causal metric: deletion and insertion curves and their AUC (Petsiuk et al., BMVC 2018).

Pixels are ordered by saliency, descending (stable for ties); every step moves ``step`` more
pixels from the start image to the finish image; the score is the softmax probability of the
class predicted on the unperturbed input. Deletion goes from the image to the zero substrate
(0 in normalised input space), insertion from the RISE-blurred image to the image. With n
scores, AUC = (sum(s) - s_0/2 - s_last/2) / (n - 1). All the steps of all images run as
batched forward passes in inference mode on channels-last inputs; step i's input is
where(rank < i * step, finish, start), written in place into one reused batch buffer; the
unperturbed input's forward (needed for the predicted class) also gives the score of deletion's
first and insertion's last step, so no input is run twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

RISE_KERNEL_SIZE = 11
RISE_KERNEL_SIGMA = 5.0


@dataclass(frozen=True)
class CausalCurve:
    """scores (B, n_steps + 1) float64: probability of the class after each step; auc (B,)."""

    scores: np.ndarray
    auc: np.ndarray


def rise_gaussian_kernel(
    klen: int = RISE_KERNEL_SIZE, nsig: float = RISE_KERNEL_SIGMA
) -> np.ndarray:
    """RISE's gkern: a (klen, klen) Dirac delta at the centre smoothed by
    ``scipy.ndimage.gaussian_filter(delta, nsig)`` (mode 'reflect', truncate 4), computed here
    in closed form: the outer product of the 1-D reflected, truncated Gaussian response."""
    if klen < 1 or nsig <= 0:
        raise ValueError(f"kernel needs klen >= 1 and nsig > 0, got klen={klen}, nsig={nsig}")
    radius = int(4.0 * nsig + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / nsig) ** 2)
    taps /= taps.sum()
    centre = klen // 2
    response = np.zeros(klen)
    for i in range(klen):
        for offset, weight in zip(range(-radius, radius + 1), taps, strict=True):
            j = i + offset
            # 'reflect' (d c b a | a b c d | d c b a), repeated for offsets longer than klen
            period = 2 * klen
            j %= period
            if j >= klen:
                j = period - 1 - j
            if j == centre:
                response[i] += weight
    return np.outer(response, response)


def rise_blur(x: Tensor, klen: int = RISE_KERNEL_SIZE, nsig: float = RISE_KERNEL_SIGMA) -> Tensor:
    """RISE's insertion substrate: each channel convolved with ``rise_gaussian_kernel`` with
    zero padding klen // 2 (the reference's conv2d with a channel-diagonal kernel)."""
    channels = x.shape[1]
    kernel = torch.as_tensor(rise_gaussian_kernel(klen, nsig), dtype=x.dtype, device=x.device)
    weight = kernel.expand(channels, 1, klen, klen).contiguous()
    return F.conv2d(x, weight, padding=klen // 2, groups=channels)


def causal_auc(scores: np.ndarray) -> np.ndarray:
    """RISE's normalised trapezoid AUC along the last axis: (sum - s0/2 - s_last/2) / (n - 1)."""
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[-1]
    if n < 2:
        raise ValueError(f"a causal curve needs at least 2 scores, got {n}")
    return (scores.sum(axis=-1) - scores[..., 0] / 2 - scores[..., -1] / 2) / (n - 1)


def saliency_ranks(saliency: Tensor) -> Tensor:
    """(B, H*W) rank of each pixel in the descending, stable saliency order (0 = most salient)."""
    flat = saliency.reshape(saliency.shape[0], -1)
    order = torch.argsort(-flat, dim=1, stable=True)
    ranks = torch.empty_like(order)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    ranks.scatter_(1, order, positions)
    return ranks


def _as_saliency(saliency: Tensor | np.ndarray, x: Tensor) -> Tensor:
    sal = torch.as_tensor(np.asarray(saliency) if not isinstance(saliency, Tensor) else saliency)
    sal = sal.detach().to(device=x.device, dtype=torch.float64)
    if sal.ndim == 2:
        sal = sal.unsqueeze(0)
    if sal.ndim == 4 and sal.shape[1] == 1:
        sal = sal[:, 0]
    batch, _, h, w = x.shape
    if sal.shape != (batch, h, w):
        raise ValueError(
            f"saliency must have shape (B, H, W) = {(batch, h, w)} to match the input, got "
            f"{tuple(sal.shape)}"
        )
    if not torch.isfinite(sal).all():
        raise ValueError("saliency contains NaN or infinite values")
    return sal


def _channels_last(x: Tensor) -> Tensor:
    """x in channels-last memory order (same values; CPU and cuDNN convolutions run faster
    on it)."""
    return x.contiguous(memory_format=torch.channels_last)


def causal_curve(
    model: nn.Module,
    x: Tensor,
    saliency: Tensor | np.ndarray,
    mode: str = "deletion",
    step: int = 224,
    class_idx: int | Tensor | None = None,
    batch_size: int = 16,
) -> CausalCurve:
    """Deletion or insertion curve of the RISE causal metric for a batch of normalised inputs
    (B, 3, H, W) and saliency maps (B, H, W): n = ceil(H*W / step) steps, n + 1 scores (225 on a
    224 x 224 input with step 224); ``class_idx`` defaults to the prediction on x."""
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a positive int, got {step!r}")
    if x.ndim != 4:
        raise ValueError(f"input must be a normalised (B, C, H, W) tensor, got {tuple(x.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sal = _as_saliency(saliency, x)
    batch, _, h, w = x.shape
    n_steps = math.ceil(h * w / step)
    ranks = saliency_ranks(sal).reshape(batch, 1, h, w)

    with torch.inference_mode():
        x = x.detach()
        # One forward of the unperturbed input gives the class and the score that deletion
        # starts from and insertion ends at (the same input, so the same number).
        probs_x = torch.softmax(model(_channels_last(x)), dim=1)
        if class_idx is None:
            classes = probs_x.argmax(dim=1)
        else:
            classes = torch.as_tensor(class_idx, device=x.device, dtype=torch.long).reshape(-1)
            classes = classes.expand(batch) if classes.numel() == 1 else classes
        if mode == "deletion":
            start, finish = x, torch.zeros_like(x)
            known_step = 0
        else:
            start, finish = rise_blur(x), x
            known_step = n_steps
        scores = np.empty((batch, n_steps + 1), dtype=np.float64)
        scores[:, known_step] = probs_x.gather(1, classes.view(-1, 1))[:, 0].double().cpu().numpy()

        jobs = [(b, i) for b in range(batch) for i in range(n_steps + 1) if i != known_step]
        buffer = torch.empty(
            (min(batch_size, len(jobs)), *x.shape[1:]), dtype=x.dtype, device=x.device
        ).contiguous(memory_format=torch.channels_last)
        for lo in range(0, len(jobs), batch_size):
            chunk = jobs[lo : lo + batch_size]
            inputs = buffer[: len(chunk)]
            for slot, (b, i) in enumerate(chunk):
                # step i's input: where(rank < i * step, finish, start), written in place
                torch.where(ranks[b] < i * step, finish[b], start[b], out=inputs[slot])
            probs = torch.softmax(model(inputs), dim=1)
            picked = probs.gather(1, classes[[b for b, _ in chunk]].view(-1, 1))[:, 0]
            for (b, i), value in zip(chunk, picked.double().cpu().numpy(), strict=True):
                scores[b, i] = value
    return CausalCurve(scores=scores, auc=causal_auc(scores))


def deletion_curve(
    model: nn.Module, x: Tensor, saliency: Tensor | np.ndarray, step: int = 224, **kwargs: object
) -> CausalCurve:
    """RISE deletion curve (pixels moved to the zero substrate)."""
    return causal_curve(model, x, saliency, "deletion", step, **kwargs)  # type: ignore[arg-type]


def insertion_curve(
    model: nn.Module, x: Tensor, saliency: Tensor | np.ndarray, step: int = 224, **kwargs: object
) -> CausalCurve:
    """RISE insertion curve (pixels moved from the blurred image to the image)."""
    return causal_curve(model, x, saliency, "insertion", step, **kwargs)  # type: ignore[arg-type]
