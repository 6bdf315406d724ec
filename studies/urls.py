"""Pages: participants' join flow and the researchers' pages."""

from django.urls import path

from studies.core import (
    views_arms,
    views_datasets,
    views_design,
    views_jobs,
    views_participant,
    views_researcher,
    views_sharing,
    views_spec,
)
from studies.intervention import views as views_intervention
from studies.intervention import views_analysis as intervention_analysis
from studies.prompting import views_analysis, views_regression
from studies.trust import views as trust_views

urlpatterns = [
    path("s/<int:study_id>/join", views_participant.join, name="join"),
    path("s/<int:study_id>/consent", views_participant.consent, name="consent"),
    path("s/<int:study_id>/instructions", views_participant.instructions, name="instructions"),
    path("s/<int:study_id>/annotate", views_participant.annotate, name="annotate"),
    path("s/<int:study_id>/done", views_participant.done, name="done"),
    # researchers (views_researcher)
    path("studies/", views_researcher.study_list, name="study-list"),
    path("studies/new", views_researcher.study_create, name="study-create"),
    path("studies/<int:study_id>/", views_researcher.study_detail, name="study-detail"),
    # data sets (views_datasets)
    path("datasets/", views_datasets.dataset_list, name="dataset-list"),
    path("datasets/upload", views_datasets.dataset_upload, name="dataset-upload"),
    path("datasets/imports/<int:job_id>", views_datasets.import_job, name="dataset-import"),
    path("datasets/<int:dataset_id>/", views_datasets.dataset_detail, name="dataset-detail"),
    path("datasets/<int:dataset_id>/delete", views_datasets.dataset_delete, name="dataset-delete"),
    path(
        "datasets/<int:dataset_id>/thumbs/<int:image_id>/<str:what>.png",
        views_datasets.dataset_thumbnail,
        name="dataset-thumbnail",
    ),
    path(
        "datasets/<int:dataset_id>/sharing",
        views_sharing.dataset_sharing,
        name="dataset-sharing",
    ),
    # model specs (views_sharing): the ones a researcher may use, and who they are shared with
    path("models/", views_sharing.model_list, name="model-list"),
    path("models/<int:model_id>/", views_sharing.model_detail, name="model-detail"),
    path("models/<int:model_id>/sharing", views_sharing.model_sharing, name="model-sharing"),
    path("studies/<int:study_id>/spec.json", views_spec.study_spec_download, name="study-spec"),
    path("studies/<int:study_id>/edit", views_researcher.study_edit, name="study-edit"),
    path("studies/<int:study_id>/allocation", views_design.allocation_log, name="study-allocation"),
    path("studies/<int:study_id>/preview", views_design.preview, name="study-preview"),
    path("studies/<int:study_id>/pilot", views_design.mark_pilot, name="study-pilot"),
    path("studies/<int:study_id>/status", views_researcher.study_set_status, name="study-status"),
    path("studies/<int:study_id>/links", views_researcher.study_links, name="study-links"),
    path(
        "studies/<int:study_id>/links.csv", views_researcher.study_links_csv, name="study-links-csv"
    ),
    path(
        "studies/<int:study_id>/participants/<int:participant_id>/exclusion",
        views_researcher.participant_exclusion,
        name="participant-exclusion",
    ),
    path(
        "studies/<int:study_id>/jobs/<int:job_id>",
        views_jobs.study_job_state,
        name="study-job-state",
    ),
    path(
        "studies/<int:study_id>/progress",
        views_researcher.study_progress_fragment,
        name="study-progress",
    ),
    path(
        "studies/<int:study_id>/images/<int:image_id>/<str:what>.png",
        views_researcher.study_image,
        name="study-image",
    ),
    path(
        "studies/<int:study_id>/assignments/<int:assignment_id>/replay",
        views_researcher.assignment_replay,
        name="assignment-replay",
    ),
    path("studies/<int:study_id>/analysis", views_researcher.study_analysis, name="study-analysis"),
    path(
        "studies/<int:study_id>/analysis/arms/<str:table>.csv",
        views_arms.comparison_csv,
        name="arm-comparison-csv",
    ),
    path(
        "studies/<int:study_id>/analysis/arms.<str:fmt>",
        views_arms.comparison_plot,
        name="arm-comparison-plot",
    ),
    path(
        "studies/<int:study_id>/analysis/<str:table>.csv",
        views_analysis.analysis_csv,
        name="study-analysis-csv",
    ),
    path(
        "studies/<int:study_id>/analysis/plots/<str:name>.<str:fmt>",
        views_analysis.analysis_plot,
        name="study-analysis-plot",
    ),
    path(
        "studies/<int:study_id>/analysis/export",
        views_researcher.export_start,
        name="study-export-start",
    ),
    path(
        "studies/<int:study_id>/analysis/baselines",
        views_analysis.baselines_start,
        name="study-baselines-start",
    ),
    # "What predicts a good prompt" (views_regression)
    path(
        "studies/<int:study_id>/analysis/regression",
        views_regression.regression_start,
        name="study-regression-start",
    ),
    path(
        "studies/<int:study_id>/analysis/regression/results.csv",
        views_regression.regression_csv,
        name="study-regression-csv",
    ),
    path(
        "studies/<int:study_id>/analysis/regression/plot.<str:fmt>",
        views_regression.regression_plot,
        name="study-regression-plot",
    ),
    # intervention studies (views_intervention)
    path(
        "studies/<int:study_id>/intervention/",
        views_intervention.study_page,
        name="intervention-study",
    ),
    path(
        "studies/<int:study_id>/intervention/analysis/<str:table>.csv",
        intervention_analysis.analysis_csv,
        name="intervention-analysis-csv",
    ),
    path(
        "studies/<int:study_id>/intervention/analysis/plots/<str:name>.<str:fmt>",
        intervention_analysis.analysis_plot,
        name="intervention-analysis-plot",
    ),
    path(
        "studies/<int:study_id>/intervention/recompute",
        views_intervention.recompute,
        name="intervention-recompute",
    ),
    path(
        "studies/<int:study_id>/intervention/comparison.png",
        views_intervention.comparison_png,
        name="intervention-comparison-png",
    ),
    path(
        "studies/<int:study_id>/intervention/images/<int:image_id>/",
        views_intervention.image_page,
        name="intervention-image",
    ),
    path(
        "studies/<int:study_id>/intervention/images/<int:image_id>/curves.png",
        views_intervention.curves_png,
        name="intervention-curves-png",
    ),
    path(
        "studies/<int:study_id>/intervention/images/<int:image_id>/maps/<str:name>.png",
        views_intervention.map_png,
        name="intervention-map-png",
    ),
    path(
        "studies/<int:study_id>/intervention/participants/<int:participant_id>/",
        views_intervention.participant_page,
        name="intervention-participant",
    ),
    path(
        "studies/<int:study_id>/intervention/participants/<int:participant_id>/probs.png",
        views_intervention.participant_probs_png,
        name="intervention-participant-png",
    ),
    path(
        "studies/<int:study_id>/intervention/trials/<int:trial_id>/region.png",
        views_intervention.trial_region_png,
        name="intervention-trial-region-png",
    ),
    # trust evaluations (studies/trust)
    path("trust/", trust_views.evaluation_list, name="trust-list"),
    path("trust/new", trust_views.evaluation_create, name="trust-create"),
    path("trust/<int:evaluation_id>/", trust_views.evaluation_detail, name="trust-detail"),
    path(
        "trust/<int:evaluation_id>/progress.json",
        trust_views.evaluation_progress,
        name="trust-progress",
    ),
    path(
        "trust/<int:evaluation_id>/sharing",
        views_sharing.evaluation_sharing,
        name="trust-sharing",
    ),
    path("trust/<int:evaluation_id>/resume", trust_views.evaluation_resume, name="trust-resume"),
    path(
        "trust/<int:evaluation_id>/scores.csv",
        trust_views.evaluation_scores_csv,
        name="trust-scores-csv",
    ),
    path(
        "trust/<int:evaluation_id>/summary.csv",
        trust_views.evaluation_summary_csv,
        name="trust-summary-csv",
    ),
    path(
        "trust/<int:evaluation_id>/plots/<str:name>.<str:fmt>",
        trust_views.evaluation_plot,
        name="trust-plot",
    ),
]
