"""The trust evaluation job (studies/trust): every trust score of one classifier on every image
of a labelled data set, then the summary and the two figures (`interventions.trust_eval`).

Ids in, rows out: rows are written a batch at a time in one transaction each (unique per
(evaluation, image), so a rerun never duplicates one), images that already have a row are
skipped and not even loaded (a failed or interrupted evaluation resumes where it stopped), and
the summary and plots are computed from every stored row at the end. Light at import: torch and
the science are imported inside the task.
"""

from __future__ import annotations

import math

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from workers.jobs import JobProgress

DEFAULT_BATCH_SIZE = 16


def stored_value(value: float) -> float | str:
    """A score as JSON can hold it everywhere (PostgreSQL's jsonb has no NaN or infinity):
    finite floats as they are, the others as "nan" / "inf" / "-inf" (`float()` reads them back)."""
    value = float(value)
    return value if math.isfinite(value) else repr(value)


class EvaluationProgress(JobProgress):
    """`workers.jobs.JobProgress` writing to a TrustEvaluation row (throttled the same way)."""

    def _update(self, **fields) -> None:
        from studies.models import TrustEvaluation

        TrustEvaluation.objects.filter(pk=self.pk).update(**fields)


def plots_folder(evaluation_id: int) -> str:
    return f"trust/evaluation_{evaluation_id}"


def _store_batch(evaluation_id: int, rows: list[dict], score_names: tuple[str, ...]) -> None:
    from studies.models import TrustScoreRow

    with transaction.atomic():
        TrustScoreRow.objects.bulk_create(
            [
                TrustScoreRow(
                    evaluation_id=evaluation_id,
                    image_id=int(row["id"]),
                    label=row["label"],
                    prediction=row["prediction"],
                    correct=row["correct"],
                    scores={name: stored_value(row[name]) for name in score_names},
                )
                for row in rows
            ],
            ignore_conflicts=True,  # a row another run of this task already wrote stays
        )


def evaluation_rows(evaluation_id: int) -> list[dict]:
    """Every stored row as {"id", "label", "prediction", "correct", <score>: float}, in image
    order (the form `interventions.trust_eval.summarise_rows` and scores.csv take)."""
    from studies.models import TrustScoreRow

    rows = []
    for image_id, label, prediction, correct, scores in (
        TrustScoreRow.objects.filter(evaluation_id=evaluation_id)
        .order_by("image__index")
        .values_list("image_id", "label", "prediction", "correct", "scores")
    ):
        row = {"id": image_id, "label": label, "prediction": prediction, "correct": correct}
        row.update({name: float(value) for name, value in scores.items()})
        rows.append(row)
    return rows


def summary_of(rows: list[dict]) -> dict:
    """Accuracy and per score (in `TRUST_SCORES` order) AUROC, AUPR, title, direction and
    definition, as JSON for the evaluation row."""
    from interventions.trust_eval import summarise_rows
    from interventions.trust_names import TRUST_SCORES

    summary = summarise_rows(rows)
    scores = []
    for score in TRUST_SCORES:
        figures = summary.scores.get(score.name)
        if figures is None:
            continue
        scores.append(
            {
                "score": score.name,
                "title": score.title,
                "higher_is_trustworthy": score.higher_is_trustworthy,
                "definition": score.definition,
                "auroc": figures.auroc,
                "aupr": figures.aupr,
                "n_images": figures.n_images,
                "note": figures.note,
            }
        )
    return {
        "n_images": summary.n_images,
        "n_correct": summary.n_correct,
        "accuracy": summary.accuracy,
        "scores": scores,
    }


def write_plots(evaluation, rows: list[dict]) -> list[str]:
    """table.png/svg and scatter.png/svg under MEDIA_ROOT/trust/evaluation_<id>/."""
    from interventions.trust_eval import render_trust_plots, rows_to_arrays, summarise_rows

    columns = rows_to_arrays(rows)
    correct = columns["label"] == columns["prediction"]
    files = render_trust_plots({evaluation.model.name: summarise_rows(rows)}, columns, correct)
    from studies.core import storage

    folder = plots_folder(evaluation.pk)
    for name, data in files.items():
        storage.put_bytes("media", f"{folder}/{name}", data)
    return sorted(files)


def run_trust_evaluation(evaluation_id: int, progress_callback=None) -> dict:
    """Run (or resume) one evaluation; safe to run twice (a done one is left as it is).
    `progress_callback(done, total)` is also told each batch (the management command's bar)."""
    from interventions.trust_eval import evaluate_trust
    from interventions.trust_names import TRUST_SCORE_NAMES
    from studies.models import TrustEvaluation, TrustScoreRow
    from workers.model_cache import classifier_for, image_pixels

    evaluation = TrustEvaluation.objects.select_related("model", "dataset").get(pk=evaluation_id)
    if evaluation.status == "done":
        return {"evaluation": evaluation_id, "scored": 0}
    TrustEvaluation.objects.filter(pk=evaluation_id).update(status="running", error="")
    progress = EvaluationProgress(evaluation)
    scored = 0
    try:
        params = evaluation.params or {}
        batch_size = int(params.get("batch_size", DEFAULT_BATCH_SIZE))
        images = list(evaluation.dataset.images.order_by("index").values_list("pk", "class_label"))
        unlabelled = sum(label is None for _, label in images)
        if unlabelled:
            raise ValueError(
                f"{unlabelled} image(s) of {evaluation.dataset.name} have no class label"
            )
        classifier = classifier_for(evaluation.model)
        done_ids = {
            str(pk)
            for pk in TrustScoreRow.objects.filter(evaluation_id=evaluation_id).values_list(
                "image_id", flat=True
            )
        }
        progress.start(len(images))

        def report(handled: int, total: int | None) -> None:
            progress.set(handled, total)
            if progress_callback is not None:
                progress_callback(handled, total)

        stream = (
            (str(pk), label, lambda pk=pk: classifier.preprocess(image_pixels(pk)[0]))
            for pk, label in images
        )
        pending: list[dict] = []
        for row in evaluate_trust(
            classifier.module,
            stream,
            batch_size=batch_size,
            progress=report,
            done_ids=done_ids,
            total=len(images),
            mcd_seed=int(params.get("mcd_seed", 0)),
        ):
            pending.append(row)
            if len(pending) == batch_size:  # one batch of the driver: stored before its progress
                _store_batch(evaluation_id, pending, TRUST_SCORE_NAMES)
                scored += len(pending)
                pending = []
        if pending:
            _store_batch(evaluation_id, pending, TRUST_SCORE_NAMES)
            scored += len(pending)
        rows = evaluation_rows(evaluation_id)
        summary = summary_of(rows)
        write_plots(evaluation, rows)
    except Exception as exc:
        TrustEvaluation.objects.filter(pk=evaluation_id).update(
            status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        raise
    TrustEvaluation.objects.filter(pk=evaluation_id).update(
        status="done",
        progress=1.0,
        done=len(images),
        total=len(images),
        summary=summary,
        folder=plots_folder(evaluation_id),
        finished_at=timezone.now(),
    )
    return {"evaluation": evaluation_id, "scored": scored, "images": len(images)}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def evaluate_trust_scores(self, evaluation_id: int) -> dict:
    """Run or resume a TrustEvaluation (studies/trust): see `run_trust_evaluation`."""
    return run_trust_evaluation(evaluation_id)
