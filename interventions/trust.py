"""Prediction trust scores: GradTrust, as in the tutorial and as released, beside every baseline of
its comparison table (Prabhushankar & AlRegib, MIPR 2024; released code: olivesgatech/GradTrust,
``demo.py``).

Every score is per image and equals a batch-size-1 computation (the released demo scores one
image at a time); ``TRUST_SCORES`` lists them in table order with the direction that means "more
trustworthy". Scores are computed with the whole model in eval mode (each module's mode is
restored afterwards) and never read or write ``.grad``: gradients come from
``torch.autograd.grad`` and are always fresh.

The last-layer scores need dL/dW of the last linear layer W (C x D) per image. It is the outer
product g (x) h of the gradient g = dL/d(layer output) (C,) and the layer's input h (D,), so one
batched backward to the layer output gives every image's, and statistics over a row W[c] factor:
Var_d(g_c h_d) = g_c^2 Var_d(h) and Var_d((g_c h_d)^2) = g_c^4 Var_d(h^2).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interventions.explain import resolve_layer
from interventions.trust_names import (  # noqa: F401  (re-exported)
    TRUST_SCORE_NAMES,
    TRUST_SCORES,
    TrustScore,
    trust_score,
)

ODIN_TEMPERATURE = 100.0
ODIN_EPSILON = 0.0014
MCD_PASSES = 10
MCD_EPSILON = 1e-4


# --------------------------------------------------------------------------- plumbing


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: every module in eval mode inside; each module's own ``training`` flag
    restored on exit (also on exceptions)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


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


@dataclass
class _Forward:
    """One forward pass with autograd on: the input as a leaf that requires grad, the logits
    (B, C) and the last linear layer's input (B, D) and output (B, C), all on the graph."""

    x: Tensor
    logits: Tensor
    layer_in: Tensor
    layer_out: Tensor


