"""manifest.json: what makes an export reproducible (docs/design.md "Exports").

Study, the full protocol (defaults filled in), the models with their weight hashes, the code
version, counts, the time of export, the coordinate convention and the sha256 of every other
file in the archive. Written last, streamed: the file list comes from the archive's spool.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from studies.core.exports.archive import ExportArchive
from studies.core.exports.tables import CSV_CELLS_NOTE
from studies.core.kinds import full_protocol
from studies.models import Assignment, BaselineResult, Study

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

COORDINATES = {
    "points": "(x, y) = (column, row) in image pixels, origin top-left",
    "pointprompt_points": (
        "int64 (n x 2) arrays: floor of the clicked (x, y), i.e. the index of the pixel the "
        "click fell in; the tidy tables keep the exact float coordinates"
    ),
    "rounds_pointprompt": "0-based (the database and the tidy tables count rounds from 1)",
    "masks_png": "8-bit, 0 = background, 255 = object",
    "rle": "COCO compressed RLE, column-major, size [height, width] (pycocotools)",
}


@lru_cache(maxsize=1)
def code_version() -> str:
    """`git describe --always --dirty` of the checkout, else the installed package version."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=Path(settings.BASE_DIR),
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        if described:
            return f"git:{described}"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"intervene=={metadata.version('intervene')}"
    except metadata.PackageNotFoundError:
        return "unknown"


def study_block(study: Study) -> dict:
    return {
        "id": study.pk,
        "kind": study.kind,
        "title": study.title,
        "status": study.status,
        "dataset": {
            "name": study.dataset.name,
            "source": study.dataset.source,
            "images": study.dataset.images.count(),
        },
        "annotators_per_image": study.annotators_per_image,
        "images_per_participant": study.images_per_participant,
        "assignment_seed": study.assignment_seed,
        "consent_version": study.consent_version,
        "survey_question": study.survey_question,
        "created_at": study.created_at.isoformat() if study.created_at else None,
        "opened_at": study.opened_at.isoformat() if study.opened_at else None,
        "closed_at": study.closed_at.isoformat() if study.closed_at else None,
    }


def models_block(study: Study) -> list[dict]:
    spec = study.model
    used = sorted(
        set(study.participants.values_list("assignments__events__model_id", flat=True).distinct())
        - {None, ""}
    )
    baseline_models = sorted(
        set(BaselineResult.objects.filter(study=study).values_list("model_id", flat=True)) - {""}
    )
    return [
        {
            "role": "study model",
            "name": spec.name,
            "kind": spec.kind,
            "architecture": spec.architecture,
            "model_id": spec.model_id,
            "weights_file": Path(spec.weights_path).name if spec.weights_path else None,
            "weights_sha256": spec.weights_sha256 or None,
            "model_ids_in_log": used,
            "model_ids_in_baselines": baseline_models,
        }
    ]


def practice_block(study: Study, included: bool) -> dict | None:
    """The manifest's `practice` block: how many practice assignments the study has and how
    many this archive left out (all of them, unless `include_practice`). None for a study whose
    protocol predates the practice_image option and has no practice assignment (its manifest
    keeps its bytes)."""
    n = Assignment.objects.filter(participant__study=study, practice=True).count()
    if not n and "practice_image" not in full_protocol(study):
        return None
    return {"assignments": n, "excluded_assignments": 0 if included else n, "included": included}


def baselines_block(study: Study) -> dict:
    """`baseline_definitions` (which strategy definitions and count sources made the study's
    stored automated baselines); absent when it has none."""
    from studies.prompting.baselines import definitions_used

    return definitions_used(study)


