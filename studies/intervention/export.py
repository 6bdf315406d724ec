"""The intervention parts of the tidy export (docs/design.md "Exports"): human regions as COCO RLE
(`interventions/regions.jsonl`), every precomputed map as `.npy`
(`interventions/maps/<image index>_<method>_<name>.npy`), VOICE and causal-curve stats per image
(`interventions/image_stats.csv`) and the curves themselves in long form
(`interventions/curves.csv`), and every trust score per image (`interventions/trust_scores.csv`, both
GradTrusts named: `grad_trust` as in the tutorial, `grad_trust_released` as released; written when
the precompute stored them all, so exports of analyses made before keep their bytes). Trials themselves are in the tidy `trials.csv`. Every file is
listed with its sha256 in the manifest by the archive."""

from __future__ import annotations

import json

import numpy as np

from interventions.trust_names import TRUST_SCORE_NAMES
from studies.core.exports.archive import ExportArchive
from studies.core.exports.tables import write_csv
from studies.intervention.overlays import load_npz
from studies.models import ImageAnalysis, InterventionTrial, Study

CHUNK = 2000
STAT_COLUMNS = (
    "image_index", "image_id", "class_label", "class_name", "prediction", "prediction_name", "prob_pred",
    "contrast_class", "voice_iou", "voice_snr", "logit_pred", "log_prob_pred", "trust_grad_trust",
    "trust_softmax", "trust_entropy", "trust_margin", "trust_logit", "deletion_auc", "insertion_auc",
    "n_scores", "smallest_flip_deletion", "smallest_restore_insertion", "target_class", "flip_substrate",
    "curve_step", "code_version",
)  # fmt: skip
TRUST_COLUMNS = ("image_index", "image_id", "class_label", "prediction", "correct",
                 *TRUST_SCORE_NAMES)  # fmt: skip
CURVES = ("deletion", "insertion", "flip_deletion_probs", "flip_insertion_probs")


def export_intervention_parts(
    study: Study, archive: ExportArchive, include_practice: bool = False
) -> dict:
    """Write the regions, maps, stats and curves of an intervention study; return their counts.
    Regions of practice assignments only when `include_practice` (each record then says
    `practice`)."""
    n_regions = 0
    trials = InterventionTrial.objects.filter(assignment__participant__study=study)
    if not include_practice:
        trials = trials.filter(assignment__practice=False)
    with archive.open_text("interventions/regions.jsonl") as out:
        rows = (
            trials.order_by("assignment_id", "seq")
            .values(
                "assignment__participant__code",
                "assignment_id",
                "assignment__image__index",
                "assignment__practice",
                "seq",
                "operation",
                "substrate",
                "region_rle",
            )
            .iterator(chunk_size=CHUNK)
        )
        for row in rows:
            record = {
                "participant": row["assignment__participant__code"],
                "assignment_id": row["assignment_id"],
                "image_index": row["assignment__image__index"],
                **({"practice": row["assignment__practice"]} if include_practice else {}),
                "seq": row["seq"],
                "operation": row["operation"],
                "substrate": row["substrate"],
                "segmentation": row["region_rle"],
            }
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
            n_regions += 1

    by_image: dict[int, dict[str, ImageAnalysis]] = {}
    for a in ImageAnalysis.objects.filter(
        image__dataset=study.dataset, model=study.model
    ).select_related("image"):
        by_image.setdefault(a.image_id, {})[a.method] = a
    n_maps = 0
    stat_rows, curve_rows, trust_rows = [], [], []
    for image in study.dataset.images.order_by("index"):
        analyses = by_image.get(image.pk, {})
        for method, analysis in sorted(analyses.items()):
            arrays = load_npz(analysis)
            for name, array in arrays.items():
                if method == "causal_gradcam":
                    for step, score in enumerate(np.asarray(array, dtype=np.float64)):
                        curve_rows.append(
                            {
                                "image_index": image.index,
                                "curve": name,
                                "step": step,
                                "fraction": step / max(len(array) - 1, 1),
                                "score": float(score),
                            }
                        )
                else:
                    archive.write_npy(
                        f"interventions/maps/{image.index}_{method}_{name}.npy",
                        np.asarray(array, dtype=np.float32),
                    )
                    n_maps += 1
        if not analyses:
            continue
        voice = analyses["voice"].stats if "voice" in analyses else {}
        causal = analyses["causal_gradcam"] if "causal_gradcam" in analyses else None
        cstats = causal.stats if causal else {}
        stat_rows.append(
            {
                "image_index": image.index, "image_id": image.pk, "class_label": image.class_label, "class_name": image.class_name,
                "prediction": voice.get("prediction", cstats.get("prediction")), "prediction_name": cstats.get("prediction_name"),
                "prob_pred": cstats.get("prob_pred"), "contrast_class": voice.get("contrast_class"),
                "voice_iou": voice.get("iou"), "voice_snr": voice.get("snr"), "logit_pred": voice.get("logit_pred"),
                "log_prob_pred": voice.get("log_prob_pred"),
                **{k: voice.get(k) for k in ("trust_grad_trust", "trust_softmax", "trust_entropy", "trust_margin", "trust_logit")},
                **{k: cstats.get(k) for k in ("deletion_auc", "insertion_auc", "n_scores", "smallest_flip_deletion", "smallest_restore_insertion", "target_class")},
                "flip_substrate": causal.params.get("flip_substrate") if causal else None,
                "curve_step": causal.params.get("step") if causal else None,
                "code_version": next(iter(analyses.values())).code_version,
            }
        )  # fmt: skip
        if "trust_grad_trust_released" in voice:  # analysed with every trust score
            prediction = voice.get("prediction")
            trust_rows.append(
                {
                    "image_index": image.index,
                    "image_id": image.pk,
                    "class_label": image.class_label,
                    "prediction": prediction,
                    "correct": None
                    if image.class_label is None or prediction is None
                    else int(image.class_label == prediction),
                    **{name: voice.get(f"trust_{name}") for name in TRUST_SCORE_NAMES},
                }
            )
    n_stats = write_csv(archive, "interventions/image_stats.csv", STAT_COLUMNS, stat_rows)
    write_csv(
        archive,
        "interventions/curves.csv",
        ("image_index", "curve", "step", "fraction", "score"),
        curve_rows,
    )
    counts = {
        "intervention_regions": n_regions,
        "analysis_maps": n_maps,
        "analysed_images": n_stats,
        "curve_points": len(curve_rows),
    }
    if trust_rows:
        counts["trust_scored_images"] = write_csv(
            archive, "interventions/trust_scores.csv", TRUST_COLUMNS, trust_rows
        )
    return counts
