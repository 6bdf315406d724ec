"""Object storage across machines (issue 23): the web and a Celery worker that share nothing
but PostgreSQL, Redis and an S3-compatible store (moto's standalone server on loopback).

The worker's MEDIA_ROOT and embedding cache are empty folders of its own, the web's are
others: the worker reads every image and mask from the store, writes embeddings (once, by
content), the browser decoder and the exports into it, and the web serves what the worker
wrote. The same study exported on the local file system (the bucket's files copied to a
folder, the same database) gives byte-identical exports (the manifest's export time aside). With
the store down mid-study a click that needs it answers 503 with the retry advice, nothing is
stored, and the retry goes through once it is back.
Skipped, with the reason, when PostgreSQL or Redis is missing.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import requests

from tests.live_stack import LiveStack, free_port, random_sam_vit_b_checkpoint, services_missing
from tests.ops.test_integration_live import inside_outside

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "intervene-it"
CHECKPOINT = Path(tempfile.gettempdir()) / "intervene-tests" / "sam_vit_b_random_seed0.pth"
FORMATS = ("pointprompt", "tidy", "coco")
PROTOCOL = {"stagnation_limit": 100, "max_rounds": 1}


class S3Server:
    """moto's S3 server in this process, on a loopback port; stop() / start() keep its data."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.server._server.server_close()  # free the port: refused at once, and start() binds it

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def env(self, prefix: str) -> dict:
        return {
            "STORAGE_URL": f"s3://{BUCKET}/{prefix}?endpoint_url={self.endpoint}&region=us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def keys(self, prefix: str) -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        )
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="module")
def s3():
    reason = services_missing()
    if reason:
        print(f"SKIP integration: {reason}")
        pytest.skip(reason)
    server = S3Server()
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def open_stack(env: dict, worker_root: Path) -> LiveStack:
    """A stack whose worker has its own, empty folders: it cannot see the web's files."""
    worker_root.mkdir(parents=True, exist_ok=True)
    return LiveStack(
        participants=1,
        images=3,  # the third is left for the store-down click: the worker never read it
        backend="sam",
        sam_checkpoint=random_sam_vit_b_checkpoint(CHECKPOINT, seed=0),
        protocol=PROTOCOL,
        consented=True,
        embed=True,  # on the batch worker: the interactive one then reads them from the store
        interactive_timeout_s=60.0,
        env=env,
        worker_env={
            "MEDIA_ROOT": str(worker_root / "media"),
            "EMBEDDING_CACHE_DIR": str(worker_root / "embeddings"),
        },
        worker_threads=2,
    )


def researcher(stack: LiveStack) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{stack.base_url}/accounts/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        f"{stack.base_url}/accounts/login/",
        data={"username": "live", "password": "pw-live", "csrfmiddlewaretoken": token},
        headers={"Referer": f"{stack.base_url}/accounts/login/"},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 302, answer.text[:300]
    session.headers.update(
        {"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{stack.base_url}/studies/"}
    )
    return session


