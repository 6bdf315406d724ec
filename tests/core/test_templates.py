"""Template source rules: Django's `{# ... #}` comment is one line only; a `{#` left open on its
line is printed to the page as text (it showed above the plots of both analysis pages)."""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def open_comments(text: str) -> list[int]:
    """Line numbers (1-based) holding a `{#` with no `#}` after it on the same line."""
    return [
        n
        for n, line in enumerate(text.splitlines(), 1)
        if any("#}" not in line[m.end() :] for m in re.finditer(r"\{#", line))
    ]


def test_the_scan_finds_a_comment_spread_over_two_lines():
    assert open_comments("{# one line #}\n<p>{# a #} b</p>\n{# two\n lines #}\n") == [3]


def test_no_template_has_a_multi_line_hash_comment():
    found = [
        f"{path.relative_to(TEMPLATES)}:{n}"
        for path in sorted(TEMPLATES.rglob("*.html"))
        for n in open_comments(path.read_text(encoding="utf-8"))
    ]
    assert found == [], f"{{# without #}} on the same line (use {{% comment %}}): {found}"
