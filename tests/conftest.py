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


def pytest_configure(config):
    """Browser tests' live server hands /static/ to the app, where whitenoise serves it with
    the headers production sends (config/static_headers.py: COEP on onnxruntime-web's worker
    script, without which the cross-origin isolated prompting page cannot start its threads),
    instead of pytest-django's StaticFilesHandler, which would answer before any middleware."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler

    StaticFilesHandler._should_handle = lambda self, path: False


@pytest.fixture(autouse=True)
def jobs_in_line(request):
    """Jobs run in-line in every test that does not ask for `background_jobs`: a test that
    imports config.wsgi (tests/ops/test_deploy_compose.py checks gunicorn's target) turns the
    server's background thread on for the rest of its process."""
    from studies.core import background

    wanted = "background_jobs" in request.fixturenames
    if background.enabled() and not wanted:
        background.disable()
    yield
    if background.enabled() and not wanted:
        background.disable()


@pytest.fixture
def background_jobs(transactional_db):
    """Batch jobs on the background thread, as in a server on the embedded default (the test
    client alone runs them in-line); waits for them at the end. Needs committed rows, hence
    transactional_db."""
    from django.core.signals import request_finished

    from studies.core import background

    # The test database (in-memory SQLite, shared cache) has no busy timeout: a write of the
    # job's thread during the request's own last writes (its session) fails at once with
    # "table is locked". A task queued by a request starts once that request has finished;
    # on the demo's file database the two simply take turns (test_background_jobs.py checks).
    submit, pending = background.submit, []

    def after_the_request(**_kwargs):
        while pending:
            submit(*pending.pop(0))

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(background, "submit", lambda *task: pending.append(task))
    request_finished.connect(after_the_request, dispatch_uid="background-jobs-fixture")
    background.enable()
    assert background.enabled()
    yield background
    request_finished.disconnect(dispatch_uid="background-jobs-fixture")
    monkeypatch.undo()
    after_the_request()
    background.disable()


# Files whose tests each take seconds (model-equality checks on real torch / ONNX graphs, live
# servers, schemathesis, migrations of an old database). `make test` runs them like every other
# test; `make test-fast` (`-m "not slow"`) leaves them out so that it stays under two minutes.
SLOW_FILES = {
    "tests/science/test_onnx_decoder.py",
    "tests/science/test_segmentation_batching.py",
    "tests/science/test_segmentation_sam.py",
    "tests/science/test_voice.py",
    "tests/science/test_explain.py",
    "tests/science/test_trust.py",
    "tests/science/test_trust_released.py",
    "tests/science/test_causal.py",
    "tests/science/test_pointprompt_regression.py",
    "tests/science/test_explain_cli.py",
    "tests/prompting/test_prompt_regression.py",
    "tests/prompting/test_browser_decoder_api.py",
    "tests/prompting/test_worker_batching.py",
    "tests/core/test_api_fuzz.py",
    "tests/core/test_v0_database.py",
    "tests/core/test_login_lockout.py",
    "tests/core/test_small_leaks.py",
    "tests/core/test_layout.py",
    "tests/core/test_concurrent_eager.py",
    "tests/core/test_behind_proxy.py",
}


def pytest_collection_modifyitems(config, items):
    root = config.rootpath
    for item in items:
        if item.path.relative_to(root).as_posix() in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
