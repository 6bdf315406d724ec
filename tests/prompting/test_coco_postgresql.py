"""The COCO export's PostgreSQL path (DISTINCT ON) against the portable one:
tests/prompting/pg_coco_final_best.py run by pytest against a PostgreSQL database of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.live_stack import services_missing

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def test_final_and_best_on_postgresql():
    reason = services_missing()
    if reason:
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env["DATABASE_URL"] = (
        f"postgres://postgres@127.0.0.1:5432/intervene_coco_{uuid.uuid4().hex[:8]}"
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/prompting/pg_coco_final_best.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "1 passed" in out.stdout
