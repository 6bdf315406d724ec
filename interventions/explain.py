"""Class activation maps: Grad-CAM, Grad-CAM++, CounterfactualCAM and ContrastCAM.

One computation, many methods (as in pytorch-grad-cam): a forward pass captures the target
layer's activations A (B, K, u, v); a *gradient signal* says which vector g = dL/dz is pulled
back to A (logit c: e_c; counterfactual: -e_c; contrast to Q: softmax(z) - e_Q, the gradient of
cross-entropy(z, Q)); a *channel weighting* turns dL/dA into weights w (B, K) (Grad-CAM: the
spatial mean; Grad-CAM++: Chattopadhay et al. 2018); and ``class_activation_map`` turns
(A, w) into ReLU(sum_k w_k A_k), bilinearly upsampled to the input and min-max normalised per
image. ``METHODS`` maps each method name to its (signal, weighting) pair.

Every function takes a batch of normalised NCHW inputs on any device; hooks are removed after
use, also when an exception is raised; a constant map becomes all zeros, never NaN. The model
should be in eval mode (batch norm in training mode mixes the images of a batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ClassIndex = int | Sequence[int] | Tensor | None
GradientSignal = Callable[[Tensor, Tensor], Tensor]
ChannelWeighting = Callable[[Tensor, Tensor], Tensor]


# --------------------------------------------------------------------------- plumbing


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """The submodule named by a module path such as ``"layer4"`` or ``"features.29"``."""
    if isinstance(layer, nn.Module):
        return layer
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError(
            "TorchScript models do not support hooks, so explanations, VOICE and GradTrust need "
            "the eager model (torchvision name + state dict); causal curves work on TorchScript"
        )
    if not isinstance(layer, str) or not layer:
        raise ValueError(f"layer must be a non-empty module path string, got {layer!r}")
    try:
        return model.get_submodule(layer)
    except AttributeError:
        top = [name for name, _ in model.named_children()]
        raise ValueError(
            f"layer {layer!r} not found in {type(model).__name__}; its top-level modules are {top}"
        ) from None


@contextmanager
def captured_activations(model: nn.Module, layer: str | nn.Module) -> Iterator[dict[str, Tensor]]:
    """Context manager: a forward hook on ``layer`` stores its output under ``"value"``; the
    hook is removed on exit, also on exceptions."""
    module = resolve_layer(model, layer)
    store: dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        if not isinstance(output, Tensor):
            raise TypeError(
                f"target layer {layer!r} returned {type(output).__name__}, not a tensor"
            )
        store["value"] = output

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@contextmanager
def captured_inputs_and_outputs(
    model: nn.Module, layer: str | nn.Module
) -> Iterator[dict[str, Tensor]]:
    """Context manager: a forward hook on ``layer`` stores its first input under ``"input"``
    and its output under ``"output"``; the hook is removed on exit, also on exceptions."""
    module = resolve_layer(model, layer)
    store: dict[str, Tensor] = {}

    def hook(_module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
        if not inputs or not isinstance(inputs[0], Tensor) or not isinstance(output, Tensor):
            raise TypeError(f"layer {layer!r} must take and return tensors")
        store["input"], store["output"] = inputs[0], output

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def forward_with_activations(
    model: nn.Module, x: Tensor, layer: str | nn.Module
) -> tuple[Tensor, Tensor]:
    """One forward pass with autograd on: (logits (B, C), target-layer activations
    (B, K, u, v)), both still attached to the graph so gradients can be pulled back to A."""
    _check_input(x)
    with torch.enable_grad(), captured_activations(model, layer) as store:
        logits = model(x.detach().requires_grad_(True))
    if "value" not in store:
        raise RuntimeError(f"target layer {layer!r} was not called during the forward pass")
    activations = store["value"]
    if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"model must return logits of shape (B, C), got {tuple(logits.shape)}")
    if activations.ndim != 4 or activations.shape[0] != x.shape[0]:
        raise ValueError(
            f"target layer {layer!r} must output (B, K, u, v) activations, got "
            f"{tuple(activations.shape)}"
        )
    return logits, activations


def _check_input(x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"input must be a normalised (B, C, H, W) tensor, got shape {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise ValueError("input contains NaN or infinite values")


def class_indices(class_idx: ClassIndex, logits: Tensor) -> Tensor:
    """Class per image as a (B,) long tensor: None -> argmax of the logits; an int -> that
    class for every image; a sequence/tensor -> one class per image."""
    batch, n_classes = logits.shape
    if class_idx is None:
        return logits.detach().argmax(dim=1)
    if isinstance(class_idx, Tensor):
        idx = class_idx.to(device=logits.device, dtype=torch.long).reshape(-1)
    elif isinstance(class_idx, int):
        idx = torch.full((batch,), class_idx, dtype=torch.long, device=logits.device)
    else:
        idx = torch.as_tensor(list(class_idx), dtype=torch.long, device=logits.device)
    if idx.numel() == 1 and batch > 1:
        idx = idx.expand(batch)
    if idx.numel() != batch:
        raise ValueError(f"got {idx.numel()} class indices for a batch of {batch} images")
    if bool(((idx < 0) | (idx >= n_classes)).any()):
        raise ValueError(f"class index out of range 0..{n_classes - 1}: {idx.tolist()}")
    return idx


# --------------------------------------------------------------------------- gradient signals
# A signal maps (logits (B, C), classes (B,)) to g = dL/dz (B, C); dL/dA = J^T g.


def logit_signal(logits: Tensor, classes: Tensor) -> Tensor:
    """L = z_c: g = e_c (Grad-CAM, Selvaraju et al. 2017)."""
    return F.one_hot(classes, logits.shape[1]).to(logits.dtype)


def counterfactual_signal(logits: Tensor, classes: Tensor) -> Tensor:
    """L = -z_c: g = -e_c (CounterfactualCAM, Selvaraju et al. 2017)."""
    return -logit_signal(logits, classes)


def contrast_signal(logits: Tensor, classes: Tensor) -> Tensor:
    """L = cross-entropy(z, Q): g = softmax(z) - e_Q (ContrastCAM, Prabhushankar et al. 2020)."""
    return torch.softmax(logits.detach(), dim=1) - logit_signal(logits, classes)


# --------------------------------------------------------------------------- channel weightings


def gradcam_weights(grads: Tensor, activations: Tensor) -> Tensor:
    """Grad-CAM: w_k = mean_uv dL/dA_k (Selvaraju et al. 2017). Shapes (..., K, u, v) -> (..., K)."""
    return grads.mean(dim=(-2, -1))


def gradcam_pp_weights(grads: Tensor, activations: Tensor) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018) as in the VOICE reference code:
    alpha = g^2 / (2 g^2 + sum_uv A g^3) (a zero denominator becomes 1, then + 1e-7),
    w_k = sum_uv alpha ReLU(g). The reference's exp(score) factor multiplies every weight of an
    image by the same positive number, which the per-image normalisation removes, so it is
    left out (it also overflows for large scores)."""
    g2 = grads.pow(2)
    denom = 2.0 * g2 + (activations * g2 * grads).sum(dim=(-2, -1), keepdim=True)
    denom = torch.where(denom != 0.0, denom, torch.ones_like(denom))
    alpha = g2 / (denom + 1e-7)
    return (alpha * F.relu(grads)).sum(dim=(-2, -1))


