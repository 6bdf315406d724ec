"""The layout rules of DESIGN.md: `interventions` never imports Django; the web never imports torch."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def loaded_after(code: str) -> set[str]:
    """Top-level modules loaded after running `code` in a fresh interpreter."""
    script = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_interventions_never_imports_django():
    modules = sorted(p.stem for p in (ROOT / "interventions").glob("*.py") if p.stem != "__main__")
    code = "\n".join(f"import interventions.{m}" for m in modules)
    code += "\nimport interventions.segmentation, interventions.segmentation.cache"
    assert "django" not in loaded_after(code)


def test_the_web_process_serves_every_url_without_torch():
    code = (
        "import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings')\n"
        "import django; django.setup()\n"
        "from django.urls import get_resolver; get_resolver().url_patterns\n"
        "import config.wsgi\n"
        "import studies.views_participant, studies.views_researcher, studies.api, studies.api_trials\n"
    )
    assert "torch" not in loaded_after(code)
