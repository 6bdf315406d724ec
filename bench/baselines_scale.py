"""Automated prompting baselines at scale, prompts per second: the per-prompt path of before (per
strategy, per image: one `predict_mask`, one upsert) against the image-by-image path (per image
one read, one embedding, every strategy's prompts decoded in one call, one transaction), in the
same process, on the same generated study (bench/pointprompt_scale.py `generate_study`, the
classical backend, SQLite in a temp dir).

    .venv/bin/python bench/baselines_scale.py [--timesteps 2000] [--seed 0] [--fixed G R]

Each released strategy runs alone on both paths, then all of them in one job on both paths
(`--repeat` times each, alternating; the fastest run of each path counts). The
embeddings are computed once before any timing (as a study's precompute job does when it opens),
so both paths read them from the disk cache. Prints one JSON line: per strategy and for all
together the prompts, both rates, their ratio and whether every stored row (points, mask, IoU,
predicted IoU, mask index) is equal between the two paths.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MAX_TIMESTEPS = 20000


def setup_django(tmp: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ["MEDIA_ROOT"] = str(tmp / "media")
    os.environ["EMBEDDING_CACHE_DIR"] = str(tmp / "embeddings")
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


FIELDS = (
    "green", "red", "iou", "predicted_iou", "mask_index", "mask_rle", "model_id", "n_green",
    "n_red", "count_source",
)  # fmt: skip


def run_job(study, strategies: list[str], seed: int, fixed, batched: bool):
    """(seconds, prompts, stored rows by key) of one baseline job on one path."""
    from studies.models import BaselineResult, Job
    from workers.export_tasks import run_baseline_job

    BaselineResult.objects.filter(study=study).delete()
    job = Job.objects.create(
        study=study,
        kind="baseline",
        params={"strategies": strategies, "seed": seed, "fixed": list(fixed) if fixed else None},
    )
    started = time.perf_counter()
    result = run_baseline_job(job.pk, batched=batched)
    seconds = time.perf_counter() - started
    rows = {r["key"]: r for r in BaselineResult.objects.filter(study=study).values("key", *FIELDS)}
    return seconds, result["results"], rows


def warm_up(study) -> None:
    """Imports and first calls (torch, OpenCV, the models' caches) outside every timing."""
    from interventions.pointprompt.released_names import RELEASED_STRATEGIES
    from interventions.pointprompt.strategies import ReleasedRandom, released_points
    from workers.model_cache import ground_truth, image_files, load_rgb
    from workers.tasks import predict_mask

    image = study.dataset.images.order_by("index").first()
    path, mask_path, _ = image_files(image.pk)
    for strategy in RELEASED_STRATEGIES:
        released_points(strategy, load_rgb(path), ground_truth(mask_path), 1, 1, ReleasedRandom(0))
    predict_mask(study.model.pk, image.pk, [[1.0, 1.0]], [], "first")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0, help="the study's and the strategies' seed")
    parser.add_argument("--fixed", type=int, nargs=2, metavar=("G", "R"), default=None)
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each path; the fastest is reported"
    )
    args = parser.parse_args()
    if not 1 <= args.timesteps <= MAX_TIMESTEPS:
        raise SystemExit(f"--timesteps must be from 1 to {MAX_TIMESTEPS}")
    setup_django(Path(tempfile.mkdtemp(prefix="intervene-bench-baselines-")))

    from bench.pointprompt_scale import generate_study, shape_for
    from interventions.pointprompt.released_names import RELEASED_STRATEGIES
    from studies.prompting.baselines import released_units
    from workers.model_cache import spec
    from workers.tasks import image_embedding

    study, counts = generate_study(args.timesteps, args.seed)
    warm_up(study)
    units = released_units(study, tuple(args.fixed) if args.fixed else None)
    for unit in units:  # the embeddings, once, outside every timing
        image_embedding(spec(study.model.pk), unit.image_id)
    out = {
        "bench": "baselines_scale",
        "timesteps": counts["timesteps"],
        "images": counts["images"],
        "counts": [units[0].n_green, units[0].n_red],
        "count_source": units[0].count_source,
        "backend": study.model.kind,
        "seed": args.seed,
        "strategies": {},
    }
    runs = [(s, [s]) for s in RELEASED_STRATEGIES] + [("all", list(RELEASED_STRATEGIES))]
    for name, strategies in runs:
        old_s = new_s = float("inf")
        for _ in range(max(1, args.repeat)):  # alternating, so both see the same machine load
            seconds, prompts, old_rows = run_job(study, strategies, args.seed, args.fixed, False)
            old_s = min(old_s, seconds)
            seconds, new_prompts, new_rows = run_job(study, strategies, args.seed, args.fixed, True)
            new_s = min(new_s, seconds)
        assert new_prompts == prompts
        entry = {
            "prompts": prompts,
            "per_prompt_prompts_per_s": round(prompts / old_s, 1),
            "per_image_prompts_per_s": round(prompts / new_s, 1),
            "ratio": round(old_s / new_s, 2),
            "equal": old_rows == new_rows,
        }
        if name == "all":
            # the study's cost per prompt does not grow with it: a 200,000-timestep study has
            # shape_for(200000)["images"] images, one prompt per strategy each
            scale = shape_for(200000)["images"] / counts["images"]
            entry["projected_200k_per_prompt_s"] = round(old_s * scale)
            entry["projected_200k_per_image_s"] = round(new_s * scale)
            out["all"] = entry
        else:
            out["strategies"][name] = entry
    print(json.dumps(out))


if __name__ == "__main__":
    main()
