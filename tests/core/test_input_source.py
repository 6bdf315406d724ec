"""Which input placed each point (`input`: "pointer" / "keyboard") or painted each applied
region ("mixed" too): stored with the event or trial, refused when it is anything else, and
carried into the tidy export as a column only when some row says it (old data keep their
bytes)."""

from __future__ import annotations

import csv
import io
import uuid
import zipfile

import numpy as np
import pytest

from interventions.metrics import rle_encode
from studies.core.exports import run_export
from studies.models import InterventionTrial, PromptEvent
from tests.factories import ParticipantClient, prompting_study
from tests.intervention_fixtures import classifier_spec, intervention_study, random_demo_weights

pytestmark = pytest.mark.django_db


def add(api, assignment_id, seq, mode, x, y, **extra):
    body = {"client_event_id": str(uuid.uuid4()), "seq": seq, "action": "add", "mode": mode}
    return api.post(f"assignments/{assignment_id}/events", {**body, "x": x, "y": y, **extra})


def rows(zf: zipfile.ZipFile, name: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(zf.read(name).decode())))


def test_prompt_events_store_the_input_and_refuse_another_value(client, tmp_path):
    study = prompting_study(participants=1, n_images=1)
    participant = study.participants.get()
    api = ParticipantClient(client, participant)
    api.consent()
    a = participant.assignments.get()
    before = tmp_path / "before.zip"
    assert add(api, a.pk, 0, "green", 3, 3).status_code == 200  # an older client: no input
    run_export(study, "tidy", before)
    zf = zipfile.ZipFile(before)
    assert "input" not in rows(zf, "events.csv")[0]
    assert b"events_with_input" not in zf.read("manifest.json")

    bad = add(api, a.pk, 1, "green", 5, 5, input="voice")
    assert bad.status_code == 400 and bad.json()["field"] == "input"
    assert a.events.count() == 1
    assert add(api, a.pk, 1, "red", 40, 40, input="keyboard").status_code == 200
    assert add(api, a.pk, 2, "green", 7, 7, input="pointer").status_code == 200
    assert list(a.events.order_by("seq").values_list("input", flat=True)) == [
        "",
        "keyboard",
        "pointer",
    ]
    after = tmp_path / "after.zip"
    run_export(study, "tidy", after)
    zf = zipfile.ZipFile(after)
    events = rows(zf, "events.csv")
    assert list(events[0])[-1] == "input"
    assert [e["input"] for e in events] == ["", "keyboard", "pointer"]
    assert b'"events_with_input": 2' in zf.read("manifest.json")
    assert PromptEvent.objects.filter(input="keyboard").count() == 1


def test_trials_store_the_input_and_the_export_says_it(client, tmp_path):
    weights = random_demo_weights(tmp_path)
    study = intervention_study(classifier_spec(weights), n_images=1)
    participant = study.participants.get()
    api = ParticipantClient(client, participant)
    api.consent()
    a = participant.assignments.select_related("image").get()
    region = np.zeros((a.image.height, a.image.width), dtype=bool)
    region[4:20, 4:20] = True
    body = {"operation": "delete", "region_rle": rle_encode(region), "substrate": "zero"}

    def trial(seq, **extra):
        payload = {"client_event_id": f"t{seq}-{extra}", "seq": seq, **body, **extra}
        return api.post(f"assignments/{a.pk}/trials", payload)

    assert trial(0).status_code == 200
    out = tmp_path / "old.zip"
    run_export(study, "tidy", out)
    assert "input" not in rows(zipfile.ZipFile(out), "trials.csv")[0]
    refused = trial(1, input="both")
    assert refused.status_code == 400 and refused.json()["field"] == "input"
    assert trial(1, input="keyboard").status_code == 200
    assert trial(2, input="mixed").status_code == 200
    assert list(InterventionTrial.objects.order_by("seq").values_list("input", flat=True)) == [
        "",
        "keyboard",
        "mixed",
    ]
    out = tmp_path / "new.zip"
    run_export(study, "tidy", out)
    zf = zipfile.ZipFile(out)
    assert [t["input"] for t in rows(zf, "trials.csv")] == ["", "keyboard", "mixed"]
    assert b'"trials_with_input": 2' in zf.read("manifest.json")
