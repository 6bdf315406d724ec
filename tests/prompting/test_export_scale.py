"""Exports of a generated PointPrompt-size study (bench/pointprompt_scale.py, ~2,000 timesteps)
made sparse: each participant keeps a quarter of the images, as in PointPrompt where most
participant x image cells were never assigned (docs/pointprompt.md "Exports at PointPrompt
size"). What the released layout readers see, the rule for unassigned cells, and the streaming
that keeps memory flat (checked by what is written when, never by timing)."""

import hashlib
import io
import json
import os
import pickle
import zipfile

import cv2
import numpy as np
import pytest
from numpy.lib import format as npy_format

from bench.pointprompt_scale import generate_study
from interventions.metrics import rle_decode
from interventions.pointprompt.features import read_folder
from studies.core.exports import run_export
from studies.core.exports.archive import ExportArchive
from studies.core.exports.npy import _StreamedObjectArray, write_object_npy
from studies.models import Assignment, PromptEvent
from studies.prompting.analysis import best_position
from studies.prompting.exports.records import load_label
from studies.prompting.exports.tidy import GroundTruths

pytestmark = pytest.mark.django_db

KEEP_EVERY = 4  # participant p keeps the images with index % 4 == p - 1: 75% of cells empty


@pytest.fixture
def sparse_study():
    study, counts = generate_study(2000, seed=3)
    n = counts["images"]
    for participant in study.participants.order_by("number"):
        Assignment.objects.real().filter(participant=participant).exclude(
            image__index__in=[i for i in range(n) if i % KEEP_EVERY == participant.number - 1]
        ).delete()
    # one assigned image without any timestep (assigned, never scored)
    unscored = Assignment.objects.real().filter(participant__number=1).order_by("pk").first()
    unscored.events.filter(timestep__isnull=False).delete()
    return study, n, unscored


def assigned(study) -> dict:
    return {
        (a.participant.code, a.image.index): a
        for a in Assignment.objects.real()
        .filter(participant__study=study)
        .select_related("participant", "image")
    }


def steps(assignment) -> list[PromptEvent]:
    return list(assignment.events.filter(timestep__isnull=False).order_by("seq"))


def npy_bytes(array) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=array.dtype.hasobject)
    return out.getvalue()


