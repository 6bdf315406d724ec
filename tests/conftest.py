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


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """Every test writes its files (media, embedding cache) under its own tmp_path, and never
    picks up a SAM checkpoint from the environment."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.EMBEDDING_CACHE_DIR = tmp_path / "embeddings"
    settings.SAM_CHECKPOINT = ""
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def fresh_django_cache():
    """Counters kept in Django's cache (the enrolment throttle) start at zero in every test."""
    from django.core.cache import cache

    cache.clear()
    yield
