"""Time on task: one definition for every page that shows it (the study page's participant
table, the intervention analysis page) and for docs/researchers.md.

A participant's time on task is the sum, over their study images (a practice image is left
out), of the time from the first logged action on the image (a click or a trial: the
assignment's `started_at`) to the image's end: when it was finished, else its last logged
action. Time between images (reading, the survey, a break) is not counted, and an image with
no logged action counts zero.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Max, Min

TIME_ON_TASK = (
    "per study image, from the first logged action to the end of the image (finished, else "
    "its last action), summed over the images; the practice image and the time between "
    "images are not counted"
)


def first_and_last(*times: datetime | None) -> tuple[datetime | None, datetime | None]:
    """The earliest and latest of the given times that are set."""
    known = [t for t in times if t is not None]
    return (min(known), max(known)) if known else (None, None)


def assignment_seconds(
    started_at: datetime | None, finished_at: datetime | None, last_action_at: datetime | None
) -> float:
    """Seconds on one image: first action (`started_at`) to finish, else to the last action;
    0 with no action."""
    end = finished_at or last_action_at
    if started_at is None or end is None:
        return 0.0
    return max(0.0, (end - started_at).total_seconds())


def time_on_task_by_participant(study) -> dict[int, float]:
    """{participant pk: seconds} for every participant of the study with a study image."""
    from studies.models import Assignment

    rows = (
        Assignment.objects.real()
        .filter(participant__study=study)
        .annotate(
            first_event=Min("events__server_ts"),
            first_trial=Min("trials__server_ts"),
            last_event=Max("events__server_ts"),
            last_trial=Max("trials__server_ts"),
        )
        .values_list(
            "participant_id",
            "started_at",
            "finished_at",
            "first_event",
            "first_trial",
            "last_event",
            "last_trial",
        )
    )
    out: dict[int, float] = {}
    for participant_id, started, finished, *times in rows:
        first, last = first_and_last(*times)
        out[participant_id] = out.get(participant_id, 0.0) + assignment_seconds(
            started or first, finished, last
        )
    return out
