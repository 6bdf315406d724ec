"""The study-kind seam: what differs between a prompting study, an intervention study and any
kind added later, declared in one place per kind and looked up here.

A kind declares its protocol options (defaults, allowed values, help), the models it may run,
its participant page, the service that records one logged participant action, what runs when
a study opens, what finishing an image means, its tidy-export tables and its analysis page.
Shared code (API, pages, forms, exports) asks `kind_of(study)` and never compares kind names.

`KIND_MODULES` is the registry: one line per kind; each module calls `register(...)` at import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

KIND_MODULES = [
    "studies.prompting.kind",
    "studies.intervention.kind",
]


class ProtocolError(ValueError):
    """A protocol option or action the study does not allow (the message names it)."""


@dataclass(frozen=True)
class Option:
    """One protocol option: its default, what it may be, and the line the form shows."""

    default: Any
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: int | None = None  # integers only
    maximum: int | None = None  # integers only
    # The kind's protocol version that added the option (1: from the start). A study whose
    # stored protocol is non-empty and lacks an option with since > 1 predates it: it runs
    # with the default, but its manifest writes the protocol as stored (see full_protocol).
    since: int = 1
    # what the study form shows: the field's label (else the name in words) and a readable
    # label per choice (else the value itself)
    label: str = ""
    choice_labels: dict[str, str] = field(default_factory=dict)

    @property
    def choices_with_labels(self) -> list[tuple[str, str]]:
        return [(c, self.choice_labels.get(c, c)) for c in self.choices]

    def check(self, name: str, value: Any) -> Any:
        if isinstance(self.default, bool):
            if not isinstance(value, bool):
                raise ProtocolError(f"protocol option {name} must be true or false")
        elif isinstance(self.default, int):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or (self.minimum is not None and value < self.minimum)
                or (self.maximum is not None and value > self.maximum)
            ):
                bounds = f">= {self.minimum}"
                if self.maximum is not None:
                    bounds = f"between {self.minimum} and {self.maximum}"
                raise ProtocolError(f"protocol option {name} must be an integer {bounds}")
        elif self.choices and value not in self.choices:
            raise ProtocolError(f"protocol option {name} must be one of {', '.join(self.choices)}")
        return value


@dataclass
class StudyKind:
    """Everything a kind of study plugs into the shared platform.

    - `options`: protocol options of this kind (the study's `protocol` holds their values).
    - `model_kinds`: ModelSpec kinds a study of this kind may use.
    - `participant_page(request, study, participant)`: the page that runs the assignments.
    - `submit(participant, assignment_id, data)`: record one logged action (the kind's POST).
    - `assignment_state(participant, assignment)`: what a client needs to resume.
    - `finish(participant, assignment, body)`: end an image (a logged action where the kind
      logs it; else just the status change).
    - `on_open(study)`: background work started when the study opens (returns jobs or None).
    - `tidy_tables(study, archive, include_practice)`: extra tidy-export tables, returning
      their counts; rows of practice assignments only when `include_practice` (then with a
      `practice` column).
    - `researcher_links(study)`: the kind's own researcher pages, [(element id, label, url)].
    - `analysis_page(request, study)`: the kind's "Analysis & exports" page (the study page's
      `study-analysis` link goes there); None: the study page says there is none.
    - `replay_page(request, study, assignment)`: the researcher's replay of one assignment
      (every logged action in order); the shared `assignment-replay` URL goes there.
    - `attention_failed(assignment, threshold)`: did the participant fail this attention-check
      image (True / False, None while undecided); see studies/core/quality.py.
    - `counts(study)`: figures for the researcher's study page (e.g. events, trials).
    - `fit_problem(dataset, model)`: why a study of this kind cannot run `model` on
      `dataset`, as (form field, reason), or None (the study form refuses it with the reason).
    - `arm_outcomes`, `arm_units(study)`: the outcomes the analysis compares between a
      design's arms and their rows (participant, image, arm, outcome keys); see
      studies/core/arm_analysis.py.
    - `export_formats`: the export formats (studies/core/exports FORMATS) a study of this
      kind can fill; the others are neither offered nor accepted.
    """

    name: str
    label: str
    options: dict[str, Option]
    model_kinds: tuple[str, ...]
    participant_page: Callable
    action_route: str  # /api/v1/assignments/<id>/<action_route> takes the kind's actions
    submit: Callable
    assignment_state: Callable
    finish: Callable
    on_open: Callable = lambda study: None
    tidy_tables: Callable = lambda study, archive, include_practice: {}
    researcher_links: Callable = lambda study: []  # [(element id, label, url)]
    analysis_page: Callable | None = None
    replay_page: Callable | None = None
    attention_failed: Callable = lambda assignment, threshold: None  # core/quality.py
    counts: Callable = lambda study: {}
    export_formats: tuple[str, ...] = ("tidy",)
    fit_problem: Callable = lambda dataset, model: None
    # analysis by arm (studies/core/arm_analysis.py): the outcomes compared between arms, as
    # (key, label, binary), and one row per (participant, image) with them
    arm_outcomes: tuple[tuple[str, str, bool], ...] = ()
    arm_units: Callable = lambda study: []
    instructions_template: str = ""
    survey_question: str = "Did anything about this image surprise you?"
    extra: dict = field(default_factory=dict)

    @property
    def defaults(self) -> dict:
        return {name: opt.default for name, opt in self.options.items()}

    def validate_protocol(self, options: dict) -> dict:
        """The full option dict of this kind (defaults filled in) or ProtocolError naming the
        option. Options of other kinds are refused: a study has one kind."""
        unknown = set(options) - set(self.options)
        if unknown:
            raise ProtocolError(
                f"unknown protocol option(s) for a {self.name} study: {', '.join(sorted(unknown))}"
            )
        merged = {**self.defaults, **options}
        for name, opt in self.options.items():
            opt.check(name, merged[name])
        return merged


_KINDS: dict[str, StudyKind] = {}
_loaded = False


def register(kind: StudyKind) -> StudyKind:
    """Add a kind (its module calls this at import); a second kind of the same name replaces it."""
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _KINDS.pop(name, None)


def load_kinds() -> None:
    """Import every module of `KIND_MODULES` once (the app's ready() calls this)."""
    global _loaded
    if not _loaded:
        for module in KIND_MODULES:
            import_module(module)
        _loaded = True


def all_kinds() -> list[StudyKind]:
    load_kinds()
    return list(_KINDS.values())


def get_kind(name: str) -> StudyKind:
    load_kinds()
    try:
        return _KINDS[name]
    except KeyError:
        raise ProtocolError(
            f"unknown study kind {name!r}; expected one of {', '.join(_KINDS)}"
        ) from None


def kind_of(study) -> StudyKind:
    return get_kind(study.kind)


def require_kind(study, name: str) -> StudyKind:
    """The study's kind if it is `name`; else a ProtocolError that says which kind it is."""
    kind = kind_of(study)
    if kind.name != name:
        article = "an" if name[:1] in "aeiou" else "a"
        raise ProtocolError(f"this study is not {article} {name} study (it is a {kind.name} study)")
    return kind


def kind_for_route(route: str) -> StudyKind | None:
    return next((k for k in all_kinds() if k.action_route == route), None)


def kind_choices() -> list[tuple[str, str]]:
    return [(k.name, k.label) for k in all_kinds()]


def option_names() -> list[str]:
    """Every kind's options in registry order (the order exports write a protocol in)."""
    names: list[str] = []
    for kind in all_kinds():
        names += [n for n in kind.options if n not in names]
    return names


def full_protocol(study) -> dict:
    """The study's protocol with its kind's defaults filled in, in registry order.

    An option added later (`Option.since` > 1) that a non-empty stored protocol lacks is left
    out: that study was created before the option existed, and its export keeps the protocol
    it was run with (exports of an old database stay byte-identical). An empty stored protocol
    means "all defaults", so every option is written."""
    kind = kind_of(study)
    stored = study.protocol or {}
    defaults = {
        name: opt.default
        for name, opt in kind.options.items()
        if not stored or opt.since <= 1 or name in stored
    }
    merged = {**defaults, **stored}
    ordered = {n: merged[n] for n in option_names() if n in merged}
    return {**ordered, **{k: v for k, v in merged.items() if k not in ordered}}


def readable_protocol(study) -> list[dict]:
    """The study's protocol as the study page shows it: one setting per option of its kind,
    in the kind's order, with the option's label, its value in words (a choice's label,
    yes / no, "none" for -1 where -1 means none) and whether it is the default. An option
    the stored protocol predates shows its default, as the study runs with it."""
    kind = kind_of(study)
    protocol = full_protocol(study)
    rows = []
    for name, option in kind.options.items():
        value = protocol.get(name, option.default)
        if isinstance(option.default, bool):
            text = "yes" if value else "no"
        elif option.choices:
            text = option.choice_labels.get(value, str(value))
        elif option.minimum == -1 and value == -1:
            text = "none"
        else:
            text = str(value)
        rows.append(
            {
                "name": name,
                "label": option.label or name.replace("_", " ").capitalize(),
                "value": text,
                "default": value == option.default,
                "help": option.help,
            }
        )
    return rows
