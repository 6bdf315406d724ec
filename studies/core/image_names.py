"""The researcher's own file names (and original sizes) of a data set's images, for pages,
analyses and exports.

Only data sets imported from files have names (`DatasetImage.original_name`); generated and
PointPrompt data sets have none, and then every table and export keeps its bytes: the name
column, `images.csv` and the manifest's `images` block appear only when a name (or a working
copy scaled from a larger original) exists.
"""

from __future__ import annotations

from studies.models import Dataset, DatasetImage

IMAGE_COLUMNS = (
    "image_index", "image_name", "mask_name", "width", "height", "original_width",
    "original_height", "scale",
)  # fmt: skip


def image_names(dataset: Dataset | int) -> dict[int, str]:
    """{index: original file name} for the images that have one; {} when none has."""
    return dict(
        DatasetImage.objects.filter(dataset=dataset)
        .exclude(original_name="")
        .values_list("index", "original_name")
    )


def has_provenance(dataset: Dataset | int) -> bool:
    """Whether any image has a file name or was scaled from a larger original."""
    rows = DatasetImage.objects.filter(dataset=dataset)
    return rows.exclude(original_name="").exists() or rows.exclude(scale=1.0).exists()


def image_rows(dataset: Dataset | int):
    """One row per image (IMAGE_COLUMNS), for images.csv and the manifest. Sizes are pixels;
    `width` / `height` are the working copy's (the coordinates of every point and mask in
    the exports), the original's are empty when the image was not scaled."""
    for row in (
        DatasetImage.objects.filter(dataset=dataset)
        .order_by("index")
        .values(
            "index",
            "original_name",
            "mask_name",
            "width",
            "height",
            "original_width",
            "original_height",
            "scale",
        )
        .iterator(chunk_size=2000)
    ):
        yield {
            "image_index": row["index"],
            "image_name": row["original_name"],
            "mask_name": row["mask_name"],
            "width": row["width"],
            "height": row["height"],
            "original_width": row["original_width"],
            "original_height": row["original_height"],
            "scale": row["scale"],
        }


def insert_after(columns: tuple, after: str, new: str) -> tuple:
    at = columns.index(after) + 1
    return (*columns[:at], new, *columns[at:])
