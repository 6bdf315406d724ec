"""Pages: participants' join flow and the researchers' pages."""
from django.urls import path

from . import views_participant

urlpatterns = [
    path("s/<int:study_id>/join", views_participant.join, name="join"),
    path("s/<int:study_id>/consent", views_participant.consent, name="consent"),
    path("s/<int:study_id>/annotate", views_participant.annotate, name="annotate"),
    path("s/<int:study_id>/done", views_participant.done, name="done"),
]
