"""The "new trust evaluation" form: a classifier, a data set whose images carry class labels,
the batch size and the MC dropout seed."""

from __future__ import annotations

from django import forms

from studies.models import Dataset, ModelSpec
from studies.trust.evaluations import dataset_problem


class TrustEvaluationForm(forms.Form):
    model = forms.ModelChoiceField(
        queryset=ModelSpec.objects.filter(kind="classifier").order_by("name"),
        label="Classifier",
        help_text="A model spec of kind classifier (the trust scores need its logits).",
        error_messages={
            "invalid_choice": "choose a classifier (a model spec of kind classifier): "
            "the trust scores need class logits",
        },
    )
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.order_by("name"),
        label="Data set",
        help_text="Every image needs a class label: the scores are judged by how well they tell "
        "correct from wrong predictions.",
    )
    batch_size = forms.IntegerField(
        min_value=1, max_value=256, initial=16, help_text="Images scored per batch (1-256)."
    )
    mcd_seed = forms.IntegerField(
        initial=0, label="MC dropout seed", help_text="Seed of the MC dropout masks."
    )

    def clean(self):
        cleaned = super().clean()
        dataset, model = cleaned.get("dataset"), cleaned.get("model")
        if dataset is not None:
            problem = dataset_problem(dataset, model)
            if problem:
                self.add_error("dataset", problem)
        return cleaned

    def params(self) -> dict:
        return {
            "batch_size": self.cleaned_data["batch_size"],
            "mcd_seed": self.cleaned_data["mcd_seed"],
        }
