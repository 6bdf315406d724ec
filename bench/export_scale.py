"""Export speed and peak memory of the three prompting formats on a PointPrompt-size study.

    .venv/bin/python bench/export_scale.py --timesteps 20000 [--db postgres|sqlite]
        [--formats pointprompt,tidy,coco] [--baseline-rev REV | --no-baseline] [--profile DIR]

Makes its own database (PostgreSQL: `intervene_exportbench_<random>` on
postgres@127.0.0.1:5432, created, migrated and dropped again; SQLite: a file in a temp
folder), generates the study with `bench/pointprompt_scale.generate_study` (images in a temp
MEDIA_ROOT), then exports each format twice, each export in its own process:

- `ours`: the code in this working tree;
- `baseline`: the same process, except that the export modules (studies/core/exports/npy.py,
  archive.py, tables.py and studies/prompting/exports/records.py, tidy.py, coco.py,
  pointprompt.py) are the ones of `--baseline-rev` (`git show REV:path`, loaded in their
  place before the export runs), i.e. the code before issue 27's change.

An export process reports the export's wall seconds and its own peak RSS
(`getrusage(RUSAGE_SELF).ru_maxrss`, the kernel's high-water mark of that process, Django
start-up included) and the size of the zip. One JSON line per export, then one summary line
with the ratios (baseline / ours). `--profile DIR` writes a cProfile of each export there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINE_REV = "4b205a5"  # the commit before the export change (issue 27)
# (module, path) in import order: later ones import the earlier ones
EXPORT_MODULES = (
    ("studies.core.exports.npy", "studies/core/exports/npy.py"),
    ("studies.core.exports.tables", "studies/core/exports/tables.py"),
    ("studies.core.exports.archive", "studies/core/exports/archive.py"),
    ("studies.prompting.exports.records", "studies/prompting/exports/records.py"),
    ("studies.prompting.exports.tidy", "studies/prompting/exports/tidy.py"),
    ("studies.prompting.exports.coco", "studies/prompting/exports/coco.py"),
    ("studies.prompting.exports.pointprompt", "studies/prompting/exports/pointprompt.py"),
)
PG = "postgresql://postgres@127.0.0.1:5432/{}"


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def load_baseline(rev: str) -> None:
    """Put the export modules of `rev` in place of this tree's (sys.modules), after Django."""
    import studies.core.exports as framework
    import studies.core.exports.manifest as manifest
    import studies.prompting.exports  # noqa: F401  (the parent package of the modules below)

    folder = Path(tempfile.mkdtemp(prefix="export-baseline-"))
    for module, path in EXPORT_MODULES:
        source = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        file = folder / path.replace("/", "__")
        file.write_bytes(source)
        spec = importlib.util.spec_from_file_location(module, file)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[module] = loaded
        spec.loader.exec_module(loaded)
        parent, _, leaf = module.rpartition(".")
        setattr(sys.modules[parent], leaf, loaded)
    framework.ExportArchive = sys.modules["studies.core.exports.archive"].ExportArchive
    manifest.ExportArchive = framework.ExportArchive


def child_export(args) -> None:
    setup_django()
    if args.code == "baseline":
        load_baseline(args.baseline_rev)
    from studies.core.exports import run_export
    from studies.models import Study

    study = Study.objects.get(pk=args.study)
    out = Path(args.out)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    head = run_export(study, args.fmt, out)
    seconds = time.perf_counter() - started
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak / 2**20, 1),
                "zip_mb": round(out.stat().st_size / 2**20, 1),
                "files": head["counts"]["files"],
            }
        )
    )
    out.unlink()


def child_generate(args) -> None:
    setup_django()
    from bench.pointprompt_scale import generate_study

    started = time.perf_counter()
    study, counts = generate_study(args.timesteps, args.seed)
    print(
        json.dumps(
            {"study": study.pk, **counts, "seconds": round(time.perf_counter() - started, 1)}
        )
    )


def run_child(env: dict, *argv: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *argv], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--formats", default="pointprompt,tidy,coco")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--profile", help="folder for a cProfile of each export")
    parser.add_argument("--keep", action="store_true", help="keep the database and media")
    parser.add_argument("--database-url", help="reuse a kept database (with --media, --study)")
    parser.add_argument("--media", help="the kept MEDIA_ROOT of --database-url")
    # internal: the child processes
    parser.add_argument("--child", choices=("export", "generate"))
    parser.add_argument("--study", type=int)
    parser.add_argument("--fmt")
    parser.add_argument("--code", choices=("ours", "baseline"), default="ours")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child == "export":
        return child_export(args)
    if args.child == "generate":
        return child_generate(args)

    tmp = Path(tempfile.mkdtemp(prefix="intervene-export-scale-"))
    env = {
        **os.environ,
        "MEDIA_ROOT": str(tmp / "media"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.pop("CELERY_BROKER_URL", None)
    db_name = None
    if args.database_url:
        env.update(DATABASE_URL=args.database_url, MEDIA_ROOT=args.media)
        args.keep = True
    elif args.db == "postgres":
        import psycopg

        db_name = f"intervene_exportbench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG.format("postgres"), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{db_name}"')
        env["DATABASE_URL"] = PG.format(db_name)
    else:
        env["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    try:
        if args.database_url:
            made = {"study": args.study, "timesteps": args.timesteps}
        else:
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=ROOT, env=env, check=True, capture_output=True,
            )  # fmt: skip
            made = run_child(env, "--child", "generate", "--timesteps", str(args.timesteps),
                             "--seed", str(args.seed))  # fmt: skip
        print(json.dumps({"bench": "export_scale", "db": args.db, "generated": made}), flush=True)
        codes = ("ours",) if args.no_baseline else ("baseline", "ours")
        results: dict = {}
        for fmt in args.formats.split(","):
            for code in codes:
                argv = ["--child", "export", "--study", str(made["study"]), "--fmt", fmt,
                        "--code", code, "--baseline-rev", args.baseline_rev,
                        "--out", str(tmp / f"{fmt}-{code}.zip")]  # fmt: skip
                if args.profile:
                    Path(args.profile).mkdir(parents=True, exist_ok=True)
                    argv += [
                        "--profile",
                        str(Path(args.profile) / f"{fmt}-{code}-{args.timesteps}.prof"),
                    ]
                result = run_child(env, *argv)
                results[(fmt, code)] = result
                print(json.dumps({"bench": "export_scale", "db": args.db, "timesteps": made["timesteps"],
                                  "format": fmt, "code": code, **result}), flush=True)  # fmt: skip
        if not args.no_baseline:
            summary = {
                fmt: {
                    "speedup": round(results[(fmt, "baseline")]["seconds"] / results[(fmt, "ours")]["seconds"], 2),
                    "peak_rss_mb": [results[(fmt, "baseline")]["peak_rss_mb"], results[(fmt, "ours")]["peak_rss_mb"]],
                }
                for fmt in args.formats.split(",")
            }  # fmt: skip
            print(
                json.dumps(
                    {"bench": "export_scale", "summary": summary, "timesteps": made["timesteps"]}
                )
            )
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
            if db_name:
                import psycopg

                with psycopg.connect(PG.format("postgres"), autocommit=True) as con:
                    con.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        else:
            print(json.dumps({"kept": {"database": env["DATABASE_URL"], "media": env["MEDIA_ROOT"],
                                       "study": made["study"]}}))  # fmt: skip


if __name__ == "__main__":
    main()
