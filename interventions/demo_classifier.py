"""Training and evaluation of the demo CNN on the generated demo scenes (class = object kind).

Deterministic from a seed on the CPU: scenes come from ``interventions.demo_data`` (training
seed ``seed``, held-out evaluation seed ``seed + 1000``), weight init, shuffling, the
flip/rotation augmentation and the intervention-aware augmentation all draw from seeded
generators, and the thread count is fixed. Intervention-aware augmentation (``intervention_batch``)
teaches the model what an intervention study asks of it: an image whose object was replaced by a
substrate holds no evidence (target: the uniform distribution over the classes), while deleting
background regions or the substrate around the object (insertion) changes nothing (target: the
label). The loss is the soft-target cross-entropy plus ``localisation_weight`` x
``localisation_loss`` (the true class's activation map should put its spatial-softmax mass on
the object; the generator's masks are exact). The evaluation reports held-out accuracy, the
Grad-CAM pointing game (argmax of the map of the true class inside the object mask; Zhang et al.
2018), RISE deletion/insertion AUC of Grad-CAM against a random saliency map, and per substrate
how often deleting the object vs an equal-area background region flips the prediction.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from interventions.causal import causal_curve
from interventions.demo_data import CLASS_NAMES, draw_shape_mask, generate_scene
from interventions.explain import grad_cam
from interventions.models import (
    DEMO_INPUT_SIZE,
    DEMO_MEAN,
    DEMO_STD,
    DEMO_TARGET_LAYER,
    DEMO_WEIGHTS,
    Classifier,
    build_demo_cnn,
    file_sha256,
    load_classifier,
)
from interventions.substrates import SUBSTRATES, intervene, normalise_image, to_input_size

SCENE_SIZE = 128
EVAL_SEED_OFFSET = 1000
# Cluttered scenes (about 50% held-out accuracy) and Low contrast (about 54%) stayed far below
# 90% within a few CPU minutes, so the committed demo CNN is trained on Clean shapes.
TRAIN_DATASETS: tuple[str, ...] = ("Clean shapes",)
# Per training image: P(object deleted -> uniform target), P(random background region deleted ->
# label), P(everything but the object deleted, i.e. object inserted -> label); else unchanged.
INTERVENTION_PROBABILITIES: tuple[float, float, float] = (0.4, 0.25, 0.1)
# How often each of ``interventions.substrates.SUBSTRATES`` (zero, blur, mean, noise) is drawn:
# zero, the data set's grey and the demo study's substrate, leaves the object's silhouette as a
# flat grey shape, the hardest deletion to tell from a real object, so it is drawn most.
SUBSTRATE_WEIGHTS: tuple[float, float, float, float] = (0.4, 0.2, 0.2, 0.2)
# Loss weight of an image whose object was deleted (vs 1 for the others): the gradient of the
# cross-entropy towards the uniform target is small (p - 1/K), so without it the deleted object's
# silhouette keeps a residual preference for its class.
DELETION_LOSS_WEIGHT = 4.0


@dataclass
class EvalReport:
    """Held-out figures of a demo classifier (AUCs are means over the images)."""

    n_images: int
    accuracy: float
    accuracy_per_dataset: dict[str, float]
    pointing_game: float
    deletion_auc_gradcam: float
    deletion_auc_random: float
    insertion_auc_gradcam: float
    insertion_auc_random: float
    flip_rate_object: dict[str, float] = field(default_factory=dict)
    flip_rate_background: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainReport:
    """What ``train`` did and measured."""

    weights_path: str
    sha256: str
    size_bytes: int
    seed: int
    n_train: int
    epochs: int
    seconds: float
    final_train_loss: float
    evaluation: EvalReport | None = None
    datasets: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _normalise(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> (x / 255 - DEMO_MEAN) / DEMO_STD as float32 (N, 3, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(DEMO_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(DEMO_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _scenes(
    datasets: list[str], n_per_dataset: int, seed: int, progress: bool = False
) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """uint8 (N, 128, 128, 3) images, (N,) labels and (N, 128, 128) bool masks."""
    images, labels, masks = [], [], []
    jobs = [(d, i) for d in datasets for i in range(n_per_dataset)]
    for dataset, index in tqdm(jobs, desc=f"scenes (seed {seed})", disable=not progress):
        scene = generate_scene(dataset, index, seed=seed, size=SCENE_SIZE)
        images.append(scene.image)
        labels.append(scene.label)
        masks.append(scene.mask)
    return np.stack(images), torch.tensor(labels), np.stack(masks)


def scene_tensors(
    datasets: list[str], n_per_dataset: int, seed: int, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Normalised (N, 3, 64, 64) inputs, (N,) labels and (N, 128, 128) bool masks of the first
    ``n_per_dataset`` scenes of each data set (preprocessed exactly as ``Classifier.preprocess``)."""
    images, labels, masks = _scenes(datasets, n_per_dataset, seed, progress)
    x = to_input_size(_normalise(images), (DEMO_INPUT_SIZE, DEMO_INPUT_SIZE))
    return x, labels, masks


