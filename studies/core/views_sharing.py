"""Sharing pages: who a data set, a model spec or a trust evaluation is shared with (its owner
sets collaborators and the lab-wide flag; studies.core.sharing says who sees what), and the
list of the model specs a researcher may use.

Anyone who may not see the row gets 404; someone who may see it but is not its owner gets 403
on a change (the page shows them the sharing, read-only)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from studies.core.sharing import (
    SharingForm,
    can_manage,
    sharing_context,
    visible_models,
    visible_to,
)
from studies.core.views_datasets import dataset_detail
from studies.models import Dataset, TrustEvaluation
from studies.trust.views import evaluation_detail


def _save_sharing(request: HttpRequest, row, label: str):
    """Apply the posted sharing form; (ok, form) so a refused form is shown with its error."""
    if not can_manage(row, request.user):
        return False, None
    form = SharingForm(request.POST, row=row, requester=request.user)
    if not form.is_valid():
        return False, form
    form.save()
    messages.success(request, f"Sharing of {label} saved.")
    return True, form


@login_required
@require_POST
def dataset_sharing(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_object_or_404(visible_to(Dataset.objects.all(), request.user), pk=dataset_id)
    ok, form = _save_sharing(request, dataset, f"the data set {dataset.name}")
    if form is None:
        return HttpResponse("only the data set's owner changes who it is shared with", status=403)
    if not ok:
        return dataset_detail(request, dataset.pk, sharing_form=form, status=400)
    return redirect("dataset-detail", dataset_id=dataset.pk)


@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    specs = (
        visible_models(request.user)
        .select_related("owner")
        .annotate(
            n_studies=Count(
                "studies",
                filter=Q(studies__owner=request.user) | Q(studies__collaborators=request.user),
                distinct=True,
            )
        )
        .order_by("name")
    )
    return render(request, "core/model_list.html", {"specs": specs})


@login_required
def model_detail(request: HttpRequest, model_id: int, form: SharingForm | None = None, status=200):
    spec = get_object_or_404(visible_models(request.user).select_related("owner"), pk=model_id)
    context = {"spec": spec, **sharing_context(request, spec, "model-sharing", form)}
    return render(request, "core/model_detail.html", context, status=status)


@login_required
@require_POST
def model_sharing(request: HttpRequest, model_id: int) -> HttpResponse:
    spec = get_object_or_404(visible_models(request.user), pk=model_id)
    ok, form = _save_sharing(request, spec, f"the model {spec.name}")
    if form is None:
        return HttpResponse("only the model's owner changes who it is shared with", status=403)
    if not ok:
        return model_detail(request, spec.pk, form=form, status=400)
    return redirect("model-detail", model_id=spec.pk)


@login_required
@require_POST
def evaluation_sharing(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    evaluation = get_object_or_404(
        visible_to(TrustEvaluation.objects.all(), request.user, "created_by"), pk=evaluation_id
    )
    ok, form = _save_sharing(request, evaluation, f"trust evaluation {evaluation.pk}")
    if form is None:
        return HttpResponse("only the evaluation's owner changes who it is shared with", status=403)
    if not ok:
        return evaluation_detail(request, evaluation.pk, sharing_form=form, status=400)
    return redirect("trust-detail", evaluation_id=evaluation.pk)
