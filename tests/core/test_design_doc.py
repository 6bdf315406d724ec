"""docs/design.md is the project's own design document: every section the code cites as
`docs/design.md "Section"` is one of its headings, and no file points at a design document
outside the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("config", "studies", "workers", "interventions", "bench", "tests", "templates", "static")
SUFFIXES = {".py", ".md", ".html", ".js", ".toml", ".cfg", ".txt"}


def sources() -> list[Path]:
    files = [ROOT / "README.md", *ROOT.glob("docs/*.md")]
    for folder in FOLDERS:
        files += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.suffix in SUFFIXES and "vendor" not in p.parts and p.is_file()
        ]
    return [p for p in files if p.is_file()]


def test_every_cited_section_is_a_heading():
    headings = {
        m.group(1).strip()
        for m in re.finditer(r"^#+ (.+)$", (ROOT / "docs" / "design.md").read_text(), re.M)
    }
    cited = {}
    for path in sources():
        if path.name == "design.md" or path == Path(__file__).resolve():
            continue
        for name in re.findall(r'docs/design\.md,? "([^"]+)"', path.read_text(errors="replace")):
            name = re.sub(r"\s+#?\s*", " ", name)  # a citation wrapped over two lines
            cited.setdefault(name, str(path.relative_to(ROOT)))
    assert len(cited) >= 7  # the check has something to check
    missing = {name: where for name, where in cited.items() if name not in headings}
    assert missing == {}


def test_no_design_document_outside_the_repository():
    outside = re.compile(r"/work/|(?<![\w/])DESIGN\.md")
    offenders = [
        str(p.relative_to(ROOT))
        for p in sources()
        if p != Path(__file__).resolve() and outside.search(p.read_text(errors="replace"))
    ]
    assert offenders == []
