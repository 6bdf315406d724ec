"""The "new trust evaluation" form: a classifier, a data set whose images carry class labels,
the batch size and the MC dropout seed."""

from __future__ import annotations

from django import forms

from studies.core.sharing import visible_datasets, visible_models
from studies.models import Dataset, ModelSpec
from studies.trust.evaluations import dataset_problem


class TrustEvaluationForm(forms.Form):
    model = forms.ModelChoiceField(
        queryset=ModelSpec.objects.none(),
        label="Classifier",
        help_text="A model spec of kind classifier (the trust scores need its logits).",
        error_messages={
            "invalid_choice": "choose a classifier (a model spec of kind classifier): "
            "the trust scores need class logits",
        },
    )
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(),
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

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        # only the classifiers and data sets this researcher may see (studies.core.sharing)
        self.fields["model"].queryset = (
            visible_models(user).filter(kind="classifier").order_by("name")
        )
        self.fields["dataset"].queryset = visible_datasets(user).order_by("name")

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
