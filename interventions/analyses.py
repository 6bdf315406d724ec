"""The per-image analyses of intervention studies (docs/design.md "Intervention protocol"): one
registry of what is computed for an image, under which names it is stored, and how pages call it.

`ANALYSES` maps a method name (the `ImageAnalysis.method` of its stored row) to an `Analysis`:
its human label, the names of the arrays it returns (`maps`, stored in one `.npz`), of its
`stats` and `params` (stored as JSON) and its compute function
`(classifier, rgb, context) -> {"maps": {...}, "stats": {...}, "params": {...}}`.
`analyse_image` runs the chosen methods on one image; the methods share one `ImageContext`, so
Grad-CAM, the prediction and the normalised input are computed once per image.

`OVERLAYS` names the maps pages show (URL name -> method, array, title, colour map).

Light at import: names, labels and numpy only. torch and the science modules are imported inside
the compute functions, so the web process can import this module (tests/core/test_layout.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

TOP_K = 5
FLIP_STEPS = 50  # area fractions k / 50 tried by the smallest-flip search
VOICE_THRESHOLD = 0.1  # voice_stats' binarisation of explanation and uncertainty
# Trust scores stored with VOICE as `trust_<name>` (interventions.trust.TRUST_SCORE_NAMES order).
STORED_TRUST_SCORES: tuple[str, ...] = (
    "softmax",
    "entropy",
    "margin",
    "logit",
    "nll",
    "odin",
    "mcd",
    "purview_initial",
    "purview_final",
    "gradnorm",
    "grad_trust",
    "grad_trust_released",
)

# Options of one run (`analyse_image(options=...)`); the precompute uses these defaults, the
# command line overrides them from its flags.
DEFAULT_OPTIONS: dict[str, object] = {
    "cam": "gradcam",  # CAM method of the `gradcam` analysis and of the causal curves' saliency
    "class_idx": None,  # class the `gradcam` analysis explains (None: the prediction)
    "voice_method": "gradcam",  # VOICE's explanation method: gradcam or gradcam++
    "contrast_classes": "all",  # VOICE's contrast classes: "all" or the top k
    "trust_scores": STORED_TRUST_SCORES,  # stored with VOICE; () computes none
    "step": None,  # pixels per causal-curve step (None: the input width, one row per step)
}

Result = dict[str, dict]


@dataclass(frozen=True)
class Analysis:
    """One registered per-image analysis and the names of what it returns."""

    name: str
    label: str
    maps: tuple[str, ...]
    stats: tuple[str, ...]
    params: tuple[str, ...]
    compute: Callable[..., Result] = field(repr=False)


@dataclass(frozen=True)
class Overlay:
    """A stored map a page shows: from analysis `method`, array `array` of its `.npz`."""

    method: str
    array: str
    title: str
    colour_map: str = "inferno"


# ------------------------------------------------------------------ shared per-image work


def top_classes(probs, class_names, k: int = TOP_K) -> list[dict]:
    """[{class, name, prob}] of the k most probable classes (a 1-D torch tensor), most probable
    first; a class without a name is named by its index."""
    values, indices = probs.topk(min(k, probs.shape[-1]))
    return [
        {
            "class": int(i),
            "name": class_names[int(i)] if int(i) < len(class_names) else str(int(i)),
            "prob": float(v),
        }
        for v, i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def target_of(label: int | None, n_classes: int, prediction: int) -> int:
    """The target class of an image: its class label when that is one of the model's classes,
    else the model's prediction on the unmodified image."""
    return int(label) if label is not None and 0 <= int(label) < n_classes else int(prediction)


class ImageContext:
    """What the analyses of one image share, each computed once on first use: the input at the
    classifier's size, the CAM of the explained class with the logits, softmax probabilities,
    the prediction and the second most likely class."""

    def __init__(
        self,
        classifier,
        rgb: np.ndarray,
        substrate: str | None = None,
        label: int | None = None,
        options: Mapping[str, object] | None = None,
    ):
        unknown = set(options or {}) - set(DEFAULT_OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown analysis options {sorted(unknown)}; choose from {list(DEFAULT_OPTIONS)}"
            )
        self.classifier, self.rgb, self.substrate, self.label = classifier, rgb, substrate, label
        self.options = {**DEFAULT_OPTIONS, **(options or {})}
        self.model, self.layer = classifier.module, classifier.target_layer

    @cached_property
    def x(self):
        return self.classifier.preprocess(self.rgb)

    @cached_property
    def full(self):
        """The image normalised at its own size (the substrate search works at image size)."""
        from interventions.substrates import normalise_image

        return normalise_image(self.rgb, self.classifier.mean, self.classifier.std)

    @cached_property
    def cam(self):
        """(maps (1, H, W) in [0, 1], logits (1, C)) of the `cam` option for `class_idx`."""
        from interventions.explain import explain

        o = self.options
        return explain(self.model, self.x, self.layer, o["cam"], o["class_idx"])

    @property
    def logits(self):
        return self.cam[1]

    @cached_property
    def cam_np(self) -> np.ndarray:
        return self.cam[0][0].detach().cpu().numpy()

    @cached_property
    def probs(self):
        import torch

        return torch.softmax(self.logits.double(), dim=1)[0]

    @cached_property
    def prediction(self) -> int:
        return int(self.probs.argmax())

    @cached_property
    def second(self) -> int:
        return int(self.logits[0].topk(2).indices[1])

    def common(self) -> dict:
        p = self.prediction
        return {
            "prediction": p,
            "prediction_name": self.classifier.class_names[p],
            "prob_pred": float(self.probs[p]),
        }


