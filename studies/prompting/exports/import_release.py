"""Importing the released PointPrompt data (Zenodo record 11187949) as it unpacks.

The release is two zip files; unpacked side by side under one folder ROOT:

    ROOT/Image datasets/<Dataset>/samples.npy, labels.npy
    ROOT/Prompting data/<Dataset>/st<k>/eachround|masks|points|scores|sorts/...

(the prompting zip's own top folder is "Prompting Results", and the released feature script
reads "Prompting results": any of "Prompting data", "Prompting results", "Prompting Results"
is accepted, and so is one of them nested in another, e.g. "Prompting data/Prompting Results").

Each data set becomes a Dataset (the checks of `studies.core.importers`) and, when the release
has prompts for it, a read-only "imported human results" study on it
(`import_pointprompt_results`: `Study.imported_from` set, closed, no one can join). All or
nothing per data set: its images, masks, study and every timestep are stored in one
transaction, and the files written for it are removed when anything fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from studies.core.importers import FolderSource, import_source
from studies.models import Dataset, DatasetImage, ModelSpec, Study
from studies.prompting.exports.import_results import CODE, import_pointprompt_results

IMAGE_FOLDERS = ("image datasets",)
PROMPT_FOLDERS = ("prompting data", "prompting results")
SOURCE = "pointprompt"

Progress = Callable[[str, int, int], None]  # (phase "images" / "prompts", done, total)


@dataclass(frozen=True)
class ReleaseDataset:
    """One data set of the release: its image folder and (if any) its prompting folder."""

    name: str
    images: Path  # holds samples.npy + labels.npy
    results: Path | None  # holds st<k> folders


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _find(root: Path, names: tuple[str, ...]) -> Path | None:
    """The child of `root` named one of `names` (any case), descending through one nested
    folder of an accepted name (a zip unpacked into a folder of its own name)."""
    found = [p for p in _subfolders(root) if p.name.lower() in names]
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(f"{root} has several of {', '.join(repr(p.name) for p in found)}")
    folder = found[0]
    while True:
        children = _subfolders(folder)
        if len(children) == 1 and children[0].name.lower() in IMAGE_FOLDERS + PROMPT_FOLDERS:
            folder = children[0]
        else:
            return folder


def release_layout(root: str | Path) -> list[ReleaseDataset]:
    """The data sets of an unpacked release under `root`, by name; ValueError naming what is
    missing (no image folder, a data set without samples.npy / labels.npy, prompts for a data
    set that has no images, a prompting folder without st<k> folders)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    images_root = _find(root, IMAGE_FOLDERS)
    if images_root is None:
        raise ValueError(
            f"{root} has no 'Image datasets' folder (the release's Image datasets.zip)"
        )
    prompts_root = _find(root, PROMPT_FOLDERS)
    if prompts_root is None:
        raise ValueError(
            f"{root} has no 'Prompting data' (or 'Prompting results') folder "
            "(the release's Prompting data.zip)"
        )
    entries = {}
    for folder in _subfolders(images_root):
        for required in ("samples.npy", "labels.npy"):
            if not (folder / required).is_file():
                raise ValueError(f"{folder} has no {required}")
            if (folder / required).is_symlink():
                raise ValueError(f"{folder / required} is a symbolic link; copy the file instead")
        entries[folder.name] = folder
    if not entries:
        raise ValueError(f"{images_root} holds no data set folder (<Dataset>/samples.npy)")
    results = {}
    for folder in _subfolders(prompts_root):
        if folder.name not in entries:
            raise ValueError(
                f"{folder} has prompts for a data set that {images_root} does not have "
                f"(data sets: {', '.join(sorted(entries))})"
            )
        if not any(p.is_dir() and CODE.match(p.name) for p in folder.iterdir()):
            raise ValueError(f"{folder} has no st<k> annotator folders")
        results[folder.name] = folder
    return [ReleaseDataset(name, entries[name], results.get(name)) for name in sorted(entries)]


def previous_import(entry: ReleaseDataset, name: str) -> Dataset | None:
    """The data set a previous run imported from the same folder (None: never imported);
    ValueError when the name is taken by a data set from elsewhere."""
    found = Dataset.objects.filter(name=name).first()
    if found is None:
        return None
    if found.description == description(entry):
        return found
    raise ValueError(
        f"a data set named {name!r} already exists and was not imported from {entry.images}; "
        "choose a --prefix"
    )


def description(entry: ReleaseDataset) -> str:
    return f"PointPrompt release: imported from {entry.images}"


def study_title(name: str) -> str:
    return f"{name}: imported human results (PointPrompt release)"


def import_release_dataset(
    entry: ReleaseDataset,
    *,
    model: ModelSpec,
    owner,
    name: str | None = None,
    progress: Progress | None = None,
) -> tuple[Dataset, Study | None]:
    """Import one data set of the release and its human results; all or nothing.

    Errors are ValueErrors that start with the data set's name and folder, then name the file
    (`Tie: .../Prompting data/Tie: st2: 3score.npy: not a valid .npy file ...`)."""
    name = name or entry.name
    report = progress or (lambda phase, done, total: None)
    written: list[str] = []
    where = entry.images
    try:
        with transaction.atomic():
            source = FolderSource({f: entry.images / f for f in ("samples.npy", "labels.npy")})
            dataset, _ = import_source(
                source,
                name,
                strict=True,
                description=description(entry),
                progress=lambda done, total: report("images", done, total),
            )
            for image, mask in DatasetImage.objects.filter(dataset=dataset).values_list(
                "image", "mask"
            ):
                written += [image, mask]
            study = None
            if entry.results is not None:
                where = entry.results
                study = import_pointprompt_results(
                    entry.results,
                    dataset,
                    model,
                    owner,
                    study_title(name),
                    progress=lambda done, total: report("prompts", done, total),
                )
    except ValueError as exc:
        _remove(written)
        raise ValueError(f"{entry.name}: {where}: {exc}") from exc
    except BaseException:
        _remove(written)
        raise
    return dataset, study


def _remove(names: list[str]) -> None:
    storage = DatasetImage._meta.get_field("image").storage
    for file_name in names:
        storage.delete(file_name)
