"""Building blocks for the intervention tests: classifier specs and an intervention study."""

from __future__ import annotations

import hashlib
from pathlib import Path

from studies.core.enrolment import enrol_participant
from studies.models import ModelSpec, Study
from tests.factories import researcher, small_dataset

ROOT = Path(__file__).resolve().parent.parent
DEMO_WEIGHTS = ROOT / "interventions" / "weights" / "demo_cnn.pt"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def random_demo_weights(directory: Path, seed: int = 0) -> Path:
    """An untrained demo CNN (seeded init) saved as a state dict: fast and independent of the
    committed weights, for API tests where only the plumbing matters."""
    import torch

    from interventions.models import build_demo_cnn

    path = directory / f"demo_random_{seed}.pt"
    if not path.exists():
        torch.manual_seed(seed)
        torch.save(build_demo_cnn().state_dict(), path)
    return path


def classifier_spec(weights: Path, name: str = "demo cnn") -> ModelSpec:
    from interventions.demo_data import CLASS_NAMES
    from interventions.models import DEMO_INPUT_SIZE, DEMO_MEAN, DEMO_STD, DEMO_TARGET_LAYER

    sha = _sha(weights)
    spec, _ = ModelSpec.objects.get_or_create(
        name=f"{name} {sha[:12]}",
        defaults={
            "kind": "classifier",
            "architecture": "demo",
            "weights_path": str(weights),
            "weights_sha256": sha,
            "class_names": list(CLASS_NAMES),
            "input_size": DEMO_INPUT_SIZE,
            "mean": list(DEMO_MEAN),
            "std": list(DEMO_STD),
            "target_layer": DEMO_TARGET_LAYER,
            "shared_with_lab": True,  # as every model spec was before owners (issue 25)
        },
    )
    return spec


def intervention_study(
    spec: ModelSpec, n_images: int = 2, participants: int = 1, **protocol
) -> Study:
    study = Study.objects.create(
        kind="intervention",
        title="intervention test study",
        dataset=small_dataset(n=n_images),
        model=spec,
        owner=researcher(),
        status="open",
        protocol=dict(protocol),
        survey_question="Did the model look at the object?",
    )
    for _ in range(participants):
        enrol_participant(study)
    return study