# ------------------------------------------------------------------ the analyses


def _numpy(t) -> np.ndarray:
    return t[0].detach().cpu().numpy()


def compute_gradcam(classifier, rgb: np.ndarray, ctx: ImageContext) -> Result:
    """Grad-CAM of the prediction (or of the `cam` method / `class_idx` options)."""
    o = ctx.options
    explained = ctx.prediction if o["class_idx"] is None else int(o["class_idx"])
    params: dict = {"class_idx": explained, "layer": ctx.layer}
    if o["cam"] != "gradcam":
        params["method"] = o["cam"]
    return {
        "maps": {"map": ctx.cam_np},
        "stats": {
            **ctx.common(),
            "logit_pred": float(ctx.logits[0, ctx.prediction]),
            "top5": top_classes(ctx.probs, classifier.class_names),
        },
        "params": params,
    }


def compute_counterfactual_cam(classifier, rgb: np.ndarray, ctx: ImageContext) -> Result:
    """CounterfactualCAM of the prediction: where evidence against it lies."""
    from interventions.explain import counterfactual_cam

    maps, _ = counterfactual_cam(ctx.model, ctx.x, ctx.layer, ctx.prediction)
    return {
        "maps": {"map": _numpy(maps)},
        "stats": ctx.common(),
        "params": {"class_idx": ctx.prediction, "layer": ctx.layer},
    }


def compute_contrast_cam(classifier, rgb: np.ndarray, ctx: ImageContext) -> Result:
    """ContrastCAM(prediction, second most likely class): why P rather than Q."""
    from interventions.explain import contrast_cam

    maps, _ = contrast_cam(ctx.model, ctx.x, ctx.layer, ctx.second)
    return {
        "maps": {"map": _numpy(maps)},
        "stats": {
            **ctx.common(),
            "contrast_class": ctx.second,
            "contrast_name": classifier.class_names[ctx.second],
        },
        "params": {"prediction": ctx.prediction, "contrast_idx": ctx.second, "layer": ctx.layer},
    }


def compute_voice(classifier, rgb: np.ndarray, ctx: ImageContext) -> Result:
    """VOICE: explanation, displayed contrast and uncertainty maps, IoU / SNR, and the
    prediction's trust scores (`trust_<name>`)."""
    from interventions.voice import voice

    o = ctx.options
    v = voice(ctx.model, ctx.x, ctx.layer, o["voice_method"], o["contrast_classes"])
    trust = {}
    if o["trust_scores"]:
        from interventions.trust import trust_scores

        scores = trust_scores(ctx.model, ctx.x, scores=o["trust_scores"])
        trust = {k: float(np.asarray(val)[0]) for k, val in scores.items() if k != "prediction"}
    return {
        "maps": {
            "uncertainty": _numpy(v.uncertainty),
            "explanation": _numpy(v.explanation),
            "contrast": _numpy(v.contrast),
        },
        "stats": {
            **{k: (float(val) if isinstance(val, float) else val) for k, val in v.stats[0].items()},
            **{f"trust_{k}": val for k, val in trust.items()},
        },
        "params": {
            "method": o["voice_method"],
            "contrast_classes": o["contrast_classes"],
            "layer": ctx.layer,
            "threshold": VOICE_THRESHOLD,
        },
    }