def test_sparse_pointprompt_export_reads_as_released(sparse_study, tmp_path):
    study, n, unscored = sparse_study
    head = run_export(study, "pointprompt", tmp_path / "pp.zip")
    zf = zipfile.ZipFile(tmp_path / "pp.zip")
    assert zf.testzip() is None
    zf.extractall(tmp_path / "x")
    name = study.dataset.name
    root = tmp_path / "x" / "Prompting results" / name
    cells = assigned(study)
    codes = list(study.participants.order_by("number").values_list("code", flat=True))
    assert len(cells) < 0.3 * n * len(codes)  # the study is sparse
    assert head["counts"]["participant_images"] == n * len(codes)

    empty = {
        "points": npy_bytes(np.empty(0, dtype=object)),
        "scores": npy_bytes(np.empty(0, dtype=np.float64)),
        "ints": npy_bytes(np.empty(0, dtype=np.int64)),
    }
    for code in codes:
        base = root / code
        # the released script counts eachround files and reads indices 0..count-1
        assert len(os.listdir(base / "eachround")) == n
        folder = read_folder(base, code)
        assert len(folder.attempts) == n
        for i, attempt in enumerate(folder.attempts):
            cell = cells.get((code, i))
            events = steps(cell) if cell else []
            T = len(events)
            assert attempt.scores.shape == attempt.sort.shape == attempt.rounds.shape == (T,)
            if not T:  # unassigned, or assigned and never scored: the five empty arrays
                assert (base / "points" / f"{i}_green.npy").read_bytes() == empty["points"]
                assert (base / "points" / f"{i}_red.npy").read_bytes() == empty["points"]
                assert (base / "scores" / f"{i}score.npy").read_bytes() == empty["scores"]
                assert (base / "sorts" / f"{i}_sort.npy").read_bytes() == empty["ints"]
                assert (base / "eachround" / f"{i}_.npy").read_bytes() == empty["ints"]
                assert not (base / "masks" / f"{i}_0_mask.png").exists()
                assert not (tmp_path / "x" / f"finetune/human/{name}/{code}_{i}_green.npy").exists()
                continue
            scores = np.asarray([e.iou for e in events], dtype=np.float64)
            assert np.array_equal(attempt.scores, scores)
            assert np.array_equal(attempt.sort, np.argsort(-scores, kind="stable"))
            assert np.array_equal(attempt.rounds, [e.round - 1 for e in events])
            for t, event in enumerate(events):
                assert np.array_equal(
                    attempt.green[t], np.floor(np.asarray(event.green).reshape(-1, 2))
                )
                assert np.array_equal(
                    attempt.red[t], np.floor(np.asarray(event.red).reshape(-1, 2))
                )
                png = cv2.imread(str(base / "masks" / f"{i}_{t}_mask.png"), cv2.IMREAD_UNCHANGED)
                assert np.array_equal(png > 0, rle_decode(event.mask_rle))
            assert not (base / "masks" / f"{i}_{T}_mask.png").exists()
            best = events[best_position(scores)]
            human = np.load(tmp_path / "x" / f"finetune/human/{name}/{code}_{i}_green.npy")
            assert np.array_equal(human, np.floor(np.asarray(best.green).reshape(-1, 2)))
    assert (unscored.participant.code, unscored.image.index) in cells
    assert head["counts"]["scored_participant_images"] == len(cells) - 1
    assert (
        head["counts"]["timesteps"]
        == PromptEvent.objects.filter(
            assignment__participant__study=study, timestep__isnull=False
        ).count()
    )

    # samples.npy / labels.npy: the released object arrays, element by element
    samples = np.load(tmp_path / "x" / f"Image datasets/{name}/samples.npy", allow_pickle=True)
    labels = np.load(tmp_path / "x" / f"Image datasets/{name}/labels.npy", allow_pickle=True)
    assert samples.shape == labels.shape == (n,)
    for image in study.dataset.images.order_by("index"):
        assert np.array_equal(labels[image.index], load_label(image))
        assert samples[image.index].dtype == np.uint8
        assert samples[image.index].shape == (image.height, image.width, 3)

    # every entry is what the manifest says, and the zip's directory is complete
    manifest = json.loads(zf.read("manifest.json"))
    assert set(manifest["files"]) == set(zf.namelist()) - {"manifest.json"}
    for entry, meta in manifest["files"].items():
        data = zf.read(entry)
        assert hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["bytes"]
    assert manifest["counts"]["files"] == len(zf.namelist()) - 1


def test_sparse_coco_and_tidy(sparse_study, tmp_path):
    study, n, unscored = sparse_study
    run_export(study, "coco", tmp_path / "coco.zip")
    coco = json.loads(zipfile.ZipFile(tmp_path / "coco.zip").read("annotations.json"))
    anns = {(a["assignment_id"], a["kind"]): a for a in coco["annotations"]}
    scored = [a for a in assigned(study).values() if steps(a)]
    assert len(coco["annotations"]) == 2 * len(scored) and len(coco["images"]) == n
    assert (unscored.pk, "final") not in anns
    for assignment in scored:
        events = steps(assignment)
        best = events[best_position([e.iou for e in events])]
        for kind, event in (("final", events[-1]), ("best", best)):
            ann = anns[(assignment.pk, kind)]
            assert ann["timestep"] == event.timestep and ann["segmentation"] == event.mask_rle
            assert ann["image_id"] == assignment.image.index

    run_export(study, "tidy", tmp_path / "tidy.zip")
    zf = zipfile.ZipFile(tmp_path / "tidy.zip")
    masks = [json.loads(line) for line in zf.read("masks.jsonl").decode().splitlines()]
    events = PromptEvent.objects.filter(
        assignment__participant__study=study, timestep__isnull=False
    ).order_by("assignment_id", "seq")
    assert [(m["assignment_id"], m["seq"], m["rle"]) for m in masks] == [
        (e.assignment_id, e.seq, e.mask_rle) for e in events
    ]
    lines = zf.read("timesteps.csv").decode().splitlines()
    assert len(lines) == 1 + len(masks)