def _forward(model: nn.Module, x: Tensor, last_layer: str | None = None) -> _Forward:
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError("trust scores need hooks and gradients: pass the eager model")
    names = (
        [last_layer]
        if last_layer is not None
        else [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    )
    if not names:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer; pass last_layer=")
    store: dict[str, tuple[Tensor, Tensor]] = {}

    def keeper(name: str):
        def hook(_module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
            if inputs and isinstance(inputs[0], Tensor) and isinstance(output, Tensor):
                store[name] = (inputs[0], output)

        return hook

    handles = [resolve_layer(model, n).register_forward_hook(keeper(n)) for n in names]
    leaf = x.detach().requires_grad_(True)
    try:
        with torch.enable_grad():
            logits = model(leaf)
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError("the model must return logits of shape (B, C)")
    layer = last_layer if last_layer is not None else last_linear_layer(model, logits.shape[1])
    if layer not in store:
        raise ValueError(f"last layer {layer!r} was not called with a tensor during the forward")
    layer_in, layer_out = store[layer]
    if layer_in.ndim != 2 or layer_in.shape[0] != x.shape[0]:
        raise ValueError(
            f"last layer {layer!r} must see a (B, D) input, got {tuple(layer_in.shape)}"
        )
    if layer_out.shape != logits.shape:
        raise ValueError(
            f"last layer {layer!r} has {tuple(layer_out.shape)} outputs but the logits are "
            f"{tuple(logits.shape)}"
        )
    return _Forward(leaf, logits, layer_in, layer_out)


def _uniform_mse(logits: Tensor) -> Tensor:
    """Sum over images of mean_c (z_c - 1/C)^2 (``nn.MSELoss()`` of each image on its own)."""
    return ((logits - 1.0 / logits.shape[1]) ** 2).mean(dim=1).sum()


def _released_kl(logits: Tensor) -> Tensor:
    """Sum over images of ``nn.KLDivLoss()(u, softmax(z))`` with u = 1/C as the *input* (the
    released argument order): mean_c p_c (log p_c - 1/C)."""
    p = torch.softmax(logits, dim=1)
    u = torch.full_like(p, 1.0 / logits.shape[1])
    return F.kl_div(u, p, reduction="none").mean(dim=1).sum()


def _output_gradient(fwd: _Forward, loss) -> Tensor:
    """dL/d(last layer output) (B, C) per image; the graph is kept for further gradients."""
    (grad,) = torch.autograd.grad(loss(fwd.logits), fwd.layer_out, retain_graph=True)
    return grad.detach()


def _row_variance(g: Tensor, h: Tensor, squared: bool, unbiased: bool) -> Tensor:
    """(B, C): Var_d of dL/dW[c, d] (``squared``: of its square) for dL/dW = g (outer) h,
    i.e. g_c^2 Var_d(h_d) or g_c^4 Var_d(h_d^2), in float64."""
    g, h = g.double(), h.double()
    if squared:
        return g.pow(4) * h.pow(2).var(dim=1, unbiased=unbiased)[:, None]
    return g.pow(2) * h.var(dim=1, unbiased=unbiased)[:, None]


# --------------------------------------------------------------------------- GradTrust


def last_layer_weight_gradients(
    model: nn.Module, x: Tensor, last_layer: str | None = None
) -> tuple[Tensor, Tensor]:
    """Per-image dL/dW (B, C_out, D) of the last linear layer for L = mean_c (z_c - 1/C)^2
    (each image's loss on its own, as with batch size 1), and the logits (B, C)."""
    with eval_mode(model):
        fwd = _forward(model, x, last_layer)
        g = _output_gradient(fwd, _uniform_mse)
    return g.unsqueeze(2) * fwd.layer_in.detach().unsqueeze(1), fwd.logits.detach()


def _grad_trust(
    g: Tensor, h: Tensor, logits: Tensor, top_k: int | None, squared: bool
) -> np.ndarray:
    n_classes = logits.shape[1]
    if n_classes < 2:
        raise ValueError("GradTrust needs at least 2 classes")
    k = min(5, n_classes - 1) if top_k is None else top_k
    if not 1 <= k <= n_classes - 1:
        raise ValueError(f"top_k must lie in 1..{n_classes - 1}, got {top_k}")
    per_class = _row_variance(g, h, squared, unbiased=False)
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


def grad_trust(
    model: nn.Module,
    x: Tensor,
    top_k: int | None = None,
    last_layer: str | None = None,
    squared: bool = False,
) -> np.ndarray:
    """GradTrust as in the tutorial, per image (B,): Var_d(dL/dW[P]) / mean_{q in top-k after
    P} Var_d(dL/dW[q]) for L = MSE(z, 1/C) (Prabhushankar & AlRegib 2024). ``top_k`` defaults to
    min(5, C - 1); ``squared=True`` takes the variance of the squared gradients. A zero
    denominator gives inf (or 1.0 when the numerator is 0 too)."""
    with eval_mode(model):
        fwd = _forward(model, x, last_layer)
        g = _output_gradient(fwd, _uniform_mse)
    return _grad_trust(g, fwd.layer_in.detach(), fwd.logits.detach(), top_k, squared)


def _grad_trust_released(g: Tensor, h: Tensor) -> np.ndarray:
    energy = _row_variance(g, h, squared=True, unbiased=True)  # (B, C)
    return (energy.amax(dim=1) / energy.mean(dim=1)).cpu().numpy()


def grad_trust_released(model: nn.Module, x: Tensor, last_layer: str | None = None) -> np.ndarray:
    """GradTrust as released (``get_grads_individual``), per image (B,): with G = dL/dW of the
    last linear layer (C x D) for L = MSE(z, 1/C) and e_c = Var_d(G[c, d]^2) (unbiased),
    max_c e_c / mean_c e_c. The largest row need not be P's. As G = g (outer) h, e_c =
    g_c^4 Var_d(h_d^2) and the value is max_c (z_c - 1/C)^4 / mean_c (z_c - 1/C)^4 (NaN if 0/0)."""
    with eval_mode(model):
        fwd = _forward(model, x, last_layer)
        g = _output_gradient(fwd, _uniform_mse)
    return _grad_trust_released(g, fwd.layer_in.detach())


# --------------------------------------------------------------------------- baselines


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


def log_likelihood_released(logits: Tensor) -> np.ndarray:
    """What the released demo calls the log-likelihood: -nll_loss(z, P) on the *raw logits*
    (no log-softmax), which is the predicted class's logit z_P, i.e. the max logit."""
    z = logits.detach().double()
    return z.gather(1, z.argmax(dim=1, keepdim=True))[:, 0].cpu().numpy()


def _odin(
    model: nn.Module, fwd: _Forward, temperature: float, epsilon: float, keep_graph: bool
) -> np.ndarray:
    prediction = fwd.logits.detach().argmax(dim=1)
    loss = F.cross_entropy(fwd.logits / temperature, prediction, reduction="sum")
    (grad_x,) = torch.autograd.grad(loss, fwd.x, retain_graph=keep_graph)
    step = torch.where(grad_x >= 0, 1.0, -1.0).to(grad_x.dtype)
    with torch.no_grad():
        z = model(fwd.x.detach() - epsilon * step)
    return torch.softmax(z.double() / temperature, dim=1).amax(dim=1).cpu().numpy()


def odin(
    model: nn.Module,
    x: Tensor,
    temperature: float = ODIN_TEMPERATURE,
    epsilon: float = ODIN_EPSILON,
) -> np.ndarray:
    """ODIN as released (``get_ODIN``; Liang et al. 2018): x' = x - epsilon sign(grad_x
    CE(f(x)/T, P)) on the normalised input (a zero gradient counts as +), then
    max_c softmax(f(x')/T)_c. Unlike the ODIN paper, the gradient is not divided by the std."""
    with eval_mode(model):
        return _odin(model, _forward(model, x), temperature, epsilon, keep_graph=False)


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """The modules the released MC dropout switches on: those whose class name starts with
    ``Dropout`` (``nn.Dropout``, ``nn.Dropout1d/2d/3d``; any other such class is refused)."""
    found = []
    for name, module in model.named_modules():
        if type(module).__name__.startswith("Dropout"):
            if not isinstance(module, nn.Dropout | nn.Dropout1d | nn.Dropout2d | nn.Dropout3d):
                raise ValueError(f"{name}: unsupported dropout module {type(module).__name__}")
            found.append(module)
    return found


@contextmanager
def _seeded_dropout(modules: list[nn.Module], generator: torch.Generator) -> Iterator[None]:
    """Forward hooks that turn eval-mode dropout modules into train-mode ones whose masks come
    from ``generator``: per call one per-image mask (Bernoulli(1 - p) / (1 - p), element-wise or
    per channel), the same for every image of the batch, drawn as torch's own dropout draws it."""

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> Tensor | None:
        x, p = inputs[0], float(module.p)
        if p == 0.0:
            return None
        if p == 1.0:
            return x * torch.zeros((), dtype=x.dtype, device=x.device)
        per_image = tuple(x.shape[1:])
        if not isinstance(module, nn.Dropout):  # Dropout1d/2d/3d: whole channels
            per_image = per_image[:1] + (1,) * (len(per_image) - 1)
        noise = torch.empty(per_image, dtype=x.dtype, device=x.device)
        noise.bernoulli_(1.0 - p, generator=generator)
        return x * noise.div_(1.0 - p)

    handles = [module.register_forward_hook(hook) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _mc_dropout(model: nn.Module, x: Tensor, logits: Tensor, passes: int, seed: int) -> np.ndarray:
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    modules = dropout_modules(model)
    if not modules:
        mean = torch.softmax(logits.detach().double(), dim=1)  # every pass is the same
    else:
        generator = torch.Generator(device=x.device).manual_seed(seed)
        total = torch.zeros(logits.shape, dtype=torch.float64, device=logits.device)
        with torch.no_grad(), _seeded_dropout(modules, generator):
            for _ in range(passes):
                total += torch.softmax(model(x.detach()).double(), dim=1)
        mean = total / passes
    return (mean * torch.log(mean + MCD_EPSILON)).sum(dim=1).cpu().numpy()


def mc_dropout(model: nn.Module, x: Tensor, passes: int = MCD_PASSES, seed: int = 0) -> np.ndarray:
    """MC dropout as released (``-get_MCD``; Gal & Ghahramani 2016): sum_c m_c log(m_c + 1e-4)
    with m the mean softmax over ``passes`` passes with dropout on and the rest in eval mode.
    The released loop keeps only its last pass (its stacking sits after the loop); this is the
    mean over all passes, as MC dropout means. Masks come from a ``torch.Generator`` seeded with
    ``seed``, the same for every image, so a value depends on neither batch nor position; they
    equal train-mode dropout's after ``torch.manual_seed(seed)`` on one image (CPU). Without
    dropout modules: one pass's value."""
    with eval_mode(model):
        with torch.no_grad():
            logits = model(x.detach())
        return _mc_dropout(model, x, logits, passes, seed)


def _gradnorm(g: Tensor, h: Tensor) -> np.ndarray:
    return (-(g.double().norm(dim=1) * h.double().norm(dim=1))).cpu().numpy()


def gradnorm(model: nn.Module, x: Tensor, last_layer: str | None = None) -> np.ndarray:
    """GradNorm as released (``get_gradnorm``; after Huang et al. 2021): -||dL/dW||_2 (the
    Frobenius norm) of the last linear layer's weights for L = ``nn.KLDivLoss()(u, softmax(z))``,
    u = 1/C passed as the input, i.e. mean_c p_c (log p_c - 1/C); = -||dL/dz|| ||h||."""
    with eval_mode(model):
        fwd = _forward(model, x, last_layer)
        g = _output_gradient(fwd, _released_kl)
    return _gradnorm(g, fwd.layer_in.detach())


def _bce_to_ones(logits: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def _parameter_energies(model: nn.Module, x: Tensor, per_sample: str) -> Tensor:
    """(B, N) sum of squared gradients of BCE-with-logits(f(x_b), 1) (mean over classes) for
    each of the N parameter tensors of ``model.named_parameters()`` (frozen ones too; an unused
    one counts 0), one image at a time."""
    from torch.func import functional_call, grad, vmap

    named = list(model.named_parameters())
    if per_sample == "loop":
        # detached leaves: frozen parameters count too, and no parameter's .grad is touched
        leaves = {n: p.detach().requires_grad_(True) for n, p in named}
        rows = []
        for b in range(x.shape[0]):
            with torch.enable_grad():
                loss = _bce_to_ones(functional_call(model, leaves, (x[b : b + 1].detach(),)))
                grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
            rows.append(
                torch.stack(
                    [
                        torch.zeros((), dtype=torch.float64, device=x.device)
                        if g is None
                        else g.double().pow(2).sum()
                        for g in grads
                    ]
                )
            )
        return torch.stack(rows)
    if per_sample != "vmap":
        raise ValueError(f"per_sample must be 'loop' or 'vmap', got {per_sample!r}")
    detached = {n: p.detach() for n, p in named}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def image_loss(params: dict[str, Tensor], image: Tensor) -> Tensor:
        return _bce_to_ones(functional_call(model, (params, buffers), (image.unsqueeze(0),)))

    n_values = sum(p.numel() for _, p in named)
    chunk = max(1, (1 << 26) // max(n_values, 1))  # at most ~256 MB of float32 gradients
    rows = []
    for lo in range(0, x.shape[0], chunk):
        grads = vmap(grad(image_loss), in_dims=(None, 0))(detached, x[lo : lo + chunk].detach())
        rows.append(
            torch.stack([grads[n].double().pow(2).flatten(1).sum(1) for n, _ in named], dim=1)
        )
    return torch.cat(rows)


def _purview(model: nn.Module, x: Tensor, per_sample: str) -> tuple[np.ndarray, np.ndarray]:
    energy = _parameter_energies(model, x, per_sample)
    last = energy.shape[1] - 1  # the released loop's final index j
    initial = -energy[:, : last // 2].mean(dim=1)
    final = -energy[:, (last + 1) // 2 :].mean(dim=1)
    return initial.cpu().numpy(), final.cpu().numpy()


def purview(model: nn.Module, x: Tensor, per_sample: str = "loop") -> tuple[np.ndarray, np.ndarray]:
    """Purview as released (``get_purview``), per image: with e_i = sum (dL/dtheta_i)^2 for
    L = BCE-with-logits(z, 1) (mean over classes) and the N parameter tensors theta_i of
    ``named_parameters()``, j = N - 1: (-mean_{i < floor(j/2)} e_i, -mean_{i >= ceil(j/2)} e_i)
    (for even N the middle tensor is in neither). The released demo runs it after GradNorm
    without clearing the gradients; here they are fresh. ``per_sample``: a loop over images or
    ``torch.func`` vmap (equal values; the loop is faster on CPU)."""
    with eval_mode(model):
        return _purview(model, x, per_sample)


# --------------------------------------------------------------------------- all together


def trust_scores(
    model: nn.Module,
    x: Tensor,
    top_k: int | None = None,
    scores: Collection[str] | None = None,
    *,
    last_layer: str | None = None,
    mcd_passes: int = MCD_PASSES,
    mcd_seed: int = 0,
    odin_temperature: float = ODIN_TEMPERATURE,
    odin_epsilon: float = ODIN_EPSILON,
    per_sample: str = "loop",
) -> dict[str, np.ndarray]:
    """Every score of ``TRUST_SCORES`` (or those named in ``scores``) per image, float64 (B,),
    after ``"prediction"`` (B,) int64: one shared forward pass for the logit, last-layer and
    ODIN scores. Definitions: the functions of this module; ``top_k`` is the tutorial
    GradTrust's."""
    wanted = set(TRUST_SCORE_NAMES if scores is None else scores)
    unknown = wanted - set(TRUST_SCORE_NAMES)
    if unknown:
        raise ValueError(f"unknown trust scores {sorted(unknown)}; choose from {TRUST_SCORE_NAMES}")
    out: dict[str, np.ndarray] = {}
    with eval_mode(model):
        fwd = _forward(model, x, last_layer)
        logits, h = fwd.logits.detach(), fwd.layer_in.detach()
        out["prediction"] = logits.argmax(dim=1).cpu().numpy()
        if wanted & {"grad_trust", "grad_trust_released"}:
            g = _output_gradient(fwd, _uniform_mse)
            if "grad_trust" in wanted:
                out["grad_trust"] = _grad_trust(g, h, logits, top_k, squared=False)
            if "grad_trust_released" in wanted:
                out["grad_trust_released"] = _grad_trust_released(g, h)
        if "gradnorm" in wanted:
            out["gradnorm"] = _gradnorm(_output_gradient(fwd, _released_kl), h)
        if "odin" in wanted:
            out["odin"] = _odin(model, fwd, odin_temperature, odin_epsilon, keep_graph=False)
        del fwd
        if "mcd" in wanted:
            out["mcd"] = _mc_dropout(model, x, logits, mcd_passes, mcd_seed)
        if wanted & {"purview_initial", "purview_final"}:
            out["purview_initial"], out["purview_final"] = _purview(model, x, per_sample)
    for name, function in (
        ("softmax", softmax_confidence),
        ("entropy", entropy),
        ("margin", margin),
        ("logit", max_logit),
        ("nll", log_likelihood_released),
    ):
        if name in wanted:
            out[name] = function(logits)
    return {
        "prediction": out["prediction"],
        **{n: out[n] for n in TRUST_SCORE_NAMES if n in wanted},
    }
