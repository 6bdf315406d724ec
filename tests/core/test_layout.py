"""The layout rules of docs/design.md: `interventions` never imports Django; the web never imports torch."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
        "import studies.core.views_participant, studies.core.views_researcher, studies.core.api, studies.intervention.api\n"
        # the analyses registry's names, labels and code version (no compute)
        "from interventions.analyses import ANALYSES, ANALYSIS_METHODS, OVERLAYS, code_version\n"
        "assert ANALYSIS_METHODS and OVERLAYS and ANALYSES['voice'].maps and code_version()\n"
    )
    assert "torch" not in loaded_after(code)


def import_graph() -> dict[str, set[str]]:
    """Project module -> project modules it imports anywhere in its file (lazy imports inside
    functions count: a circle hidden in a function is still a circle)."""
    import ast

    packages = ("studies", "workers", "interventions", "config")
    modules = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] not in packages or "migrations" in rel.parts:
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                found = resolve(target)
                if found and found != name and not name.startswith(found + "."):
                    graph[name].add(found)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    graph = import_graph()
    assert len(graph) > 50 and "studies.core.recorder" in graph["studies.prompting.events"]
    assert circles(graph) == []
    assert circles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]  # the check can fail


def test_no_kind_comparisons_outside_the_registry():
    """Shared code asks the kind registry; only a kind's own package names its kind."""
    import re

    pattern = re.compile(r"kind\s*[!=]=\s*[\"'](prompting|intervention)[\"']")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("studies", "workers", "templates", "config")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in (".py", ".html") and pattern.search(path.read_text())
    ]
    assert offenders == []
