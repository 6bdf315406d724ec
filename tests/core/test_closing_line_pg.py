"""The line of a closed study on PostgreSQL (issue 25), where writes really run side by side:
tests/core/pg_closing_line.py run by pytest against a PostgreSQL database of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.live_stack import services_missing

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_closing_waits_for_writes_under_way_on_postgresql():
    reason = services_missing()
    if reason:
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    # pytest-django makes (and drops) test_<name>; the name itself is never used
    env["DATABASE_URL"] = (
        f"postgres://postgres@127.0.0.1:5432/intervene_close_{uuid.uuid4().hex[:8]}"
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/core/pg_closing_line.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "1 passed" in out.stdout
