"""Micro-batching of SAM clicks on an `interactive` worker that runs a threads pool
(`celery -A config worker -Q interactive -P threads -c N`): clicks from different annotators
that arrive within a few milliseconds are decoded in one forward of SAM's prompt encoder + mask
decoder (`interventions.segmentation.batching.MicroBatcher`), with the same answers as one at a
time. A prefork worker runs one task per process at a time, so nothing could be batched there:
its path is unchanged.

On by itself when the worker starts with a threads pool and concurrency > 1; off with
INTERVENE_MICROBATCH=0. INTERVENE_MICROBATCH_MAX (default 8) and
INTERVENE_MICROBATCH_WAIT_MS (default 5) size the batches. Light at import (no torch).
"""

from __future__ import annotations

import logging
import os
import threading

from celery import signals

log = logging.getLogger(__name__)
_lock = threading.Lock()
_settings: dict | None = None  # {"max_batch": int, "max_wait_ms": float} when enabled
_batchers: dict[int, object] = {}  # id(backend) -> MicroBatcher


def enable(max_batch: int = 8, max_wait_ms: float = 5.0) -> None:
    """Batch the SAM clicks of this process from now on (the worker's start, tests)."""
    global _settings
    with _lock:
        _settings = {"max_batch": max_batch, "max_wait_ms": max_wait_ms}


def disable() -> None:
    """Back to one `backend.predict` per click; running batchers finish what they hold."""
    global _settings
    with _lock:
        _settings = None
        batchers = list(_batchers.values())
        _batchers.clear()
    for batcher in batchers:
        batcher.close()


def enabled() -> bool:
    return _settings is not None


def batcher_for(backend):
    """The process's MicroBatcher of a SAM backend, or None when batching is off or the
    backend is not SAM (the classical backend has no decoder to batch)."""
    if _settings is None or not hasattr(backend, "predictor"):
        return None
    with _lock:
        if _settings is None:
            return None
        batcher = _batchers.get(id(backend))
        if batcher is None or batcher.backend is not backend:
            from interventions.segmentation.batching import MicroBatcher

            batcher = MicroBatcher(backend, **_settings)
            _batchers[id(backend)] = batcher
            log.info("SAM micro-batching on for %s (%s)", backend.model_id, _settings)
        return batcher


def threads_pool(pool_cls) -> bool:
    """Whether a worker's pool (a name such as "threads", or the class) runs tasks as threads."""
    from celery.concurrency import get_implementation
    from celery.concurrency.thread import TaskPool

    cls = get_implementation(pool_cls) if isinstance(pool_cls, str) else pool_cls
    return isinstance(cls, type) and issubclass(cls, TaskPool)


@signals.worker_init.connect
def _on_worker_init(sender=None, **_kwargs) -> None:
    if sender is None:
        return
    concurrency = int(sender.concurrency or 1)
    wanted = os.environ.get("INTERVENE_MICROBATCH", "1") != "0"
    if wanted and concurrency > 1 and threads_pool(sender.pool_cls):
        enable(
            int(os.environ.get("INTERVENE_MICROBATCH_MAX", "8")),
            float(os.environ.get("INTERVENE_MICROBATCH_WAIT_MS", "5")),
        )
    else:
        disable()
