"""Start the per-image analyses of an intervention study (explanations, VOICE, causal curves) as
a `batch` job with progress (a Job of kind `precompute`), when the study opens."""

from __future__ import annotations

from interventions.analyses import ANALYSIS_METHODS  # names only: no torch at import
from studies.core.dispatch import start_job
from studies.models import ImageAnalysis, Job, Study


def start_image_analyses(study: Study) -> Job:
    """Queue `precompute_image_analyses` (batch queue) with a progress row, after the commit."""
    return start_job(
        study,
        "precompute",
        "workers.intervention_tasks.precompute_image_analyses",
        params={
            "model": study.model.model_id,
            "analyses": list(ANALYSIS_METHODS),
            "substrate": study.option("substrate"),
        },
    )


def analyses_complete(study: Study) -> bool:
    """Whether every image of the study's data set has every analysis for the study's model."""
    expected = study.dataset.images.count() * len(ANALYSIS_METHODS)
    found = ImageAnalysis.objects.filter(
        image__dataset=study.dataset, model=study.model, method__in=ANALYSIS_METHODS
    ).count()
    return found >= expected
