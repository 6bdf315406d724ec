"""Researchers' forms: a study with every protocol option, and generating participant links.

The protocol options are ordinary form fields built from `DEFAULT_PROTOCOL`; the form checks
the assembled dict with `validate_protocol`, so the web page and the engine agree on what is
allowed. Once a study has logged events its data set, model and protocol are locked: changing
them would make the log disagree with the protocol written into every export.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from .models import Dataset, ModelSpec, Study
from .protocol import (
    DEFAULT_PROTOCOL,
    GOALS,
    MASK_CHOICES,
    OVERLAYS,
    SUBSTRATES,
    ProtocolError,
    validate_protocol,
)

PROTOCOL_PREFIX = "protocol_"
# Options that only apply to one kind of study (the page shows them under that heading).
PROMPTING_OPTIONS = (
    "show_ground_truth",
    "show_score",
    "min_green",
    "min_red",
    "mask_choice",
    "chain_low_res_mask",
    "stagnation_limit",
    "max_rounds",
)
INTERVENTION_OPTIONS = ("show_top5", "substrate", "goal", "overlay")
_CHOICES = {
    "mask_choice": MASK_CHOICES,
    "substrate": SUBSTRATES,
    "goal": GOALS,
    "overlay": OVERLAYS,
}
_HELP = {
    "show_ground_truth": "Show the ground-truth panel to annotators (PointPrompt: on).",
    "show_score": "Show the IoU score under the mask (PointPrompt: on).",
    "min_green": "Green points needed before the first prediction.",
    "min_red": "Red points needed before the first prediction.",
    "mask_choice": "first = masks[0] as PointPrompt; best_predicted = highest predicted IoU.",
    "chain_low_res_mask": "Feed the previous low-res logits back as mask_input (off in PointPrompt).",
    "stagnation_limit": "A round ends on this many consecutive non-improving timesteps (PointPrompt code: 10).",
    "max_rounds": "Rounds per image; the image ends when the last round ends.",
    "show_top5": "Show the model's top-5 predictions.",
    "substrate": "What a deleted region becomes.",
    "goal": "flip: smallest deletion that flips; restore: smallest insertion; explore.",
    "overlay": "Explanation shown to the annotator (experimental condition).",
}


def _protocol_field(name: str, default) -> forms.Field:
    label = name.replace("_", " ").capitalize()
    help_text = _HELP.get(name, "")
    if isinstance(default, bool):
        return forms.BooleanField(required=False, initial=default, label=label, help_text=help_text)
    if isinstance(default, int):
        return forms.IntegerField(initial=default, label=label, help_text=help_text)
    if name in _CHOICES:
        return forms.ChoiceField(
            choices=[(c, c) for c in _CHOICES[name]],
            initial=default,
            label=label,
            help_text=help_text,
        )
    return forms.CharField(initial=default, label=label, help_text=help_text)


class StudyForm(forms.ModelForm):
    """Create or edit a study; `protocol_<option>` fields hold the protocol."""

    completion_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="Crowd-platform return URL (the completion page redirects there).",
    )

    class Meta:
        model = Study
        fields = [
            "title",
            "kind",
            "dataset",
            "model",
            "instructions",
            "consent_text",
            "consent_version",
            "survey_question",
            "annotators_per_image",
            "images_per_participant",
            "assignment_seed",
            "allow_public_join",
            "completion_code",
            "completion_url",
            "collaborators",
        ]
        widgets = {
            "instructions": forms.Textarea(attrs={"rows": 4}),
            "consent_text": forms.Textarea(attrs={"rows": 4}),
            "survey_question": forms.Textarea(attrs={"rows": 2}),
            "collaborators": forms.SelectMultiple(attrs={"size": 4}),
        }

    def __init__(self, *args, owner=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner or (self.instance.owner if self.instance.pk else None)
        self.fields["dataset"].queryset = Dataset.objects.order_by("name")
        self.fields["model"].queryset = ModelSpec.objects.order_by("name")
        users = get_user_model().objects.order_by("username")
        if self.owner is not None:
            users = users.exclude(pk=self.owner.pk)
        self.fields["collaborators"].queryset = users
        self.fields["collaborators"].required = False
        current = (
            {**DEFAULT_PROTOCOL, **(self.instance.protocol or {})}
            if self.instance.pk
            else dict(DEFAULT_PROTOCOL)
        )
        for name, default in DEFAULT_PROTOCOL.items():
            field = _protocol_field(name, default)
            field.initial = current[name]
            self.fields[PROTOCOL_PREFIX + name] = field
        self.locked = (
            bool(self.instance.pk)
            and self.instance.participants.filter(assignments__events__isnull=False).exists()
        )
        if self.locked:
            for name in [
                "kind",
                "dataset",
                "model",
                *(PROTOCOL_PREFIX + n for n in DEFAULT_PROTOCOL),
            ]:
                self.fields[name].disabled = True

    def protocol_fields(self, names) -> list:
        return [self[PROTOCOL_PREFIX + n] for n in names]

    def prompting_fields(self) -> list:
        return self.protocol_fields(PROMPTING_OPTIONS)

    def intervention_fields(self) -> list:
        return self.protocol_fields(INTERVENTION_OPTIONS)

    def clean(self) -> dict:
        data = super().clean()
        options = {}
        for name in DEFAULT_PROTOCOL:
            key = PROTOCOL_PREFIX + name
            if key in data:
                options[name] = data[key]
        if len(options) == len(DEFAULT_PROTOCOL):
            try:
                data["protocol"] = validate_protocol(options)
            except ProtocolError as exc:
                self.add_error(None, str(exc))
        kind, model = data.get("kind"), data.get("model")
        if kind and model:
            wanted = ("sam", "classical") if kind == "prompting" else ("classifier",)
            if model.kind not in wanted:
                self.add_error(
                    "model",
                    f"a {kind} study needs a model of kind {' or '.join(wanted)}, not {model.kind}",
                )
        return data

    def save(self, commit: bool = True) -> Study:
        study = super().save(commit=False)
        if "protocol" in self.cleaned_data:
            study.protocol = self.cleaned_data["protocol"]
        if not study.pk and self.owner is not None:
            study.owner = self.owner
        if commit:
            study.save()
            self.save_m2m()
        return study


class GenerateLinksForm(forms.Form):
    """How many new participant links to create at once."""

    count = forms.IntegerField(min_value=1, max_value=500, initial=5, label="New participant links")
