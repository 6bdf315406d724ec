"""The line of a closed study on PostgreSQL (issue 25), where writes really run side by side:
tests/core/pg_closing_line.py run by pytest against a PostgreSQL database of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.live_stack import pytest_on_own_postgresql, services_missing

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_closing_waits_for_writes_under_way_on_postgresql():
    reason = services_missing()
    if reason:
        pytest.skip(reason)
    out = pytest_on_own_postgresql("tests/core/pg_closing_line.py", "intervene_close")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "1 passed" in out.stdout
