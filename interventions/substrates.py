"""Interventions on an image: delete a region (replace it by a substrate) or insert it (the
image starts as substrate and only the region is revealed), as in RISE's causal metric
(Petsiuk et al., BMVC 2018) but with a human-drawn region instead of a saliency order.

Everything happens on the normalised input at the image's own resolution; the result is then
resized to the classifier's input exactly as ``Classifier.preprocess`` resizes (bilinear,
antialiased, align_corners=False). Normalisation and resizing are both linear, so an empty
intervention gives the preprocessed image. Substrates, all in normalised input space:

- ``zero``: 0, i.e. the data set's mean colour (RISE's deletion substrate);
- ``blur``: the image convolved with RISE's 11 x 11 Gaussian kernel, sigma 5
  (``interventions.causal.rise_blur``, RISE's insertion substrate);
- ``mean``: the image's own per-channel mean colour;
- ``noise``: i.i.d. standard normal noise from a seeded generator (so reruns are identical),
  i.e. pixels of the data set's mean colour +- its std.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from interventions.causal import rise_blur

SUBSTRATES: tuple[str, ...] = ("zero", "blur", "mean", "noise")
OPERATIONS: tuple[str, ...] = ("delete", "insert")
NOISE_SEED = 0


def normalise_image(
    image: np.ndarray, mean: tuple[float, float, float], std: tuple[float, float, float]
) -> Tensor:
    """uint8 (H, W, 3) RGB -> (x / 255 - mean) / std as a float32 (1, 3, H, W) tensor at the
    image's own resolution."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image must be a uint8 (H, W, 3) RGB array, got {image.dtype} {image.shape}"
        )
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None] / 255.0
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def substrate(x: Tensor, name: str, seed: int = NOISE_SEED) -> Tensor:
    """The substrate ``name`` (zero / blur / mean / noise) for normalised inputs x (B, C, H, W)."""
    if x.ndim != 4:
        raise ValueError(f"x must be a normalised (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if name == "zero":
        return torch.zeros_like(x)
    if name == "blur":
        return rise_blur(x)
    if name == "mean":
        return x.mean(dim=(-2, -1), keepdim=True).expand_as(x).clone()
    if name == "noise":
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
        return noise.to(device=x.device, dtype=x.dtype)
    raise ValueError(f"unknown substrate {name!r}; choose one of {', '.join(SUBSTRATES)}")


def _region_tensor(region: np.ndarray | Tensor, x: Tensor) -> Tensor:
    r = torch.as_tensor(np.asarray(region) if not isinstance(region, Tensor) else region)
    if r.ndim == 2:
        r = r.unsqueeze(0)
    if r.ndim != 3:
        raise ValueError(f"region must be (H, W) or (B, H, W), got shape {tuple(r.shape)}")
    if tuple(r.shape[-2:]) != tuple(x.shape[-2:]):
        raise ValueError(
            f"region size {tuple(r.shape[-2:])} differs from the image size {tuple(x.shape[-2:])}"
        )
    return (r != 0).to(x.device).unsqueeze(1)


def intervene(
    x: Tensor,
    region: np.ndarray | Tensor,
    operation: str,
    substrate_name: str,
    seed: int = NOISE_SEED,
) -> Tensor:
    """Delete: where(region, substrate, x); insert: where(region, x, substrate). x is (1, C, H, W)
    or (B, C, H, W); region (H, W) or (B, H, W) with non-zero = inside; returns (B, C, H, W)."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; choose one of {', '.join(OPERATIONS)}")
    r = _region_tensor(region, x)
    sub = substrate(x, substrate_name, seed)
    batch = max(x.shape[0], r.shape[0])
    xb, sb = x.expand(batch, *x.shape[1:]), sub.expand(batch, *sub.shape[1:])
    rb = r.expand(batch, *r.shape[1:])
    if operation == "delete":
        return torch.where(rb, sb, xb)
    return torch.where(rb, xb, sb)


def to_input_size(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize normalised inputs to the classifier's input size as ``Classifier.preprocess``
    does (bilinear, antialiased, align_corners=False); a no-op at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def saliency_order_regions(saliency: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """(n, H, W) bool: for each fraction f the round(f * H * W) most salient pixels (descending,
    stable ties, the order of RISE's causal metric)."""
    sal = np.asarray(saliency, dtype=np.float64)
    if sal.ndim != 2:
        raise ValueError(f"saliency must be a 2-D (H, W) map, got shape {sal.shape}")
    if not np.all(np.isfinite(sal)):
        raise ValueError("saliency contains NaN or infinite values")
    order = np.argsort(-sal.ravel(), kind="stable")
    ranks = np.empty_like(order)
    ranks[order] = np.arange(order.size)
    counts = np.rint(np.asarray(fractions, dtype=np.float64) * sal.size).astype(np.int64)
    return (ranks[None, :] < counts[:, None]).reshape(len(counts), *sal.shape)


def smallest_flip_by_saliency(
    predict_proba,
    x: Tensor,
    saliency: np.ndarray,
    input_size: tuple[int, int],
    operation: str = "delete",
    substrate_name: str = "zero",
    steps: int = 50,
    target: int | None = None,
    batch_size: int = 32,
) -> dict:
    """Smallest area fraction k / steps of the most salient pixels whose deletion changes the
    prediction (``operation="delete"``), or whose insertion makes the model predict ``target``
    (default: the prediction on x; ``"insert"``). ``predict_proba`` maps normalised
    (B, C, h, w) inputs to softmax probabilities; x is (1, C, H, W) at the saliency's size.
    Returns {"fraction": float or None when no step flips, "probs": the target's probability
    per step (steps + 1 values, fraction 0..1), "prediction": class at each step}."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    fractions = np.arange(steps + 1) / steps
    regions = saliency_order_regions(saliency, fractions)
    with torch.inference_mode():
        base = int(predict_proba(to_input_size(x, input_size)).argmax(dim=1)[0])
    goal = base if target is None else int(target)
    probs: list[float] = []
    preds: list[int] = []
    for lo in range(0, len(fractions), batch_size):
        chunk = regions[lo : lo + batch_size]
        with torch.inference_mode():
            p = predict_proba(
                to_input_size(intervene(x, chunk, operation, substrate_name), input_size)
            )
        probs.extend(p[:, goal].double().cpu().tolist())
        preds.extend(p.argmax(dim=1).cpu().tolist())
    if operation == "delete":
        hits = [i for i, c in enumerate(preds) if c != base]
    else:
        hits = [i for i, c in enumerate(preds) if c == goal]
    return {
        "fraction": float(fractions[hits[0]]) if hits else None,
        "probs": probs,
        "prediction": preds,
        "base_prediction": base,
        "target": goal,
    }
