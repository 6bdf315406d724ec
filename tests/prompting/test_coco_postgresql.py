"""The COCO export's PostgreSQL path (DISTINCT ON) against the portable one:
tests/prompting/pg_coco_final_best.py run by pytest against a PostgreSQL database of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.live_stack import pytest_on_own_postgresql, services_missing

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def test_final_and_best_on_postgresql():
    reason = services_missing()
    if reason:
        pytest.skip(reason)
    out = pytest_on_own_postgresql("tests/prompting/pg_coco_final_best.py", "intervene_coco")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "1 passed" in out.stdout
