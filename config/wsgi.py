"""WSGI entry point (gunicorn config.wsgi; runserver loads it too)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# On the embedded default (no broker) a server process runs batch jobs on a background thread
# of its own instead of inside the request that started them (studies/core/background.py).
from studies.core import background  # noqa: E402

background.enable()
