"""Trust evaluations from the researcher pages, end to end on the demo classifier: created by a
POST, scored by the (eager) batch task, and the numbers the page shows equal a recomputation
from the downloaded scores.csv; resuming rescored only what was missing; bad input refused."""

from __future__ import annotations

import csv
import io
import math
import re

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from interventions.trust_names import TRUST_SCORE_NAMES, trust_score
from studies.core.datasets import create_dataset
from studies.models import TrustEvaluation, TrustScoreRow
from tests.factories import classical_spec, researcher, small_dataset
from tests.intervention_fixtures import DEMO_WEIGHTS, classifier_spec

pytestmark = pytest.mark.django_db
N_IMAGES = 7


def labelled_dataset(name: str = "Trust shapes"):
    """Demo scenes; two labels moved to the next class so that the trained demo CNN is wrong
    on some images and right on others (AUROC/AUPR are defined)."""
    from interventions.demo_data import CLASS_NAMES, generate_scene

    items = []
    for i in range(N_IMAGES):
        scene = generate_scene("Cluttered scenes", i, seed=3)
        label = (scene.label + 1) % len(CLASS_NAMES) if i in (1, 4) else scene.label
        items.append((scene.image, scene.mask, label, CLASS_NAMES[label]))
    dataset = create_dataset(name, items, source="generated", seed=3)
    dataset.owner = researcher("alice")  # alice's: the evaluations below are hers
    dataset.save(update_fields=["owner"])
    return dataset


@pytest.fixture
def alice_client(client):
    client.force_login(researcher("alice"))
    return client


def create(client, spec, dataset, capture, **extra):
    data = {"model": spec.pk, "dataset": dataset.pk, "batch_size": 3, "mcd_seed": 0, **extra}
    with capture(execute=True):
        response = client.post("/trust/new", data)
    return response


def read_csv(response) -> list[dict]:
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def shown_figures(html: str) -> dict[str, tuple[str, str]]:
    """{score: (auroc, aupr)} as the page's summary table shows them (4 decimals)."""
    out = {}
    for score, body in re.findall(r'<tr data-score="([a-z_]+)">(.*?)</tr>', html, re.S):
        cells = re.findall(r'data-metric="(auroc|aupr)"[^>]*>([^<]*)<', body)
        out[score] = tuple(value.strip() for _, value in cells)
    return out


