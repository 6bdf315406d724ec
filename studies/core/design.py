"""A study's experimental design: its arms, how participants are assigned to them, and the
study as each arm runs it (docs/experiments.md).

`Study.design` holds the design as validated here; empty means one arm, the study's own
protocol and model, exactly as a study without arms (nothing about it changes: pages, API
answers, exports). A design is

    {"assignment": "between" | "within", "seed": 7, "block_size": 4,
     "arms": [{"name": "score shown", "options": {"show_score": true}, "target": 50,
               "model": "sam-vit_b-0123456789ab"}, ...]}

- between participants: each participant gets one arm when they consent, by seeded block
  randomisation (each block holds every arm block_size / len(arms) times, in a shuffled
  order); an arm at its target takes no more; the allocation runs under the study's row lock.
- within participants: each participant works in every arm on different images (each image
  goes to the arm that has had it least often, so each image's arm counts differ by at most
  one across participants), the arms in the order of a balanced Latin square row.

The pure parts (validation, block sequence, Latin square, image split) take plain values; the
allocation at consent (`allocate`) is the one place that reads and writes the database.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

from studies.core.kinds import ProtocolError, StudyKind, full_protocol, kind_of

METHODS = ("between", "within")
# Options that shape the whole page or the enrolment, not one image: a within-participants
# design cannot vary them (every arm of one participant shares the page).
PAGE_OPTIONS = ("layout", "practice_image", "browser_decoder", "hover_preview")
MAX_ARMS = 12
MAX_NAME = 60


METHOD_NOTES = {
    "between": (
        "seeded block randomisation at consent: slot s of the sequence is block s // block_size, "
        "whose arms (each block_size / k times) are shuffled by Python's "
        "random.Random(f'{seed}:block:{block}'); a consent takes the next slot whose arm is "
        "below its target (studies/core/design.py next_between)"
    ),
    "within": (
        "every participant works in every arm: each of their images goes to the arm that has had "
        "that image least often (ties: rotation from (rank of the image among theirs by id + "
        "row) mod k), arms in the order of row (sequence - 1) of a balanced Latin square "
        "(studies/core/design.py split_within, latin_row)"
    ),
}


class DesignError(ProtocolError):
    """A design the platform refuses; `field` names the part of the design at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


@dataclass(frozen=True)
class Arm:
    name: str
    options: dict
    target: int | None = None
    model: str | None = None  # a ModelSpec's model_id (None: the study's model)


def has_design(study) -> bool:
    return bool(getattr(study, "design", None))


def arms(study) -> list[Arm]:
    """The study's arms; a study without a design has none (it is not an experiment)."""
    if not has_design(study):
        return []
    return [
        Arm(a["name"], dict(a.get("options") or {}), a.get("target"), a.get("model"))
        for a in study.design["arms"]
    ]


def arm_names(study) -> list[str]:
    return [a.name for a in arms(study)]


def method(study) -> str:
    return study.design.get("assignment", "between") if has_design(study) else ""


# ----------------------------------------------------------------------------- validation


