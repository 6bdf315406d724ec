"""Command line: ``python -m interventions explain|voice|causal --model M --image I --out DIR``
and ``python -m interventions trust --model M --images DIR --labels L --out DIR``
(``interventions.trust_cli``).

Writes PNG overlays (``Explanation.png``, ``Contrast.png``, ``Uncertainty of Explanation.png``
as the VOICE reference names them), deletion/insertion curve plots and the figures as
``stats.json``; every figure comes from the analyses registry (``interventions.analyses``), the
same code the study precompute runs. ``--model`` is ``demo`` (the committed demo CNN), a torchvision name (with
``--weights``) or ``torchscript`` (with ``--weights``, causal curves only).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from interventions.analyses import analyse_image
from interventions.explain import METHODS
from interventions.models import Classifier, load_classifier
from interventions.substrates import SUBSTRATES
from interventions.trust_cli import add_trust_parser, run_trust


def overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """uint8 (H, W, 3): the image blended with the JET colour map of a [0, 1] map that is
    bilinearly resized to the image."""
    h, w = image.shape[:2]
    sal = cv2.resize(np.asarray(saliency, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.uint8(np.clip(sal, 0, 1) * 255), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return np.uint8(np.clip((1 - alpha) * image + alpha * heat, 0, 255))


def _read_image(path: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise SystemExit(f"error: image not found: {path}") from None
    except OSError as exc:
        raise SystemExit(f"error: cannot read image {path}: {exc}") from None


def _load(args: argparse.Namespace) -> Classifier:
    names = None
    if args.class_names:
        p = Path(args.class_names)
        names = p.read_text().split("\n") if p.is_file() else args.class_names.split(",")
        names = [n.strip() for n in names if n.strip()]
    return load_classifier(
        args.model,
        args.weights,
        num_classes=args.num_classes,
        class_names=names,
        input_size=args.input_size,
        target_layer=args.target_layer,
        device=args.device,
    )


def _top5(top: list[dict]) -> list[dict[str, object]]:
    """The registry's top-5 in the command line's format ({class, name, probability})."""
    return [{"class": t["class"], "name": t["name"], "probability": t["prob"]} for t in top]


def _save_png(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(path)


def _plot_curve(path: Path, scores: np.ndarray, auc: float, mode: str, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    frac = np.linspace(0, 1, len(scores))
    ax.plot(frac, scores)
    ax.fill_between(frac, 0, scores, alpha=0.3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(f"fraction of pixels {'deleted' if mode == 'deletion' else 'inserted'}")
    ax.set_ylabel(f"p({name})")
    ax.set_title(f"{mode.capitalize()}: AUC = {auc:.4f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict[str, object]:
    """Run one sub-command and write its files to ``args.out``; returns the stats written."""
    classifier = _load(args)
    image = _read_image(args.image)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    layer = classifier.target_layer
    stats: dict[str, object] = {
        "command": args.command,
        "model": args.model,
        "weights_sha256": classifier.weights_sha256,
        "image": str(args.image),
        "target_layer": layer,
    }
    if args.command in ("explain", "voice") and layer is None:
        raise SystemExit("error: no target layer known for this model; pass --target-layer")

    if args.command == "explain":
        found = analyse_image(
            classifier,
            image,
            methods=("gradcam",),
            options={"cam": args.method, "class_idx": args.class_idx},
        )["gradcam"]
        _save_png(out / "Explanation.png", overlay(image, found["maps"]["map"]))
        np.save(out / "explanation.npy", found["maps"]["map"])
        stats.update(method=args.method, top5=_top5(found["stats"]["top5"]))
    elif args.command == "voice":
        contrast_classes = "all" if args.contrast_classes == "all" else int(args.contrast_classes)
        options = {
            "voice_method": args.method,
            "contrast_classes": contrast_classes,
            "trust_scores": (),
        }
        found = analyse_image(classifier, image, methods=("voice",), options=options)["voice"]
        for name, key in (
            ("Explanation", "explanation"),
            ("Contrast", "contrast"),
            ("Uncertainty of Explanation", "uncertainty"),
        ):
            _save_png(out / f"{name}.png", overlay(image, found["maps"][key]))
        np.save(out / "uncertainty.npy", found["maps"]["uncertainty"])
        st = dict(found["stats"])
        st["prediction_name"] = classifier.class_names[int(st["prediction"])]
        st["contrast_class_name"] = classifier.class_names[int(st["contrast_class"])]
        stats.update(method=args.method, contrast_classes=args.contrast_classes, voice=st)
    else:
        if layer is None or isinstance(classifier.module, torch.jit.ScriptModule):
            raise SystemExit(
                "error: causal curves need a saliency map; this model has no target layer"
            )
        found = analyse_image(
            classifier,
            image,
            args.substrate,
            methods=("gradcam", "causal_gradcam"),
            options={"cam": args.method, "step": args.step},
        )
        _save_png(out / "Explanation.png", overlay(image, found["gradcam"]["maps"]["map"]))
        stats["saliency"] = args.method
        causal = found["causal_gradcam"]
        pred = causal["stats"]["prediction"]
        curves = {}
        for mode in ("deletion", "insertion"):
            scores, auc = causal["maps"][mode], causal["stats"][f"{mode}_auc"]
            curves[mode] = {"auc": auc, "scores": scores.tolist()}
            _plot_curve(out / f"{mode}.png", scores, auc, mode, classifier.class_names[pred])
        stats.update(
            prediction=pred,
            prediction_name=classifier.class_names[pred],
            step=causal["params"]["step"],
            substrate=args.substrate,
            smallest_flip_deletion=causal["stats"]["smallest_flip_deletion"],
            smallest_restore_insertion=causal["stats"]["smallest_restore_insertion"],
            curves=curves,
            top5=_top5(found["gradcam"]["stats"]["top5"]),
        )
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m interventions",
        description="Explanations (Grad-CAM family), VOICE uncertainty, RISE causal curves and "
        "prediction trust scores (GradTrust and its baselines).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("explain", "write the explanation overlay and the top-5 predictions"),
        ("voice", "write explanation, contrast and VOICE uncertainty overlays and stats"),
        ("causal", "write deletion and insertion curves of the explanation"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--model", required=True, help="'demo', a torchvision name or 'torchscript'")
        p.add_argument("--image", required=True, help="image file (any format Pillow reads)")
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--weights", help="weights file (state dict or TorchScript)")
        p.add_argument("--num-classes", type=int)
        p.add_argument("--class-names", help="comma-separated names or a file with one per line")
        p.add_argument("--input-size", type=int)
        p.add_argument("--target-layer", help="module path, e.g. layer4 or features.29")
        p.add_argument("--device", default="cpu")
        methods = sorted(METHODS) if name == "explain" else ["gradcam", "gradcam++"]
        p.add_argument("--method", default="gradcam", choices=methods)
        if name == "explain":
            p.add_argument("--class-idx", type=int, help="class to explain (default: prediction)")
        if name == "voice":
            p.add_argument("--contrast-classes", default="all", help="'all' or k (top-k)")
        if name == "causal":
            p.add_argument(
                "--step",
                type=int,
                help="pixels per step (default: the input width, i.e. RISE's 224 on 224 x 224)",
            )
            p.add_argument(
                "--substrate",
                default="zero",
                choices=sorted(SUBSTRATES),
                help="what replaces pixels in the smallest-flip search (default: zero)",
            )
    add_trust_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m interventions``."""
    args = build_parser().parse_args(argv)
    if args.command == "voice" and args.contrast_classes != "all":
        if not args.contrast_classes.isdigit():
            raise SystemExit("error: --contrast-classes must be 'all' or a positive integer")
    try:
        stats = run_trust(args) if args.command == "trust" else run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "trust":
        print(json.dumps({k: v for k, v in stats.items() if k != "scores"}))
        return 0
    print(json.dumps({k: v for k, v in stats.items() if k != "curves"}))
    return 0