def design_block(study: Study) -> dict:
    """The manifest's `design` (docs/experiments.md): the method, seed and block size, every
    arm's overrides, full protocol, model and target, and the randomisation log (each
    allocated participant in consent order: arm, block, slot; within: the arm order), plus,
    within participants, the arm of every assignment. {} for a study without a design (its
    manifest keeps its bytes)."""
    from studies.core import design

    if not design.has_design(study):
        return {}
    arms = []
    for arm in design.arms(study):
        spec = design.study_view(study, arm.name).model
        arms.append(
            {
                "name": arm.name,
                "options": arm.options,
                "target": arm.target,
                "protocol": design.arm_protocol(study, arm),
                "model": {
                    "name": spec.name,
                    "model_id": spec.model_id,
                    "weights_sha256": spec.weights_sha256 or None,
                },
                "participants": study.participants.filter(
                    **({"arm": arm.name} if design.method(study) == "between" else {})
                )
                .exclude(consented_at=None)
                .count(),
            }
        )
    log = [
        {
            "sequence": row["sequence"],
            "participant": row["participant__code"],
            "arm": row["arm"],
            "block": row["block"],
            "slot": row["slot"],
            **({"arm_order": row["arm_order"]} if design.method(study) == "within" else {}),
            "at": row["created_at"].isoformat(),
        }
        for row in study.allocations.order_by("sequence").values(
            "sequence", "participant__code", "arm", "block", "slot", "arm_order", "created_at"
        )
    ]
    block = {
        "assignment": study.design["assignment"],
        "seed": study.design["seed"],
        "block_size": study.design["block_size"],
        "method_note": design.METHOD_NOTES[study.design["assignment"]],
        "arms": arms,
        "allocation": log,
    }
    if design.method(study) == "within":
        block["assignment_arms"] = [
            [code, index, arm]
            for code, index, arm in Assignment.objects.real()
            .filter(participant__study=study)
            .order_by("participant__number", "order")
            .values_list("participant__code", "image__index", "arm")
        ]
    return {"design": block}


WORKING_COPY_NOTE = (
    "points and masks are in the working copy's pixels (width x height below); an image scaled "
    "from a larger original maps back by x_original = x * original_width / width and "
    "y_original = y * original_height / height (pixel edges, origin top-left)"
)


def images_block(study: Study) -> dict:
    """The manifest's `images` list (index, the researcher's file names, sizes in pixels, scale)
    for data sets imported from files; {} for others, whose manifests keep their bytes."""
    from studies.core.image_names import has_provenance, image_rows

    if not has_provenance(study.dataset):
        return {}
    return {"images": {"note": WORKING_COPY_NOTE, "rows": list(image_rows(study.dataset))}}


_PLAIN_NAME = re.compile(r"[ -~]*")  # printable ASCII: json.dumps writes it as it is


def _file_entry(name: str, sha: str, size: int) -> str:
    """`"name": {"sha256": ..., "bytes": ...}` as json.dumps writes it (a PointPrompt-size
    export lists 1.8 million files: the generic encoder was a tenth of its time)."""
    if _PLAIN_NAME.fullmatch(name) and '"' not in name and "\\" not in name and type(size) is int:
        if _PLAIN_NAME.fullmatch(sha) and '"' not in sha and "\\" not in sha:
            return f'"{name}": {{"sha256": "{sha}", "bytes": {size}}}'
    return json.dumps(name) + ": " + json.dumps({"sha256": sha, "bytes": size})


def write_manifest(
    archive: ExportArchive, study: Study, fmt: str, counts: dict, extra: dict | None = None
) -> dict:
    """Write manifest.json as the archive's last entry; return its head (without the file list)."""
    head = {
        "manifest_version": MANIFEST_VERSION,
        "format": fmt,
        "exported_at": timezone.now().isoformat(),
        "code_version": code_version(),
        "study": study_block(study),
        "protocol": full_protocol(study),
        "models": models_block(study),
        "coordinates": COORDINATES,
        "counts": {**counts, "files": archive.count},
        "csv_cells": CSV_CELLS_NOTE,
        **baselines_block(study),
        **images_block(study),
        **design_block(study),
        **(extra or {}),
    }
    with archive.open_text(MANIFEST_NAME) as out:
        body = json.dumps(head, indent=2, sort_keys=False)
        out.write(body[:-2] + ',\n  "files": {')  # keep the head readable, stream the file list
        first = True
        for name, sha, size in archive.files():
            if name == MANIFEST_NAME:
                continue
            out.write(("\n    " if first else ",\n    ") + _file_entry(name, sha, size))
            first = False
        out.write("\n  }\n}\n")
    return head
