"""Importers: PointPrompt .npy pairs (normalised, never unpickling arbitrary classes), image folders."""

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from studies.core.safe_npy import UnsafeNpyError, load_npy
from studies.models import Dataset, DatasetImage

pytestmark = pytest.mark.django_db


def object_array(items):
    array = np.empty(len(items), object)
    for i, item in enumerate(items):
        array[i] = item
    return array


def write_pair(directory, samples, labels):
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "samples.npy", object_array(samples), allow_pickle=True)
    np.save(directory / "labels.npy", object_array(labels), allow_pickle=True)
    return directory


def stored(dataset, index):
    row = DatasetImage.objects.get(dataset=dataset, index=index)
    return np.asarray(Image.open(row.image.path)), np.asarray(Image.open(row.mask.path))


def test_import_pointprompt_normalises_every_kind(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    seismic = rng.uniform(-1, 1, (12, 10)).astype(np.float32)
    unit = rng.uniform(0, 1, (12, 10, 3))
    label_255 = (rng.uniform(size=(12, 10)) > 0.5).astype(np.uint8) * 255
    label_rgb = np.zeros((12, 10, 3), np.uint8)
    label_rgb[2:5, 3:7, 1] = 7
    label_01 = np.zeros((12, 10), np.uint8)
    label_01[1, 1] = 1
    folder = write_pair(tmp_path / "pp", [rgb, seismic, unit], [label_255, label_rgb, label_01])
    call_command("import_pointprompt", str(folder), "--name", "Seismic test")
    dataset = Dataset.objects.get(name="Seismic test")
    assert dataset.images.count() == 3
    image, mask = stored(dataset, 0)
    assert np.array_equal(image, rgb) and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask > 0, label_255 > 0)
    image, mask = stored(dataset, 1)
    grey = np.round((seismic + 1) * 127.5).astype(np.uint8)
    assert (
        image.shape == (12, 10, 3)
        and np.array_equal(image[:, :, 0], grey)
        and np.array_equal(image[:, :, 2], grey)
    )
    assert np.array_equal(mask > 0, label_rgb.any(axis=2))
    image, _ = stored(dataset, 2)
    assert np.array_equal(image, np.round(unit * 255).astype(np.uint8))


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_crafted_pickle_is_refused_and_nothing_is_stored(tmp_path):
    folder = tmp_path / "evil"
    folder.mkdir()
    good = object_array([np.zeros((4, 4, 3), np.uint8)])
    np.save(folder / "labels.npy", object_array([np.zeros((4, 4), np.uint8)]), allow_pickle=True)
    evil = object_array([Evil()])
    np.save(folder / "samples.npy", evil, allow_pickle=True)
    with pytest.raises(UnsafeNpyError, match="refusing to unpickle builtins.print"):
        load_npy(folder / "samples.npy")
    with pytest.raises(CommandError, match="refusing to unpickle"):
        call_command("import_pointprompt", str(folder), "--name", "Evil")
    assert not Dataset.objects.filter(name="Evil").exists()
    np.save(folder / "samples.npy", good, allow_pickle=True)
    assert load_npy(folder / "samples.npy")[0].shape == (4, 4, 3)


def test_corrupt_and_mismatched_files_are_clear_errors(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "samples.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(folder / "labels.npy", object_array([np.zeros((4, 4), np.uint8)]), allow_pickle=True)
    with pytest.raises(CommandError, match="not a valid .npy"):
        call_command("import_pointprompt", str(folder), "--name", "Bad")
    write_pair(folder, [np.zeros((4, 4, 3), np.uint8)], [np.zeros((5, 4), np.uint8)])
    with pytest.raises(CommandError, match="width x height"):
        call_command("import_pointprompt", str(folder), "--name", "Bad")
    write_pair(folder, [np.zeros((4, 4, 3), np.uint8)] * 2, [np.zeros((4, 4), np.uint8)])
    with pytest.raises(CommandError, match="2 images but labels.npy has 1"):
        call_command("import_pointprompt", str(folder), "--name", "Bad")
    with pytest.raises(CommandError, match="no samples.npy"):
        call_command("import_pointprompt", str(tmp_path), "--name", "Bad")
    assert not Dataset.objects.filter(name="Bad").exists()
    # a raw pickle in .npy clothing with a plain dtype header is read without pickle
    np.save(folder / "plain.npy", np.arange(6, dtype=np.int64))
    assert load_npy(folder / "plain.npy").tolist() == list(range(6))


def test_import_images_matches_by_name(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((6, 8, 3), 40, np.uint8)).save(images / f"{name}.png")
        m = np.zeros((6, 8), np.uint8)
        m[1:3, 2:5] = 255
        Image.fromarray(m).save(masks / f"{name}_mask.png")
    call_command("import_images", str(images), str(masks), "--name", "Folder")
    dataset = Dataset.objects.get(name="Folder")
    assert [r.index for r in dataset.images.all()] == [0, 1]
    (images / "c.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(masks / "c.png")
    with pytest.raises(CommandError, match="c.png: not a readable image"):
        call_command("import_images", str(images), str(masks), "--name", "Folder 2")
    assert not Dataset.objects.filter(name="Folder 2").exists()