def test_ground_truths_stay_within_their_budget(sparse_study):
    study, n, _ = sparse_study
    images = list(study.dataset.images.order_by("index"))
    one = (images[0].height * images[0].width + 7) // 8
    kept = GroundTruths(study, budget=3 * one)
    for image in images + images[::-1]:
        assert np.array_equal(kept(image.pk), load_label(image).astype(bool))
        assert kept.size <= 3 * one and len(kept.kept) <= 3
    assert len(kept.kept) == 3


class Sink(io.RawIOBase):
    """A write-only stream that records how many bytes it has received."""

    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.data += b
        return len(b)


def one_shot_object_npy(items) -> bytes:
    """The reference: the bytes this module wrote before it streamed element by element (one
    pickler with its memo off over numpy's reduce of the array, elements from a list)."""
    out = io.BytesIO()
    npy_format.write_array_header_1_0(
        out, {"descr": "|O", "fortran_order": False, "shape": (len(items),)}
    )
    pickler = pickle.Pickler(out, protocol=3)
    pickler.fast = True
    pickler.dump(_StreamedObjectArray(len(items), list(items)))
    return out.getvalue()


@pytest.mark.parametrize("n", [0, 1, 2, 999, 1000, 1001, 2001])
def test_object_npy_is_the_one_shot_pickle(n):
    rng = np.random.default_rng(n)
    items = [
        rng.integers(0, 255, (int(rng.integers(1, 4)), 2, 3), dtype=np.uint8) for _ in range(n)
    ]
    sink = Sink()
    write_object_npy(sink, n, iter(items))
    assert bytes(sink.data) == one_shot_object_npy(items)
    back = np.load(io.BytesIO(bytes(sink.data)), allow_pickle=True)
    assert back.shape == (n,) and all(
        np.array_equal(a, b) for a, b in zip(back, items, strict=True)
    )


def test_object_npy_writes_each_element_before_taking_the_next_but_one():
    """Small images (under the pickler's 64 KiB bypass) reach the stream as they come: when
    element k is asked for, element k - 2 is already written (the first element of each batch
    of 1,000 waits for the next one, to know whether the batch is a single APPEND)."""
    sink = Sink()
    size = 40_000
    written_when_asked = []

    def images():
        for k in range(1500):
            written_when_asked.append(len(sink.data))
            yield np.full((size // 3 // 100, 100, 3), k % 251, dtype=np.uint8)

    write_object_npy(sink, 1500, images())
    for k in range(2, 1500):
        assert written_when_asked[k] >= (k - 1) * size, k


def test_small_entries_are_ordinary_zip_entries(tmp_path):
    """Entries written with their header complete read back like streamed ones, identical small
    payloads included (deflated once, written many times)."""
    archive = ExportArchive(tmp_path / "a.zip")
    same = npy_bytes(np.empty(0, dtype=np.int64))
    for k in range(300):
        archive.write_bytes(f"d/{k}_.npy", same)
        if k % 100 == 0:
            with archive.open(f"s/{k}.bin") as out:
                out.write(bytes(range(256)) * 50)
    archive.write_bytes("big.bin", os.urandom(3 << 20))  # over SMALL_ENTRY: streamed
    archive.write_bytes("m/0_0_mask.png", b"\x89PNG stored", compress=False)
    files = list(archive.files())
    archive.close()
    zf = zipfile.ZipFile(tmp_path / "a.zip")
    assert zf.testzip() is None and zf.namelist() == [f[0] for f in files]
    for entry, sha, size in files:
        data = zf.read(entry)
        assert hashlib.sha256(data).hexdigest() == sha and len(data) == size
    assert (
        zf.read("d/7_.npy") == same and zf.getinfo("d/7_.npy").compress_type == zipfile.ZIP_DEFLATED
    )