def export(stack: LiveStack, session: requests.Session, fmt: str) -> tuple[dict, bytes]:
    started = session.post(
        f"{stack.base_url}/api/v1/studies/{stack.study['id']}/exports",
        json={"format": fmt},
        timeout=60,
    )
    assert started.status_code in (200, 201, 202), started.text
    job = started.json()
    deadline = time.monotonic() + 300
    while job["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, f"export {fmt} not done in 300 s: {job}"
        time.sleep(0.5)
        job = session.get(f"{stack.base_url}/api/v1/exports/{job['id']}", timeout=30).json()
    assert job["status"] == "done", job
    download = session.get(job["download_url"], timeout=120)
    assert download.status_code == 200, download.text[:300]
    return job, download.content


def run_study(stack: LiveStack) -> dict:
    """Clicks on two images, the browser decoder and embedding, three exports: what came back."""
    annotator = stack.annotator(0)
    me = annotator.get("participants/me").json()
    assert len(me["assignments"]) == 3
    for assignment in me["assignments"][:2]:
        aid = assignment["id"]
        inside, background = inside_outside(annotator, assignment["ground_truth_url"])
        for step, (mode, point) in enumerate(
            [("green", inside), ("red", background[0]), ("red", background[1]), ("green", inside)]
        ):
            answer = annotator.send(aid, annotator.body(aid, "add", mode, *point))
            assert answer.status_code == 200, (step, answer.text)
        assert annotator.post(f"assignments/{aid}/finish", {}).status_code == 200
    first = me["assignments"][0]["id"]
    state = annotator.get(f"assignments/{first}").json()  # starts the decoder export
    deadline = time.monotonic() + 300
    while (decoder := annotator.get(f"assignments/{first}/decoder.samdec")).status_code != 200:
        assert decoder.status_code == 404, decoder.text
        assert time.monotonic() < deadline, f"no decoder after 300 s: {decoder.text}"
        time.sleep(1)
    embedding = annotator.get(f"assignments/{first}/embedding.f16")
    assert embedding.status_code == 200, embedding.text[:300]
    session = researcher(stack)
    exports = {fmt: export(stack, session, fmt) for fmt in FORMATS}
    return {
        "state": state,
        "decoder": decoder.content,
        "embedding": embedding.content,
        "exports": exports,
        "session": session,
    }


def _strip(value, drop=("exported_at",)):
    if isinstance(value, dict):
        return {k: _strip(v, drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [_strip(v, drop) for v in value]
    return value


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.fixture(scope="module")
def run(s3, tmp_path_factory):
    """The study on the S3 server; then the same database exported on the local file system
    (the bucket's media copied to a folder, STORAGE_URL unset) for the byte comparison."""
    root = tmp_path_factory.mktemp("storage")
    with open_stack(s3.env("lab1"), root / "s3-worker") as stack:
        out = run_study(stack)
        out["web_files"] = files_under(stack.tmp / "media") + files_under(stack.tmp / "embeddings")
        out["worker_files"] = files_under(root / "s3-worker")
        out["keys"] = s3.keys("lab1/")
        local_media = root / "local-media"
        client = s3.client()
        for key in out["keys"]:
            if key.startswith("lab1/media/") and "/exports/" not in key:
                target = local_media / key[len("lab1/media/") :]
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(BUCKET, key, str(target))
        env = {k: v for k, v in stack.env.items() if k != "STORAGE_URL"}
        env["MEDIA_ROOT"] = str(local_media)
        out["local_exports"] = {}
        for fmt in FORMATS:
            target = root / f"local-{fmt}.zip"
            stack.manage(
                "export_study", str(stack.study["id"]), "--format", fmt,
                "--out", str(target), "--no-progress", env=env,
            )  # fmt: skip
            out["local_exports"][fmt] = target.read_bytes()
        out["stored_decoder"] = [k for k in out["keys"] if "/embeddings/decoders/" in k]
        out["decoder_object"] = client.get_object(Bucket=BUCKET, Key=out["stored_decoder"][0])[
            "Body"
        ].read()
        job, _ = out["exports"]["tidy"]
        link = out["session"].get(
            job["download_url"] + "?presigned=1", allow_redirects=False, timeout=30
        )
        out["presigned"] = (link.status_code, link.headers.get("Location", ""))
        out["presigned_body"] = requests.get(out["presigned"][1], timeout=30).content
        out["store_down"] = store_down_and_back(s3, stack)
    return out


def store_down_and_back(s3: S3Server, stack: LiveStack) -> dict:
    """A click on the third image, which the worker has never read, with the store stopped."""
    annotator = stack.annotator(0)
    aid = annotator.get("participants/me").json()["assignments"][2]["id"]
    green = annotator.body(aid, "add", "green", 40, 40)
    assert annotator.send(aid, green).status_code == 200  # one point: no prediction, no store
    click = annotator.body(aid, "add", "red", 2, 2)
    s3.stop()
    try:
        refused = annotator.post(f"assignments/{aid}/events", click)
        stored_meanwhile = stack.sql(
            "SELECT count(*) FROM studies_promptevent WHERE assignment_id = %s", (aid,)
        )[0][0]
        next_seq = stack.sql("SELECT next_seq FROM studies_assignment WHERE id = %s", (aid,))[0][0]
    finally:
        s3.start()
    deadline = time.monotonic() + 60
    while (retried := annotator.post(f"assignments/{aid}/events", click)).status_code != 200:
        assert time.monotonic() < deadline, retried.text
        time.sleep(1)
    return {
        "refused": (refused.status_code, refused.json().get("error", "")),
        "stored_meanwhile": stored_meanwhile,
        "next_seq_meanwhile": next_seq,
        "seq": click["seq"],
        "retried": retried.json(),
    }


def test_the_worker_reads_and_writes_only_through_the_store(run):
    assert run["web_files"] == [], "the web wrote files locally with object storage on"
    keys = run["keys"]
    assert sum(k.startswith("lab1/media/datasets/") for k in keys) >= 6, keys  # images + masks
    assert sum(k.startswith("lab1/embeddings/") and k.endswith(".npz") for k in keys) == 3, keys
    assert len(run["stored_decoder"]) == 1 and run["decoder_object"] == run["decoder"]
    assert any(k.startswith("lab1/embeddings/browser/") for k in keys), keys
    assert sum(k.startswith("lab1/media/exports/") for k in keys) == len(FORMATS), keys
    # the interactive worker warmed its own local copies from the store
    worker = run["worker_files"]
    assert any(f.startswith("media/") for f in worker) and any(f.endswith(".npz") for f in worker)
    assert len(run["embedding"]) > 1000


def test_exports_are_byte_identical_to_the_local_file_system(run):
    for fmt in FORMATS:
        a, b = members(run["local_exports"][fmt]), members(run["exports"][fmt][1])
        assert sorted(a) == sorted(b), fmt
        for name in a:
            if name.endswith("manifest.json"):
                left, right = json.loads(a[name]), json.loads(b[name])
                assert _strip(left) == _strip(right), fmt
            else:
                assert a[name] == b[name], f"{fmt}: {name} differs"


def test_presigned_download_comes_straight_from_the_store(run):
    status, location = run["presigned"]
    assert status == 302 and "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
    assert run["presigned_body"] == run["exports"]["tidy"][1]


def test_the_store_down_mid_study_gives_503_then_the_retry_succeeds(run):
    down = run["store_down"]
    status, error = down["refused"]
    assert status == 503 and "retry with the same client_event_id" in error
    assert down["stored_meanwhile"] == 1 and down["next_seq_meanwhile"] == down["seq"]
    assert down["retried"]["timestep"] == 0 and down["retried"]["mask_rle"]
