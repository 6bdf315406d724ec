"""URLs of /api/v1/ (docs/design.md "API")."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from studies.core import api, api_exports
from studies.intervention import api as api_trials
from studies.prompting import api as api_prompting

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("participants/me", api.MeView.as_view(), name="api-me"),
    path("participants/me/consent", api.ConsentView.as_view(), name="api-consent"),
    path(
        "participants/me/preparation",
        api.PreparationView.as_view(),
        name="api-preparation",
    ),
    path("assignments/<int:assignment_id>", api.AssignmentView.as_view(), name="api-assignment"),
    path("assignments/<int:assignment_id>/events", api.EventsView.as_view(), name="api-events"),
    path("assignments/<int:assignment_id>/survey", api.SurveyView.as_view(), name="api-survey"),
    path("assignments/<int:assignment_id>/finish", api.FinishView.as_view(), name="api-finish"),
    path(
        "assignments/<int:assignment_id>/image",
        api.AssignmentImageView.as_view(),
        name="api-assignment-image",
    ),
    path(
        "assignments/<int:assignment_id>/ground_truth",
        api.AssignmentGroundTruthView.as_view(),
        name="api-assignment-ground-truth",
    ),
    # prompting studies: the browser decoder's files (studies/prompting/api.py)
    path(
        "assignments/<int:assignment_id>/decoder.samdec",
        api_prompting.DecoderView.as_view(),
        name="api-assignment-decoder",
    ),
    path(
        "assignments/<int:assignment_id>/events/<str:client_event_id>/shown",
        api_prompting.ShownView.as_view(),
        name="api-event-shown",
    ),
    path(
        "assignments/<int:assignment_id>/embedding.f16",
        api_prompting.EmbeddingView.as_view(),
        name="api-assignment-embedding",
    ),
    # intervention studies (studies/api_trials.py)
    path(
        "assignments/<int:assignment_id>/trials", api_trials.TrialsView.as_view(), name="api-trials"
    ),
    path(
        "assignments/<int:assignment_id>/intervention",
        api_trials.InterventionInfoView.as_view(),
        name="api-intervention",
    ),
    path(
        "assignments/<int:assignment_id>/overlay.png",
        api_trials.OverlayView.as_view(),
        name="api-assignment-overlay",
    ),
    path(
        "studies/<int:study_id>/exports",
        api_exports.StudyExportsView.as_view(),
        name="api-study-exports",
    ),
    path("exports/<int:export_id>", api_exports.ExportView.as_view(), name="api-export"),
    path(
        "exports/<int:export_id>/download",
        api_exports.ExportDownloadView.as_view(),
        name="api-export-download",
    ),
    # the logged actions of any other registered study kind (its `action_route`)
    path(
        "assignments/<int:assignment_id>/<slug:route>",
        api.ActionsView.as_view(),
        name="api-actions",
    ),
]
