"""A study as a file (studies/core/study_spec.py): spec -> study -> spec, the checks a spec
passes (the study form's), an export's manifest re-run, the commands and the download."""

import copy
import io
import json
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from studies.core.exports import run_export
from studies.core.study_spec import (
    FIELDS,
    NOT_IN_MANIFEST,
    SpecError,
    create_from_spec,
    manifest_to_spec,
    study_to_spec,
)
from studies.models import Dataset, Job, ModelSpec, Study
from tests.export_sessions import run_sessions
from tests.factories import classical_spec, prompting_study, researcher, small_dataset

pytestmark = pytest.mark.django_db

DESIGN = {
    "assignment": "between",
    "seed": 11,
    "block_size": 4,
    "arms": [
        {"name": "score shown", "options": {"show_score": True}, "target": 20},
        {"name": "score hidden", "options": {"show_score": False}, "model": "classical-v2"},
    ],
}


def second_segmenter() -> ModelSpec:
    return ModelSpec.objects.create(
        name="classical b", kind="classical", architecture="classical-v2", shared_with_lab=True
    )


@pytest.fixture
def study() -> Study:
    """A draft prompting study with texts, recruitment settings and a design, none default."""
    second_segmenter()
    study = prompting_study(n_images=4, participants=0, status="draft", max_rounds=3)
    study.instructions = "Click the object's inside green, the outside red."
    study.consent_text = "Ich stimme zu. I agree."
    study.consent_version = "2b"
    study.survey_question = "Was it hard?"
    study.annotators_per_image = 3
    study.images_per_participant = 2
    study.assignment_seed = 42
    study.allow_public_join = False
    study.max_participants = 30
    study.completion_code = "C0DE"
    study.completion_url = "https://app.prolific.com/submissions/complete?cc=C0DE"
    study.attention_images = [0, 3]
    study.attention_threshold = 0.7
    study.design = copy.deepcopy(DESIGN)
    study.save()
    return study


def test_round_trip_with_a_design_is_exact_apart_from_ids(study):
    spec = study_to_spec(study)
    assert list(spec) == list(FIELDS)
    assert spec["format"] == "intervene-study" and spec["version"] == 1
    assert spec["dataset"] == study.dataset.name and spec["model"] == "classical-v1"
    # every option of the kind, as the study runs with it (the stored protocol has one)
    assert set(spec["protocol"]) == set(study.kind_spec.options)
    assert spec["protocol"]["max_rounds"] == 3 and spec["design"] == DESIGN
    # through the file, as the commands and the download write it
    again = json.loads(json.dumps(spec))
    bob = researcher("bob")
    created = create_from_spec(again, owner=bob)
    assert created.pk != study.pk and created.owner == bob and created.status == "draft"
    assert created.opened_at is None and not created.participants.exists()
    assert study_to_spec(created) == spec
    assert created.design == DESIGN and created.dataset == study.dataset
    # what the study runs with: the arm's model resolves to the second segmenter
    from studies.core.design import arm_by_name, study_view

    view = study_view(created, "score hidden")
    assert view.model.name == "classical b" and view.option("show_score") is False
    assert arm_by_name(created, "score shown").target == 20


def test_a_study_with_an_empty_protocol_round_trips_and_a_minimal_spec_gets_defaults():
    study = prompting_study(participants=0, status="draft")
    assert study.protocol == {}
    spec = study_to_spec(study)
    created = create_from_spec(spec, owner=study.owner)
    assert study_to_spec(created) == spec
    minimal = {k: spec[k] for k in ("format", "version", "title", "kind", "dataset", "model")}
    plain = create_from_spec(minimal, owner=study.owner)
    assert study_to_spec(plain) == spec  # every other field takes a new study's default
    assert plain.design == {} and plain.survey_question == study.kind_spec.survey_question


