"""What the participant reads by default matches the page and uses plain words: the image
count with a practice image (n + 1), where the ground-truth panel is, the rectangle's key, the
keyboard's way of working, the score called "match" and explained, a survey question without
researchers' jargon."""

from __future__ import annotations

import re

import pytest

from studies.models import Study
from tests.factories import classical_spec, prompting_study, researcher, small_dataset
from tests.intervention_fixtures import intervention_study

pytestmark = pytest.mark.django_db


def instructions(client, study: Study) -> str:
    client.get(f"/s/{study.pk}/join")
    client.post(f"/s/{study.pk}/consent", {"agree": "yes", "version": study.consent_version})
    html = client.get(f"/s/{study.pk}/instructions").content.decode()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


def test_prompting_instructions_match_the_page(client):
    study = prompting_study(n_images=9, participants=0, practice_image=0)
    text = instructions(client, study)
    assert "a practice image first, then 8 images for the study (9 in all)" in text
    assert "middle panel" not in text and "panel on the right of the image" in text
    assert "IoU with the ground truth" not in text and "from 0 (no overlap) to 1" in text
    assert "Enter puts a green point there" in text  # the keyboard's way is said
    plain = prompting_study(n_images=2, participants=0)
    text = instructions(client.__class__(), plain)
    assert re.search(r"You will see \d+ images, one after the other\.", text)
    assert "practice" not in text


def test_intervention_instructions_name_the_page_s_keys(client, tmp_path):
    from tests.intervention_fixtures import classifier_spec, random_demo_weights

    study = intervention_study(
        classifier_spec(random_demo_weights(tmp_path)), n_images=3, participants=0
    )
    study.protocol = {**study.protocol, "practice_image": 0}
    study.save()
    text = instructions(client, study)
    assert "rectangle (x, drag corner to corner)" in text and "(r," not in text
    assert "a practice image first, then 2 images for the study (3 in all)" in text
    assert "Insert only" in text and "substrate" not in text
    assert "covered with plain grey" in text


def test_the_annotate_page_calls_the_score_a_match_and_explains_it(client):
    study = prompting_study(n_images=1, participants=0)
    instructions(client, study)
    page = client.get(f"/s/{study.pk}/annotate").content.decode()
    pill = re.search(r'<span class="pill score-pill"[^>]*>(.*?)<span id="score"', page)
    assert pill and pill.group(1).strip() == "Match"
    assert "0 no overlap, 1 exactly the same" in page


def test_a_new_prompting_study_asks_in_plain_words():
    study = Study.objects.create(
        kind="prompting",
        title="t",
        dataset=small_dataset(n=1),
        model=classical_spec(),
        owner=researcher(),
    )
    question = study.survey_question
    assert "suboptimal" not in question and "i.e." not in question and "SAM" not in question
    assert "reference outline" in question
