"""Evaluating trust scores: how well each tells correct from wrong predictions, a batched and
resumable driver over an image stream, and the two figures of the GradTrust paper.

``summarise_trust``: per score, AUROC (``roc_auc_score``) and AUPR (``average_precision_score``)
of separating correct predictions (the positive class) from wrong ones, with the score oriented
so that higher means more trustworthy (``TRUST_SCORES``), plus accuracy (Prabhushankar &
AlRegib, MIPR 2024, compare scores by how they rank mispredictions). Figures are drawn on
``matplotlib.figure.Figure`` (Agg, no pyplot state), so a worker thread may render them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import Tensor, nn

from interventions.trust import TRUST_SCORE_NAMES, TRUST_SCORES, trust_score, trust_scores

ImageItem = tuple[str, int, Tensor | Callable[[], Tensor]]
ProgressCallback = Callable[[int, int | None], None]


@dataclass(frozen=True)
class ScoreSummary:
    """How one score separates correct from wrong predictions. ``auroc``/``aupr`` are None when
    undefined; ``note`` says why, or how many images were left out for a NaN score."""

    score: str
    higher_is_trustworthy: bool
    auroc: float | None
    aupr: float | None
    n_images: int
    note: str = ""


@dataclass(frozen=True)
class TrustSummary:
    """Accuracy and each score's ``ScoreSummary`` on one set of images."""

    n_images: int
    n_correct: int
    accuracy: float | None
    scores: dict[str, ScoreSummary] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def summarise_trust(
    scores: Mapping[str, ArrayLike],
    labels: ArrayLike,
    predictions: ArrayLike,
    higher_is_trustworthy: Mapping[str, bool] | None = None,
) -> TrustSummary:
    """Accuracy and, per score, AUROC and AUPR of telling correct predictions (positive) from
    wrong ones, on the score times +1 or -1 so that higher means trustworthy (from
    ``TRUST_SCORES`` unless given). Both are undefined (None) when every prediction is correct or
    every one wrong; images with a NaN score are left out of that score's figures (±inf is ranked
    as the extreme value it is)."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    predictions = np.asarray(predictions).astype(np.int64).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.size} labels but {predictions.size} predictions")
    correct = labels == predictions
    n, n_correct = int(correct.size), int(correct.sum())
    out: dict[str, ScoreSummary] = {}
    for name, values in scores.items():
        if name == "prediction":  # trust_scores output may be passed as it is
            continue
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.shape != correct.shape:
            raise ValueError(f"score {name!r} has {values.size} values for {n} images")
        higher = (
            higher_is_trustworthy[name]
            if higher_is_trustworthy is not None and name in higher_is_trustworthy
            else trust_score(name).higher_is_trustworthy
        )
        out[name] = _separation(name, values if higher else -values, correct, higher)
    return TrustSummary(n, n_correct, n_correct / n if n else None, out)


def _separation(name: str, oriented: np.ndarray, correct: np.ndarray, higher: bool) -> ScoreSummary:
    keep = ~np.isnan(oriented)
    left_out = int((~keep).sum())
    oriented, correct = oriented[keep], correct[keep]
    notes = [f"{left_out} image(s) with a NaN score left out"] if left_out else []
    if correct.size == 0:
        reason = "no images"
    elif correct.all():
        reason = "every prediction is correct: no wrong one to separate"
    elif not correct.any():
        reason = "every prediction is wrong: no correct one to separate"
    else:
        ranks = rankdata(oriented)  # same order and ties as the scores, but finite
        return ScoreSummary(
            name,
            higher,
            float(roc_auc_score(correct, ranks)),
            float(average_precision_score(correct, ranks)),
            int(correct.size),
            "; ".join(notes),
        )
    return ScoreSummary(
        name, higher, None, None, int(correct.size), "; ".join([*notes, f"undefined: {reason}"])
    )


# --------------------------------------------------------------------------- driver


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def evaluate_trust(
    model: nn.Module,
    images: Iterable[ImageItem],
    batch_size: int = 16,
    progress: ProgressCallback | None = None,
    done_ids: Collection[str] = (),
    total: int | None = None,
    **score_options: object,
) -> Iterator[dict[str, object]]:
    """Every trust score of every image, a batch at a time. ``images`` yields (id, label, x):
    x a normalised (3, h, w) or (1, 3, h, w) tensor, or a function returning one (called only
    for images not in ``done_ids``, so a resumed job skips loading them). Yields, in input order,
    {"id", "label", "prediction", "correct", <each score of ``TRUST_SCORE_NAMES``>} with plain
    Python values; ``progress(handled, total)`` is called after each batch (handled counts the
    skipped images too). ``score_options`` go to ``trust_scores`` (e.g. ``mcd_seed``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    done = set(done_ids)
    device = _model_device(model)
    handled = 0
    pending: list[tuple[str, int, Tensor]] = []

    def run_batch() -> Iterator[dict[str, object]]:
        x = torch.cat([t if t.ndim == 4 else t.unsqueeze(0) for _, _, t in pending]).to(device)
        scores = trust_scores(model, x, **score_options)  # type: ignore[arg-type]
        for b, (image_id, label, _) in enumerate(pending):
            prediction = int(scores["prediction"][b])
            yield {
                "id": image_id,
                "label": int(label),
                "prediction": prediction,
                "correct": prediction == int(label),
                **{name: float(scores[name][b]) for name in TRUST_SCORE_NAMES if name in scores},
            }

    for image_id, label, image in images:
        if image_id in done:
            handled += 1
            continue
        tensor = image() if callable(image) else image
        if tensor.ndim not in (3, 4) or (tensor.ndim == 4 and tensor.shape[0] != 1):
            raise ValueError(f"image {image_id!r}: expected (3, h, w) or (1, 3, h, w), got "
                             f"{tuple(tensor.shape)}")  # fmt: skip
        pending.append((image_id, int(label), tensor))
        if len(pending) == batch_size:
            yield from run_batch()
            handled += len(pending)
            pending.clear()
            if progress is not None:
                progress(handled, total)
    if pending:
        yield from run_batch()
        handled += len(pending)
    if progress is not None:
        progress(handled, total)


def rows_to_arrays(rows: Iterable[Mapping[str, object]]) -> dict[str, np.ndarray]:
    """Columns of per-image rows (as ``evaluate_trust`` yields or ``scores.csv`` holds): label,
    prediction (int64) and each score present (float64)."""
    rows = list(rows)
    out = {
        "label": np.array([int(r["label"]) for r in rows], dtype=np.int64),
        "prediction": np.array([int(r["prediction"]) for r in rows], dtype=np.int64),
    }
    for name in TRUST_SCORE_NAMES:
        if rows and name in rows[0]:
            out[name] = np.array([float(r[name]) for r in rows], dtype=np.float64)
    return out


def summarise_rows(rows: Iterable[Mapping[str, object]]) -> TrustSummary:
    """``summarise_trust`` of per-image rows."""
    columns = rows_to_arrays(rows)
    labels, predictions = columns.pop("label"), columns.pop("prediction")
    return summarise_trust(columns, labels, predictions)


# --------------------------------------------------------------------------- figures


def table_figure(summaries: Mapping[str, TrustSummary]):
    """A table figure: one row per score (``TRUST_SCORES`` order), per model an AUROC and an
    AUPR column (header: model and accuracy); the best value of each column in bold."""
    from matplotlib.figure import Figure

    models = list(summaries)
    names = [s.name for s in TRUST_SCORES if any(s.name in m.scores for m in summaries.values())]
    header, columns = [], []
    for model in models:
        summary = summaries[model]
        acc = "n/a" if summary.accuracy is None else f"{summary.accuracy:.3f}"
        for metric in ("auroc", "aupr"):
            header.append(f"{model}\n(acc {acc})\n{metric.upper()}")
            columns.append(
                [getattr(summary.scores[n], metric) if n in summary.scores else None for n in names]
            )
    cells = [
        ["—" if col[i] is None else f"{col[i]:.3f}" for col in columns] for i in range(len(names))
    ]
    fig = Figure(figsize=(2.2 + 1.3 * len(header), 0.4 + 0.3 * (len(names) + 3)), dpi=120)
    ax = fig.add_subplot()
    ax.axis("off")
    if not names:
        ax.text(0.5, 0.5, "no scores", ha="center", va="center")
        return fig
    table = ax.table(
        cellText=cells,
        rowLabels=[trust_score(n).title for n in names],
        colLabels=header,
        loc="center",
        cellLoc="center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.35)
    for (row, _col), cell in table.get_celld().items():
        if row == 0:
            cell.set_height(cell.get_height() * 2.6)
    for j, col in enumerate(columns):
        present = [v for v in col if v is not None]
        if present:
            best = max(present)
            for i, v in enumerate(col):
                if v is not None and v == best:
                    table[i + 1, j].get_text().set_fontweight("bold")
    ax.set_title("Telling correct from wrong predictions (AUROC / AUPR, correct = positive)",
                 fontsize=9)  # fmt: skip
    return fig


def scatter_figure(
    x_values: ArrayLike,
    softmax: ArrayLike,
    correct: ArrayLike,
    x_label: str = "GradTrust",
    y_label: str = "Softmax confidence",
):
    """GradTrust (x) against softmax confidence (y), one point per image, green for correct and
    red for wrong predictions (the README figure of the released code); a log x axis when the
    finite values are positive and span more than a factor 20."""
    from matplotlib.figure import Figure

    x = np.asarray(x_values, dtype=np.float64).ravel()
    y = np.asarray(softmax, dtype=np.float64).ravel()
    ok = np.asarray(correct, dtype=bool).ravel()
    finite = np.isfinite(x) & np.isfinite(y)
    fig = Figure(figsize=(5.0, 4.0), dpi=120)
    ax = fig.add_subplot()
    for mask, colour, label in ((ok, "tab:green", "correct"), (~ok, "tab:red", "wrong")):
        sel = mask & finite
        ax.scatter(x[sel], y[sel], s=12, c=colour, alpha=0.7, label=f"{label} ({int(sel.sum())})")
    if finite.any() and (x[finite] > 0).all() and x[finite].max() > 20 * x[finite].min():
        ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(f"{x_label} vs {y_label.lower()}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    if (~finite).any():
        ax.text(0.01, 0.01, f"{int((~finite).sum())} non-finite left out",
                transform=ax.transAxes, fontsize=7)  # fmt: skip
    fig.tight_layout()
    return fig


def figure_bytes(fig) -> dict[str, bytes]:
    """The figure as {"png": bytes, "svg": bytes} (the SVG without a date, with fixed ids)."""
    import matplotlib

    out = {}
    with matplotlib.rc_context({"svg.hashsalt": "intervene"}):
        for fmt, metadata in (("png", {"Software": None}), ("svg", {"Date": None})):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, metadata=metadata, bbox_inches="tight")
            out[fmt] = buffer.getvalue()
    return out


def render_trust_plots(
    summaries: Mapping[str, TrustSummary],
    scores: Mapping[str, ArrayLike],
    correct: ArrayLike,
    gradtrust: str = "grad_trust_released",
) -> dict[str, bytes]:
    """{"table.png", "table.svg", "scatter.png", "scatter.svg"}: ``table_figure`` of the
    summaries by model and ``scatter_figure`` of ``scores[gradtrust]`` against
    ``scores["softmax"]`` of one model's images."""
    files = {}
    table = figure_bytes(table_figure(summaries))
    scatter = figure_bytes(
        scatter_figure(scores[gradtrust], scores["softmax"], correct, trust_score(gradtrust).title)
    )
    for stem, rendered in (("table", table), ("scatter", scatter)):
        for fmt, data in rendered.items():
            files[f"{stem}.{fmt}"] = data
    return files


def write_trust_plots(out_dir: str | Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write ``render_trust_plots`` output into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        path = out / name
        path.write_bytes(data)
        paths.append(path)
    return paths
