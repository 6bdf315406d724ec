"""The site as `make demo` runs it, for benchmarks that drive its pages: a throw-away SQLite
database and media folder, eager Celery, and a live Django server on 127.0.0.1."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def throwaway_django(prefix: str) -> Path:
    """Point Django at a new temporary folder (database, media, embeddings), with Celery eager
    (no broker), set it up and migrate; returns the folder."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}",
        MEDIA_ROOT=str(tmp / "media"),
        EMBEDDING_CACHE_DIR=str(tmp / "embeddings"),
        DJANGO_ALLOW_ASYNC_UNSAFE="true",
    )
    for key in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(key, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return tmp


def live_server():
    """A started live server thread (call ``.terminate()``) and its base URL. /static/ goes
    through the app, where whitenoise adds the headers production sends (the COEP on the
    decoder's worker scripts, without which the isolated prompting page gets no threads)."""
    from django.test.testcases import LiveServerThread

    server = LiveServerThread("127.0.0.1", lambda app: app, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    return server, f"http://127.0.0.1:{server.port}"