def test_evaluation_end_to_end_matches_a_recomputation_from_scores_csv(
    alice_client, django_capture_on_commit_callbacks
):
    assert DEMO_WEIGHTS.is_file()
    spec, dataset = classifier_spec(DEMO_WEIGHTS), labelled_dataset()
    response = create(alice_client, spec, dataset, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    evaluation = TrustEvaluation.objects.get()
    assert response["Location"] == f"/trust/{evaluation.pk}/"
    evaluation.refresh_from_db()
    assert evaluation.status == "done", evaluation.error
    assert (evaluation.done, evaluation.total, evaluation.progress) == (N_IMAGES, N_IMAGES, 1.0)
    assert TrustScoreRow.objects.filter(evaluation=evaluation).count() == N_IMAGES

    page = alice_client.get(f"/trust/{evaluation.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    rows = read_csv(alice_client.get(f"/trust/{evaluation.pk}/scores.csv"))
    header = list(rows[0])
    assert "grad_trust" in header and "grad_trust_released" in header
    assert set(TRUST_SCORE_NAMES) <= set(header) and len(rows) == N_IMAGES
    assert [int(r["image_index"]) for r in rows] == list(range(N_IMAGES))

    labels = np.array([int(r["label"]) for r in rows])
    predictions = np.array([int(r["prediction"]) for r in rows])
    correct = labels == predictions
    assert [bool(int(r["correct"])) for r in rows] == correct.tolist()
    assert 0 < correct.sum() < N_IMAGES, "the fixture must have right and wrong predictions"
    accuracy = correct.mean()
    shown_accuracy = re.search(r'id="accuracy-value">([^<]+)<', html).group(1)
    assert shown_accuracy == f"{accuracy:.4f}"

    shown = shown_figures(html)
    assert list(shown) == list(TRUST_SCORE_NAMES)  # every score, in table order
    for name in TRUST_SCORE_NAMES:
        values = np.array([float(r[name]) for r in rows])
        oriented = values if trust_score(name).higher_is_trustworthy else -values
        keep = ~np.isnan(oriented)
        auroc = roc_auc_score(correct[keep], oriented[keep])
        aupr = average_precision_score(correct[keep], oriented[keep])
        assert shown[name] == (f"{auroc:.4f}", f"{aupr:.4f}"), name

    summary = read_csv(alice_client.get(f"/trust/{evaluation.pk}/summary.csv"))
    assert [r["score"] for r in summary] == list(TRUST_SCORE_NAMES)
    for row in summary:
        values = np.array([float(r[row["score"]]) for r in rows])
        oriented = values if row["higher_is_trustworthy"] == "True" else -values
        assert math.isclose(float(row["auroc"]), roc_auc_score(correct, oriented), abs_tol=1e-12)
        assert math.isclose(
            float(row["aupr"]), average_precision_score(correct, oriented), abs_tol=1e-12
        )
        assert math.isclose(float(row["accuracy"]), accuracy)
    assert {"grad_trust", "grad_trust_released"} <= {r["score"] for r in summary}

    for name in ("table", "scatter"):
        png = alice_client.get(f"/trust/{evaluation.pk}/plots/{name}.png")
        assert png.status_code == 200 and b"".join(png.streaming_content)[:4] == b"\x89PNG"
        svg = alice_client.get(f"/trust/{evaluation.pk}/plots/{name}.svg?download=1")
        assert svg.status_code == 200 and "attachment" in svg["Content-Disposition"]
        assert b"<svg" in b"".join(svg.streaming_content)[:2000]
        assert f'src="/trust/{evaluation.pk}/plots/{name}.png"' in html
    listing = alice_client.get("/trust/").content.decode()
    assert f'href="/trust/{evaluation.pk}/"' in listing

    # resume: rows of three images gone, the evaluation queued again -> the same rows come back
    before = {
        r.image_id: (r.prediction, r.scores)
        for r in TrustScoreRow.objects.filter(evaluation=evaluation)
    }
    kept = TrustScoreRow.objects.filter(evaluation=evaluation).order_by("image__index")
    kept_pks = list(kept.values_list("pk", flat=True))
    TrustScoreRow.objects.filter(pk__in=kept_pks[2:5]).delete()
    TrustEvaluation.objects.filter(pk=evaluation.pk).update(status="failed", error="killed")
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(f"/trust/{evaluation.pk}/resume")
    assert response.status_code == 302
    evaluation.refresh_from_db()
    assert evaluation.status == "done" and evaluation.error == ""
    after = TrustScoreRow.objects.filter(evaluation=evaluation)
    assert after.count() == N_IMAGES
    assert set(after.values_list("pk", flat=True)) >= set(kept_pks[:2] + kept_pks[5:])
    assert {r.image_id: (r.prediction, r.scores) for r in after} == before
    # the task run again on a done evaluation changes nothing
    from workers.trust_tasks import run_trust_evaluation

    assert run_trust_evaluation(evaluation.pk)["scored"] == 0
    assert TrustScoreRow.objects.filter(evaluation=evaluation).count() == N_IMAGES


def test_a_queued_evaluation_rerun_scores_only_missing_images(
    alice_client, django_capture_on_commit_callbacks
):
    spec, dataset = classifier_spec(DEMO_WEIGHTS), labelled_dataset()
    create(alice_client, spec, dataset, django_capture_on_commit_callbacks)
    evaluation = TrustEvaluation.objects.get()
    first = list(TrustScoreRow.objects.filter(evaluation=evaluation).values_list("pk", flat=True))
    TrustScoreRow.objects.filter(pk=first[-1]).delete()
    TrustEvaluation.objects.filter(pk=evaluation.pk).update(status="queued", summary={})
    from workers.trust_tasks import run_trust_evaluation

    result = run_trust_evaluation(evaluation.pk)
    assert result == {"evaluation": evaluation.pk, "scored": 1, "images": N_IMAGES}
    evaluation.refresh_from_db()
    assert evaluation.status == "done" and evaluation.summary["n_images"] == N_IMAGES


def test_bad_input_is_refused_and_nothing_is_created(
    alice_client, django_capture_on_commit_callbacks
):
    spec = classifier_spec(DEMO_WEIGHTS)
    unlabelled = create_dataset(
        "No labels",
        [(np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool), None, "")] * 2,
        source="upload",
    )
    unlabelled.owner = researcher("alice")
    unlabelled.save(update_fields=["owner"])
    response = create(alice_client, spec, unlabelled, django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert "2 of the 2 images of No labels have no class label" in response.content.decode()

    response = create(
        alice_client, classical_spec(), small_dataset(n=2), django_capture_on_commit_callbacks
    )
    assert response.status_code == 400
    assert "choose a classifier" in response.content.decode()

    response = create(
        alice_client, spec, small_dataset(n=2), django_capture_on_commit_callbacks, batch_size=0
    )
    assert response.status_code == 400 and "batch_size" in response.content.decode()
    assert not TrustEvaluation.objects.exists()


def test_only_the_owner_and_superusers_see_an_evaluation(client):
    spec, dataset = classifier_spec(DEMO_WEIGHTS), small_dataset(n=2)
    alice, bob = researcher("alice"), researcher("bob")
    evaluation = TrustEvaluation.objects.create(model=spec, dataset=dataset, created_by=alice)
    assert client.get("/trust/").status_code == 302  # login required
    client.force_login(bob)
    for url in ("", "progress.json", "scores.csv", "summary.csv", "plots/table.png"):
        assert client.get(f"/trust/{evaluation.pk}/{url}").status_code == 404, url
    assert client.post(f"/trust/{evaluation.pk}/resume").status_code == 404
    assert f"/trust/{evaluation.pk}/" not in client.get("/trust/").content.decode()
    bob.is_staff = True  # staff alone no longer see others' evaluations (their labels)
    bob.save()
    assert client.get(f"/trust/{evaluation.pk}/progress.json").status_code == 404
    bob.is_superuser = True
    bob.save()
    state = client.get(f"/trust/{evaluation.pk}/progress.json").json()
    assert state == {
        "id": evaluation.pk,
        "status": "queued",
        "progress": 0.0,
        "done": 0,
        "total": 0,
        "error": "",
    }
    client.force_login(alice)
    assert client.get(f"/trust/{evaluation.pk}/").status_code == 200


def test_intervention_image_page_names_both_gradtrusts(
    client, tmp_path, django_capture_on_commit_callbacks
):
    from studies.intervention.precompute import start_image_analyses
    from tests.intervention_fixtures import intervention_study, random_demo_weights

    study = intervention_study(classifier_spec(random_demo_weights(tmp_path)), n_images=1)
    with django_capture_on_commit_callbacks(execute=True):
        start_image_analyses(study)
    client.force_login(study.owner)
    image = study.dataset.images.get()
    html = client.get(f"/studies/{study.pk}/intervention/images/{image.pk}/").content.decode()
    assert "<code>grad_trust</code>" in html and "<code>grad_trust_released</code>" in html


def test_management_command_runs_and_resumes_an_evaluation():
    from django.core.management import CommandError, call_command

    spec, dataset = classifier_spec(DEMO_WEIGHTS), labelled_dataset()
    researcher("alice")
    out = io.StringIO()
    call_command(
        "trust_evaluation", spec.model_id, str(dataset.pk), user="alice", batch_size=4,
        no_progress=True, stdout=out,
    )  # fmt: skip
    evaluation = TrustEvaluation.objects.get()
    assert evaluation.status == "done" and evaluation.rows.count() == N_IMAGES
    text = out.getvalue()
    assert "grad_trust " in text and "grad_trust_released" in text
    assert f"accuracy {evaluation.summary['accuracy']:.4f}" in text
    with pytest.raises(CommandError, match="already done"):
        call_command("trust_evaluation", user="alice", resume=evaluation.pk, no_progress=True)
    with pytest.raises(CommandError, match="choose a classifier"):
        call_command(
            "trust_evaluation", str(classical_spec().pk), str(dataset.pk), user="alice",
            no_progress=True,
        )  # fmt: skip
    assert TrustEvaluation.objects.count() == 1
