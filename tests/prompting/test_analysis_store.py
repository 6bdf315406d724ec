"""The stored analysis (issue 26): the same numbers as a fresh computation, on the demo-style
scripted study and on a generated PointPrompt-shaped one; brought up to date incrementally
(only the changed assignments recomputed); never showing data older than it says."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from studies.models import AnalysisResult, Participant
from studies.prompting import analysis_store
from studies.prompting.views_analysis import study_tables
from tests.export_sessions import Script, run_sessions
from tests.factories import prompting_study

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def scale_module():
    spec = importlib.util.spec_from_file_location(
        "pointprompt_scale", ROOT / "bench" / "pointprompt_scale.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def same(a, b) -> bool:
    """Equal, NaN equal to NaN (the tables hold NaN where a share has no denominator)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def stored_tables(study):
    tables, _ = analysis_store.read(study, assignments=True)
    return tables


def test_stored_equals_fresh_on_the_scripted_study():
    study = prompting_study(n_images=3, participants=3)
    run_sessions(study, seed=4)
    Participant.objects.filter(pk=study.participants.last().pk).update(excluded=True)
    result = analysis_store.update(study)
    assert result.recomputed == result.assignments > 0
    fresh = study_tables(study)
    assert same(stored_tables(study), fresh)


def test_stored_equals_fresh_on_a_generated_study_and_updates_incrementally(client):
    study, counts = scale_module().generate_study(2000, seed=1)
    assert counts["timesteps"] > 1500
    first = analysis_store.update(study)
    assert first.recomputed == counts["assignments"]
    assert same(stored_tables(study), study_tables(study))
    # nothing changed: nothing recomputed, the same tables
    again = analysis_store.update(study)
    assert again.recomputed == 0 and same(stored_tables(study), study_tables(study))

    # a participant adds events on one image: only that assignment is recomputed
    participant = study.participants.order_by("number").first()
    assignment = participant.assignments.real().filter(status="active").first()
    if assignment is None:  # every image finished: take a new participant's first image
        from studies.core.enrolment import enrol_participant, record_consent

        participant = record_consent(enrol_participant(study), study.consent_version)
        assignment = participant.assignments.real().order_by("order").first()
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/analysis").content.decode()
    assert 'data-fresh="1"' in page
    before = AnalysisResult.objects.get(study=study).version
    script = Script(participant)
    script.send(assignment, "add", "green", 64.0, 64.0)
    script.send(assignment, "add", "red", 2.0, 2.0)
    assert analysis_store.data_version(study) != before  # the stored result knows it is old
    updated = analysis_store.update(study)
    assert 1 <= updated.recomputed <= 2  # that assignment (and a new participant's, if any)
    assert same(stored_tables(study), study_tables(study))


def test_the_page_says_how_fresh_and_updates(client):
    study = prompting_study(n_images=3, participants=2)
    run_sessions(study, seed=0)
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/analysis").content.decode()
    assert 'id="analysis-freshness"' in page and 'data-fresh="1"' in page
    result = AnalysisResult.objects.get(study=study)
    n_events = result.version["events"][1]
    assert f"from {n_events} events" in page
    # new events: the stored result is stale; the page starts the update (eager here: at once)
    participant = study.participants.first()
    assignment = participant.assignments.real().order_by("order").last()
    script = Script(participant)
    script.send(assignment, "add", "green", 10.0, 10.0)
    page = client.get(f"/studies/{study.pk}/analysis").content.decode()
    result.refresh_from_db()
    assert result.version["events"][1] == n_events + 1 and 'data-fresh="1"' in page
    assert study.jobs.filter(kind="analysis", status="done").count() == 2
    csv = client.get(f"/studies/{study.pk}/analysis/assignments.csv")
    assert csv["X-Analysis-Computed-At"] == result.computed_at.isoformat()


def test_a_stale_result_is_shown_as_stale(client, monkeypatch):
    """With the update not run yet (a worker busy elsewhere), the page shows the old figures
    and says which data they are of."""
    study = prompting_study(n_images=3, participants=2)
    run_sessions(study, seed=0)
    analysis_store.update(study)
    old = AnalysisResult.objects.get(study=study).version["events"][1]
    participant = study.participants.first()
    Script(participant).send(
        participant.assignments.real().order_by("order").last(), "add", "green", 9.0, 9.0
    )
    monkeypatch.setattr(
        analysis_store, "start_update", lambda study, user=None: study.jobs.create(kind="analysis")
    )
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/analysis").content.decode()
    assert 'data-fresh="0"' in page
    assert f"these figures are those of {old} events" in page
    assert 'id="analysis-job"' in page
