"""Imports keep the researcher's pixels, or refuse them with the reason (issues 24 and 25):
16-bit depth, EXIF orientation, masks in the alpha channel, JPEG-noisy masks, WebP / HEIC, and
the working copy of large images (the original and the scale kept)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studies.core.importers import import_archive, import_images

pytestmark = pytest.mark.django_db


def encode(array, fmt="PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image = array if isinstance(array, Image.Image) else Image.fromarray(np.asarray(array))
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def box_mask(shape, box, value=255, dtype=np.uint8):
    m = np.zeros(shape, dtype)
    m[box[0] : box[1], box[2] : box[3]] = value
    return m


def zipped(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def only_row(dataset):
    (row,) = dataset.images.all()
    return row


def stored(field) -> np.ndarray:
    with field.open("rb") as handle, Image.open(handle) as im:
        return np.asarray(im)


def test_16_bit_gradient_keeps_its_depth_and_is_shown_through_a_stated_window(tmp_path, media):
    # the finding: a 0..65535 gradient was stored with 99.6% of its pixels at 255
    gradient = np.linspace(0, 65535, 32 * 64).reshape(32, 64).astype(np.uint16)
    original = encode(Image.fromarray(gradient))
    files = {
        "images/mammo.png": original,
        "masks/mammo.png": encode(box_mask((32, 64), (4, 20, 4, 40))),
    }
    dataset, report = import_archive(zipped(tmp_path, files), "deep", max_pixels=10**6)
    row = only_row(dataset)
    shown = stored(row.image)[:, :, 0]
    assert (shown == 255).mean() < 0.01  # before: 0.996
    assert shown.min() == 0 and shown.max() == 255
    assert len(np.unique(shown)) > 200  # the gradient, not a step
    assert row.import_notes["window"] == [0.0, 65535.0]
    assert row.import_notes["window_method"] == "min-max" and row.import_notes["bit_depth"] == 16
    assert "min-max" in report.accepted[0]["notes"][0]
    # the original keeps its 16 bits
    assert row.original_image.read() == original
    assert np.array_equal(stored(row.original_image), gradient)


def test_16_bit_colour_and_a_narrow_range_are_stretched_not_truncated(tmp_path, media):
    import cv2

    twelve_bit = np.linspace(0, 4095, 16 * 16 * 3).reshape(16, 16, 3).astype(np.uint16)
    ok, png16 = cv2.imencode(".png", twelve_bit[:, :, ::-1])
    files = {
        "images/cam.png": png16.tobytes(),
        "masks/cam.png": encode(box_mask((16, 16), (2, 8, 2, 8))),
    }
    dataset, report = import_archive(zipped(tmp_path, files), "colour16", max_pixels=10**6)
    shown = stored(only_row(dataset).image)
    assert shown.max() == 255 and shown.min() == 0  # Pillow alone keeps the top 8 bits: 0..15
    assert only_row(dataset).import_notes["window"] == [0.0, 4095.0]


def exif_png(array: np.ndarray, orientation: int) -> bytes:
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    return encode(image, exif=exif.tobytes())


def test_exif_orientation_is_applied_to_images_and_masks(tmp_path, media):
    # stored 8 wide x 6 high with orientation 6 (rotate 90 clockwise to show): viewers show
    # 6 wide x 8 high, and that is what the researcher drew the mask on
    raw = np.zeros((6, 8, 3), np.uint8)
    raw[0, :, 0] = 255  # the top row of the file is red
    shown = np.rot90(raw, k=-1)  # what a viewer shows: 8 high x 6 wide, red on the right
    drawn = box_mask((8, 6), (0, 8, 5, 6))  # the researcher outlined the red column
    mask_raw = np.rot90(box_mask((8, 6), (0, 8, 5, 6)), k=1)  # a second mask saved with EXIF 6
    files = {
        "images/photo.png": exif_png(raw, 6),
        "masks/photo_1.png": encode(drawn),
        "masks/photo_2.png": exif_png(np.ascontiguousarray(mask_raw), 6),
    }
    dataset, report = import_archive(zipped(tmp_path, files), "exif", max_pixels=10**6)
    assert report.as_dict()["accepted"] == 2, report.refused  # before: size mismatch
    for row in dataset.images.all():
        assert (row.width, row.height) == (6, 8)
        assert np.array_equal(stored(row.image), shown)
        assert np.array_equal(stored(row.mask) > 0, drawn > 0)
        assert row.import_notes["exif_orientation"] == 6
    assert "EXIF orientation 6 applied" in " ".join(report.accepted[0]["notes"])


def rgba(colour, alpha) -> bytes:
    array = np.zeros(alpha.shape + (4,), np.uint8)
    array[:, :, :3] = colour
    array[:, :, 3] = alpha
    return encode(array)


def test_a_mask_in_the_alpha_channel_is_read_from_the_alpha(tmp_path, media):
    rgb = encode(np.full((6, 8, 3), 90, np.uint8))
    obj = box_mask((6, 8), (1, 3, 2, 5))
    both = rgba(0, obj)
    both_array = np.asarray(Image.open(io.BytesIO(both))).copy()
    both_array[:, :4, :3] = 255  # colour varies too, and disagrees with the alpha
    files = {
        "images/a.png": rgb,
        "masks/a.png": rgba(
            255, obj
        ),  # white everywhere, the object opaque: before, a whole-image mask
        "images/b.png": rgb,
        "masks/b.png": encode(both_array),
    }
    dataset, report = import_archive(zipped(tmp_path, files), "alpha", max_pixels=10**6)
    row = only_row(dataset)
    assert np.array_equal(stored(row.mask) > 0, obj > 0)
    assert row.import_notes["mask_channel"] == "alpha"
    assert [(r["name"], r["reason"]) for r in report.refused] == [("b", "ambiguous mask")]
    assert "alpha" in report.refused[0]["detail"]


def test_a_jpeg_mask_is_binarised_at_a_stated_threshold_with_a_warning(tmp_path, media):
    yy, xx = np.mgrid[:64, :64]
    obj = (((yy - 30) ** 2 + (xx - 33) ** 2) < 17**2).astype(np.uint8) * 255
    noisy = encode(obj, "JPEG", quality=40)
    decoded = np.asarray(Image.open(io.BytesIO(noisy)))
    assert len(np.unique(decoded)) > 2 and ((decoded > 0) != (obj > 0)).any()  # really noisy
    files = {"images/a.png": encode(np.full((64, 64, 3), 90, np.uint8)), "masks/a.jpg": noisy}
    dataset, report = import_archive(zipped(tmp_path, files), "jpeg mask", max_pixels=10**6)
    row = only_row(dataset)
    assert np.array_equal(stored(row.mask) > 0, decoded >= 128)  # before: decoded > 0
    assert row.import_notes["mask_threshold"] == 128
    assert report.as_dict()["warned"] == 1
    assert report.accepted[0]["notes"][0].startswith("mask: not cleanly two-valued")
    assert "binarised at >= 128 of 255" in report.accepted[0]["notes"][0]
    # clean masks are not warned about: 0/1 and 0/255
    clean = {
        "images/a.png": encode(np.full((6, 8, 3), 90, np.uint8)),
        "masks/a.png": encode(box_mask((6, 8), (1, 3, 2, 5), value=1)),
    }
    _, quiet = import_archive(zipped(tmp_path, clean), "clean", max_pixels=10**6)
    assert quiet.as_dict()["warned"] == 0 and "notes" not in quiet.accepted[0]


def test_webp_is_read_and_heic_is_refused_with_the_formats_to_use(tmp_path, media):
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    files = {
        "images/w.webp": encode(np.full((6, 8, 3), 90, np.uint8), "WEBP", lossless=True),
        "masks/w.png": encode(box_mask((6, 8), (1, 3, 2, 5))),
        "images/phone.heic": heic,
        "masks/phone.png": encode(box_mask((6, 8), (1, 3, 2, 5))),
        "images/renamed.jpg": heic,
        "masks/renamed.png": encode(box_mask((6, 8), (1, 3, 2, 5))),
    }
    dataset, report = import_archive(zipped(tmp_path, files), "formats", max_pixels=10**6)
    assert only_row(dataset).original_name == "w.webp"
    refused = {r["name"]: r for r in report.refused}
    assert set(refused) == {"phone", "renamed"}  # before: the masks were "no image"
    for r in refused.values():
        assert r["reason"] == "format not supported"
        assert "use PNG or JPEG" in r["detail"] and "HEIC" in r["detail"]


def test_a_large_image_gets_a_working_copy_and_keeps_the_original(tmp_path, media, settings):
    settings.IMPORT_MAX_SIDE = 100
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    obj = box_mask((300, 400), (60, 180, 100, 300))
    files = {"images/photo.png": encode(big), "masks/photo.png": encode(obj)}
    dataset, report = import_archive(zipped(tmp_path, files), "large", max_pixels=10**6)
    row = only_row(dataset)
    assert (row.width, row.height) == (100, 75)
    assert (row.original_width, row.original_height, row.scale) == (400, 300, 0.25)
    assert stored(row.image).shape == (75, 100, 3)
    small = stored(row.mask) > 0
    assert small.shape == (75, 100)
    # a point on the working copy maps back to the original by the ratio of the sizes
    ys, xs = np.nonzero(small)
    for x, y in zip(xs + 0.5, ys + 0.5, strict=True):
        ox, oy = x * row.original_width / row.width, y * row.original_height / row.height
        assert obj[int(oy), int(ox)]
    # the mask is the area-averaged original: the same object, to a pixel of the working copy
    assert np.array_equal(small, obj.reshape(75, 4, 100, 4).mean(axis=(1, 3)) >= 127.5)
    assert np.array_equal(stored(row.original_image), big) and np.array_equal(
        stored(row.original_mask), obj
    )
    line = report.accepted[0]
    assert (line["width"], line["height"], line["original_width"], line["original_height"]) == (
        100,
        75,
        400,
        300,
    )
    assert "working copy 100 x 75 pixels (width x height)" in line["notes"][-1]
    assert row.size_words == "100 x 75 pixels (original 400 x 300)"


def test_small_images_are_stored_as_they_are(tmp_path, media):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    pixels = np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(images / "cat.png")
    Image.fromarray(box_mask((30, 40), (5, 20, 5, 20))).save(masks / "cat.png")
    row = only_row(import_images(images, masks, "small"))
    assert np.array_equal(stored(row.image), pixels)
    assert (row.original_width, row.original_height, row.scale) == (None, None, 1.0)
    assert row.original_name == "cat.png" and row.mask_name == "cat.png"
    assert row.size_words == "40 x 30 pixels"


def test_pointprompt_results_on_a_scaled_data_set_are_refused_with_the_way_out(
    tmp_path, settings, media
):
    """Released PointPrompt results are in the full-size frame: on a working copy they would land
    in the wrong pixels, so the results importer refuses and says which setting to raise."""
    from studies.core.exports import run_export
    from studies.core.importers import import_pointprompt
    from studies.prompting.exports.import_results import import_pointprompt_results
    from tests.export_sessions import run_sessions
    from tests.factories import prompting_study, researcher

    study = prompting_study(n_images=3, participants=1)
    run_sessions(study)
    run_export(study, "pointprompt", tmp_path / "pp.zip")
    zipfile.ZipFile(tmp_path / "pp.zip").extractall(tmp_path / "pp")
    name = study.dataset.name
    width = study.dataset.images.first().width
    settings.IMPORT_MAX_SIDE = width // 2
    dataset = import_pointprompt(tmp_path / "pp" / "Image datasets" / name, "scaled")
    row = dataset.images.first()
    assert row.scale < 1 and row.original_width == width and row.original_image
    with pytest.raises(ValueError, match=f"IMPORT_MAX_SIDE at least {width}"):
        import_pointprompt_results(
            tmp_path / "pp" / "Prompting results" / name, dataset, study.model, researcher()
        )
