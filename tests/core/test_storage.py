"""studies/core/storage.py and config/storage_url.py (issue 23): the two storage areas on the
local file system (the plain file operations of before) and on an S3-compatible server (moto's
standalone server on loopback, the real HTTP protocol): local copies downloaded once, bounded
least-recently-used, content-addressed embeddings found in the store instead of recomputed."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from django.core.files.base import ContentFile

from config.storage_url import parse_storage, s3_storage_options, s3_storages
from studies.core import storage
from tests.live_stack import free_port

BUCKET = "intervene-unit"


def test_storage_url_and_aws_names():
    assert parse_storage({}) is None
    parsed = parse_storage(
        {"STORAGE_URL": "s3://lab-bucket/study-a?endpoint_url=http://minio:9000&region=eu-west-1"}
    )
    assert parsed == {
        "bucket": "lab-bucket",
        "prefix": "study-a",
        "endpoint_url": "http://minio:9000",
        "region": "eu-west-1",
        "addressing_style": "path",
    }
    aws = parse_storage({"AWS_STORAGE_BUCKET_NAME": "b", "AWS_S3_ENDPOINT_URL": "https://s3.x"})
    assert aws["bucket"] == "b" and aws["endpoint_url"] == "https://s3.x" and aws["prefix"] == ""
    options = s3_storage_options(parsed, "embeddings")
    assert options["location"] == "study-a/embeddings" and options["file_overwrite"] is True


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://bucket", "must look like s3://"),
        ("s3://", "must look like s3://"),
        ("s3://key:secret@bucket", "must not carry credentials"),
        ("s3://bucket?endpoint=x", "unknown parameter endpoint"),
        ("s3://bucket?endpoint_url=minio:9000", "endpoint_url must start with http"),
        ("s3://bucket?addressing_style=sideways", "addressing_style must be"),
    ],
)
def test_bad_storage_urls_are_named(url, words):
    with pytest.raises(ValueError, match=words):
        parse_storage({"STORAGE_URL": url})


def test_local_areas_are_the_plain_folders(settings, tmp_path):
    assert not storage.remote()
    storage.put_bytes("media", "thumbs/1/2_image.png", b"png")
    assert (settings.MEDIA_ROOT / "thumbs/1/2_image.png").read_bytes() == b"png"
    assert storage.local_copy("media", "thumbs/1/2_image.png") == (
        settings.MEDIA_ROOT / "thumbs/1/2_image.png"
    )
    staged = storage.staging_path("media", "exports/a.zip")
    assert staged == settings.MEDIA_ROOT / "exports/a.zip"  # no copy on the local file system
    staged.write_bytes(b"zip")
    storage.put_file("media", "exports/a.zip", staged)
    assert staged.read_bytes() == b"zip"
    storage.put_bytes("embeddings", "decoders/x.samdec", b"onnx")
    assert (settings.EMBEDDING_CACHE_DIR / "decoders/x.samdec").read_bytes() == b"onnx"
    assert storage.presigned_url("media", "exports/a.zip", "a.zip") is None
    for bad in ("../etc/passwd", "/abs", "a/../../b", "nul\x00", ""):
        with pytest.raises(ValueError, match="not a stored file name"):
            storage.local_path("media", bad)
    with pytest.raises(ValueError, match="unknown storage area"):
        storage.store("nowhere")


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    server.stop()


@pytest.fixture
def s3(settings, s3_server, monkeypatch, tmp_path):
    """Object storage on for one test: both areas in the bucket under a fresh prefix."""
    endpoint, client = s3_server
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    prefix = f"t{time.monotonic_ns()}"
    parsed = parse_storage({"STORAGE_URL": f"s3://{BUCKET}/{prefix}?endpoint_url={endpoint}"})
    settings.OBJECT_STORAGE = parsed
    settings.STORAGES = {**settings.STORAGES, **s3_storages(parsed)}
    storage._caches.clear()

    def keys():
        listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
        return sorted(o["Key"][len(prefix) + 1 :] for o in listing.get("Contents", []))

    yield keys
    storage._caches.clear()


def test_remote_put_and_local_copy_downloads_once(s3, settings):
    storage.put_bytes("media", "datasets/1/0.png", b"pixels")
    assert s3() == ["media/datasets/1/0.png"]
    assert not (settings.MEDIA_ROOT / "datasets/1/0.png").exists()  # nothing local by writing
    copy = storage.local_copy("media", "datasets/1/0.png")
    assert copy == settings.MEDIA_ROOT / "datasets/1/0.png" and copy.read_bytes() == b"pixels"
    storage.delete("media", "datasets/1/0.png")  # the store forgets: the copy still answers
    assert storage.local_copy("media", "datasets/1/0.png").read_bytes() == b"pixels"
    with pytest.raises(FileNotFoundError):
        storage.local_copy("media", "datasets/1/missing.png")
    assert not list(settings.MEDIA_ROOT.rglob(".download-*"))  # no partial file left behind


def test_remote_big_file_goes_up_in_parts_and_streams_back(s3, tmp_path):
    big = tmp_path / "export.zip"
    data = os.urandom(9 * 1024 * 1024 + 17)  # over the 8 MiB multipart threshold
    big.write_bytes(data)
    staged = storage.staging_path("media", "exports/study1_tidy_3.zip")
    assert not str(staged).startswith(str(tmp_path / "media"))  # private, not the area
    staged.write_bytes(data)
    storage.put_file("media", "exports/study1_tidy_3.zip", staged)
    assert not staged.exists()  # uploaded, then gone
    assert s3() == ["media/exports/study1_tidy_3.zip"]
    assert storage.size("media", "exports/study1_tidy_3.zip") == len(data)
    chunks = list(storage.iter_chunks("media", "exports/study1_tidy_3.zip", chunk=1 << 20))
    assert b"".join(chunks) == data and max(map(len, chunks)) <= 1 << 20
    response = storage.file_response(
        "media",
        "exports/study1_tidy_3.zip",
        "application/zip",
        as_attachment=True,
        filename="a.zip",
    )
    assert response["Content-Length"] == str(len(data))
    assert 'attachment; filename="a.zip"' == response["Content-Disposition"]
    assert b"".join(response.streaming_content) == data
    url = storage.presigned_url("media", "exports/study1_tidy_3.zip", "a.zip")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=300" in url


def test_local_copies_stay_under_their_bound_oldest_out_first(s3, settings):
    settings.LOCAL_CACHE_MAX_BYTES = 3000
    for k in range(5):
        storage.put_bytes("media", f"datasets/1/{k}.png", bytes(1000))
    for k in (0, 1, 2):
        storage.local_copy("media", f"datasets/1/{k}.png")
        time.sleep(0.02)
    storage.local_copy("media", "datasets/1/0.png")  # used again: now the most recent
    storage.local_copy("media", "datasets/1/3.png")  # over the bound: 1 goes (least recent)
    kept = sorted(p.name for p in (settings.MEDIA_ROOT / "datasets/1").iterdir())
    assert kept == ["0.png", "2.png", "3.png"] or kept == ["0.png", "3.png"]
    assert sum(p.stat().st_size for p in settings.MEDIA_ROOT.rglob("*.png")) <= 3000
    assert "1.png" not in kept


def test_a_worker_with_an_empty_cache_warms_itself_from_the_store(s3, settings, tmp_path):
    """One worker computes an embedding and stores it once; another (an empty local folder)
    finds it in the store instead of computing it again."""
    from interventions.segmentation.backend import Embedding
    from workers import model_cache

    sha = "a" * 64
    computed = Embedding(
        model_id="classical-v1",
        original_size=(3, 4),
        input_size=(3, 4),
        arrays={"features": np.arange(12, dtype=np.float32).reshape(3, 4)},
    )
    cache = model_cache.embedding_cache()
    assert type(cache).__name__ == "StoredEmbeddingCache"
    cache.put(sha, "classical-v1", None, computed)
    name = cache.key(sha, "classical-v1", None) + ".npz"
    assert s3() == [f"embeddings/{name}"]

    settings.EMBEDDING_CACHE_DIR = tmp_path / "other-worker"  # another machine
    model_cache.clear()
    other = model_cache.embedding_cache()
    assert not (tmp_path / "other-worker").exists()
    found = other.get(sha, "classical-v1", None)
    assert found is not None and np.array_equal(
        found.arrays["features"], computed.arrays["features"]
    )
    assert (tmp_path / "other-worker" / name).is_file()
    assert other.get("b" * 64, "classical-v1", None) is None  # a miss stays a miss


@pytest.mark.django_db
def test_dataset_files_go_to_the_store(s3, settings):
    from studies.core.datasets import create_dataset

    image = np.zeros((8, 10, 3), np.uint8)
    mask = np.zeros((8, 10), bool)
    mask[2:5, 3:7] = True
    dataset = create_dataset("stored", [(image, mask, None, "")], source="generated")
    row = dataset.images.get()
    assert s3() == sorted([f"media/{row.image.name}", f"media/{row.mask.name}"])
    assert not settings.MEDIA_ROOT.exists() or not list(settings.MEDIA_ROOT.rglob("*.png"))
    from workers.model_cache import image_files

    path, mask_path, _ = image_files(row.pk)
    assert path.startswith(str(settings.MEDIA_ROOT)) and os.path.isfile(mask_path)
    row.image.storage.save("extra.bin", ContentFile(b"x"))  # same storage, same bucket
    assert "media/extra.bin" in s3()
