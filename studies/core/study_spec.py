"""A whole study as one JSON document, and back (docs/researchers.md "A study as a file").

`study_to_spec(study)` writes what a researcher sets up: the texts, the kind, the data set by
name, the model by its `model_id`, every protocol option of the kind (the value the study runs
with), the design (Study.design) and the recruitment settings. `create_from_spec(spec, owner=)`
makes a draft study from such a document, or from an export's manifest.json ("run this study
again", `manifest_to_spec`), after checking it as the study form checks a new study: the kind's
options (`StudyKind.validate_protocol`), the data set and model the owner may use
(studies/core/sharing.py), the model's kind and `StudyKind.fit_problem`, the practice and
attention-check images, the design (`validate_design`). A refused document raises `SpecError`,
whose message starts with the field at fault (`protocol.show_score: ...`), and nothing is
created.

Round trips are exact: `study_to_spec(create_from_spec(study_to_spec(s)))` equals
`study_to_spec(s)`. Owner, collaborators, status and the study's rows (participants, logs)
are not part of a spec.
"""

from __future__ import annotations

import copy
import json
import math

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from studies.core.design import DesignError, model_kinds_by_id, run_on_open, validate_design
from studies.core.kinds import ProtocolError, StudyKind, get_kind
from studies.core.sharing import visible_datasets, visible_models
from studies.core.workspace_options import check_practice_image
from studies.models import Dataset, ModelSpec, Study

FORMAT = "intervene-study"
VERSION = 1

# Every field of a spec, in the order study_to_spec writes them.
TEXT_FIELDS = ("title", "instructions", "consent_text", "consent_version", "survey_question")
RECRUITMENT_FIELDS = (
    "annotators_per_image",
    "images_per_participant",
    "assignment_seed",
    "allow_public_join",
    "max_participants",
    "completion_code",
    "completion_url",
    "attention_images",
    "attention_threshold",
)
FIELDS = (
    "format",
    "version",
    "title",
    "kind",
    "dataset",
    "model",
    "instructions",
    "consent_text",
    "consent_version",
    "survey_question",
    "protocol",
    "design",
    *RECRUITMENT_FIELDS,
)
REQUIRED = ("format", "version", "title", "kind", "dataset", "model")

# What a manifest (studies/core/exports/manifest.py) cannot carry: these take the defaults of a
# new study (Study's field defaults) when a manifest is turned into a spec.
NOT_IN_MANIFEST = (
    "instructions",
    "consent_text",
    "allow_public_join",
    "max_participants",
    "completion_code",
    "completion_url",
    "attention_images",
    "attention_threshold",
)
DESIGN_FIELDS = ("assignment", "seed", "block_size", "arms")
ARM_FIELDS = ("name", "options", "target", "model")


class SpecError(ValueError):
    """A study spec the platform refuses; `field` names the part at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


# ----------------------------------------------------------------------------- study -> spec


def study_to_spec(study: Study) -> dict:
    """The study as a spec (a JSON-ready dict, keys in `FIELDS` order)."""
    kind = study.kind_spec
    return {
        "format": FORMAT,
        "version": VERSION,
        "title": study.title,
        "kind": study.kind,
        "dataset": study.dataset.name,
        "model": study.model.model_id,
        "instructions": study.instructions,
        "consent_text": study.consent_text,
        "consent_version": study.consent_version,
        "survey_question": study.survey_question,
        # every option of the kind, as the study runs with it (a stored protocol that predates
        # an option runs with its default: Study.option)
        "protocol": {name: study.option(name) for name in kind.options},
        "design": copy.deepcopy(study.design or {}),
        "annotators_per_image": study.annotators_per_image,
        "images_per_participant": study.images_per_participant,
        "assignment_seed": study.assignment_seed,
        "allow_public_join": study.allow_public_join,
        "max_participants": study.max_participants,
        "completion_code": study.completion_code,
        "completion_url": study.completion_url,
        "attention_images": list(study.attention_images or []),
        "attention_threshold": study.attention_threshold,
    }


def spec_json(spec: dict) -> str:
    """The spec as its file holds it: indented, keys in the spec's order, one final newline."""
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------- manifest -> spec


