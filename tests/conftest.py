"""Shared fixtures. Browser fixtures (headless Chromium) live in tests/browser_support.py."""
from tests.browser_support import chromium, new_page  # noqa: F401
