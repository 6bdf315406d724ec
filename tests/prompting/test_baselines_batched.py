"""The baseline job image by image (one embedding per image, every strategy's prompts decoded in
one call) against the per-prompt path of before (one predict_mask per prompt), on the classical
backend and on a tiny seeded SAM: the same stored rows, progress per image, one embedding
computed and looked up per image."""

import numpy as np
import pytest
import torch

from interventions.metrics import rle_decode
from interventions.pointprompt.released_names import RELEASED_STRATEGIES
from studies.models import BaselineResult, Job, ModelSpec
from tests.export_sessions import run_sessions
from tests.factories import prompting_study
from workers import model_cache
from workers.export_tasks import run_baseline_job

FIELDS = (
    "image_id", "assignment_id", "strategy", "seed", "count_source", "n_green", "n_red",
    "green", "red", "iou", "predicted_iou", "mask_index", "mask_rle", "model_id",
)  # fmt: skip
FAMILIES = ["random", "kmedoids", "max_distance"]


@pytest.fixture(autouse=True)
def fresh_caches():
    model_cache.clear()
    yield
    model_cache.clear()


def run(study, strategies, batched, seed=2024, fixed=None):
    """One baseline job on one path; the stored rows by key (then removed for the next run)."""
    job = Job.objects.create(
        study=study,
        kind="baseline",
        params={"strategies": strategies, "seed": seed, "fixed": fixed},
    )
    result = run_baseline_job(job.pk, batched=batched)
    job.refresh_from_db()
    assert job.status == "done" and job.done == job.total == result["results"] > 0
    rows = {r["key"]: r for r in BaselineResult.objects.filter(study=study).values("key", *FIELDS)}
    BaselineResult.objects.filter(study=study).delete()
    return rows


@pytest.mark.django_db
def test_batched_equals_per_prompt_on_the_classical_backend(media):
    study = prompting_study(n_images=3, participants=1, mask_choice="best_predicted")
    run_sessions(study, seed=2, stagnate=False)  # human_best units for the families
    strategies = [*RELEASED_STRATEGIES, *FAMILIES]
    before = run(study, strategies, batched=False, fixed=None)
    after = run(study, strategies, batched=True, fixed=None)
    assert set(after) == set(before) and len(after) == 3 * len(RELEASED_STRATEGIES) + len(FAMILIES)
    assert after == before  # points, masks, IoU, predicted IoU, mask index: all equal
    # the families follow the study's mask_choice, the released ones masks[0]
    assert {r["mask_index"] for r in after.values() if r["strategy"] in RELEASED_STRATEGIES} == {0}
    fixed_before = run(study, strategies, batched=False, fixed=[3, 2])
    assert run(study, strategies, batched=True, fixed=[3, 2]) == fixed_before


@pytest.mark.django_db
def test_rerun_replaces_rows_in_place(media):
    study = prompting_study(n_images=2, participants=0)
    for batched in (False, True, True):
        job = Job.objects.create(
            study=study,
            kind="baseline",
            params={"strategies": ["rand"], "seed": 1, "fixed": [1, 1]},
        )
        run_baseline_job(job.pk, batched=batched)
        assert BaselineResult.objects.filter(study=study).count() == 2
    pks = set(BaselineResult.objects.values_list("pk", flat=True))
    job = Job.objects.create(
        study=study, kind="baseline", params={"strategies": ["rand"], "seed": 1, "fixed": [1, 1]}
    )
    run_baseline_job(job.pk)
    assert set(BaselineResult.objects.values_list("pk", flat=True)) == pks  # upserted by key


