"""Run by tests/core/test_closing_line_pg.py against PostgreSQL (not collected on its own): a
write already under way when the researcher closes the study holds the study row, closing
waits for it, the write is stored with a time before `closed_at`, and the next write is
refused."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from studies.core.api_errors import ApiError
from studies.core.closing import close_study
from studies.models import Participant, PromptEvent, Study
from studies.prompting.events import PROMPT_LOG, submit_event
from tests.factories import prompting_study


def green(seq: int) -> dict:
    return {"client_event_id": f"c{seq}", "seq": seq, "action": "add", "mode": "green",
            "x": 5, "y": 5, "client_ts": 1.7e12}  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_closing_waits_for_the_write_under_way(monkeypatch):
    assert connection.vendor == "postgresql"
    study = prompting_study(n_images=1, participants=1)
    participant = study.participants.get()
    participant.consented_at = timezone.now()
    participant.save()
    assignment = participant.assignments.get()

    inside, release = threading.Event(), threading.Event()
    store = type(PROMPT_LOG).store

    def held_store(self, *args, **kwargs):
        inside.set()  # the study row is held (FOR KEY SHARE) from here to the commit
        assert release.wait(20)
        return store(self, *args, **kwargs)

    monkeypatch.setattr(type(PROMPT_LOG), "store", held_store)
    out: dict = {}

    def run(name, fn):
        try:
            out[name] = fn()
        except Exception as exc:  # noqa: BLE001 (reported below)
            out[name] = exc
        finally:
            out[f"{name}_at"] = time.monotonic()
            connection.close()

    writer = threading.Thread(
        target=run,
        args=("write", lambda: submit_event(
            Participant.objects.get(pk=participant.pk), assignment.pk, green(0))),
    )  # fmt: skip
    writer.start()
    assert inside.wait(20)
    closer = threading.Thread(
        target=run, args=("close", lambda: close_study(Study.objects.get(pk=study.pk)))
    )
    closer.start()
    time.sleep(1.0)
    assert closer.is_alive(), "closing did not wait for the write under way"
    released_at = time.monotonic()
    release.set()
    writer.join(20)
    closer.join(20)
    assert isinstance(out["write"], dict), out["write"]
    assert out["close"] is None and out["close_at"] >= released_at
    monkeypatch.undo()

    study.refresh_from_db()
    event = PromptEvent.objects.get(assignment=assignment)
    assert study.status == "closed" and event.server_ts < study.closed_at
    with pytest.raises(ApiError) as refused:
        submit_event(Participant.objects.get(pk=participant.pk), assignment.pk, green(1))
    assert refused.value.status == 409 and refused.value.extra["study_closed"] is True
    assert PromptEvent.objects.filter(assignment=assignment).count() == 1
