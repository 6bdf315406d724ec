"""ASGI entry point."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()

# On the embedded default (no broker) batch jobs run on this process's background thread
# (studies/core/background.py), not inside the request that started them.
from studies.core import background  # noqa: E402

background.enable()