def is_manifest(document) -> bool:
    """An export's manifest.json (it has a manifest_version and a study block)."""
    return isinstance(document, dict) and "manifest_version" in document and "study" in document


def manifest_to_spec(manifest: dict) -> dict:
    """The spec of the study an export's manifest describes ("run this study again").

    A manifest carries the title, kind, data set name, study model, protocol, design, consent
    version, survey question, annotators and images per participant and the assignment seed.
    It lacks the instructions, the consent text and the rest of the recruitment settings
    (`NOT_IN_MANIFEST`): those get a new study's defaults. Keys of a design or an arm that a
    spec does not have (a manifest may add each arm's full protocol) are dropped; an arm's
    options are taken from `options`, else from the arm's full `protocol` where it differs
    from the study's."""
    block = manifest.get("study")
    if not isinstance(block, dict):
        raise SpecError("study", "a manifest's study block must be an object")
    dataset = block.get("dataset")
    dataset_name = dataset.get("name") if isinstance(dataset, dict) else dataset
    models = manifest.get("models") or []
    if not isinstance(models, list):
        raise SpecError("models", "a manifest's models must be a list")
    study_model = next(
        (m for m in models if isinstance(m, dict) and m.get("role") == "study model"),
        next((m for m in models if isinstance(m, dict)), None),
    )
    if study_model is None:
        raise SpecError("models", "the manifest names no study model")
    protocol = manifest.get("protocol") or {}
    spec = {
        "format": FORMAT,
        "version": VERSION,
        "title": block.get("title"),
        "kind": block.get("kind"),
        "dataset": dataset_name,
        "model": study_model.get("model_id"),
        "protocol": protocol,
        "design": _manifest_design(manifest.get("design"), protocol),
    }
    for name in (
        "consent_version",
        "survey_question",
        "annotators_per_image",
        "images_per_participant",
        "assignment_seed",
    ):
        if name in block:
            spec[name] = block[name]
    return spec


def _manifest_design(design, protocol) -> dict:
    if not isinstance(design, dict) or not design.get("arms"):
        return {}
    protocol = protocol if isinstance(protocol, dict) else {}
    out = {k: design[k] for k in DESIGN_FIELDS if k in design}
    arms = []
    for arm in design["arms"] if isinstance(design["arms"], list) else []:
        if not isinstance(arm, dict):
            arms.append(arm)  # refused by validation, with the arm named
            continue
        kept = {k: arm[k] for k in ARM_FIELDS if k in arm}
        if "options" not in kept and isinstance(arm.get("protocol"), dict):
            kept["options"] = {k: v for k, v in arm["protocol"].items() if protocol.get(k) != v}
        if isinstance(kept.get("model"), dict):  # {"model_id": ..., "name": ...}
            kept["model"] = kept["model"].get("model_id")
        arms.append(kept)
    out["arms"] = arms
    return out


# ----------------------------------------------------------------------------- validation