def compute_causal(classifier, rgb: np.ndarray, ctx: ImageContext) -> Result:
    """RISE deletion (zero) and insertion (blur) curves of the CAM order at the input size, and
    the smallest Grad-CAM-ordered area whose deletion / insertion with the study's substrate
    flips / restores the prediction at the image size."""
    from interventions.causal import causal_curve
    from interventions.regions import resize_map
    from interventions.substrates import smallest_flip_by_saliency

    if ctx.substrate is None:
        raise ValueError("the causal analysis needs a substrate (the study's)")
    step = int(ctx.options["step"] or classifier.input_size[1])
    deletion = causal_curve(ctx.model, ctx.x, ctx.cam[0], "deletion", step=step)
    insertion = causal_curve(ctx.model, ctx.x, ctx.cam[0], "insertion", step=step)
    saliency_full = resize_map(ctx.cam_np, rgb.shape[:2])
    target = target_of(ctx.label, ctx.probs.shape[0], ctx.prediction)
    flips = {
        operation: smallest_flip_by_saliency(
            classifier.predict_proba,
            ctx.full,
            saliency_full,
            classifier.input_size,
            operation,
            ctx.substrate,
            FLIP_STEPS,
            **({"target": target} if operation == "insert" else {}),
        )
        for operation in ("delete", "insert")
    }
    return {
        "maps": {
            "deletion": deletion.scores[0],
            "insertion": insertion.scores[0],
            "flip_deletion_probs": np.asarray(flips["delete"]["probs"]),
            "flip_insertion_probs": np.asarray(flips["insert"]["probs"]),
        },
        "stats": {
            **ctx.common(),
            "deletion_auc": float(deletion.auc[0]),
            "insertion_auc": float(insertion.auc[0]),
            "n_scores": int(deletion.scores.shape[1]),
            "smallest_flip_deletion": flips["delete"]["fraction"],
            "smallest_restore_insertion": flips["insert"]["fraction"],
            "target_class": target,
        },
        "params": {
            "saliency": ctx.options["cam"],
            "step": step,
            "deletion_substrate": "zero",
            "insertion_substrate": "blur",
            "flip_substrate": ctx.substrate,
            "flip_steps": FLIP_STEPS,
        },
    }


COMMON_STATS = ("prediction", "prediction_name", "prob_pred")
ANALYSES: dict[str, Analysis] = {
    a.name: a
    for a in (
        Analysis(
            "gradcam",
            "Grad-CAM (prediction)",
            maps=("map",),
            stats=(*COMMON_STATS, "logit_pred", "top5"),
            params=("class_idx", "layer"),
            compute=compute_gradcam,
        ),
        Analysis(
            "counterfactual_cam",
            "CounterfactualCAM (prediction)",
            maps=("map",),
            stats=COMMON_STATS,
            params=("class_idx", "layer"),
            compute=compute_counterfactual_cam,
        ),
        Analysis(
            "contrast_cam",
            "ContrastCAM (second class)",
            maps=("map",),
            stats=(*COMMON_STATS, "contrast_class", "contrast_name"),
            params=("prediction", "contrast_idx", "layer"),
            compute=compute_contrast_cam,
        ),
        Analysis(
            "voice",
            "VOICE uncertainty",
            maps=("uncertainty", "explanation", "contrast"),
            stats=(
                "prediction",
                "contrast_class",
                "iou",
                "snr",
                "logit_pred",
                "log_prob_pred",
                *(f"trust_{name}" for name in STORED_TRUST_SCORES),
            ),
            params=("method", "contrast_classes", "layer", "threshold"),
            compute=compute_voice,
        ),
        Analysis(
            "causal_gradcam",
            "Deletion / insertion curves of Grad-CAM",
            maps=("deletion", "insertion", "flip_deletion_probs", "flip_insertion_probs"),
            stats=(
                *COMMON_STATS,
                "deletion_auc",
                "insertion_auc",
                "n_scores",
                "smallest_flip_deletion",
                "smallest_restore_insertion",
                "target_class",
            ),
            params=(
                "saliency",
                "step",
                "deletion_substrate",
                "insertion_substrate",
                "flip_substrate",
                "flip_steps",
            ),
            compute=compute_causal,
        ),
    )
}
ANALYSIS_METHODS: tuple[str, ...] = tuple(ANALYSES)  # what the precompute stores per image

# Maps the researcher's image page and the participant's overlay show: URL name -> source.
OVERLAYS: dict[str, Overlay] = {
    "gradcam": Overlay("gradcam", "map", ANALYSES["gradcam"].label),
    "counterfactual": Overlay("counterfactual_cam", "map", ANALYSES["counterfactual_cam"].label),
    "contrast": Overlay("contrast_cam", "map", ANALYSES["contrast_cam"].label),
    "voice": Overlay("voice", "uncertainty", ANALYSES["voice"].label, "viridis"),
    "voice_explanation": Overlay("voice", "explanation", "VOICE explanation (prediction)"),
}


def analyse_image(
    classifier,
    rgb: np.ndarray,
    substrate: str | None = None,
    label: int | None = None,
    methods: Iterable[str] = ANALYSIS_METHODS,
    options: Mapping[str, object] | None = None,
) -> dict[str, Result]:
    """{method: {"maps", "stats", "params"}} of the registered `methods` on one uint8 RGB image,
    sharing one `ImageContext`; `substrate` (the study's) is needed by `causal_gradcam`,
    `label` names the target class of the restoring insertion."""
    methods = list(methods)
    unknown = [m for m in methods if m not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown analyses {unknown}; choose from {list(ANALYSES)}")
    ctx = ImageContext(classifier, rgb, substrate, label, options)
    return {m: ANALYSES[m].compute(classifier, rgb, ctx) for m in methods}


SCIENCE_MODULES = (
    "analyses.py",
    "explain.py",
    "voice.py",
    "causal.py",
    "substrates.py",
    "regions.py",
    "models.py",
    "trust.py",
)


@lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 (12 hex) of the science modules the analyses come from (stored on every row)."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for name in SCIENCE_MODULES:
        path = root / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
