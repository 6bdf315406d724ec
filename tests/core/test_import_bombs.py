"""Import bombs (issue 11, finding 8): each hostile input is a one-line error, memory stays
bounded, and nothing is half-imported."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from numpy.lib import format as npy_format
from PIL import Image

from studies.models import Dataset, DatasetImage

pytestmark = pytest.mark.django_db


def _objects(items):
    array = np.empty(len(items), object)
    for i, item in enumerate(items):
        array[i] = item
    return array


def _pp(tmp_path, samples, labels=None, *, plain=False):
    folder = tmp_path / "pp"
    folder.mkdir()
    if plain:
        np.save(folder / "samples.npy", samples, allow_pickle=False)
    else:
        np.save(folder / "samples.npy", samples, allow_pickle=True)
    good = labels if labels is not None else _objects([np.zeros((4, 4), np.uint8)])
    np.save(folder / "labels.npy", good, allow_pickle=True)
    return folder


def _import_pp(folder) -> str:
    with pytest.raises(CommandError) as info:
        call_command("import_pointprompt", str(folder), "--name", "bomb")
    message = str(info.value)
    assert "\n" not in message
    assert not Dataset.objects.exists() and not DatasetImage.objects.exists()
    return message


def test_shared_nested_lists_are_refused_before_they_are_expanded(tmp_path):
    nested = [0] * 10
    for _ in range(9):  # 10**10 elements once expanded; a few hundred bytes pickled
        nested = [nested] * 10
    folder = _pp(tmp_path, _objects([nested]))
    assert (folder / "samples.npy").stat().st_size < 2000
    assert "not a numeric array" in _import_pp(folder)


def test_header_claiming_a_huge_shape(tmp_path):
    folder = _pp(tmp_path, np.zeros(4, np.uint8), plain=True)
    with open(folder / "samples.npy", "wb") as handle:
        npy_format.write_array_header_1_0(
            handle, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
        )
        handle.write(b"\x00" * 64)
    assert "claims shape" in _import_pp(folder)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((1, 4, 4), dtype=[("a", "<f4"), ("b", "<i4")]),
        np.zeros((1, 4, 4), dtype="datetime64[s]"),
        np.zeros((1, 4, 4), dtype=np.complex64),
        np.zeros((1, 4, 4), dtype="<U3"),
    ],
    ids=["structured", "datetime", "complex", "text"],
)
def test_non_numeric_dtypes_are_refused_not_cast(tmp_path, array):
    assert "not a plain number" in _import_pp(_pp(tmp_path, array, plain=True))


def test_complex_items_of_an_object_array(tmp_path):
    folder = _pp(tmp_path, _objects([np.zeros((4, 4), np.complex128)]))
    assert "not a plain number" in _import_pp(folder)


def test_empty_data_set(tmp_path):
    folder = _pp(tmp_path, _objects([]), _objects([]))
    assert "empty" in _import_pp(folder)  # an empty data set is refused


def test_pixel_limit_applies_to_npy_images(tmp_path, settings):
    settings.IMPORT_MAX_PIXELS = 15
    folder = _pp(tmp_path, _objects([np.zeros((4, 4, 3), np.uint8)]))
    assert "IMPORT_MAX_PIXELS" in _import_pp(folder)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _lying_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (8-bit grey) with almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def _folders(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    return images, masks


def _import_images(images, masks) -> str:
    with pytest.raises(CommandError) as info:
        call_command("import_images", str(images), str(masks), "--name", "bomb")
    message = str(info.value)
    assert "\n" not in message
    assert not Dataset.objects.exists() and not DatasetImage.objects.exists()
    return message


def test_png_claiming_60000_squared_is_refused_from_its_header(tmp_path):
    images, masks = _folders(tmp_path)
    data = _lying_png(60000, 60000)
    assert len(data) < 100
    (images / "a.png").write_bytes(data)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(masks / "a.png")
    message = _import_images(images, masks)
    assert "a.png" in message and ("IMPORT_MAX_PIXELS" in message or "readable" in message)


def test_pixel_limit_applies_to_image_files(tmp_path, settings):
    settings.IMPORT_MAX_PIXELS = 100
    images, masks = _folders(tmp_path)
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(images / "a.png")
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(masks / "a.png")
    assert "IMPORT_MAX_PIXELS" in _import_images(images, masks)


def test_symlinks_are_not_followed(tmp_path):
    images, masks = _folders(tmp_path)
    secret = tmp_path / "secret.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(secret)
    (images / "a.png").symlink_to(secret)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(masks / "a.png")
    assert "symbolic link" in _import_images(images, masks)


def test_second_image_bad_leaves_nothing(tmp_path):
    images, masks = _folders(tmp_path)
    for name in ("a", "b"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(images / f"{name}.png")
    mask = np.zeros((4, 4), np.uint8)
    mask[1:3, 1:3] = 255  # a real object: the first pair is good
    Image.fromarray(mask).save(masks / "a.png")
    (masks / "b.png").write_bytes(b"not a png")
    assert "b.png" in _import_images(images, masks)