def test_open_now_opens_the_study_as_the_open_button_does(study):
    created = create_from_spec(study_to_spec(study), owner=study.owner, open_now=True)
    created.refresh_from_db()
    assert created.status == "open" and created.opened_at is not None
    # the kind's on_open ran: a prompting study precomputes its embeddings
    assert Job.objects.filter(study=created, kind="precompute").exists()


def _spec(study):
    return json.loads(json.dumps(study_to_spec(study)))


def bad_dataset(spec):
    spec["dataset"] = "no such data"


def wrong_kind_model(spec):
    ModelSpec.objects.create(name="a cnn", kind="classifier", shared_with_lab=True)
    spec["model"] = "classifier"


def unknown_model(spec):
    spec["model"] = "sam-vit_b-000000000000"


def unknown_option(spec):
    spec["protocol"]["show_colours"] = True


def bad_option_value(spec):
    spec["protocol"]["show_score"] = "yes"


def option_of_another_kind(spec):
    spec["protocol"]["overlay"] = "gradcam"


def bad_practice_image(spec):
    spec["protocol"]["practice_image"] = 99


def bad_arm_option(spec):
    spec["design"]["arms"][1]["options"]["show_score"] = 1


def duplicate_arm_names(spec):
    spec["design"]["arms"][1]["name"] = "score shown"


def empty_arm_list(spec):
    spec["design"]["arms"] = []


def unknown_arm_model(spec):
    spec["design"]["arms"][0]["model"] = "classical-v9"


def unknown_key(spec):
    spec["colour"] = "blue"


def missing_title(spec):
    del spec["title"]


def wrong_format(spec):
    spec["format"] = "something-else"


def string_for_integer(spec):
    spec["annotators_per_image"] = "2"


def attention_image_outside(spec):
    spec["attention_images"] = [0, 12]


def threshold_outside(spec):
    spec["attention_threshold"] = 1.5


def bad_url(spec):
    spec["completion_url"] = "not a url"


def long_consent_version(spec):
    spec["consent_version"] = "v" * 51


def unknown_kind(spec):
    spec["kind"] = "eyetracking"


def hidden_dataset(spec):
    """A data set of another researcher, not shared: refused as if it did not exist."""
    other = small_dataset(name="Low contrast", n=2)
    Dataset.objects.filter(pk=other.pk).update(shared_with_lab=False, owner=researcher("mallory"))
    spec["dataset"] = other.name


def hidden_model(spec):
    ModelSpec.objects.filter(architecture="classical-v2").update(
        shared_with_lab=False, owner=researcher("mallory")
    )


BAD = [
    (bad_dataset, "dataset", "no data set named 'no such data' that you can use"),
    (wrong_kind_model, "model", "is a classifier model; a prompting study needs"),
    (unknown_model, "model", "no model with id 'sam-vit_b-000000000000'"),
    (unknown_option, "protocol.show_colours", "has no option 'show_colours'"),
    (bad_option_value, "protocol.show_score", "true or false"),
    (option_of_another_kind, "protocol.overlay", "has no option 'overlay'"),
    (bad_practice_image, "protocol.practice_image", "99"),
    (bad_arm_option, "design.arms[1].options.show_score", "true or false"),
    (duplicate_arm_names, "design.arms[1].name", "two arms are named 'score shown'"),
    (empty_arm_list, "design.arms", "non-empty list"),
    (unknown_arm_model, "design.arms[0].model", "no model with id 'classical-v9'"),
    (unknown_key, "colour", "is not a study spec field"),
    (missing_title, "title", "is required"),
    (wrong_format, "format", "intervene-study"),
    (string_for_integer, "annotators_per_image", "must be an integer"),
    (attention_image_outside, "attention_images", "has no image 12"),
    (threshold_outside, "attention_threshold", "between 0 and 1"),
    (bad_url, "completion_url", "not a web address"),
    (long_consent_version, "consent_version", "at most 50 characters"),
    (unknown_kind, "kind", "unknown study kind 'eyetracking'"),
    (hidden_dataset, "dataset", "no data set named 'Low contrast' that you can use"),
    (hidden_model, "design.arms[1].model", "no model with id 'classical-v2'"),
]


