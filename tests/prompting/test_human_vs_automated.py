"""The analysis page's humans-against-automated comparison on a generated study with stored
baseline rows: the CSV's numbers against a plain computation from the log, its columns, the
table and the plot."""

import csv
import io

import numpy as np
import pytest

from interventions.intervals import mean_ci95
from interventions.prompt_comparison import COLUMNS
from studies.models import BaselineResult, PromptEvent
from tests.export_sessions import run_sessions
from tests.factories import prompting_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    study = prompting_study(n_images=3, participants=2)
    run_sessions(study, seed=2)
    rng = np.random.default_rng(0)
    images = list(study.dataset.images.order_by("index"))
    # strategy names old and new alike; "rand" under two seeds
    for strategy, seed in (("rand", 0), ("rand", 1), ("kmedoids", 0), ("shi-tomasi", 0)):
        for image in images:
            BaselineResult.objects.create(
                study=study, image=image, strategy=strategy, seed=seed, count_source="fixed",
                key=f"{strategy}:{seed}:fixed:i{image.pk}", n_green=1, n_red=1,
                iou=float(rng.uniform(0.1, 0.6)),
            )  # fmt: skip
    return study


def plain_human(study):
    """first / best / final per scored assignment, straight from the event rows."""
    out = {"first": [], "best": [], "final": []}
    for participant in study.participants.all():
        for assignment in participant.assignments.all():
            scores = list(
                PromptEvent.objects.filter(assignment=assignment, timestep__isnull=False)
                .order_by("timestep")
                .values_list("iou", flat=True)
            )
            if scores:
                out["first"].append(scores[0])
                out["best"].append(max(scores))
                out["final"].append(scores[-1])
    return out


def test_csv_numbers_equal_a_plain_computation(client, study):
    client.force_login(study.owner)
    response = client.get(f"/studies/{study.pk}/analysis/human_vs_automated.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert tuple(rows[0]) == COLUMNS
    name = study.dataset.name
    assert [(r["dataset"], r["strategy"], r["seed"]) for r in rows] == [
        (group, strategy, seed)
        for group in (name, "overall")
        for strategy, seed in (("kmedoids", "0"), ("rand", "0"), ("rand", "1"), ("shi-tomasi", "0"))
    ]
    human = plain_human(study)
    assert len(human["best"]) >= 2
    for row in rows:
        auto = list(
            BaselineResult.objects.filter(
                study=study, strategy=row["strategy"], seed=int(row["seed"])
            ).values_list("iou", flat=True)
        )
        a = sum(auto) / len(auto)
        assert int(row["n_automated"]) == len(auto) and float(
            row["automated_mean_iou"]
        ) == pytest.approx(a)
        ci = mean_ci95(auto)
        assert (float(row["automated_ci_low"]), float(row["automated_ci_high"])) == pytest.approx(
            (ci.low, ci.high)
        )
        assert int(row["n_human"]) == len(human["best"])
        for m, values in human.items():
            mean = sum(values) / len(values)
            assert float(row[f"human_{m}_mean_iou"]) == pytest.approx(mean)
            ci = mean_ci95(values)
            assert float(row[f"human_{m}_ci_low"]) == pytest.approx(ci.low)
            assert float(row[f"human_{m}_ci_high"]) == pytest.approx(ci.high)
            assert float(row[f"humans_{m}_higher_pct"]) == pytest.approx(100 * (mean - a) / a)


def test_the_page_shows_the_table_and_the_plot(client, study):
    client.force_login(study.owner)
    html = client.get(f"/studies/{study.pk}/analysis").content.decode()
    assert 'id="human-vs-automated"' in html and "human best" in html
    for label in (
        "auto kmedoids",
        "auto rand (fixed, seed 0)",
        "auto rand (fixed, seed 1)",
        "auto shi-tomasi",
    ):
        assert label in html
    assert "%</td>" in html and "nan" not in html.lower().replace("nano", "")
    assert html.count("<h3>") == 1  # one data set: no separate "overall" group
    for fmt, magic in (("png", b"\x89PNG"), ("svg", b"<?xml")):
        plot = client.get(f"/studies/{study.pk}/analysis/plots/human_vs_automated.{fmt}")
        assert plot.status_code == 200 and plot.content.startswith(magic)
    svg = client.get(f"/studies/{study.pk}/analysis/plots/human_vs_automated.svg").content.decode()
    assert "human best" in svg and "shi-tomasi" in svg


def test_the_page_without_baselines_says_so(client):
    study = prompting_study(n_images=3, participants=1)
    run_sessions(study, seed=1)
    client.force_login(study.owner)
    html = client.get(f"/studies/{study.pk}/analysis").content.decode()
    assert "No automated prompts stored yet" in html
    rows = list(
        csv.DictReader(
            io.StringIO(
                client.get(f"/studies/{study.pk}/analysis/human_vs_automated.csv").content.decode()
            )
        )
    )
    assert [r["strategy"] for r in rows] == ["", ""]