def _string(spec: dict, name: str, *, required: bool = False) -> str:
    value = spec.get(name, "")
    if not isinstance(value, str):
        raise SpecError(name, f"must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise SpecError(name, "is required")
    limit = Study._meta.get_field(name).max_length
    if limit and len(value) > limit:
        raise SpecError(name, f"at most {limit} characters (got {len(value)})")
    return value


def _integer(spec: dict, name: str, minimum: int | None, *, nullable: bool = False):
    value = spec[name]
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an integer or null" if nullable else "an integer"
        raise SpecError(name, f"must be {kind}, not {json.dumps(value)}")
    if minimum is not None and value < minimum:
        raise SpecError(name, f"must be >= {minimum} (got {value})")
    return value


def _kind(spec: dict) -> StudyKind:
    name = spec["kind"]
    if not isinstance(name, str):
        raise SpecError("kind", "must be a string (a study kind's name)")
    try:
        return get_kind(name)
    except ProtocolError as exc:
        raise SpecError("kind", str(exc)) from None


def _dataset(spec: dict, owner) -> Dataset:
    name = spec["dataset"]
    if not isinstance(name, str) or not name:
        raise SpecError("dataset", "must be a data set's name")
    # another researcher's data set reads as missing: a spec learns nothing about it
    found = visible_datasets(owner).filter(name=name).first()
    if found is None:
        raise SpecError("dataset", f"no data set named {name!r} that you can use")
    return found


def _usable_models(owner) -> list[ModelSpec]:
    return list(visible_models(owner).order_by("pk"))


def _model(spec: dict, kind: StudyKind, usable: list[ModelSpec]) -> ModelSpec:
    model_id = spec["model"]
    if not isinstance(model_id, str) or not model_id:
        raise SpecError("model", "must be a model id (e.g. classical-v1, sam-vit_b-<sha12>)")
    named = [m for m in usable if m.model_id == model_id]
    if not named:
        raise SpecError("model", f"no model with id {model_id!r} that you can use")
    fitting = [m for m in named if m.kind in kind.model_kinds]
    if not fitting:
        raise SpecError(
            "model",
            f"{model_id!r} is a {named[0].kind} model; a {kind.name} study needs a model of "
            f"kind {' or '.join(kind.model_kinds)}",
        )
    return fitting[0]  # several specs with one id: the first, as design.model_for picks


def _protocol(spec: dict, kind: StudyKind, dataset: Dataset) -> dict:
    options = spec.get("protocol", {})
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise SpecError("protocol", "must be an object of protocol options")
    for name, value in options.items():
        option = kind.options.get(name)
        if option is None:
            raise SpecError(f"protocol.{name}", f"a {kind.name} study has no option {name!r}")
        try:
            option.check(name, value)
        except ProtocolError as exc:
            raise SpecError(f"protocol.{name}", str(exc)) from None
    try:
        protocol = kind.validate_protocol(options)
    except ProtocolError as exc:
        raise SpecError("protocol", str(exc)) from None
    try:  # the practice image must be an image of the study's data set (as the form checks)
        check_practice_image(dataset, protocol.get("practice_image"))
    except ProtocolError as exc:
        raise SpecError("protocol.practice_image", str(exc)) from None
    return protocol


def _design(spec, kind, dataset, usable, seed) -> dict:
    fitting = [m for m in usable if m.kind in kind.model_kinds]
    try:
        design = validate_design(
            kind,
            {} if spec.get("design") is None else spec["design"],
            models=model_kinds_by_id(reversed(usable)),  # the first spec of an id wins
            default_seed=seed,
        )
    except DesignError as exc:
        raise SpecError(exc.field, exc.reason) from None
    for i, arm in enumerate(design.get("arms", [])):
        where = f"design.arms[{i}]"
        practice = arm["options"].get("practice_image")
        try:
            check_practice_image(dataset, practice)
        except ProtocolError as exc:
            raise SpecError(f"{where}.options.practice_image", str(exc)) from None
        if arm.get("model"):
            model = next(m for m in fitting if m.model_id == arm["model"])
            problem = kind.fit_problem(dataset, model)
            if problem:
                raise SpecError(f"{where}.model", problem[1])
    return design


def _attention(spec: dict, dataset: Dataset) -> tuple[list[int], float]:
    images = spec["attention_images"]
    if not isinstance(images, list) or any(
        isinstance(i, bool) or not isinstance(i, int) for i in images
    ):
        raise SpecError("attention_images", "must be a list of image indices (integers)")
    indices = sorted(set(images))
    if indices:
        known = set(dataset.images.filter(index__in=indices).values_list("index", flat=True))
        missing = [i for i in indices if i not in known]
        if missing:
            raise SpecError(
                "attention_images", f"{dataset.name} has no image {', '.join(map(str, missing))}"
            )
    threshold = spec["attention_threshold"]
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
        or not 0.0 <= threshold <= 1.0
    ):
        raise SpecError("attention_threshold", "must be an IoU between 0 and 1")
    return indices, float(threshold)