# --------------------------------------------------------------------------- the one map function


def normalise_maps(maps: Tensor) -> Tensor:
    """Min-max normalise each map over its last two dimensions to [0, 1]; a constant map
    becomes all zeros (never NaN)."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (maps - lo) / safe, torch.zeros_like(maps))


def class_activation_map(
    activations: Tensor, weights: Tensor, size: tuple[int, int] | torch.Size
) -> Tensor:
    """S = ReLU(sum_k w_k A_k), bilinear upsampling to ``size`` (align_corners=False), min-max
    normalisation per map after upsampling (Selvaraju et al. 2017).

    activations (B, K, u, v); weights (B, K) -> maps (B, H, W), or weights (B, Q, K) -> maps
    (B, Q, H, W) (Q maps of the same activations, e.g. VOICE's contrast maps)."""
    if activations.ndim != 4:
        raise ValueError(f"activations must be (B, K, u, v), got {tuple(activations.shape)}")
    squeeze = weights.ndim == 2
    w = weights.unsqueeze(1) if squeeze else weights
    if w.ndim != 3 or w.shape[0] != activations.shape[0] or w.shape[2] != activations.shape[1]:
        raise ValueError(
            f"weights {tuple(weights.shape)} do not match activations {tuple(activations.shape)}"
        )
    cam = F.relu(torch.einsum("bqk,bkuv->bquv", w, activations))
    batch, n_maps, u, v = cam.shape
    up = F.interpolate(
        cam.reshape(batch * n_maps, 1, u, v), size=tuple(size), mode="bilinear", align_corners=False
    ).reshape(batch, n_maps, *tuple(size))
    maps = normalise_maps(up)
    return maps[:, 0] if squeeze else maps


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class CamMethod:
    """A CAM method: which gradient is pulled back (signal) and how it weights channels."""

    name: str
    signal: GradientSignal
    weighting: ChannelWeighting


METHODS: dict[str, CamMethod] = {
    m.name: m
    for m in (
        CamMethod("gradcam", logit_signal, gradcam_weights),
        CamMethod("gradcam++", logit_signal, gradcam_pp_weights),
        CamMethod("counterfactual", counterfactual_signal, gradcam_weights),
        CamMethod("counterfactual++", counterfactual_signal, gradcam_pp_weights),
        CamMethod("contrast", contrast_signal, gradcam_weights),
        CamMethod("contrast++", contrast_signal, gradcam_pp_weights),
    )
}

# VOICE pairs each explanation method with the contrast method sharing its weighting.
CONTRAST_OF: dict[str, str] = {"gradcam": "contrast", "gradcam++": "contrast++"}


def get_method(name: str) -> CamMethod:
    """The registered CAM method called ``name``."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown CAM method {name!r}; choose one of {sorted(METHODS)}") from None


def explain(
    model: nn.Module,
    x: Tensor,
    layer: str | nn.Module,
    method: str = "gradcam",
    class_idx: ClassIndex = None,
) -> tuple[Tensor, Tensor]:
    """Maps (B, H, W) in [0, 1] of registered ``method`` for ``class_idx`` (default: the
    predicted class) and the logits (B, C): one forward and one backward pass."""
    cam = get_method(method)
    logits, activations = forward_with_activations(model, x, layer)
    classes = class_indices(class_idx, logits)
    signal = cam.signal(logits.detach(), classes)
    (grads,) = torch.autograd.grad(logits, activations, grad_outputs=signal)
    weights = cam.weighting(grads, activations.detach())
    maps = class_activation_map(activations.detach(), weights, x.shape[-2:])
    return maps, logits.detach()


def grad_cam(
    model: nn.Module, x: Tensor, layer: str | nn.Module, class_idx: ClassIndex = None
) -> tuple[Tensor, Tensor]:
    """Grad-CAM(c): alpha_k = mean_uv dz_c/dA_k, S = ReLU(sum_k alpha_k A_k) (Selvaraju 2017)."""
    return explain(model, x, layer, "gradcam", class_idx)


def grad_cam_pp(
    model: nn.Module, x: Tensor, layer: str | nn.Module, class_idx: ClassIndex = None
) -> tuple[Tensor, Tensor]:
    """Grad-CAM++(c) with the weights of ``gradcam_pp_weights`` (Chattopadhay et al. 2018)."""
    return explain(model, x, layer, "gradcam++", class_idx)


def counterfactual_cam(
    model: nn.Module, x: Tensor, layer: str | nn.Module, class_idx: ClassIndex = None
) -> tuple[Tensor, Tensor]:
    """CounterfactualCAM(c): Grad-CAM with -alpha, i.e. the gradient of -z_c (Selvaraju 2017)."""
    return explain(model, x, layer, "counterfactual", class_idx)


def contrast_cam(
    model: nn.Module, x: Tensor, layer: str | nn.Module, contrast_idx: ClassIndex = None
) -> tuple[Tensor, Tensor]:
    """ContrastCAM(P, Q): Grad-CAM with dL/dA for L = cross-entropy(z, Q), i.e.
    J^T (softmax(z) - e_Q) (Prabhushankar et al. 2020). ``contrast_idx`` None -> the second
    most likely class, as the VOICE reference code's contrast."""
    if contrast_idx is None:
        with torch.no_grad():
            logits = model(x)
        contrast_idx = logits.topk(2, dim=1).indices[:, 1]
    return explain(model, x, layer, "contrast", contrast_idx)
