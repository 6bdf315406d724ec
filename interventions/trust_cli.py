"""``python -m interventions trust``: every trust score of every image of a folder, and how well
each score tells correct from wrong predictions.

Writes ``scores.csv`` (one row per image, rows appended as they are computed), then from it
``summary.csv`` and ``summary.json`` (AUROC and AUPR per score, accuracy), ``table.png/svg``
and ``scatter.png/svg`` (``interventions.trust_eval``).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from interventions.models import Classifier, load_classifier
from interventions.trust import TRUST_SCORE_NAMES, trust_score
from interventions.trust_eval import (
    evaluate_trust,
    render_trust_plots,
    rows_to_arrays,
    summarise_rows,
    write_trust_plots,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SCORE_COLUMNS = ("id", "label", "label_name", "prediction", "prediction_name", "correct",
                 *TRUST_SCORE_NAMES)  # fmt: skip
SUMMARY_COLUMNS = ("model", "score", "title", "higher_is_trustworthy", "auroc", "aupr",
                   "n_images", "n_correct", "accuracy", "note")  # fmt: skip

LABELS_HELP = """\
labels (one of):
  --labels FILE       a CSV file with a header row naming the columns 'filename' and 'label'
                      (other columns are ignored). filename: the image's path relative to
                      --images ('/' separators); label: a class index 0..C-1 or a class name
                      (the demo CNN's: circle, square, triangle, star, cross, ring; others
                      from --class-names). Images not listed are not scored.
  --labels-from-dirs  every image under --images sits in a folder named by its class (a class
                      name or index), e.g. IMAGES/star/001.png or IMAGES/3/001.png.

scores.csv: id (the path relative to --images), label, label_name, prediction,
prediction_name, correct, then one column per score (see docs/trust.md). summary.csv: per
score AUROC and AUPR of telling correct (positive) from wrong predictions, the score oriented
so that higher is trustworthy (entropy negated), with accuracy; undefined (empty, with a note)
when every prediction is right or every one wrong."""


def add_trust_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``trust`` sub-command."""
    p = sub.add_parser(
        "trust",
        help="every trust score on every image of a folder, AUROC/AUPR table and scatter plot",
        description="GradTrust (as released and as in the tutorial) and every baseline of its "
        "table on every image of a folder; how well each tells correct from wrong predictions.",
        epilog=LABELS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="'demo' or a torchvision model name")
    p.add_argument("--weights", help="state-dict file (required unless --model demo)")
    p.add_argument("--images", required=True, help="folder of images (searched recursively)")
    labels = p.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", help="CSV file with columns filename,label (see below)")
    labels.add_argument("--labels-from-dirs", action="store_true",
                        help="labels are the images' folder names (see below)")  # fmt: skip
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-classes", type=int)
    p.add_argument("--class-names", help="comma-separated names or a file with one per line")
    p.add_argument("--input-size", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--mcd-seed", type=int, default=0, help="seed of the MC dropout masks")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows of an existing OUT/scores.csv and score only the rest")  # fmt: skip
    return p


def _class_names(value: str | None) -> list[str] | None:
    if not value:
        return None
    path = Path(value)
    names = path.read_text().split("\n") if path.is_file() else value.split(",")
    return [n.strip() for n in names if n.strip()]


def _label_index(text: str, names: tuple[str, ...], where: str) -> int:
    text = text.strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(names):
            raise ValueError(f"{where}: class index {index} outside 0..{len(names) - 1}")
        return index
    if text in names:
        return names.index(text)
    raise ValueError(f"{where}: unknown class {text!r}; use an index or one of {list(names)}")


