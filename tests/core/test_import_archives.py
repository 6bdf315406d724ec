"""Damaged archives and archive bombs (issue 25): the upload request looks only at what is cheap
(type, index, a bounded number of decompressed bytes) and answers 400 with the reason; the
worker reads each member under caps (bytes, expansion ratio) and refuses one unreadable member
alone. Bombs are generated small: the caps stop them long before they would inflate."""

from __future__ import annotations

import bz2
import io
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from studies.core import importers
from studies.core.importers import import_archive, inspect_archive
from studies.models import Dataset, Job
from tests.factories import researcher

pytestmark = pytest.mark.django_db


def png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGE = png(np.full((6, 8, 3), 90, np.uint8))
MASK = png(np.pad(np.full((2, 3), 255), ((1, 3), (2, 3))))


def good_pairs(*names: str) -> dict[str, bytes]:
    files = {}
    for name in names:
        files[f"images/{name}.png"] = IMAGE
        files[f"masks/{name}.png"] = MASK
    return files


def zip_bytes(files: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(files: dict[str, bytes], mode="w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def post(client, data: bytes, filename: str, name="Upload"):
    return client.post(
        "/datasets/upload", {"name": name, "archive": SimpleUploadedFile(filename, data)}
    )


@pytest.fixture
def signed_in(client, media):
    client.force_login(researcher())
    return client


def bad_central_directory() -> bytes:
    data = bytearray(zip_bytes(good_pairs("a")))
    end = data.rfind(b"PK\x05\x06")
    data[end + 16 : end + 20] = b"\xff\xff\xff\x00"  # the directory's offset points nowhere
    return bytes(data)


def half_tar_gz() -> bytes:
    files = good_pairs("a") | {"images/noise.png": np.random.default_rng(0).bytes(60_000)}
    data = tar_bytes(files)
    return data[: len(data) // 2]


def nul_in_a_name() -> bytes:
    # zipfile cuts names at a NUL when writing: write a placeholder and patch the bytes
    data = zip_bytes(good_pairs("a") | {"masks/b@@.png": MASK})
    return data.replace(b"masks/b@@.png", b"masks/b\x00@.png")


def directory_points_at_data() -> bytes:
    data = bytearray(zip_bytes(good_pairs("a")))
    central = data.find(b"PK\x01\x02")
    data[central + 42 : central + 46] = (40).to_bytes(4, "little")  # the first local header moved
    return bytes(data)


@pytest.mark.parametrize(
    "data, filename, words",
    [
        (bad_central_directory(), "bad.zip", "damaged"),
        (directory_points_at_data(), "moved.zip", "damaged"),
        (half_tar_gz(), "half.tar.gz", "damaged"),
        (nul_in_a_name(), "nul.zip", "NUL"),
        (bz2.compress(b"not a tar at all" * 100), "plain.tar.bz2", "damaged"),
        (b"plain text", "x.zip", "not a zip or tar"),
    ],
    ids=["central-directory", "local-header", "half-tar-gz", "nul-name", "bz2-not-tar", "text"],
)
def test_a_damaged_archive_is_a_400_with_the_reason_and_no_job(signed_in, data, filename, words):
    response = post(signed_in, data, filename)  # before: 500 for the first four
    assert response.status_code == 400
    page = response.content.decode()
    assert "archive: " in page and words in page
    assert not Job.objects.exists() and not Dataset.objects.exists()


def test_one_member_with_a_bad_crc_refuses_that_pair_and_keeps_the_others(tmp_path, media):
    data = bytearray(zip_bytes(good_pairs("a", "b", "c"), zipfile.ZIP_STORED))
    start = data.find(IMAGE, data.find(b"images/b.png"))
    data[start + 40] ^= 0xFF  # one byte of b's image, stored: the CRC no longer matches
    path = tmp_path / "crc.zip"
    path.write_bytes(bytes(data))
    inspect_archive(path)  # the request does not read members: it lets this through
    dataset, report = import_archive(path, "crc", max_pixels=10**6)  # before: ValueError, no report
    assert [r["name"] for r in report.accepted] == ["a", "c"]
    (refused,) = report.refused
    assert refused["name"] == "b" and refused["reason"] == "unreadable"
    assert "CRC" in refused["detail"]
    assert dataset.images.count() == 2


def lying_tar_header(size: int, name="images/huge.png") -> bytes:
    """A tar whose one member declares `size` bytes: the header and a few bytes of data."""
    info = tarfile.TarInfo(name)
    info.size = size
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    return header + b"\x00" * 4096


def test_a_tar_bz2_member_declaring_8_gib_is_refused_by_the_request_at_its_header(signed_in):
    data = bz2.compress(lying_tar_header(8 * 1024**3))
    assert len(data) < 1000
    response = post(signed_in, data, "bomb.tar.bz2")  # before: the request inflated it (25 s)
    assert response.status_code == 400
    assert "declares 8589934592 bytes" in response.content.decode()
    assert not Job.objects.exists()


def test_the_request_decompresses_at_most_its_look(signed_in, monkeypatch):
    """A real 24 MiB member in a 25 KB .tar.gz: the request reads 1 MiB of it (the look,
    lowered for the test) and leaves the rest to the worker."""
    spent = []

    class Counting(importers._Bounded):
        def read(self, size=-1):
            data = super().read(size)
            spent.append(len(data))
            return data

    monkeypatch.setattr(importers, "_Bounded", Counting)
    monkeypatch.setattr(importers, "INDEX_LOOK_BYTES", 1024**2)
    monkeypatch.setattr(inspect_archive, "__defaults__", (1024**2,))
    data = tar_bytes({"images/big.bmp": bytes(24 * 1024**2)} | good_pairs("a"))
    assert len(data) < 100_000
    monkeypatch.setattr(
        "studies.core.views_datasets.start_job", lambda *a, **k: Job.objects.create(kind="import")
    )
    response = post(signed_in, data, "big.tar.gz")
    assert response.status_code == 302
    assert 0 < sum(spent) <= 1024**2


def test_zip_of_members_that_expand_too_much_is_refused_member_by_member_in_bounded_memory(
    tmp_path, media, monkeypatch
):
    """Ten members of 40 MiB of zeros (40 KB each compressed): each is over the ratio cap and is
    refused from the index, without inflating; memory stays far below one member."""
    zeros = bytes(40 * 1024**2)
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for i in range(10):
            archive.writestr(f"images/{i}.bmp", zeros)
            archive.writestr(f"masks/{i}.png", MASK)
        archive.writestr("images/ok.png", IMAGE)
        archive.writestr("masks/ok.png", MASK)
    del zeros
    assert path.stat().st_size < 2 * 1024**2
    tracemalloc.start()
    try:  # at the default pixel limit one image file may hold 129 MiB: the ratio stops these
        dataset, report = import_archive(path, "bomb", max_pixels=4096 * 4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r["name"] for r in report.accepted] == ["ok"]
    reasons = {r["name"]: (r["reason"], r["detail"]) for r in report.refused}
    assert len(reasons) == 10
    assert all(reason == "over the size limit" for reason, _ in reasons.values())
    assert "refused without inflating it" in reasons["0"][1]
    assert peak < 16 * 1024**2  # before: each member read whole (40 MiB and more)


def test_reading_stops_at_the_byte_cap_and_the_ratio_whatever_the_header_says():
    """Defence in depth: a stream that never ends is read to the cap plus one block, no more."""

    class Endless(io.RawIOBase):
        served = 0

        def read(self, size=-1):
            Endless.served += 1024**2
            return bytes(1024**2)

    with pytest.raises(importers.Refused, match="more than 2097152 bytes") as info:
        importers._read_capped(Endless(), "images/a.bmp", 2 * 1024**2, None)
    assert info.value.reason == "over the size limit" and Endless.served == 3 * 1024**2
    Endless.served = 0
    with pytest.raises(importers.Refused, match="expands more than 200 times"):
        importers._read_capped(Endless(), "images/a.bmp", 10**12, packed=1000)
    assert Endless.served == importers.RATIO_FLOOR_BYTES + 1024**2


def test_a_tar_whose_members_declare_far_more_than_it_holds_is_refused(tmp_path):
    info = tarfile.TarInfo("images/a.bmp")
    info.size = 600 * 1024**2
    # a header, and data that deflates to nothing: 600 MiB declared in a file of a few KB
    path = tmp_path / "t.tar.gz"
    import gzip

    with gzip.open(path, "wb") as out:
        out.write(info.tobuf(format=tarfile.GNU_FORMAT) + bytes(1024**2))
    with pytest.raises(ValueError, match="more than 200 times"):
        inspect_archive(path)
    with pytest.raises(ValueError, match="more than 200 times"):
        importers.open_archive(path)


def test_the_worker_reports_a_tar_cut_in_half_beyond_the_look(tmp_path, media):
    path = tmp_path / "half.tar.gz"
    path.write_bytes(half_tar_gz())
    with pytest.raises(ValueError, match="damaged"):
        import_archive(path, "half", max_pixels=10**6)
    assert not Dataset.objects.exists()


def test_good_archives_still_pass_the_look(tmp_path):
    for name, data in (
        ("a.zip", zip_bytes(good_pairs("a"))),
        ("a.tar", tar_bytes(good_pairs("a"), "w")),
        ("a.tar.gz", tar_bytes(good_pairs("a"))),
        ("a.tar.bz2", tar_bytes(good_pairs("a"), "w:bz2")),
        ("a.tar.xz", tar_bytes(good_pairs("a"), "w:xz")),
    ):
        path = Path(tmp_path / name)
        path.write_bytes(data)
        inspect_archive(path)
        source = importers.open_archive(path)
        assert sorted(source.names()) == ["images/a.png", "masks/a.png"]
        source.close()
