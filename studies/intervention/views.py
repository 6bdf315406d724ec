"""Researchers' pages of intervention studies: per study (human regions vs the model's
explanations), per image (explanation, contrast and uncertainty overlays, causal curves, stats),
per participant (trials on a timeline). Plots are PNGs drawn with matplotlib (Agg); no torch.

Smallest flipping deletion of a person on an image = the smallest area fraction among their
`delete` trials that flipped the prediction; the model's own = the smallest fraction of
Grad-CAM-ordered pixels whose deletion (the study's substrate) flips it (precomputed).
"""

from __future__ import annotations

import io
from collections import defaultdict

import numpy as np
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from interventions.analyses import OVERLAYS
from studies.core import design
from studies.core.kinds import ProtocolError, require_kind
from studies.core.views_researcher import researcher_study
from studies.intervention.overlays import COLOUR_MAPS, MAP_SOURCES, load_npz, overlay_png
from studies.intervention.precompute import start_image_analyses
from studies.models import Assignment, ImageAnalysis, InterventionTrial, Participant, Study

# the maps of the image page, titled by the analyses registry
MAP_TITLES = {
    name: OVERLAYS[name].title for name in ("gradcam", "counterfactual", "contrast", "voice")
}


def intervention_study(request: HttpRequest, study_id: int) -> Study:
    study = researcher_study(request, study_id)
    try:
        require_kind(study, "intervention")
    except ProtocolError as exc:
        raise Http404(str(exc)) from None
    return study


def png_response(fig) -> HttpResponse:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return HttpResponse(buffer.getvalue(), content_type="image/png")