def labelled_images(
    images: Path, labels_csv: str | None, names: tuple[str, ...]
) -> list[tuple[str, Path, int]]:
    """(id, path, label index) per image: from the labels CSV, or (``labels_csv`` None) from the
    folder each image sits in. ids are posix paths relative to ``images``."""
    if not images.is_dir():
        raise FileNotFoundError(f"images folder not found: {images}")
    found: list[tuple[str, Path, int]] = []
    if labels_csv is None:
        for path in sorted(images.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                rel = path.relative_to(images)
                if len(rel.parts) < 2:
                    raise ValueError(f"{rel}: with --labels-from-dirs every image needs a class "
                                     "folder")  # fmt: skip
                found.append((rel.as_posix(), path, _label_index(rel.parts[-2], names, str(rel))))
    else:
        with open(labels_csv, newline="") as handle:
            reader = csv.DictReader(handle)
            fields = [f.strip() for f in (reader.fieldnames or [])]
            if "filename" not in fields or "label" not in fields:
                raise ValueError(f"{labels_csv}: needs a header row with 'filename' and 'label', "
                                 f"got {fields}")  # fmt: skip
            seen = set()
            for line, row in enumerate(reader, start=2):
                row = {k.strip(): (v or "") for k, v in row.items() if k is not None}
                rel = Path(row["filename"].strip()).as_posix()
                path = images / rel
                if not path.is_file():
                    raise FileNotFoundError(f"{labels_csv}:{line}: image not found: {path}")
                if rel in seen:
                    raise ValueError(f"{labels_csv}:{line}: {rel} listed twice")
                seen.add(rel)
                found.append((rel, path, _label_index(row["label"], names, f"{labels_csv}:{line}")))
    if not found:
        raise ValueError(f"no labelled images found under {images}")
    return found


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except OSError as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != SCORE_COLUMNS:
            raise ValueError(f"{path} has other columns than this version writes; "
                             "start again without --resume")  # fmt: skip
        return list(reader)


def _cell(value: object) -> object:
    return "" if value is None else value


def run_trust(args: argparse.Namespace) -> dict[str, object]:
    """Score every image, write the files into ``args.out``; returns summary.json's content."""
    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    classifier: Classifier = load_classifier(
        args.model,
        args.weights,
        num_classes=args.num_classes,
        class_names=_class_names(args.class_names),
        input_size=args.input_size,
        device=args.device,
    )
    names = classifier.class_names
    items = labelled_images(Path(args.images), None if args.labels_from_dirs else args.labels,
                            names)  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scores_path = out / "scores.csv"
    done: set[str] = set()
    if args.resume and scores_path.is_file():
        done = {row["id"] for row in _read_rows(scores_path)}
    else:
        with open(scores_path, "w", newline="") as handle:
            csv.writer(handle).writerow(SCORE_COLUMNS)

    def stream() -> Iterator[tuple[str, int, object]]:
        for image_id, path, label in items:
            yield image_id, label, (lambda path=path: classifier.preprocess(_read_rgb(path))[0])

    todo = sum(1 for image_id, _, _ in items if image_id not in done)
    with (
        tqdm(total=len(items), initial=len(items) - todo, desc="trust scores", unit="img") as bar,
        open(scores_path, "a", newline="") as handle,
    ):
        writer = csv.DictWriter(handle, SCORE_COLUMNS)

        def progress(handled: int, _total: int | None) -> None:
            bar.n = handled
            bar.refresh()

        for row in evaluate_trust(classifier.module, stream(), args.batch_size, progress, done,
                                  len(items), mcd_seed=args.mcd_seed):  # fmt: skip
            row["label_name"] = names[row["label"]]
            row["prediction_name"] = names[row["prediction"]]
            writer.writerow(row)
            handle.flush()

    by_id = {row["id"]: row for row in _read_rows(scores_path)}
    rows = [by_id[image_id] for image_id, _, _ in items if image_id in by_id]
    summary = summarise_rows(rows)
    model_name = args.model
    with open(out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, SUMMARY_COLUMNS)
        writer.writeheader()
        for name, s in summary.scores.items():
            writer.writerow(
                {
                    "model": model_name,
                    "score": name,
                    "title": trust_score(name).title,
                    "higher_is_trustworthy": s.higher_is_trustworthy,
                    "auroc": _cell(s.auroc),
                    "aupr": _cell(s.aupr),
                    "n_images": s.n_images,
                    "n_correct": summary.n_correct,
                    "accuracy": _cell(summary.accuracy),
                    "note": s.note,
                }
            )
    result = {
        "command": "trust",
        "model": model_name,
        "weights_sha256": classifier.weights_sha256,
        "images": str(args.images),
        "mcd_seed": args.mcd_seed,
        **summary.as_dict(),
    }
    for name, entry in result["scores"].items():
        entry["title"] = trust_score(name).title
        entry["definition"] = trust_score(name).definition
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    columns = rows_to_arrays(rows)
    correct = columns["label"] == columns["prediction"]
    write_trust_plots(out, render_trust_plots({model_name: summary}, columns, correct))
    return result
