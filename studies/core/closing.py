"""Closing a study is a line in the log (docs/researchers.md "Closing a study").

An action that arrives after the researcher closed the study is refused, never stored: the
recorder checks the study's status inside the transaction that writes the row, under a lock on
the study row, and closing takes the study row for update before it stamps `closed_at`.

On PostgreSQL the writer takes `FOR KEY SHARE` (writers of one study do not wait for each
other, nor for ordinary edits of the study), closing takes `FOR UPDATE`: closing waits for the
writes already under way, which then all carry a time before `closed_at`, and every write that
comes after it sees the study closed. SQLite runs every write transaction alone (`IMMEDIATE`),
which gives the same line.

The refusal is a 409 that says so (`study_closed: true`, `closed_at`) and carries the
participant's completion code when they are owed one: they had finished every image (and its
survey) before the line.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from studies.core.api_errors import ApiError
from studies.models import Participant, Study


def owed_code(participant: Participant) -> str | None:
    """The completion code the participant is owed (the one the completion page shows), or
    None when they had not finished."""
    if participant.completed_at is None:
        return None
    return participant.completion_code or participant.code


def closed_message(participant: Participant, study: Study) -> str:
    when = (
        timezone.localtime(study.closed_at).strftime("%Y-%m-%d %H:%M %Z") if study.closed_at else ""
    )
    text = f"This study was closed{f' at {when}' if when else ''}: your last action was not stored."
    code = owed_code(participant)
    if code:
        text += f" You had finished: your completion code is {code}."
    return text


def closed_error(participant: Participant, study: Study) -> ApiError:
    """The 409 of an action that arrived when `study` was not open."""
    if study.status != "closed":
        return ApiError(409, f"the study is {study.status}, not open", study_closed=False)
    return ApiError(
        409,
        closed_message(participant, study),
        study_closed=True,
        closed_at=study.closed_at.isoformat() if study.closed_at else None,
        completion_code=owed_code(participant),
    )


def lock_open(participant: Participant) -> None:
    """Inside the transaction that stores an action: the study must (still) be open, else the
    closed 409. Holds the study row (FOR KEY SHARE on PostgreSQL) until the transaction ends,
    so that closing waits for this write."""
    assert transaction.get_connection().in_atomic_block, "lock_open needs a transaction"
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT status FROM {Study._meta.db_table} WHERE id = %s FOR KEY SHARE",
                [participant.study_id],
            )
            row = cursor.fetchall()
        status = row[0][0] if row else None
    else:  # SQLite: write transactions run one at a time (IMMEDIATE), a plain read will do
        status = (
            Study.objects.filter(pk=participant.study_id).values_list("status", flat=True).first()
        )
    if status != "open":
        study = Study.objects.get(pk=participant.study_id)
        raise closed_error(participant, study)


def close_study(study: Study) -> None:
    """Draw the line: wait for the writes under way (the study row for update), then stamp
    `closed_at`. Every stored action carries a time before it; none comes after."""
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        locked.status, locked.closed_at = "closed", timezone.now()
        locked.save(update_fields=["status", "closed_at"])
    study.status, study.closed_at = locked.status, locked.closed_at