@pytest.mark.django_db
def test_progress_advances_per_image_and_one_embedding_per_image(media, monkeypatch):
    from workers import jobs, tasks

    study = prompting_study(n_images=4, participants=0)
    seen = []
    real_advance = jobs.JobProgress.advance

    def advance(self, n=1):
        real_advance(self, n)
        seen.append((self.done, self.total))

    monkeypatch.setattr(jobs.JobProgress, "advance", advance)
    lookups, computed = [], []
    real_lookup = tasks.image_embedding

    def image_embedding(spec, image_id):
        lookups.append(image_id)
        backend, embedding = real_lookup(spec, image_id)
        return backend, embedding

    monkeypatch.setattr(tasks, "image_embedding", image_embedding)
    backend = model_cache.backend_for(study.model)
    real_embed = backend.embed
    monkeypatch.setattr(
        backend, "embed", lambda image: computed.append(image.shape) or real_embed(image)
    )
    strategies = list(RELEASED_STRATEGIES)
    job = Job.objects.create(
        study=study, kind="baseline", params={"strategies": strategies, "seed": 0, "fixed": [2, 1]}
    )
    run_baseline_job(job.pk, batched=True)
    per_image = len(strategies)
    assert seen == [(per_image * (i + 1), 4 * per_image) for i in range(4)]  # once per image
    images = list(study.dataset.images.order_by("index").values_list("pk", flat=True))
    assert lookups == images and len(computed) == 4  # one lookup, one embedding, per image
    # the per-prompt path looks the embedding up for every prompt (computing it once, cached)
    lookups.clear()
    computed.clear()
    model_cache.clear()
    monkeypatch.setattr(
        model_cache.backend_for(study.model),
        "embed",
        lambda image: computed.append(image.shape) or real_embed(image),
    )
    BaselineResult.objects.all().delete()
    job = Job.objects.create(
        study=study, kind="baseline", params={"strategies": strategies, "seed": 0, "fixed": [2, 1]}
    )
    run_baseline_job(job.pk, batched=False)
    assert len(lookups) == 4 * per_image and len(computed) == 0  # all from the disk cache


@pytest.mark.django_db
def test_batched_equals_per_prompt_on_a_tiny_sam(media, monkeypatch):
    import interventions.segmentation.batching as batching
    from interventions.segmentation.onnx_export import state_dict_sha256
    from interventions.segmentation.sam import SamBackend
    from tests.science.test_segmentation_sam import tiny_sam

    torch.set_num_threads(2)
    sam = tiny_sam()
    sha = state_dict_sha256(sam)
    spec = ModelSpec.objects.create(
        name="tiny SAM", kind="sam", architecture="vit_b", weights_path="tiny.pth",
        weights_sha256=sha,
    )  # fmt: skip
    backend = SamBackend.from_model(sam, model_id=spec.model_id, weights_sha256=sha, device="cpu")
    study = prompting_study(n_images=2, participants=0)
    study.model = spec
    study.save()
    strategies = [*RELEASED_STRATEGIES, "random"]
    model_cache._backends[(spec.pk, sha)] = backend
    calls = []
    real_batch = batching.predict_batch

    def counted(backend_, requests, multimask=True):
        calls.append(len(requests))
        return real_batch(backend_, requests, multimask)

    monkeypatch.setattr(batching, "predict_batch", counted)
    before = run(study, strategies, batched=False, fixed=[3, 2])
    assert calls == []  # the per-prompt path: SamBackend.predict, one prompt at a time
    after = run(study, strategies, batched=True, fixed=[3, 2])
    assert calls == [len(strategies)] * 2  # one decoder forward per image, every prompt in it
    assert set(after) == set(before) and len(before) == 2 * len(strategies)
    for key, old in before.items():
        new = after[key]
        same = {f: new[f] for f in FIELDS if f not in ("iou", "predicted_iou", "mask_rle")}
        assert same == {f: old[f] for f in same}, key  # points, counts, index, model: equal
        # a batch reorders float32 sums (tests/science/test_segmentation_batching.py): logits
        # move by ~1e-7, so at most a handful of pixels that lie on SAM's threshold may flip
        flipped = int((rle_decode(new["mask_rle"]) != rle_decode(old["mask_rle"])).sum())
        assert flipped <= 2, key
        assert new["iou"] == pytest.approx(old["iou"], abs=1e-3)
        assert new["predicted_iou"] == pytest.approx(old["predicted_iou"], abs=1e-4)
    assert np.mean([r["iou"] for r in after.values()]) > 0  # the masks are not all empty
