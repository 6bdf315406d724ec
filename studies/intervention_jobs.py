"""Start the per-image analyses of an intervention study (explanations, VOICE, causal curves) as
a `batch` job with progress (a BackgroundJob of kind `precompute`), when the study opens."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from .models import BackgroundJob, ImageAnalysis, Study

log = logging.getLogger(__name__)


def start_image_analyses(study: Study) -> BackgroundJob:
    """Queue `precompute_image_analyses` after the current transaction commits; a failure to
    enqueue (or, in eager mode, of the task itself) is written on the job row."""
    from workers.intervention_tasks import (  # no torch at import
        ANALYSIS_METHODS,
        precompute_image_analyses,
    )

    if study.kind != "intervention":
        raise ValueError(f"study {study.pk} is a {study.kind} study, not an intervention study")
    job = BackgroundJob.objects.create(
        study=study,
        kind="precompute",
        params={
            "model": study.model.model_id,
            "analyses": list(ANALYSIS_METHODS),
            "substrate": study.option("substrate"),
        },
        total=study.dataset.images.count(),
    )

    def enqueue() -> None:
        try:
            precompute_image_analyses.delay(job.pk)
        except Exception as exc:
            log.warning("image analyses of study %s failed: %s", study.pk, exc)
            BackgroundJob.objects.filter(pk=job.pk).exclude(status="failed").update(
                status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
            )

    transaction.on_commit(enqueue)
    return job


def analyses_complete(study: Study) -> bool:
    """Whether every image of the study's data set has every analysis for the study's model."""
    from workers.intervention_tasks import ANALYSIS_METHODS

    expected = study.dataset.images.count() * len(ANALYSIS_METHODS)
    found = ImageAnalysis.objects.filter(
        image__dataset=study.dataset, model=study.model, method__in=ANALYSIS_METHODS
    ).count()
    return found >= expected
