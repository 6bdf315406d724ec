"""Shared fixtures. Browser fixtures (headless Chromium) live in tests/browser_support.py."""

import pytest

from tests.browser_support import chromium, new_page  # noqa: F401


@pytest.fixture(autouse=True)
def fresh_worker_caches():
    """Each test starts with empty per-process caches: row ids and MEDIA_ROOT repeat across
    tests, so a cached path or model from an earlier test would be stale."""
    from workers import model_cache

    model_cache.clear()
    yield
    model_cache.clear()
