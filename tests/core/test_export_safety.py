"""Exports are safe to open (issue 11, finding 9): entry names from user text stay inside the
folder they are unpacked into, and CSV cells a spreadsheet would run as formulas are quoted
(numbers never are), as the manifest says."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest

from studies.core.exports import run_export
from studies.core.exports.archive import ExportArchive, safe_entry_name
from studies.core.exports.tables import cell, write_csv
from studies.models import PromptEvent
from tests.export_sessions import run_sessions
from tests.factories import prompting_study

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "name, safe",
    [
        ("events.csv", "events.csv"),
        ("Image datasets/Clean shapes/samples.npy", "Image datasets/Clean shapes/samples.npy"),
        ("finetune/samples/../../evil/0.npy", "finetune/samples/evil/0.npy"),
        ("/etc/passwd", "etc/passwd"),
        ("..\\..\\win.ini", "win.ini"),
        ("C:/x.txt", "C_/x.txt"),
        ("a/\x00b\n/c", "a/_b_/c"),
    ],
)
def test_entry_names_are_made_safe(name, safe):
    assert safe_entry_name(name) == safe


def test_formula_cells_are_quoted_numbers_are_not():
    assert cell('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    for text in ("+1", "-1+2", "@SUM(A1)", "\tx", "\rx"):
        assert cell(text) == "'" + text
    assert cell(-0.5) == -0.5 and cell(-3) == -3 and cell("plain") == "plain"
    assert cell("a=b") == "a=b"


def test_hostile_names_and_ids_in_a_real_export(tmp_path):
    study = prompting_study(n_images=2, participants=1)
    study.dataset.name = "../../outside"
    study.dataset.save()
    run_sessions(study)
    PromptEvent.objects.filter(seq=0).update(client_event_id='=HYPERLINK("http://evil","x")')
    for fmt in ("pointprompt", "tidy"):
        out = tmp_path / f"{fmt}.zip"
        run_export(study, fmt, out)
        with zipfile.ZipFile(out) as zf:
            names = zf.namelist()
            assert all(".." not in n.split("/") and not n.startswith("/") for n in names), names
            manifest = json.loads(zf.read("manifest.json"))
            assert "single quote" in manifest["csv_cells"]
            assert set(manifest["files"]) == set(names) - {"manifest.json"}
            if fmt == "tidy":
                rows = list(csv.DictReader(io.StringIO(zf.read("events.csv").decode())))
                ids = {r["client_event_id"] for r in rows}
                assert '\'=HYPERLINK("http://evil","x")' in ids
                assert not any(i.startswith("=") for i in ids)


def test_write_csv_keeps_negative_numbers(tmp_path):
    archive = ExportArchive(tmp_path / "a.zip")
    write_csv(archive, "t.csv", ["a", "b"], [{"a": -0.5, "b": "-0.5"}])
    archive.close()
    text = zipfile.ZipFile(tmp_path / "a.zip").read("t.csv").decode()
    assert text.splitlines()[1] == "-0.5,'-0.5"
