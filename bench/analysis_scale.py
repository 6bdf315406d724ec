"""A PointPrompt-size study end to end, at several sizes (bench/pointprompt_scale.py makes them):
the analysis job, the analysis page and each of its plots, an incremental update after 100 new
events, the study page and its progress fragment, and each export, with times and peak memory.

Each size gets its own PostgreSQL database (created, migrated, dropped). Each measured
operation runs in a child process of its own, so its peak memory (ru_maxrss) is its own; the
page and plot times are those of the Django test client in that process (no network). Prints
one JSON line per size and one with the growth factors between sizes.

On a checkout without the stored analysis (before issue 26) the same script measures the page
as it was (computing the analysis per request); the JSON says which (`stored_analysis`).

    .venv/bin/python bench/analysis_scale.py [--sizes 2000,20000,200000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG = "postgres://postgres@127.0.0.1:5432"
PLOTS = ("iou_by_points", "iou_by_timestep", "best_vs_final", "overprompted_share",
         "human_vs_baselines", "human_vs_automated")  # fmt: skip
EXPORTS = ("pointprompt", "tidy", "coco")


# ----------------------------------------------------------------------------- child side


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _client(study):
    from django.test import Client

    client = Client()
    client.force_login(study.owner)
    return client


def _timed_get(client, url: str) -> tuple[float, int, int]:
    started = time.perf_counter()
    response = client.get(url)
    seconds = time.perf_counter() - started
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return round(seconds, 3), response.status_code, len(body)


def child(op: str, study_id: int, out: str) -> dict:
    _setup()
    from django.db import connection

    from studies.models import Study

    study = Study.objects.get(pk=study_id)
    stored = _has_store()
    result: dict = {"op": op}
    if op == "generate":
        raise SystemExit("generate runs in the parent")
    if op == "analysis_job":
        started = time.perf_counter()
        if stored:
            from studies.prompting.analysis_store import update

            r = update(study)
            result["recomputed"] = r.recomputed
        else:
            from studies.prompting.views_analysis import study_tables

            study_tables(study)
        result["seconds"] = round(time.perf_counter() - started, 3)
    elif op == "pages":
        client = _client(study)
        seconds, status, size = _timed_get(client, f"/studies/{study.pk}/analysis")
        result["analysis_page"] = {"seconds": seconds, "status": status, "bytes": size}
        result["plots"] = {}
        for name in PLOTS:
            seconds, status, size = _timed_get(
                client, f"/studies/{study.pk}/analysis/plots/{name}.svg"
            )
            result["plots"][name] = {"seconds": seconds, "status": status}
        seconds, status, size = _timed_get(client, f"/studies/{study.pk}/analysis/participants.csv")
        result["participants_csv"] = {"seconds": seconds, "status": status}
        for name, url in (("study_page", f"/studies/{study.pk}/"),
                          ("study_page_2", f"/studies/{study.pk}/?page=2"),
                          ("progress", f"/studies/{study.pk}/progress")):  # fmt: skip
            from django.db import reset_queries
            from django.test.utils import CaptureQueriesContext

            reset_queries()
            with CaptureQueriesContext(connection) as queries:
                seconds, status, size = _timed_get(client, url)
            result[name] = {"seconds": seconds, "status": status, "bytes": size,
                            "queries": len(queries)}  # fmt: skip
    elif op == "incremental":
        # 100 new events through the real event service, then the update
        from studies.core.enrolment import enrol_participant, record_consent
        from tests.export_sessions import Script

        participant = record_consent(enrol_participant(study), study.consent_version)
        script = Script(participant)
        sent = 0
        for assignment in participant.assignments.real().select_related("image").order_by("order"):
            w, h = assignment.image.width, assignment.image.height
            for k in range(10):
                mode = "green" if k % 2 == 0 else "red"
                x, y = (w / 2 + k, h / 2 + k) if mode == "green" else (2 + k, 2 + k)
                script.send(assignment, "add", mode, float(x), float(y))
                sent += 1
            if sent >= 100:
                break
        result["events_added"] = sent
        if stored:
            from studies.prompting.analysis_store import update

            started = time.perf_counter()
            r = update(study)
            result["seconds"] = round(time.perf_counter() - started, 3)
            result["recomputed"] = r.recomputed
    elif op.startswith("export_"):
        from studies.core.exports import run_export

        fmt = op[len("export_") :]
        started = time.perf_counter()
        run_export(study, fmt, out)
        result["seconds"] = round(time.perf_counter() - started, 3)
        result["zip_mb"] = round(os.path.getsize(out) / 2**20, 1)
        os.unlink(out)
    result["peak_mb"] = _peak_mb()
    return result


def _has_store() -> bool:
    try:
        import studies.prompting.analysis_store  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- parent side


def run_child(env: dict, op: str, study: int, tmp: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", op, "--study", str(study), "--out", f"{tmp}/{op}.zip"],
        env=env, capture_output=True, text=True, timeout=3600, cwd=ROOT,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"{op} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(size: int, keep: bool) -> dict:
    import tempfile

    import psycopg

    name = f"intervene_scale_{secrets.token_hex(4)}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    tmp = tempfile.mkdtemp(prefix="scale-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.update(DATABASE_URL=f"{PG}/{name}", MEDIA_ROOT=f"{tmp}/media", OMP_NUM_THREADS="1")
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT,
                       check=True, timeout=600)  # fmt: skip
        started = time.perf_counter()
        gen = subprocess.run(
            [sys.executable, "bench/pointprompt_scale.py", "--timesteps", str(size)],
            env=env, cwd=ROOT, capture_output=True, text=True, check=True, timeout=7200,
        )  # fmt: skip
        generated = json.loads(gen.stdout.strip().splitlines()[-1])
        generated["seconds"] = round(time.perf_counter() - started, 1)
        study = generated["study"]
        row = {"bench": "analysis_scale", "timesteps": size, "stored_analysis": None,
               "generated": generated}  # fmt: skip
        job = run_child(env, "analysis_job", study, tmp)
        row["analysis_job"] = job
        row.update({k: v for k, v in run_child(env, "pages", study, tmp).items() if k != "op"})
        inc = run_child(env, "incremental", study, tmp)
        row["incremental_update"] = inc
        for fmt in EXPORTS:
            row[f"export_{fmt}"] = run_child(env, f"export_{fmt}", study, tmp)
        row["stored_analysis"] = "recomputed" in job
        return row
    finally:
        if not keep:
            with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            subprocess.run(["rm", "-rf", tmp], check=False)


def growth(rows: list[dict]) -> dict:
    def pick(row):
        return {
            "analysis_job_s": row["analysis_job"]["seconds"],
            "analysis_page_s": row["analysis_page"]["seconds"],
            "max_plot_s": max(p["seconds"] for p in row["plots"].values()),
            "study_page_bytes": row["study_page"]["bytes"],
            **{f"export_{f}_s": row[f"export_{f}"]["seconds"] for f in EXPORTS},
            **{f"export_{f}_mb": row[f"export_{f}"]["peak_mb"] for f in EXPORTS},
        }

    out = {}
    for a, b in zip(rows, rows[1:], strict=False):
        pa, pb = pick(a), pick(b)
        out[f"{a['timesteps']}->{b['timesteps']}"] = {
            k: round(pb[k] / pa[k], 2) if pa[k] else None for k in pa
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,200000")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--child")
    parser.add_argument("--study", type=int)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.study, args.out)))
        return
    from tqdm import tqdm

    rows = []
    for size in tqdm([int(s) for s in args.sizes.split(",")], desc="sizes", file=sys.stderr):
        row = measure(size, args.keep)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if len(rows) > 1:
        print(json.dumps({"bench": "analysis_scale_growth", **growth(rows)}))


if __name__ == "__main__":
    main()
