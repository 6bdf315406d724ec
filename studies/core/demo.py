"""The demo: generated data sets, a researcher, open studies with participants (seed_demo)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from studies.core.datasets import create_dataset
from studies.core.enrolment import enrol_participant
from studies.core.sharing import give_owner
from studies.models import Dataset, ModelSpec, Study

DEMO_USERNAME = "researcher"
DEMO_PASSWORD = "intervene-demo"
DEMO_IMAGES = 24
DEMO_SEED = 0
PARTICIPANTS_PER_STUDY = 3


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def demo_dataset(name: str, n: int = DEMO_IMAGES, seed: int = DEMO_SEED) -> Dataset:
    """The generated data set `name`, created on first use (deterministic from the seed)."""
    from interventions.demo_data import generate_scene

    existing = Dataset.objects.filter(name=name).first()
    if existing is not None:
        return existing
    scenes = (generate_scene(name, i, seed=seed) for i in range(n))
    return create_dataset(
        name,
        ((s.image, s.mask, s.label, s.class_name) for s in scenes),
        source="generated",
        seed=seed,
        description=f"Procedural demo scenes '{name}', seed {seed}, {n} images.",
    )


def segmentation_spec() -> tuple[ModelSpec, str]:
    """SAM when SAM_CHECKPOINT points to a file, else the classical backend; says which."""
    checkpoint = settings.SAM_CHECKPOINT
    if checkpoint:
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"SAM_CHECKPOINT={checkpoint} is not a file")
        sha = file_sha256(checkpoint)
        arch = settings.SAM_MODEL_TYPE
        spec, _ = ModelSpec.objects.get_or_create(
            name=f"SAM {arch} ({sha[:12]})",
            defaults={
                "kind": "sam",
                "architecture": arch,
                "weights_path": str(checkpoint),
                "weights_sha256": sha,
            },
        )
        return spec, f"SAM {arch} from {checkpoint}"
    spec, _ = ModelSpec.objects.get_or_create(
        name="Classical point-seeded segmenter",
        defaults={"kind": "classical", "architecture": "classical-v1"},
    )
    return spec, "classical point-seeded segmenter (no SAM_CHECKPOINT set)"


@transaction.atomic
def seed_demo(base_url: str = "http://127.0.0.1:8000", password: str = DEMO_PASSWORD) -> dict:
    """Create (or find) the demo and return the JSON of docs/design.md. The researcher account
    is created with `password` (the published demo password unless given); an account that
    exists keeps its password, and the JSON then says `password: null`."""
    from interventions.demo_data import DATASETS

    User = get_user_model()
    researcher = User.objects.filter(username=DEMO_USERNAME).first()
    shown_password: str | None = DEMO_PASSWORD if password == DEMO_PASSWORD else None
    if researcher is None:
        researcher = User.objects.create_user(
            DEMO_USERNAME, password=password, is_staff=True, is_superuser=True
        )
        shown_password = password
    spec, backend_note = segmentation_spec()
    give_owner(spec, researcher)
    studies = []
    for name in DATASETS:
        dataset = demo_dataset(name)
        give_owner(dataset, researcher)  # the demo researcher's (one without an owner)
        title = f"Prompting: {name}"
        study, _ = Study.objects.get_or_create(
            title=title,
            owner=researcher,
            defaults={
                "kind": "prompting",
                "dataset": dataset,
                "model": spec,
                "status": "open",
                "instructions": (
                    "Place green points on the object outlined in the ground truth and red points on "
                    "what is not the object. After each click the model shows its mask and the IoU "
                    "score. Keys: g green, r red, space clears the points, z toggles the marker size."
                ),
                "completion_code": "INTERVENE-DEMO",
            },
        )
        if (
            study.model_id != spec.pk
            and not study.participants.filter(assignments__events__isnull=False).exists()
        ):
            study.model = spec
            study.save(update_fields=["model"])
        studies.append(study)
    studies.extend(extra_demo_studies(researcher))
    studies.append(demo_experiment(researcher, spec, studies[0].dataset))
    out = []
    for study in studies:
        while study.participants.count() < PARTICIPANTS_PER_STUDY:
            enrol_participant(study)
        out.append(
            {
                "id": study.pk,
                "kind": study.kind,
                "title": study.title,
                "dataset": study.dataset.name,
                "model": study.model.name,
                "participants": [
                    {
                        "code": p.code,
                        "token": p.token,
                        "join_url": f"{base_url}/s/{study.pk}/join?t={p.token}",
                    }
                    for p in study.participants.order_by("number")
                ],
            }
        )
    return {
        "researcher": {"username": DEMO_USERNAME, "password": shown_password},
        "segmentation_backend": backend_note,
        "researcher_url": f"{base_url}/studies/",
        "studies": out,
    }


EXPERIMENT_TITLE = "Experiment: does showing the score change prompting?"
EXPERIMENT_DESIGN = {
    "assignment": "between",
    "seed": 1,
    "block_size": 4,
    "arms": [
        {"name": "score shown", "options": {"show_score": True}},
        {"name": "score hidden", "options": {"show_score": False}},
    ],
}


def demo_experiment(researcher, spec: ModelSpec, dataset: Dataset) -> Study:
    """A two-arm experiment (docs/experiments.md): each participant is randomised at consent to
    see the IoU score or not."""
    from studies.core.design import model_kinds_by_id, validate_design
    from studies.core.kinds import get_kind

    study, _ = Study.objects.get_or_create(
        title=EXPERIMENT_TITLE,
        owner=researcher,
        defaults={
            "kind": "prompting",
            "dataset": dataset,
            "model": spec,
            "status": "open",
            "design": validate_design(
                get_kind("prompting"), EXPERIMENT_DESIGN, models=model_kinds_by_id([spec])
            ),
            "instructions": (
                "Place green points on the object outlined in the ground truth and red points "
                "on what is not the object; the model answers each click with its mask."
            ),
            "completion_code": "INTERVENE-DEMO",
        },
    )
    return study


# --- Intervention demo (issue 6) ----------------------------------------------------------

DEMO_CLASSIFIER_WEIGHTS = "interventions/weights/demo_cnn.pt"  # relative to the project root
INTERVENTION_DATASET = "Clean shapes"
INTERVENTION_TITLE = "Intervention: Clean shapes"
INTERVENTION_IMAGES_PER_PARTICIPANT = 6


def demo_classifier_spec() -> ModelSpec:
    """The committed demo CNN as a ModelSpec (kind classifier, architecture demo, weights sha256)."""
    from interventions.demo_data import CLASS_NAMES
    from interventions.models import DEMO_INPUT_SIZE, DEMO_MEAN, DEMO_STD, DEMO_TARGET_LAYER

    path = Path(settings.BASE_DIR) / DEMO_CLASSIFIER_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"the demo classifier's weights are missing: {path}")
    sha = file_sha256(path)
    spec, _ = ModelSpec.objects.get_or_create(
        name=f"Demo CNN ({sha[:12]})",
        defaults={
            "kind": "classifier",
            "architecture": "demo",
            "weights_path": DEMO_CLASSIFIER_WEIGHTS,
            "weights_sha256": sha,
            "class_names": list(CLASS_NAMES),
            "input_size": DEMO_INPUT_SIZE,
            "mean": list(DEMO_MEAN),
            "std": list(DEMO_STD),
            "target_layer": DEMO_TARGET_LAYER,
        },
    )
    return spec


def extra_demo_studies(researcher) -> list[Study]:
    """An open intervention study on the generated scenes with the demo classifier: smallest
    deletion that flips the prediction, zero substrate, Grad-CAM shown, ground truth outlined.
    Its per-image analyses are queued (eager in the embedded default) when it is created."""
    from studies.intervention.precompute import start_image_analyses

    if not (Path(settings.BASE_DIR) / DEMO_CLASSIFIER_WEIGHTS).is_file():
        import logging

        logging.getLogger(__name__).warning(
            "no intervention demo: %s is missing (train it with the science library's command)",
            DEMO_CLASSIFIER_WEIGHTS,
        )
        return []
    spec = demo_classifier_spec()
    give_owner(spec, researcher)
    dataset = demo_dataset(INTERVENTION_DATASET)
    give_owner(dataset, researcher)
    study, created = Study.objects.get_or_create(
        title=INTERVENTION_TITLE,
        owner=researcher,
        defaults={
            "kind": "intervention",
            "dataset": dataset,
            "model": spec,
            "status": "open",
            "protocol": {
                "show_ground_truth": True,
                "show_top5": True,
                "substrate": "zero",
                "goal": "flip",
                "overlay": "gradcam",
            },
            "images_per_participant": INTERVENTION_IMAGES_PER_PARTICIPANT,
            "instructions": (
                "Paint a region of the image with the brush, rectangle or polygon (the eraser takes "
                "pixels away), then apply: Delete replaces the region by the grey substrate, Insert "
                "shows only the region. Goal: find the smallest deletion that changes the model's "
                "prediction. The model's top-5 and its Grad-CAM explanation are shown."
            ),
            "survey_question": "Did the model look at the object to make its prediction?",
            "completion_code": "INTERVENE-DEMO",
        },
    )
    if created or not study.jobs.filter(kind="precompute").exists():
        start_image_analyses(study)
    return [study]