def figure(width: float = 5.0, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


# ---------------------------------------------------------------- the numbers


def analyses_by_image(study: Study) -> dict[int, dict[str, ImageAnalysis]]:
    out: dict[int, dict[str, ImageAnalysis]] = defaultdict(dict)
    for a in ImageAnalysis.objects.filter(image__dataset=study.dataset, model=study.model):
        out[a.image_id][a.method] = a
    return out


def smallest_human_flips(trials) -> dict[tuple[int, int], float]:
    """{(image id, participant id): smallest area fraction of a flipping deletion}."""
    best: dict[tuple[int, int], float] = {}
    for t in trials:
        if t.operation == "delete" and t.flipped and t.area_fraction is not None:
            key = (t.assignment.image_id, t.assignment.participant_id)
            best[key] = min(best.get(key, 1.0), t.area_fraction)
    return best


def study_comparison(study: Study, arm: str | None = None) -> dict:
    """Per image: the model's stats, the people's smallest flipping deletion (min and median over
    participants), trials and the mean IoU of human regions with Grad-CAM's top region.
    Participants marked excluded are left out. `arm`: that design arm's trials only, against
    the arm's model."""
    trials = list(
        InterventionTrial.objects.filter(
            assignment__participant__study=study,
            assignment__participant__excluded=False,
            assignment__practice=False,
            **({"assignment__arm": arm} if arm is not None else {}),
        ).select_related("assignment")
    )
    if arm is not None:
        study = design.study_view(study, arm)
    flips = smallest_human_flips(trials)
    per_image_flips: dict[int, list[float]] = defaultdict(list)
    for (image_id, _), value in flips.items():
        per_image_flips[image_id].append(value)
    per_image_trials: dict[int, list[InterventionTrial]] = defaultdict(list)
    for t in trials:
        per_image_trials[t.assignment.image_id].append(t)
    analyses = analyses_by_image(study)
    rows = []
    for image in study.dataset.images.order_by("index"):
        a = analyses.get(image.pk, {})
        causal = a.get("causal_gradcam").stats if "causal_gradcam" in a else {}
        voice = a.get("voice").stats if "voice" in a else {}
        mine = per_image_trials.get(image.pk, [])
        human = sorted(per_image_flips.get(image.pk, []))
        ious = [t.gradcam_iou for t in mine if t.gradcam_iou is not None]
        rows.append(
            {
                "image": image,
                "analysed": bool(a),
                "prediction": causal.get("prediction_name"),
                "prob_pred": causal.get("prob_pred"),
                "deletion_auc": causal.get("deletion_auc"),
                "insertion_auc": causal.get("insertion_auc"),
                "model_flip": causal.get("smallest_flip_deletion"),
                "model_restore": causal.get("smallest_restore_insertion"),
                "voice_iou": voice.get("iou"),
                "voice_snr": voice.get("snr"),
                "grad_trust": voice.get("trust_grad_trust"),
                "trials": len(mine),
                "human_flip_min": human[0] if human else None,
                "human_flip_median": float(np.median(human)) if human else None,
                "gradcam_iou_mean": float(np.mean(ious)) if ious else None,
            }
        )
    paired = [
        (r["model_flip"], r["human_flip_min"])
        for r in rows
        if r["model_flip"] is not None and r["human_flip_min"] is not None
    ]
    return {
        "rows": rows,
        "n_trials": len(trials),
        "n_flipping_deletions": sum(1 for t in trials if t.operation == "delete" and t.flipped),
        "paired": len(paired),
        "people_smaller": sum(1 for m, h in paired if h < m),
        "mean_gradcam_iou": float(
            np.mean([t.gradcam_iou for t in trials if t.gradcam_iou is not None])
        )
        if trials
        else None,
        "mean_voice_overlap": float(
            np.mean([t.voice_overlap for t in trials if t.voice_overlap is not None])
        )
        if trials
        else None,
    }


# ---------------------------------------------------------------- pages


@login_required
def study_page(request: HttpRequest, study_id: int) -> HttpResponse:
    study = intervention_study(request, study_id)
    participants = (
        Participant.objects.filter(study=study)
        .order_by("number")
        .prefetch_related(Prefetch("assignments", queryset=Assignment.objects.real()))
    )
    counts = defaultdict(int)
    for pid in InterventionTrial.objects.filter(
        assignment__participant__study=study, assignment__practice=False
    ).values_list("assignment__participant_id", flat=True):
        counts[pid] += 1
    context = {
        "study": study,
        "comparison": study_comparison(study),
        "participants": [
            {
                "participant": p,
                "trials": counts[p.pk],
                "finished": sum(a.status == "finished" for a in p.assignments.all()),
                "assignments": len(p.assignments.all()),
            }
            for p in participants
        ],
        "job": study.jobs.filter(kind="precompute").order_by("-created_at").first(),
    }
    return render(request, "intervention/study.html", context)


@login_required
@require_POST
def recompute(request: HttpRequest, study_id: int) -> HttpResponse:
    study = intervention_study(request, study_id)
    start_image_analyses(study)
    messages.success(request, "The per-image analyses are being recomputed (batch queue).")
    return redirect("intervention-study", study_id=study.pk)


@login_required
def image_page(request: HttpRequest, study_id: int, image_id: int) -> HttpResponse:
    study = intervention_study(request, study_id)
    image = get_object_or_404(study.dataset.images, pk=image_id)
    analyses = {a.method: a for a in ImageAnalysis.objects.filter(image=image, model=study.model)}
    trials = (
        InterventionTrial.objects.filter(
            assignment__image=image,
            assignment__participant__study=study,
            assignment__practice=False,
        )
        .select_related("assignment__participant")
        .order_by("assignment__participant__number", "seq")
    )
    names = study.model.class_names or []
    contrast = analyses.get("contrast_cam")
    context = {
        "study": study,
        "image": image,
        "analyses": analyses,
        "maps": [
            (name, MAP_TITLES[name]) for name in MAP_TITLES if MAP_SOURCES[name][0] in analyses
        ],
        "stats": {m: a.stats for m, a in analyses.items()},
        "contrast_name": names[contrast.params["contrast_idx"]]
        if contrast
        and contrast.params.get("contrast_idx") is not None
        and contrast.params["contrast_idx"] < len(names)
        else None,
        "trials": trials,
        "code_version": next(iter(analyses.values())).code_version if analyses else None,
    }
    return render(request, "intervention/image.html", context)


@login_required
def participant_page(request: HttpRequest, study_id: int, participant_id: int) -> HttpResponse:
    study = intervention_study(request, study_id)
    participant = get_object_or_404(Participant, pk=participant_id, study=study)
    assignments = []
    for a in (
        Assignment.objects.real()
        .filter(participant=participant)
        .select_related("image")
        .order_by("order")
    ):
        trials = list(a.trials.order_by("seq"))
        start = trials[0].server_ts if trials else None
        assignments.append(
            {
                "assignment": a,
                "trials": [
                    {"trial": t, "t_s": (t.server_ts - start).total_seconds()} for t in trials
                ],
                "smallest_flip": min(
                    (t.area_fraction for t in trials if t.operation == "delete" and t.flipped),
                    default=None,
                ),
            }
        )
    return render(
        request,
        "intervention/participant.html",
        {"study": study, "participant": participant, "assignments": assignments},
    )


def replay_page(request: HttpRequest, study, assignment: Assignment) -> HttpResponse:
    """The intervention kind's replay of one assignment: every trial in seq order (the region
    over the image, the operation and substrate, the probability before and after, the flip),
    with the time since the first trial on the image."""
    trials = list(assignment.trials.order_by("seq"))
    start = trials[0].server_ts if trials else None
    names = study.model.class_names or []
    substrates = study.kind_spec.options["substrate"].choice_labels
    rows = [
        {
            "trial": t,
            "substrate": substrates.get(t.substrate, t.substrate),
            "t_s": (t.server_ts - start).total_seconds(),
            "target": names[t.target_class]
            if t.target_class is not None and 0 <= t.target_class < len(names)
            else t.target_class,
        }
        for t in trials
    ]
    flips = [t for t in trials if t.flipped]
    return render(
        request,
        "intervention/replay.html",
        {
            "study": study,
            "assignment": assignment,
            "trials": rows,
            "n_flips": len(flips),
            "smallest_flip": min(
                (t.area_fraction for t in flips if t.operation == "delete"), default=None
            ),
        },
    )


# ---------------------------------------------------------------- images and plots


@login_required
def map_png(request: HttpRequest, study_id: int, image_id: int, name: str) -> HttpResponse:
    """A stored map as a translucent overlay PNG at the image size."""
    study = intervention_study(request, study_id)
    image = get_object_or_404(study.dataset.images, pk=image_id)
    if name not in MAP_SOURCES:
        raise Http404(f"unknown map {name!r}")
    method, key = MAP_SOURCES[name]
    analysis = get_object_or_404(ImageAnalysis, image=image, model=study.model, method=method)
    values = load_npz(analysis).get(key)
    if values is None:
        raise Http404(f"the analysis {method} holds no {key} map")
    return HttpResponse(
        overlay_png(values, image.width, image.height, COLOUR_MAPS.get(name, "inferno")),
        content_type="image/png",
    )


@login_required
def curves_png(request: HttpRequest, study_id: int, image_id: int) -> HttpResponse:
    """Deletion and insertion curves of Grad-CAM (probability of the prediction vs fraction moved)."""
    study = intervention_study(request, study_id)
    image = get_object_or_404(study.dataset.images, pk=image_id)
    analysis = get_object_or_404(
        ImageAnalysis, image=image, model=study.model, method="causal_gradcam"
    )
    arrays = load_npz(analysis)
    fig, ax = figure()
    for key, colour in (("deletion", "#b00020"), ("insertion", "#1558c0")):
        scores = arrays[key]
        auc = analysis.stats.get(f"{key}_auc")
        ax.plot(
            np.linspace(0, 1, len(scores)), scores, color=colour, label=f"{key} (AUC {auc:.3f})"
        )
    flips = arrays.get("flip_deletion_probs")
    if flips is not None:
        ax.plot(
            np.linspace(0, 1, len(flips)),
            flips,
            color="#7a5200",
            ls="--",
            lw=1,
            label=f"deletion, {analysis.params.get('flip_substrate')} substrate (image res.)",
        )
    ax.set_xlabel("fraction of pixels moved (Grad-CAM order)")
    ax.set_ylabel("probability of the prediction")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    return png_response(fig)


@login_required
def comparison_png(request: HttpRequest, study_id: int) -> HttpResponse:
    """Per image: people's smallest flipping deletion vs the model's (Grad-CAM order)."""
    study = intervention_study(request, study_id)
    rows = study_comparison(study)["rows"]
    fig, ax = figure(4.6, 4.0)
    xs = [
        r["model_flip"]
        for r in rows
        if r["model_flip"] is not None and r["human_flip_min"] is not None
    ]
    ys = [
        r["human_flip_min"]
        for r in rows
        if r["model_flip"] is not None and r["human_flip_min"] is not None
    ]
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls=":")
    if xs:
        ax.scatter(xs, ys, color="#1558c0", zorder=3)
        for r in rows:
            if r["model_flip"] is not None and r["human_flip_min"] is not None:
                ax.annotate(
                    str(r["image"].index),
                    (r["model_flip"], r["human_flip_min"]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    else:
        ax.text(
            0.5,
            0.5,
            "no image has both a flipping human\ndeletion and a Grad-CAM flip yet",
            ha="center",
            va="center",
            fontsize=9,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("smallest flipping deletion, Grad-CAM order")
    ax.set_ylabel("smallest flipping deletion, people")
    return png_response(fig)


@login_required
def participant_probs_png(request: HttpRequest, study_id: int, participant_id: int) -> HttpResponse:
    """Target-class probability after each trial, per image, over the trial sequence."""
    study = intervention_study(request, study_id)
    participant = get_object_or_404(Participant, pk=participant_id, study=study)
    fig, ax = figure(6.0, 3.0)
    for a in participant.assignments.real().select_related("image").order_by("order"):
        trials = list(a.trials.order_by("seq"))
        if not trials:
            continue
        line = ax.plot(
            [t.seq for t in trials],
            [t.prob_after for t in trials],
            marker="o",
            ms=4,
            label=f"image {a.image.index}",
        )[0]
        flipped = [t for t in trials if t.flipped]
        ax.scatter(
            [t.seq for t in flipped],
            [t.prob_after for t in flipped],
            s=60,
            facecolors="none",
            edgecolors=line.get_color(),
        )
    ax.set_xlabel("trial (seq)")
    ax.set_ylabel("target probability after")
    ax.set_ylim(0, 1.02)
    if ax.lines:
        ax.legend(fontsize=7)
    return png_response(fig)


@login_required
def trial_region_png(request: HttpRequest, study_id: int, trial_id: int) -> HttpResponse:
    """A trial's region over the image: the region in magenta (delete) or the image dimmed
    outside it (insert)."""
    from PIL import Image

    from interventions.metrics import rle_decode

    study = intervention_study(request, study_id)
    trial = get_object_or_404(
        InterventionTrial.objects.select_related("assignment__image"),
        pk=trial_id,
        assignment__participant__study=study,
    )
    with trial.assignment.image.image.open("rb") as f:
        rgb = np.asarray(Image.open(f).convert("RGB")).astype(np.float32)
    region = rle_decode(trial.region_rle)
    if trial.operation == "delete":
        rgb[region] = 0.45 * rgb[region] + 0.55 * np.array([255, 40, 160])
    else:
        rgb[~region] = 0.25 * rgb[~region] + 0.75 * 128
    buffer = io.BytesIO()
    Image.fromarray(rgb.round().astype(np.uint8)).save(buffer, format="PNG")
    return HttpResponse(buffer.getvalue(), content_type="image/png")
