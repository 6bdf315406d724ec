"""The new-study form as a researcher reads it (issue 24): readable labels and choices, help
that names no internal option, "data set" spelt one way, only the chosen kind's options, models
marked by the kinds that may run them, the SAM line, and models that cannot fit the data
refused with a reason."""

from __future__ import annotations

import re
from html import unescape

import pytest

from studies.core.kinds import all_kinds
from studies.models import ModelSpec, Study
from tests.core.test_ui_researcher import study_post
from tests.factories import classical_spec, researcher, small_dataset

pytestmark = pytest.mark.django_db


def texts(page: str, css_class: str) -> list[str]:
    """The text of every element with this class (labels: every <label>)."""
    if css_class == "label":
        found = re.findall(r"<label[^>]*>(.*?)</label>", page, re.S)
    else:
        found = re.findall(rf'<div class="{css_class}">(.*?)</div>', page, re.S)
    return [unescape(re.sub(r"<[^>]+>", " ", t)).strip() for t in found]


def option_names() -> set[str]:
    return {name for kind in all_kinds() for name in kind.options}


def test_every_option_has_a_readable_label_and_readable_choices():
    for kind in all_kinds():
        for name, option in kind.options.items():
            assert option.label and option.label != name, (kind.name, name)
            for value, label in option.choices_with_labels:
                assert label != value and "_" not in label, (kind.name, name, value)


def test_the_form_speaks_in_words(client):
    client.force_login(researcher())
    small_dataset()
    page = client.get("/studies/new").content.decode()
    helps, labels = texts(page, "help"), texts(page, "label")
    assert helps and labels
    internal = [n for n in option_names() if "_" in n] + ["masks[0]", "mask_input"]
    for text in helps + labels:
        assert not [n for n in internal if n in text], text
        assert not re.search(r"\bdataset", text, re.I), text  # "data set", one way
    # every choice is shown with its words, never its stored value
    shown = re.findall(r'<option value="([a-z_]+)"[^>]*>([^<]*)</option>', page)
    stored = {c for k in all_kinds() for o in k.options.values() for c in o.choices}
    choices = [(v, t) for v, t in shown if v in stored]
    assert choices and all(t != v for v, t in choices), choices
    for words in ("The mask SAM scores highest", "The data set&#x27;s mean colour (zero input)",
                  "One image, the result drawn on it"):  # fmt: skip
        assert words in page
    assert "SAM_CHECKPOINT=/path/to/sam_vit_b_01ec64.pth" in page  # how to use SAM weights


def test_only_the_chosen_kinds_options_are_shown(client):
    client.force_login(researcher())
    page = client.get("/studies/new").content.decode()
    sections = dict(
        re.findall(r'<section class="protocol-section" data-kinds="([^"]+)"( hidden)?>', page)
    )
    assert sections == {"prompting intervention": "", "prompting": "", "intervention": " hidden"}
    # a shared option says what it means for the chosen kind only
    assert '<span data-kind="intervention" hidden>Trials before an image can be finished' in page
    assert '<span data-kind="prompting">Predictions before an image can be finished' in page
    # a refused intervention study comes back with the intervention options shown
    dataset = small_dataset()
    page = client.post(
        "/studies/new", study_post(dataset, classical_spec(), kind="intervention")
    ).content.decode()
    sections = dict(
        re.findall(r'<section class="protocol-section" data-kinds="([^"]+)"( hidden)?>', page)
    )
    assert sections == {"prompting intervention": "", "prompting": " hidden", "intervention": ""}


def test_each_model_says_which_kinds_may_run_it(client):
    client.force_login(researcher())
    classical_spec()
    ModelSpec.objects.create(name="cnn", kind="classifier", architecture="demo")
    page = client.get("/studies/new").content.decode()
    select = page.split('name="model"')[1].split("</select>")[0]
    marked = dict(re.findall(r'data-kinds="([^"]*)"[^>]*>([^<]*)</option>', select))
    assert marked == {
        "prompting": "classical (classical point-seeded)",
        "intervention": "cnn (classifier)",
    }


def classifier(class_names: list[str]) -> ModelSpec:
    return ModelSpec.objects.create(
        name="cnn", kind="classifier", architecture="demo", class_names=class_names
    )


def intervention_post(dataset, model) -> dict:
    return study_post(dataset, model, kind="intervention", protocol_substrate="zero")


def test_a_classifier_whose_classes_miss_the_labels_is_refused(client):
    from interventions.demo_data import CLASS_NAMES

    client.force_login(researcher())
    dataset = small_dataset(n=3)
    labels = sorted(set(dataset.images.values_list("class_label", flat=True)))
    few = classifier(["only one"])  # class 0 only
    page = client.post("/studies/new", intervention_post(dataset, few)).content.decode()
    assert max(labels) > 0 and "the classes of cnn (0 to 0) do not include the label(s)" in page
    # right number of classes, other names
    few.class_names = [f"class {i}" for i in range(len(CLASS_NAMES))]
    few.save()
    page = client.post("/studies/new", intervention_post(dataset, few)).content.decode()
    assert "the classes of cnn do not include" in page
    assert not Study.objects.exists()
    few.class_names = list(CLASS_NAMES)
    few.save()
    response = client.post("/studies/new", intervention_post(dataset, few))
    assert response.status_code == 302 and Study.objects.get().kind == "intervention"


def test_a_data_set_without_labels_is_refused_for_an_intervention_study(client):
    import numpy as np

    from studies.core.datasets import create_dataset

    client.force_login(researcher())
    image, mask = np.full((16, 16, 3), 90, np.uint8), np.zeros((16, 16), bool)
    mask[4:9, 4:9] = True
    unlabelled = create_dataset("no labels", [(image, mask, None, "")], source="upload")
    page = client.post("/studies/new", intervention_post(unlabelled, classifier(["a", "b"])))
    assert "1 of the 1 images of no labels have no class label" in page.content.decode()
    # a prompting study needs no labels
    response = client.post("/studies/new", study_post(unlabelled, classical_spec()))
    assert response.status_code == 302


def test_the_upload_page_states_the_pixel_limit_in_words(client, settings):
    client.force_login(researcher())
    settings.IMPORT_MAX_PIXELS = 4096 * 4096
    assert (
        "more than 4096 x 4096 pixels are refused"
        in client.get("/datasets/upload").content.decode()
    )
