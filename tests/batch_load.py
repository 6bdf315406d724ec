"""A researcher's data set import running on a live stack while a participant clicks: the load
of issue 25 ("one CPU worker must not starve the participants"), shared by
tests/ops/test_worker_queues.py and bench/queue_isolation.py.

- `import_archive_bytes(pairs, side)`: a zip of `images/NNN.png` + `masks/NNN.png` pairs (a
  shaded scene with one disk), large enough that its import keeps a `batch` worker busy for
  seconds.
- `Researcher(stack)`: signs in over HTTP (the seeded `live` account) and uploads it through
  the real upload page, so the import is the one a researcher starts (`/datasets/upload`).
- `job_state(stack, job_id)`: the Job row's status and progress, read from PostgreSQL.
- `ClickSession(annotator)`: events that each produce a prediction (one green point first,
  then red points; cleared every 10), timed from the client.
"""

from __future__ import annotations

import io
import random
import re
import time
import zipfile
from dataclasses import dataclass, field

import numpy as np
import requests
from PIL import Image

# Clicks never end the image (no stagnation, one long round).
PROTOCOL = {"stagnation_limit": 100_000, "max_rounds": 1}


def import_archive_bytes(pairs: int, side: int = 384, seed: int = 0) -> bytes:
    """A zip of `pairs` image/mask PNG pairs (side x side), stored (PNG is compressed already)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for i in range(pairs):
            cx, cy = rng.integers(side // 4, 3 * side // 4, size=2)
            radius = int(rng.integers(side // 10, side // 4))
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
            base = rng.integers(40, 200, size=3)
            image = np.empty((side, side, 3), np.uint8)
            for channel in range(3):
                shade = base[channel] + 40 * np.sin(xx / (7 + channel) + i) * np.cos(yy / 11)
                image[..., channel] = np.clip(shade + 50 * mask, 0, 255).astype(np.uint8)
            for name, array in ((f"images/{i:04d}.png", image), (f"masks/{i:04d}.png", mask)):
                png = io.BytesIO()
                Image.fromarray(array.astype(np.uint8) * (255 if array.dtype == bool else 1)).save(
                    png, format="PNG", compress_level=1
                )
                archive.writestr(name, png.getvalue())
    return buffer.getvalue()


class Researcher:
    """The seeded researcher (`live`, password `pw-live`), signed in over HTTP."""

    def __init__(self, base_url: str, username: str = "live", password: str = "pw-live") -> None:
        self.base_url = base_url
        self.http = requests.Session()
        page = self.http.get(f"{base_url}/accounts/login/", timeout=30)
        response = self.http.post(
            f"{base_url}/accounts/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self._token(page.text),
            },
            headers={"Referer": f"{base_url}/accounts/login/"},
            allow_redirects=False,
            timeout=30,
        )
        if response.status_code != 302:
            raise RuntimeError(f"sign-in answered {response.status_code}: {response.text[:300]}")

    @staticmethod
    def _token(html: str) -> str:
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        if not found:
            raise RuntimeError("no CSRF token on the page")
        return found.group(1)

    def upload(self, archive: bytes, name: str) -> int:
        """POST the archive to the upload page; the id of the import job it started."""
        url = f"{self.base_url}/datasets/upload"
        page = self.http.get(url, timeout=30)
        response = self.http.post(
            url,
            data={"name": name, "csrfmiddlewaretoken": self._token(page.text)},
            files={"archive": (f"{name}.zip", archive, "application/zip")},
            headers={"Referer": url},
            allow_redirects=False,
            timeout=120,
        )
        found = re.search(r"/datasets/imports/(\d+)", response.headers.get("Location", ""))
        if response.status_code != 302 or not found:
            raise RuntimeError(f"upload answered {response.status_code}: {response.text[:500]}")
        return int(found.group(1))


def job_state(stack, job_id: int) -> dict:
    """{"status", "done", "total"} of a Job row, straight from the stack's database."""
    rows = stack.sql("SELECT status, done, total FROM studies_job WHERE id = %s", (job_id,))
    if not rows:
        raise RuntimeError(f"no job {job_id}")
    status, done, total = rows[0]
    return {"status": status, "done": done, "total": total}


def wait_until_running(stack, job_id: int, timeout: float = 60.0) -> dict:
    """Wait until a worker has taken the job (status running: it is inside the import)."""
    deadline = time.monotonic() + timeout
    while True:
        state = job_state(stack, job_id)
        if state["status"] == "running":
            return state
        if state["status"] in ("done", "failed") or time.monotonic() > deadline:
            raise RuntimeError(f"import job {job_id} is not running: {state}")
        time.sleep(0.05)


@dataclass
class ClickSession:
    """One participant's clicks on one assignment; every timed click asks for a prediction."""

    annotator: object
    seed: int = 0
    events: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.aid = self.annotator.assignments[0]

    def _send(self, body: dict) -> requests.Response:
        response = self.annotator.send(self.aid, body)
        self.events += 1
        return response

    def start(self) -> None:
        """A green point (no prediction yet: the next red point makes one)."""
        a = self.annotator
        body = a.body(self.aid, "add", "green", a.width // 2, a.height // 2)
        response = self._send(body)
        if response.status_code != 200:
            raise RuntimeError(
                f"first point answered {response.status_code}: {response.text[:300]}"
            )

    def click(self) -> tuple[float, requests.Response]:
        """One red point (a prediction on the `interactive` queue): (seconds, response)."""
        a = self.annotator
        if self.events % 10 == 0:
            cleared = self._send(a.body(self.aid, "clear"))
            if cleared.status_code != 200:
                raise RuntimeError(f"clear answered {cleared.status_code}: {cleared.text[:300]}")
            self.start()
        body = a.body(
            self.aid, "add", "red", self.rng.randrange(a.width), self.rng.randrange(a.height)
        )
        started = time.perf_counter()
        response = self._send(body)
        return time.perf_counter() - started, response