def _augment(
    x: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flips and quarter turns of the images (B, 3, H, W) and their object
    masks (B, H, W) (the classes are invariant to them)."""
    out, out_masks = x.clone(), masks.clone()
    flip_h = torch.rand(len(x), generator=generator) < 0.5
    flip_v = torch.rand(len(x), generator=generator) < 0.5
    turns = torch.randint(0, 4, (len(x),), generator=generator)
    for t in (out, out_masks):
        t[flip_h] = t[flip_h].flip(-1)
        t[flip_v] = t[flip_v].flip(-2)
        for k in (1, 2, 3):
            sel = turns == k
            t[sel] = torch.rot90(t[sel], k, dims=(-2, -1))
    return out, out_masks


def dilate(masks: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool masks dilated by a square of half-width ``radius[b]`` pixels each."""
    out = masks.clone()
    for r in radius.unique().tolist():
        if r > 0:
            sel = radius == r
            grown = F.max_pool2d(masks[sel, None].float(), 2 * r + 1, stride=1, padding=r)
            out[sel] = grown[:, 0] > 0
    return out


def random_background_region(
    rng: np.random.Generator,
    keep_out: np.ndarray,
    min_area: float = 0.02,
    max_area: float = 0.4,
) -> np.ndarray:
    """A random region (H, W) bool: the union of 1-3 rectangles, ellipses, brush strokes or
    demo shapes (any class) whose area is about ``min_area``..``max_area`` of the image, minus
    ``keep_out`` (the object, dilated)."""
    size = keep_out.shape[0]
    canvas = np.zeros((size, size), np.uint8)
    target = rng.uniform(min_area, max_area) * size * size
    for _ in range(int(rng.integers(1, 4))):
        side = np.sqrt(target / 2.0)
        cx, cy = rng.uniform(0, size, 2)
        kind = rng.integers(0, 4)
        if kind == 0:  # rectangle
            w, h = side * rng.uniform(0.5, 2.0), side * rng.uniform(0.5, 2.0)
            cv2.rectangle(canvas, (int(cx - w / 2), int(cy - h / 2)),
                          (int(cx + w / 2), int(cy + h / 2)), 1, -1)  # fmt: skip
        elif kind == 1:  # ellipse
            axes = (int(side * rng.uniform(0.3, 1.0)) + 1, int(side * rng.uniform(0.3, 1.0)) + 1)
            cv2.ellipse(canvas, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
        elif kind == 2:  # brush stroke: a thick polyline
            points = np.cumsum(rng.normal(0, side / 2, size=(int(rng.integers(2, 6)), 2)), 0)
            points = np.round(points + [cx, cy]).astype(np.int32)
            thickness = int(rng.integers(4, max(5, int(side / 2))))
            cv2.polylines(canvas, [points], False, 1, thickness)
        else:  # the silhouette of a demo shape, so a grey shape alone is no evidence of a class
            shape = CLASS_NAMES[int(rng.integers(0, len(CLASS_NAMES)))]
            extent = float(np.clip(side * rng.uniform(1.0, 1.6), 8, size * 0.6))
            canvas |= draw_shape_mask(shape, size, (cx, cy), extent, rng.uniform(0, 2 * np.pi))
    return canvas.astype(bool) & ~keep_out


def intervention_batch(
    x: torch.Tensor,
    masks: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    rng: np.random.Generator,
    probabilities: tuple[float, float, float] = INTERVENTION_PROBABILITIES,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Intervention-aware augmentation of normalised scenes x (B, 3, H, W) with object masks
    (B, H, W): with the given probabilities an image has (1) its object deleted (mask dilated by
    0-2 px), (2) a random background region deleted (``random_background_region``, at least
    2 px away from the object), or (3) everything but its object (dilated
    by 0-3 px) deleted, i.e. the object inserted into the substrate; otherwise it is unchanged.
    Each uses a random substrate (``SUBSTRATE_WEIGHTS``; ``interventions.substrates.intervene``;
    noise from a random seed). Targets: uniform over the classes for (1) (no evidence is left), the label otherwise.
    Returns the images, soft targets (B, classes) and whether the object is still present (B,)."""
    batch = len(x)
    u = torch.rand(batch, generator=generator)
    p_obj, p_bg, p_ins = probabilities
    kind = torch.zeros(batch, dtype=torch.long)  # 0: unchanged
    kind[u < p_obj + p_bg + p_ins] = 3
    kind[u < p_obj + p_bg] = 2
    kind[u < p_obj] = 1
    weights = torch.tensor(SUBSTRATE_WEIGHTS)
    subs = torch.multinomial(weights, batch, replacement=True, generator=generator)
    regions = torch.zeros_like(masks)
    regions[kind == 1] = dilate(masks[kind == 1], torch.randint(0, 3, (int((kind == 1).sum()),),
                                                                generator=generator))  # fmt: skip
    regions[kind == 3] = dilate(masks[kind == 3], torch.randint(0, 4, (int((kind == 3).sum()),),
                                                                generator=generator))  # fmt: skip
    keep_out = dilate(masks, torch.full((batch,), 2)).numpy()
    for b in torch.nonzero(kind == 2).flatten().tolist():
        regions[b] = torch.from_numpy(random_background_region(rng, keep_out[b]))
    out = x.clone()
    for k, operation in ((1, "delete"), (2, "delete"), (3, "insert")):
        for s, name in enumerate(SUBSTRATES):
            sel = (kind == k) & (subs == s)
            if sel.any():
                seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
                out[sel] = intervene(x[sel], regions[sel], operation, name, seed=seed)
    targets = F.one_hot(labels, len(CLASS_NAMES)).float()
    targets[kind == 1] = 1.0 / len(CLASS_NAMES)
    return out, targets, kind != 1


def object_grid(masks: np.ndarray | torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N, u, v) fraction of each target-layer cell's centre (the central 2 x 2 mask pixels of
    the cell, where the bilinearly upsampled map of that cell peaks) covered by the object."""
    n, mh, mw = masks.shape
    u, v = grid
    if mh % u or mw % v:
        raise ValueError(f"mask size {(mh, mw)} is not a multiple of the layer grid {grid}")
    ch, cw = mh // u, mw // v
    cells = torch.as_tensor(masks).float().reshape(n, u, ch, v, cw)
    centre = cells[:, :, ch // 2 - 1 : ch // 2 + 1, :, cw // 2 - 1 : cw // 2 + 1]
    return centre.mean(dim=(2, 4))


def _cam_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class activation maps (B, classes, u, v) of the demo CNN's target layer and its logits.
    The head is global average pooling + linear, so Grad-CAM(c) = ReLU(CAM_c) up to scale."""
    activations = model.get_submodule(DEMO_TARGET_LAYER)(
        _features_before_target(model, x)
    )  # (B, K, u, v)
    logits = model.fc(activations.mean(dim=(2, 3)))
    cams = torch.einsum("ck,bkuv->bcuv", model.fc.weight, activations)
    return cams, logits


def _features_before_target(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    h = x
    for name, module in model.features.named_children():
        if f"features.{name}" == DEMO_TARGET_LAYER:
            return h
        h = module(h)
    raise ValueError(f"{DEMO_TARGET_LAYER} is not a child of the demo CNN's features")


def localisation_loss(cams: torch.Tensor, labels: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """-log sum_cells softmax_cells(CAM_label) * object_grid: the spatial softmax of the true
    class's activation map should put its mass on cells whose centre lies on the object
    (attention supervision with the generator's exact masks; Ross et al. 2017, Li et al. 2018)."""
    cam = cams[torch.arange(len(labels)), labels].flatten(1)  # (B, u*v)
    weights = torch.softmax(cam, dim=1)
    return -torch.log((weights * grid.flatten(1)).sum(dim=1) + 1e-6).mean()


def train(
    out_path: str | Path = DEMO_WEIGHTS,
    n_per_dataset: int = 1500,
    epochs: int = 45,
    seed: int = 0,
    threads: int = 1,
    batch_size: int = 64,
    lr: float = 4e-3,
    datasets: list[str] | None = None,
    eval_per_dataset: int = 100,
    progress: bool = True,
    localisation_weight: float = 0.5,
    deletion_weight: float = DELETION_LOSS_WEIGHT,
) -> TrainReport:
    """Train the demo CNN (AdamW, one-cycle learning rate) on generated scenes with random flips
    and quarter turns and intervention-aware augmentation (``intervention_batch``: object
    deleted -> uniform target, background deleted or object inserted -> label); the loss is the
    soft-target cross-entropy (images without their object weighted ``deletion_weight``, the
    others 1) + ``localisation_weight`` x ``localisation_loss`` (on images whose
    object is present). Saves its state dict (float32, < 2 MB) to ``out_path`` and its sha256
    beside it (``<out_path>.sha256``), then evaluates on held-out scenes of seed ``seed + 1000``."""
    if n_per_dataset < 1 or epochs < 1:
        raise ValueError("n_per_dataset and epochs must be >= 1")
    datasets = list(TRAIN_DATASETS) if datasets is None else datasets
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    started = time.perf_counter()
    images, y, masks_np = _scenes(datasets, n_per_dataset, seed, progress)
    x = _normalise(images)  # at the scene's own size: interventions happen there, as in trials
    masks = torch.from_numpy(masks_np)
    del images
    input_size = (DEMO_INPUT_SIZE, DEMO_INPUT_SIZE)
    model = build_demo_cnn(len(CLASS_NAMES))
    with torch.no_grad():
        probe = to_input_size(x[:1], input_size)
        grid_shape = tuple(_cam_and_logits(model.eval(), probe)[0].shape[-2:])
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng([seed, 1])
    steps_per_epoch = (len(x) + batch_size - 1) // batch_size
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    loss_value = float("nan")
    bar = tqdm(total=epochs * steps_per_epoch, desc="training demo CNN", disable=not progress)
    for _epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for lo in range(0, len(x), batch_size):
            idx = order[lo : lo + batch_size]
            xb, mb = _augment(x[idx], masks[idx], generator)
            xb, targets, present = intervention_batch(xb, mb, y[idx], generator, rng)
            cams, logits = _cam_and_logits(model, to_input_size(xb, input_size))
            weight = torch.where(present, 1.0, deletion_weight)
            ce = F.cross_entropy(logits, targets, reduction="none")
            loss = (weight * ce).sum() / weight.sum()
            if localisation_weight > 0 and present.any():
                grid = object_grid(mb[present], grid_shape)
                loss = loss + localisation_weight * localisation_loss(
                    cams[present], y[idx][present], grid
                )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            loss_value = loss.item()
            bar.set_postfix(loss=f"{loss_value:.3f}")
            bar.update()
    bar.close()
    model.eval()

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out)
    sha = file_sha256(out)
    out.with_name(out.name + ".sha256").write_text(f"{sha}  {out.name}\n")
    report = TrainReport(
        weights_path=str(out),
        sha256=sha,
        size_bytes=out.stat().st_size,
        seed=seed,
        n_train=len(x),
        epochs=epochs,
        seconds=round(time.perf_counter() - started, 1),
        final_train_loss=loss_value,
        datasets=datasets,
    )
    if eval_per_dataset > 0:
        classifier = load_classifier("demo", out)
        report.evaluation = evaluate(
            classifier, eval_per_dataset, seed + EVAL_SEED_OFFSET, datasets, progress
        )
    return report


def pointing_hits(maps: torch.Tensor, masks: np.ndarray) -> np.ndarray:
    """Per image: is the argmax of the (B, h, w) map inside the (B, H, W) object mask? The map
    pixel's centre is scaled to mask coordinates."""
    batch, h, w = maps.shape
    flat = maps.reshape(batch, -1).argmax(dim=1).cpu().numpy()
    rows, cols = flat // w, flat % w
    mh, mw = masks.shape[1:]
    r = ((rows + 0.5) * mh / h).astype(int)
    c = ((cols + 0.5) * mw / w).astype(int)
    return masks[np.arange(batch), r, c]


def farthest_background(mask: np.ndarray) -> np.ndarray:
    """The background region (H, W) bool of the object's area made of the pixels farthest from
    the object (L2 distance transform, stable order): an equal-area control for deleting it."""
    obj = np.asarray(mask, dtype=bool)
    distance = cv2.distanceTransform((~obj).astype(np.uint8), cv2.DIST_L2, 5).ravel()
    region = np.zeros(obj.size, bool)
    region[np.argsort(-distance, kind="stable")[: int(obj.sum())]] = True
    return region.reshape(obj.shape)


def flip_rates(
    classifier: Classifier, images: np.ndarray, masks: np.ndarray, substrates=SUBSTRATES
) -> tuple[dict[str, float], dict[str, float]]:
    """Per substrate, the fraction of images (uint8 (N, H, W, 3)) whose prediction changes when
    the object's exact mask is deleted, and when the equal-area ``farthest_background`` is
    deleted; interventions at the image's own size, then resized (the trials' code path)."""
    x = torch.cat([normalise_image(image, classifier.mean, classifier.std) for image in images])
    obj = torch.from_numpy(np.asarray(masks, dtype=bool))
    background = torch.from_numpy(np.stack([farthest_background(m) for m in masks]))
    base = classifier.predict_proba(to_input_size(x, classifier.input_size)).argmax(1)
    rates: tuple[dict[str, float], dict[str, float]] = ({}, {})
    for name in substrates:
        for region, out in ((obj, rates[0]), (background, rates[1])):
            deleted = to_input_size(intervene(x, region, "delete", name), classifier.input_size)
            pred = classifier.predict_proba(deleted).argmax(1)
            out[name] = float((pred != base).float().mean())
    return rates


def evaluate(
    classifier: Classifier,
    n_per_dataset: int = 100,
    seed: int = EVAL_SEED_OFFSET,
    datasets: list[str] | None = None,
    progress: bool = False,
    step: int = DEMO_INPUT_SIZE,
    batch_size: int = 32,
) -> EvalReport:
    """Held-out accuracy, Grad-CAM pointing game (true class) and RISE deletion/insertion AUC
    (``step`` pixels per step; 65 scores on 64 x 64) of Grad-CAM (predicted class) vs a
    uniform random saliency map (seeded); and per substrate the flip rates of deleting the
    object's mask vs an equal-area background region (``flip_rates``)."""
    datasets = list(TRAIN_DATASETS) if datasets is None else datasets
    images, y, masks = _scenes(datasets, n_per_dataset, seed, progress)
    x = to_input_size(_normalise(images), (DEMO_INPUT_SIZE, DEMO_INPUT_SIZE))
    model = classifier.module
    layer = classifier.target_layer or DEMO_TARGET_LAYER
    rng = torch.Generator().manual_seed(seed)
    preds, hits = [], []
    aucs = {k: [] for k in ("del_cam", "del_rand", "ins_cam", "ins_rand")}
    starts = range(0, len(x), batch_size)
    for lo in tqdm(starts, desc="evaluating", disable=not progress):
        xb, yb = x[lo : lo + batch_size], y[lo : lo + batch_size]
        maps_true, logits = grad_cam(model, xb, layer, yb)
        preds.append(logits.argmax(dim=1))
        hits.append(pointing_hits(maps_true, masks[lo : lo + batch_size]))
        maps_pred, _ = grad_cam(model, xb, layer)
        random_maps = torch.rand(maps_pred.shape, generator=rng)
        for mode, short in (("deletion", "del"), ("insertion", "ins")):
            aucs[f"{short}_cam"].append(
                causal_curve(model, xb, maps_pred, mode, step, batch_size=256).auc
            )
            aucs[f"{short}_rand"].append(
                causal_curve(model, xb, random_maps, mode, step, batch_size=256).auc
            )
    pred = torch.cat(preds)
    correct = (pred == y).numpy()
    per_dataset = {
        d: float(correct[i * n_per_dataset : (i + 1) * n_per_dataset].mean())
        for i, d in enumerate(datasets)
    }
    mean = {k: float(np.concatenate(v).mean()) for k, v in aucs.items()}
    flips_object, flips_background = flip_rates(classifier, images, masks)
    return EvalReport(
        n_images=len(x),
        accuracy=float(correct.mean()),
        accuracy_per_dataset=per_dataset,
        pointing_game=float(np.concatenate(hits).mean()),
        deletion_auc_gradcam=mean["del_cam"],
        deletion_auc_random=mean["del_rand"],
        insertion_auc_gradcam=mean["ins_cam"],
        insertion_auc_random=mean["ins_rand"],
        flip_rate_object=flips_object,
        flip_rate_background=flips_background,
    )