@pytest.mark.parametrize("spoil,field,words", BAD, ids=[b[0].__name__ for b in BAD])
def test_a_bad_spec_is_refused_naming_the_field_and_creates_nothing(study, spoil, field, words):
    spec = _spec(study)
    spoil(spec)
    before = Study.objects.count()
    with pytest.raises(SpecError) as caught:
        create_from_spec(spec, owner=researcher("bob"), open_now=True)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ") and words in str(caught.value)
    assert Study.objects.count() == before


def test_a_spec_may_not_be_a_list():
    with pytest.raises(SpecError, match="^spec: must be a JSON object"):
        create_from_spec([], owner=researcher())


# ----------------------------------------------------------------------------- manifests


@pytest.fixture
def exported(tmp_path):
    """A small prompting study with logged sessions, and the manifest of its tidy export."""
    study = prompting_study(n_images=3, participants=2, status="open", show_score=False)
    study.instructions, study.completion_code = "Be quick.", "XYZ"
    study.consent_version, study.assignment_seed, study.images_per_participant = "3", 5, 2
    study.save()
    run_sessions(study, seed=4)
    run_export(study, "tidy", tmp_path / "tidy.zip")
    with zipfile.ZipFile(tmp_path / "tidy.zip") as archive:
        manifest = json.loads(archive.read("manifest.json"))
    return study, manifest


def test_the_manifest_of_a_tidy_export_re_creates_an_equivalent_study(exported):
    study, manifest = exported
    created = create_from_spec(manifest, owner=researcher("bob"))
    assert created.status == "draft" and not created.participants.exists()
    original, again = study_to_spec(study), study_to_spec(created)
    carried = [k for k in FIELDS if k not in NOT_IN_MANIFEST]
    assert {k: again[k] for k in carried} == {k: original[k] for k in carried}
    assert again["protocol"]["show_score"] is False
    # what a manifest cannot carry takes a new study's defaults (documented)
    fresh = study_to_spec(Study(kind="prompting", dataset=study.dataset, model=study.model))
    assert {k: again[k] for k in NOT_IN_MANIFEST} == {k: fresh[k] for k in NOT_IN_MANIFEST}
    assert again["instructions"] == "" and again["completion_code"] == ""


def test_a_manifest_design_keeps_what_a_design_has_and_drops_the_rest(exported):
    study, manifest = exported
    second_segmenter()
    full = manifest["protocol"]
    manifest["design"] = {
        "assignment": "between",
        "seed": 3,
        "block_size": 2,
        "allocated": {"shown": 1, "hidden": 1},  # a manifest's own figures: dropped
        "arms": [
            {
                "name": "shown",
                "options": {"show_score": True},
                "protocol": {**full, "show_score": True},
                "participants": 1,
            },
            {  # an arm written with its full protocol and model only
                "name": "hidden",
                "protocol": {**full, "max_rounds": 1},
                "model": {"model_id": "classical-v2", "name": "classical b"},
            },
        ],
    }
    spec = manifest_to_spec(manifest)
    assert spec["design"]["arms"][1] == {
        "name": "hidden",
        "options": {"max_rounds": 1},
        "model": "classical-v2",
    }
    created = create_from_spec(manifest, owner=study.owner)
    assert created.design == {
        "assignment": "between",
        "seed": 3,
        "block_size": 2,
        "arms": [
            {"name": "shown", "options": {"show_score": True}},
            {"name": "hidden", "options": {"max_rounds": 1}, "model": "classical-v2"},
        ],
    }


def test_a_manifest_naming_a_data_set_the_owner_cannot_use_is_refused(exported):
    study, manifest = exported
    Dataset.objects.filter(pk=study.dataset_id).update(
        shared_with_lab=False, owner=researcher("alice")
    )
    before = Study.objects.count()
    with pytest.raises(SpecError, match="^dataset: no data set named"):
        create_from_spec(manifest, owner=researcher("mallory"))
    assert Study.objects.count() == before


