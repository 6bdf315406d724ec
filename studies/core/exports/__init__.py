"""The export framework: formats by name, one zip per export, a manifest as its last entry.

`run_export(study, fmt, out_path, progress=callback, params={...})` writes one zip, entry by
entry (replaced atomically), and returns the manifest head. A format is a function
`(study, archive, progress, **params) -> counts`; `FORMATS` names each by its dotted path, so
this package imports no kind (the batch task `workers.export_tasks.export_study` runs it as a
Job).

A study's kind says which formats it can fill (`StudyKind.export_formats`); any other is
refused (`check_format(fmt, study)`) before anything is written, by the page, the API, the
command and the batch task alike.

Parameters (`PARAMS`): `include_practice` (tidy only, default false) writes the practice
assignments too (docs/workspace.md "Practice image"); every other format leaves them out. The
manifest's `practice` block says how many practice assignments the study has and how many the
archive left out. `with_stats` (pointprompt only, default false) adds the released feature
script's `stats.csv` at the root (docs/pointprompt.md "Features as released").

A format may return, among its counts, `manifest_blocks`: a dict of blocks added to the manifest
(e.g. the `stats` block saying which feature definitions stats.csv used).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.utils.module_loading import import_string

from studies.core.exports.archive import ExportArchive
from studies.core.exports.manifest import practice_block, write_manifest

FORMATS: dict[str, str] = {
    "pointprompt": "studies.prompting.exports.pointprompt.export_pointprompt",
    "tidy": "studies.prompting.exports.tidy.export_tidy",
    "coco": "studies.prompting.exports.coco.export_coco",
}
FORMAT_LABELS = {"pointprompt": "PointPrompt", "tidy": "Tidy tables", "coco": "COCO"}

# parameter -> (the formats that take it, its default); every parameter is a boolean
PARAMS: dict[str, tuple[tuple[str, ...], bool]] = {
    "include_practice": (("tidy",), False),
    "with_stats": (("pointprompt",), False),
}

Progress = Callable[[int, int], None]


# what each format holds: the reason given when a study's kind cannot fill it
FORMAT_HOLDS = {
    "pointprompt": "the prompting timesteps (points, masks and scores per image)",
    "tidy": "every logged action as tables",
    "coco": "the predicted masks of the prompting timesteps",
}


def study_formats(study) -> tuple[str, ...]:
    """The formats a study's kind can fill (`StudyKind.export_formats`), in `FORMATS` order."""
    allowed = study.kind_spec.export_formats
    return tuple(f for f in FORMATS if f in allowed)


def check_format(fmt: str, study=None) -> str:
    """`fmt` if it is a format and (given a study) one the study's kind can fill; else a
    ValueError that says why and names the formats the study offers."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if study is not None and fmt not in study_formats(study):
        kind = study.kind_spec
        article = "an" if kind.label[:1].lower() in "aeiou" else "a"
        raise ValueError(
            f"{article} {kind.label.lower()} study cannot be exported as {FORMAT_LABELS[fmt]} "
            f"({fmt}): that format holds {FORMAT_HOLDS[fmt]}, which this kind of study does not "
            f"log; this study's formats: {', '.join(study_formats(study))}"
        )
    return fmt


class ExportParamError(ValueError):
    """A bad export parameter; `name` is the parameter."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def check_params(fmt: str, params: dict | None) -> dict:
    """The format's parameters with defaults filled in; ValueError naming a parameter that is
    unknown, not taken by `fmt`, or not true/false (nothing is exported then)."""
    params = dict(params or {})
    for name, value in params.items():
        if name not in PARAMS:
            raise ExportParamError(
                name, f"unknown export parameter {name!r}; expected one of {', '.join(PARAMS)}"
            )
        if fmt not in PARAMS[name][0]:
            raise ExportParamError(
                name,
                f"export parameter {name} applies to the {', '.join(PARAMS[name][0])} format "
                f"only, not {fmt}",
            )
        if not isinstance(value, bool):
            raise ExportParamError(
                name, f"export parameter {name} must be true or false, not {value!r}"
            )
    return {
        name: params.get(name, default)
        for name, (formats, default) in PARAMS.items()
        if fmt in formats
    }


def run_export(
    study,
    fmt: str,
    out_path: str | Path,
    progress: Progress | None = None,
    params: dict | None = None,
) -> dict:
    """Write `study` as `fmt` into the zip `out_path` (replaced atomically); return the manifest head."""
    writer = import_string(FORMATS[check_format(fmt, study)])
    params = check_params(fmt, params)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    archive = ExportArchive(partial)
    try:
        counts = writer(study, archive, progress, **params)
        extra = dict(counts.pop("manifest_blocks", None) or {})
        practice = practice_block(study, params.get("include_practice", False))
        if practice:
            extra["practice"] = practice
        head = write_manifest(archive, study, fmt, counts, extra or None)
        archive.close()
        partial.replace(out_path)
    except BaseException:
        archive.close()
        partial.unlink(missing_ok=True)
        raise
    return head