def _int(value, field: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DesignError(field, "must be an integer")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise DesignError(field, f"must be {bounds} (got {value})")
    return value


def validate_design(kind: StudyKind, design, *, models=None, default_seed: int = 0) -> dict:
    """The design in its stored form, or DesignError naming the field (`design.arms[1].name`).

    `models` maps a model_id to the kinds of model spec it names ({} or None: no arm may name
    a model). An empty design ({} or None) stays empty: the study has no arms."""
    if design in (None, {}):
        return {}
    if not isinstance(design, dict):
        raise DesignError("design", "must be an object with assignment, seed, block_size, arms")
    unknown = set(design) - {"assignment", "seed", "block_size", "arms"}
    if unknown:
        raise DesignError(f"design.{sorted(unknown)[0]}", "is not a design field")
    assignment = design.get("assignment", "between")
    if assignment not in METHODS:
        raise DesignError("design.assignment", f"must be one of {', '.join(METHODS)}")
    seed = design.get("seed", default_seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DesignError("design.seed", "must be an integer")
    raw_arms = design.get("arms")
    if not isinstance(raw_arms, list) or not raw_arms:
        raise DesignError("design.arms", "must be a non-empty list of arms")
    if len(raw_arms) > MAX_ARMS:
        raise DesignError("design.arms", f"at most {MAX_ARMS} arms")
    out_arms, names = [], set()
    for i, arm in enumerate(raw_arms):
        where = f"design.arms[{i}]"
        if not isinstance(arm, dict):
            raise DesignError(where, "must be an object with name and options")
        extra = set(arm) - {"name", "options", "target", "model"}
        if extra:
            raise DesignError(f"{where}.{sorted(extra)[0]}", "is not an arm field")
        name = arm.get("name")
        if not isinstance(name, str) or not name.strip():
            raise DesignError(f"{where}.name", "is required (a short name for the arm)")
        name = name.strip()
        if len(name) > MAX_NAME:
            raise DesignError(f"{where}.name", f"at most {MAX_NAME} characters")
        if name in names:
            raise DesignError(f"{where}.name", f"two arms are named {name!r}")
        names.add(name)
        options = arm.get("options") or {}
        if not isinstance(options, dict):
            raise DesignError(f"{where}.options", "must be an object of protocol options")
        for option, value in options.items():
            spec = kind.options.get(option)
            if spec is None:
                raise DesignError(
                    f"{where}.options.{option}",
                    f"a {kind.name} study has no option {option!r}",
                )
            if assignment == "within" and option in PAGE_OPTIONS:
                raise DesignError(
                    f"{where}.options.{option}",
                    "shapes the whole page, so it cannot differ between the arms of a "
                    "within-participants design",
                )
            try:
                spec.check(option, value)
            except ProtocolError as exc:
                raise DesignError(f"{where}.options.{option}", str(exc)) from None
        out = {"name": name, "options": dict(options)}
        target = arm.get("target")
        if target is not None:
            if assignment == "within":
                raise DesignError(
                    f"{where}.target",
                    "only a between-participants design has arm targets (within, everyone "
                    "works in every arm)",
                )
            out["target"] = _int(target, f"{where}.target", 1)
        model = arm.get("model")
        if model is not None:
            if not isinstance(model, str) or not model:
                raise DesignError(f"{where}.model", "must be a model id (e.g. sam-vit_b-...)")
            found = (models or {}).get(model)
            if found is None:
                raise DesignError(f"{where}.model", f"no model with id {model!r}")
            if found not in kind.model_kinds:
                raise DesignError(
                    f"{where}.model",
                    f"{model!r} is a {found} model; a {kind.name} study runs "
                    f"{' or '.join(kind.model_kinds)} models",
                )
            out["model"] = model
        out_arms.append(out)
    k = len(out_arms)
    block_size = design.get("block_size", 2 * k if assignment == "between" else k)
    block_size = _int(block_size, "design.block_size", 1, 1000)
    if block_size % k:
        raise DesignError(
            "design.block_size",
            f"must be a multiple of the number of arms ({k}) so every "
            "block holds each arm equally often",
        )
    return {"assignment": assignment, "seed": seed, "block_size": block_size, "arms": out_arms}


def model_kinds_by_id(specs) -> dict[str, str]:
    """{model_id: kind} of the given model specs (what validate_design checks arm models in)."""
    return {spec.model_id: spec.kind for spec in specs}


# ----------------------------------------------------------------------------- allocation


def block_arm(seed: int, block_size: int, names: list[str], slot: int) -> tuple[str, int]:
    """The arm of allocation slot `slot` (0-based) and its block: block b holds each arm
    block_size / k times, shuffled by random.Random(f"{seed}:block:{b}")."""
    block = slot // block_size
    per = block_size // len(names)
    order = [name for name in names for _ in range(per)]
    random.Random(f"{seed}:block:{block}").shuffle(order)
    return order[slot % block_size], block


def next_between(design: dict, slot: int, sizes: dict[str, int]) -> tuple[str, int, int] | None:
    """(arm, block, the slot after it) for the next consent, starting at `slot` and skipping
    the slots of arms at their target; None when every arm is full."""
    names = [a["name"] for a in design["arms"]]
    targets = {a["name"]: a.get("target") for a in design["arms"]}
    open_arms = [n for n in names if targets[n] is None or sizes.get(n, 0) < targets[n]]
    if not open_arms:
        return None
    while True:
        arm, block = block_arm(design["seed"], design["block_size"], names, slot)
        slot += 1
        if arm in open_arms:
            return arm, block, slot


def replay_between(design: dict, consents: int) -> list[tuple[str, int]]:
    """The arms and blocks of the first `consents` consents, as `allocate` gives them (what a
    researcher recomputes from a manifest's design and the consent order)."""
    sizes: dict[str, int] = {}
    slot, out = 0, []
    for _ in range(consents):
        step = next_between(design, slot, sizes)
        if step is None:
            break
        arm, block, slot = step
        sizes[arm] = sizes.get(arm, 0) + 1
        out.append((arm, block))
    return out


def latin_row(k: int, row: int) -> list[int]:
    """Row `row` (mod k, or mod 2k for odd k) of a balanced (Williams) Latin square of k arms:
    every arm comes first equally often and, for even k, follows every other arm equally often."""
    base, lo, hi = [], 0, k - 1
    for j in range(k):  # 0, 1, k-1, 2, k-2, ...
        if j == 0:
            base.append(0)
            lo = 1
        elif j % 2:
            base.append(lo)
            lo += 1
        else:
            base.append(hi)
            hi -= 1
    rows = [[(x + r) % k for x in base] for r in range(k)]
    if k % 2:  # odd k: the mirrored rows balance carry-over too
        rows += [list(reversed(r)) for r in rows]
    return rows[row % len(rows)]


def split_within(
    names: list[str], images: list[int], counts: dict[tuple[int, str], int], row: int
) -> list[tuple[int, str]]:
    """The participant's images (dataset pks, in their shuffled order) with their arms, in the
    order they will work on them.

    Image i goes to the arm that has had it least often so far (`counts[(i, arm)]` over the
    earlier participants), ties broken by rotating from arm (rank of i among the participant's
    images by pk + row) mod k: each image's arm counts then differ by at most one, and when every participant has every image, each participant's images split evenly
    across the arms (within one). The arms come in the order of
    Latin-square row `row`, each arm's images in their shuffled order."""
    k = len(names)
    rank = {pk: r for r, pk in enumerate(sorted(images))}
    arm_of = {}
    for pk in images:
        start = (rank[pk] + row) % k
        rotation = [names[(start + j) % k] for j in range(k)]
        arm_of[pk] = min(rotation, key=lambda arm: counts.get((pk, arm), 0))  # first of the least
    order = [names[i] for i in latin_row(k, row)]
    return [(pk, arm) for arm in order for pk in images if arm_of[pk] == arm]


# ----------------------------------------------------------------------------- arm views


def arm_protocol(study, arm: Arm) -> dict:
    """The arm's full protocol: the study's, with the arm's options over it."""
    return {**full_protocol(study), **arm.options}


def arm_by_name(study, name: str) -> Arm | None:
    return next((a for a in arms(study) if a.name == name), None)


def study_view(study, arm_name: str | None):
    """The study as arm `arm_name` runs it: a copy whose `protocol` has the arm's options and
    whose `model` is the arm's model. It is not saved (save() refuses). No design, or no arm:
    the study itself."""
    arm = arm_by_name(study, arm_name) if arm_name else None
    if arm is None:
        return study
    view = copy.copy(study)
    view.protocol = {**(study.protocol or {}), **arm.options}
    if arm.model:
        view.model = model_for(arm.model, study)
    view._arm = arm.name
    view.save = _refuse_save
    return view


def _refuse_save(*args, **kwargs):
    raise RuntimeError("an arm's view of a study is not saved; change the study itself")


OPEN_OPTIONS = ("browser_decoder", "substrate")  # what a kind's on_open reads besides the model


def run_on_open(study) -> list:
    """The kind's on_open for the study and for each arm that needs other precomputation (its
    own model, or another value of an option that on_open reads): the jobs started. The arm's
    jobs carry `params["arm"]` and their workers compute for that arm's view."""
    kind = kind_of(study)
    seen, jobs = set(), []
    for view in [study, *(study_view(study, name) for name in arm_names(study))]:
        key = (view.model.pk, tuple(repr(view.option(o)) for o in OPEN_OPTIONS))
        if key in seen:
            continue
        seen.add(key)
        started = kind.on_open(view)
        jobs += started if isinstance(started, list) else [started] if started else []
    return jobs


def for_job(job):
    """The study as a job's arm runs it (`job.params["arm"]`; none: the study itself)."""
    return study_view(job.study, (job.params or {}).get("arm"))


def model_for(model_id: str, study):
    from studies.models import ModelSpec

    kind = kind_of(study)
    for spec in ModelSpec.objects.filter(kind__in=kind.model_kinds).order_by("pk"):
        if spec.model_id == model_id:
            return spec
    raise DesignError("design.arms.model", f"no model with id {model_id!r}")


def arm_code(study, name: str) -> str | None:
    """The arm as the participant API names it: a letter by the arm's place in the design
    ("A", "B", ...), never its name (a name like "score hidden" would tell the participant
    what the experiment varies). None for no arm."""
    names = arm_names(study)
    return chr(ord("A") + names.index(name)) if name in names else None


def for_assignment(assignment):
    """The study as this assignment's arm runs it (the study itself without a design)."""
    study = assignment.participant.study
    if not has_design(study):
        return study
    return study_view(study, assignment.arm or assignment.participant.arm)


def for_participant(participant):
    study = participant.study
    if not has_design(study):
        return study
    return study_view(study, participant.arm or None)
