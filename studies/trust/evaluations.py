"""Starting, resuming and reading trust evaluations (the web side; the work is
`workers/trust_tasks.py`, reached by task name, so no torch here)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from interventions.trust_names import TRUST_SCORE_NAMES
from studies.models import Dataset, ModelSpec, TrustEvaluation, TrustScoreRow

log = logging.getLogger(__name__)
TASK = "workers.trust_tasks.evaluate_trust_scores"
PLOTS = ("table", "scatter")
SCORE_COLUMNS = (
    "image_index", "image_id", "label", "label_name", "prediction", "prediction_name", "correct",
    *TRUST_SCORE_NAMES,
)  # fmt: skip
SUMMARY_COLUMNS = (
    "model", "model_id", "dataset", "score", "title", "higher_is_trustworthy", "auroc", "aupr",
    "n_images", "n_correct", "accuracy", "definition", "note",
)  # fmt: skip


def visible_evaluations(user):
    """The evaluations `user` may see (studies.core.sharing): their own, those shared with them
    or with the lab; superusers see every one. (Staff alone no longer do: an evaluation's rows
    hold its data set's labels, which only those who may see the data set should read.)"""
    from studies.core.sharing import visible_to

    evaluations = TrustEvaluation.objects.select_related("model", "dataset", "created_by")
    return visible_to(evaluations, user, "created_by")


def dataset_problem(dataset: Dataset, model: ModelSpec | None = None) -> str | None:
    """Why `dataset` cannot be evaluated (with `model`), or None: it needs images, each with a
    class label, and labels the model's classes include."""
    images = dataset.images
    n = images.count()
    if n == 0:
        return f"the data set {dataset.name} has no images"
    unlabelled = images.filter(class_label__isnull=True).count()
    if unlabelled:
        return (
            f"{unlabelled} of the {n} images of {dataset.name} have no class label; a trust "
            "evaluation compares each prediction with the image's label"
        )
    if model is not None and model.class_names:
        out_of_range = images.filter(
            Q(class_label__lt=0) | Q(class_label__gte=len(model.class_names))
        )
        if out_of_range.exists():
            return (
                f"{out_of_range.count()} image(s) of {dataset.name} have a class label outside "
                f"0..{len(model.class_names) - 1}, the classes of {model.name}"
            )
    return None


def _enqueue(evaluation: TrustEvaluation) -> None:
    from studies.core.dispatch import send_batch

    def failed(exc: Exception) -> None:
        log.warning("trust evaluation %s failed: %s", evaluation.pk, exc)
        TrustEvaluation.objects.filter(pk=evaluation.pk).exclude(status="failed").update(
            status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )

    transaction.on_commit(lambda: send_batch(TASK, evaluation.pk, ("trust", evaluation.pk), failed))


def start_evaluation(model: ModelSpec, dataset: Dataset, user, params: dict) -> TrustEvaluation:
    """A queued evaluation, its task sent to the batch queue once the row is committed."""
    with transaction.atomic():
        evaluation = TrustEvaluation.objects.create(
            model=model, dataset=dataset, created_by=user, params=params
        )
        _enqueue(evaluation)
    return evaluation


def resume_evaluation(evaluation: TrustEvaluation) -> bool:
    """Queue an unfinished (failed) evaluation again: the images already scored keep their rows.
    False (nothing done) when it is done or still queued/running."""
    with transaction.atomic():
        updated = TrustEvaluation.objects.filter(pk=evaluation.pk, status="failed").update(
            status="queued", error="", finished_at=None
        )
        if updated:
            _enqueue(evaluation)
    return bool(updated)


def _name(names: list, index: int) -> str:
    return names[index] if 0 <= index < len(names) else ""


def score_rows(evaluation: TrustEvaluation):
    """scores.csv rows: one per image, in data set order, every score (repr floats: read back
    exactly; non-finite as nan / inf / -inf)."""
    names = evaluation.model.class_names or []
    rows = (
        TrustScoreRow.objects.filter(evaluation=evaluation)
        .order_by("image__index")
        .values_list("image__index", "image_id", "label", "prediction", "correct", "scores")
    )
    for index, image_id, label, prediction, correct, scores in rows.iterator():
        yield {
            "image_index": index,
            "image_id": image_id,
            "label": label,
            "label_name": _name(names, label),
            "prediction": prediction,
            "prediction_name": _name(names, prediction),
            "correct": int(correct),
            **{name: repr(float(scores[name])) for name in TRUST_SCORE_NAMES if name in scores},
        }


def summary_rows(evaluation: TrustEvaluation) -> list[dict]:
    """summary.csv rows: one per score (the evaluation's stored summary)."""
    summary = evaluation.summary or {}
    common = {
        "model": evaluation.model.name,
        "model_id": evaluation.model.model_id,
        "dataset": evaluation.dataset.name,
        "n_correct": summary.get("n_correct"),
        "accuracy": summary.get("accuracy"),
    }
    return [
        {**common, **{k: s[k] for k in SUMMARY_COLUMNS if k in s}}
        for s in summary.get("scores", [])
    ]
