"""A database created and filled before `studies/` was split by study kind (commit 5b7438a,
tests/data/v0) migrates in place: no row is lost, background and export jobs become one Job
model (export ids kept), and every export of both studies is byte-identical to the export the
old code wrote (the manifest's `exported_at`, `code_version` and `csv_cells` note aside)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "v0" / "v0.tar.xz"
FORMATS = ("pointprompt", "tidy", "coco")


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        tables = [
            r[0]
            for r in con.execute(
                "select name from sqlite_master where type='table' and name like 'studies_%'"
            )
        ]
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}


def manage(tmp: Path, *args: str, expect_ok: bool = True) -> str:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_", "PYTEST"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}",
        MEDIA_ROOT=str(tmp / "media"),
        EMBEDDING_CACHE_DIR=str(tmp / "embeddings"),
    )
    out = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if not expect_ok:
        assert out.returncode != 0, out.stdout[-3000:]
        return out.stderr
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def comparable_manifest(data: bytes) -> list:
    manifest = json.loads(data)
    manifest.pop("exported_at")
    manifest.pop("code_version")
    manifest.pop("csv_cells", None)  # a note added later (CSV formula escaping)
    return list(manifest.items())  # key order counts too


def test_v0_database_migrates_in_place_and_reexports_identically(tmp_path):
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    db = tmp_path / "db.sqlite3"
    with sqlite3.connect(db) as con:  # an export job of the old model: its id must survive
        con.execute(
            "insert into studies_exportjob (id, format, status, progress, file, error, created_at,"
            " study_id) values (41, 'coco', 'done', 1.0, 'exports/x.zip', '',"
            " '2026-11-01 10:00:00', 1)"
        )
    before = counts(db)
    manage(tmp_path, "migrate", "--noinput")
    after = counts(db)

    moved = {"studies_backgroundjob", "studies_exportjob"}
    for table, n in before.items():
        if table not in moved:
            assert after[table] == n, table  # models that moved packages kept their tables
    assert moved.isdisjoint(after)
    assert after["studies_job"] == before["studies_backgroundjob"] + before["studies_exportjob"]
    with sqlite3.connect(db) as con:
        kind, params = con.execute("select kind, params from studies_job where id = 41").fetchone()
        assert kind == "export" and json.loads(params) == {"format": "coco"}
        kinds = sorted(r[0] for r in con.execute("select kind from studies_job"))
    assert kinds.count("precompute") >= 1 and "baseline" in kinds

    for study_id, kind in ((1, "prompting"), (2, "intervention")):
        for fmt in FORMATS:
            out = tmp_path / f"new-{kind}-{fmt}.zip"
            if kind == "intervention" and fmt != "tidy":
                # the old code wrote empty PointPrompt / COCO archives for an intervention
                # study without a word; they are refused now, naming the formats it has
                error = manage(tmp_path, "export_study", str(study_id), "--format", fmt,
                               "--out", str(out), "--no-progress", expect_ok=False)  # fmt: skip
                assert "this study's formats: tidy" in error and not out.exists(), error
                continue
            manage(tmp_path, "export_study", str(study_id), "--format", fmt, "--out", str(out),
                   "--no-progress")  # fmt: skip
            old = zipfile.ZipFile(tmp_path / "exports" / f"{kind}-{fmt}.zip")
            new = zipfile.ZipFile(out)
            assert new.namelist() == old.namelist(), (kind, fmt)
            for name in old.namelist():
                if name == "manifest.json":
                    assert comparable_manifest(new.read(name)) == comparable_manifest(
                        old.read(name)
                    ), (kind, fmt)
                else:
                    assert new.read(name) == old.read(name), (kind, fmt, name)
