"""The README's command list works as written: every manage.py command it names exists and is
spelt with the venv's Python (a bare `python` is not the one with Django in it), every make
target it names exists, and it states the prerequisites and the disk it takes."""

import re
from pathlib import Path

from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_manage_py_command_is_real_and_run_with_the_venv():
    uses = re.findall(r"`([^`]*manage\.py\s+([a-z_]+)[^`]*)`", README)
    assert len(uses) >= 4
    commands = get_commands()
    for whole, name in uses:
        assert name in commands, f"README names `{whole}`: no such command"
        assert whole.startswith(".venv/bin/python manage.py"), f"`{whole}` without the venv"


def test_every_make_target_named_exists():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"\bmake ([a-z][a-z-]+)", README))
    assert {"demo", "test", "test-fast", "setup"} <= named
    assert named <= targets, named - targets


def test_prerequisites_and_disk_are_stated():
    assert "Python 3.11" in README and "Node 20" in README and "npm" in README
    assert re.search(r"\d+(\.\d+)? GB of disk", README)