def _defaults() -> dict:
    """A new study's values of the optional fields (Study's field defaults)."""
    out = {}
    for name in (*TEXT_FIELDS[1:], *RECRUITMENT_FIELDS):
        field = Study._meta.get_field(name)
        out[name] = field.get_default()
    return out


def check_spec(spec, *, owner) -> dict:
    """The field values of the study `spec` describes (a manifest is mapped first), checked
    as the study form checks a new study; SpecError naming the field when refused. Reads only."""
    if is_manifest(spec):
        spec = manifest_to_spec(spec)
    if not isinstance(spec, dict):
        raise SpecError("spec", "must be a JSON object (a study spec or an export's manifest)")
    unknown = [k for k in spec if k not in FIELDS]
    if unknown:
        raise SpecError(unknown[0], f"is not a study spec field (expected {', '.join(FIELDS)})")
    missing = [k for k in REQUIRED if k not in spec]
    if missing:
        raise SpecError(missing[0], "is required")
    if spec["format"] != FORMAT:
        raise SpecError("format", f"must be {FORMAT!r} (got {json.dumps(spec['format'])})")
    if spec["version"] != VERSION:
        raise SpecError("version", f"this site reads version {VERSION} (got {spec['version']!r})")
    spec = {**_defaults(), **spec}
    values = {name: _string(spec, name) for name in TEXT_FIELDS}
    _string(spec, "title", required=True)
    _string(spec, "consent_version", required=True)
    kind = _kind(spec)
    dataset = _dataset(spec, owner)
    usable = _usable_models(owner)
    model = _model(spec, kind, usable)
    problem = kind.fit_problem(dataset, model)
    if problem:
        raise SpecError(problem[0], problem[1])
    protocol = _protocol(spec, kind, dataset)
    values["annotators_per_image"] = _integer(spec, "annotators_per_image", 0)
    values["images_per_participant"] = _integer(spec, "images_per_participant", 0, nullable=True)
    values["assignment_seed"] = _integer(spec, "assignment_seed", None)
    values["max_participants"] = _integer(spec, "max_participants", 0)
    if not isinstance(spec["allow_public_join"], bool):
        raise SpecError("allow_public_join", "must be true or false")
    values["allow_public_join"] = spec["allow_public_join"]
    values["completion_code"] = _string(spec, "completion_code")
    url = _string(spec, "completion_url")
    if url:
        try:
            URLValidator()(url)
        except ValidationError:
            raise SpecError("completion_url", f"{url!r} is not a web address") from None
    values["completion_url"] = url
    values["attention_images"], values["attention_threshold"] = _attention(spec, dataset)
    values["design"] = _design(spec, kind, dataset, usable, values["assignment_seed"])
    values.update(kind=kind.name, dataset=dataset, model=model, protocol=protocol)
    return values


# ----------------------------------------------------------------------------- spec -> study


def create_from_spec(spec, *, owner, open_now: bool = False) -> Study:
    """A new draft study owned by `owner` from a spec (or an export's manifest); with
    `open_now`, opened as the study page's Open button does (status, opened_at, the kind's
    on_open). SpecError, and nothing created, when the spec is refused."""
    with transaction.atomic():
        values = check_spec(spec, owner=owner)
        study = Study(owner=owner, status="draft", **values)
        try:
            study.full_clean(exclude=["owner", "dataset", "model", "preview_of"])
        except ValidationError as exc:
            field, messages = next(iter(exc.message_dict.items()))
            raise SpecError(field, " ".join(messages)) from None
        study.save()
        if open_now:
            study.status, study.opened_at = "open", timezone.now()
            study.save(update_fields=["status", "opened_at"])
            run_on_open(study)  # and each arm's own precomputation
    return study