# ----------------------------------------------------------------------------- commands


def test_study_spec_command_prints_the_spec(study):
    out = io.StringIO()
    call_command("study_spec", study.pk, stdout=out)
    text = out.getvalue()
    assert json.loads(text) == study_to_spec(study)
    assert text.startswith('{\n  "format": "intervene-study",\n  "version": 1,\n  "title"')
    with pytest.raises(CommandError, match="no study with id 98765"):
        call_command("study_spec", 98765)


def test_create_study_command_creates_and_opens(study, tmp_path):
    researcher("bob")
    path = tmp_path / "study.json"
    out = io.StringIO()
    call_command("study_spec", study.pk, stdout=out)
    path.write_text(out.getvalue(), encoding="utf-8")
    printed = io.StringIO()
    call_command("create_study", str(path), "--owner", "bob", stdout=printed)
    created = Study.objects.get(pk=int(printed.getvalue()))
    assert created.owner.username == "bob" and created.status == "draft"
    assert study_to_spec(created) == study_to_spec(study)
    printed = io.StringIO()
    call_command("create_study", str(path), "--open", "--owner", "bob", stdout=printed)
    assert Study.objects.get(pk=int(printed.getvalue())).status == "open"


def test_create_study_owner_is_the_only_superuser_else_asks_for_owner(study, tmp_path):
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study_to_spec(study)), encoding="utf-8")
    before = Study.objects.count()
    with pytest.raises(CommandError, match="--owner USERNAME"):
        call_command("create_study", str(path))
    with pytest.raises(CommandError, match="--owner: no account is called 'nobody'"):
        call_command("create_study", str(path), "--owner", "nobody")
    User = get_user_model()
    root = User.objects.create_superuser("root", password="pw-root")
    printed = io.StringIO()
    call_command("create_study", str(path), stdout=printed)
    assert Study.objects.get(pk=int(printed.getvalue())).owner == root
    User.objects.create_superuser("root2", password="pw-root2")
    with pytest.raises(CommandError, match="several superusers"):
        call_command("create_study", str(path))
    assert Study.objects.count() == before + 1


def test_create_study_command_refuses_a_bad_spec_with_its_message(study, tmp_path):
    researcher("bob")
    spec = _spec(study)
    spec["protocol"]["show_score"] = "yes"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    before = Study.objects.count()
    with pytest.raises(CommandError, match="protocol.show_score: protocol option show_score"):
        call_command("create_study", str(path), "--owner", "bob", "--open")
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(CommandError, match="is not a JSON document"):
        call_command("create_study", str(path), "--owner", "bob")
    with pytest.raises(CommandError, match="cannot read"):
        call_command("create_study", str(tmp_path / "missing.json"), "--owner", "bob")
    assert Study.objects.count() == before


# ----------------------------------------------------------------------------- download


def test_the_study_page_links_the_download_and_only_its_researchers_get_it(client, study):
    url = f"/studies/{study.pk}/spec.json"
    answer = client.get(url)
    assert answer.status_code == 302 and "/accounts/login/" in answer["Location"]
    client.force_login(researcher("mallory"))
    assert client.get(url).status_code == 404
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="study-spec"' in page and f'href="{url}"' in page
    answer = client.get(url)
    assert answer.status_code == 200 and answer["Content-Type"].startswith("application/json")
    assert answer["Content-Disposition"] == f'attachment; filename="study-{study.pk}-spec.json"'
    assert json.loads(answer.content) == study_to_spec(study)
    colleague = researcher("bob")
    study.collaborators.add(colleague)
    client.force_login(colleague)
    assert client.get(url).status_code == 200
    assert classical_spec().model_id == json.loads(answer.content)["model"]
