"""Researchers' forms: a study with every protocol option, and generating participant links.

The protocol options are ordinary form fields built from the study kinds' declared options
(studies/core/kinds.py); the form checks the chosen kind's options with that kind's
`validate_protocol`, so the web page and the engine agree on what is allowed. Once a study has logged events its data set, model and protocol are locked: changing
them would make the log disagree with the protocol written into every export.
"""

from __future__ import annotations

from django import forms
from django.db.models import Q

from studies.core.design_form import (
    add_design_fields,
    clean_design,
    design_field_names,
    design_table,
)
from studies.core.kinds import Option, ProtocolError, all_kinds, get_kind, kind_choices
from studies.core.sharing import parse_collaborators, visible_q
from studies.core.workspace_options import check_practice_image
from studies.models import Dataset, ModelSpec, Study

PROTOCOL_PREFIX = "protocol_"


def _protocol_field(name: str, option: Option) -> forms.Field:
    label = option.label or name.replace("_", " ").capitalize()
    default, help_text = option.default, option.help
    # an option added later (`since`) may be missing from a form posted by older code: it then
    # takes its default (see StudyForm.clean)
    required = not option.since
    if isinstance(default, bool):
        return forms.BooleanField(required=False, initial=default, label=label, help_text=help_text)
    if isinstance(default, int):
        return forms.IntegerField(
            initial=default, label=label, help_text=help_text, required=required
        )
    if option.choices:
        return forms.ChoiceField(
            choices=option.choices_with_labels,
            initial=default,
            label=label,
            help_text=help_text,
            required=required,
        )
    return forms.CharField(initial=default, label=label, help_text=help_text, required=required)


def _all_options() -> dict[str, Option]:
    """Every kind's options by name (an option several kinds share is one field; the form
    shows the label and help of the chosen kind, see `StudyForm.kind_texts`)."""
    options: dict[str, Option] = {}
    for kind in all_kinds():
        for name, option in kind.options.items():
            options.setdefault(name, option)
    return options


class ModelSelect(forms.Select):
    """The model list; each option says which study kinds may use it (`data-kinds`), so the
    page lists only the models of the chosen kind."""

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        instance = getattr(value, "instance", None)
        if instance is not None:
            option["attrs"]["data-kinds"] = " ".join(
                k.name for k in all_kinds() if instance.kind in k.model_kinds
            )
        return option


class ModelField(forms.ModelChoiceField):
    def label_from_instance(self, obj: ModelSpec) -> str:
        return f"{obj.name} ({obj.get_kind_display().lower()})"


# labels and help of the study's own fields, in words (the model's help texts are terse notes)
FIELD_TEXTS = {
    "instructions": ("Instructions", "Shown before the first image; empty: the kind's default."),
    "consent_text": ("Consent text", "What participants agree to before they start."),
    "consent_version": (
        "Consent version",
        "Stored with each participant's consent; change it when the consent text changes.",
    ),
    "survey_question": (
        "Survey question",
        "Asked after each image; empty: the study kind's own question (it names no model).",
    ),
    "annotators_per_image": ("Annotators per image", "How many participants each image gets."),
    "images_per_participant": (
        "Images per participant",
        "Empty: every image of the data set.",
    ),
    "assignment_seed": (
        "Assignment seed",
        "Seeds the random choice of images for each participant (the same seed gives the "
        "same assignments).",
    ),
    "allow_public_join": (
        "Allow public joining",
        "Anyone with the study's public link can join (else only personal links work).",
    ),
    "max_participants": (
        "Most participants",
        "Public and crowd links enrol no one past this many participants (0: no limit).",
    ),
    "completion_code": (
        "Completion code",
        "Shown at the end, for crowd platforms that ask for one.",
    ),
}

MODEL_HELP = (
    "Prompting studies use a segmenter, intervention studies a classifier; only the chosen "
    "kind's models are listed. The classical point-seeded segmenter needs no weights. To use "
    "SAM instead, start the site with SAM_CHECKPOINT=/path/to/sam_vit_b_01ec64.pth and "
    "SAM_MODEL_TYPE=vit_b set and run `python manage.py seed_demo` once (it adds the checkpoint "
    "as a SAM model), or add a model of kind SAM in the admin."
)


class StudyForm(forms.ModelForm):
    """Create or edit a study; `protocol_<option>` fields hold the protocol."""

    completion_url = forms.URLField(
        required=False,
        assume_scheme="https",
        label="Completion URL",
        help_text="The crowd platform's return address: the completion page sends participants "
        "there.",
    )

    attention_images = forms.CharField(
        required=False,
        label="Attention-check images",
        help_text="Indices of easy data set images with a known answer, separated by commas "
        "(for example 0, 4); every participant gets them. A prompting participant fails one "
        "whose best mask matches the true outline less than the threshold; an intervention "
        "participant, when none of their regions matches the object that well.",
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
            "max_participants",
            "completion_code",
            "completion_url",
            "attention_threshold",
        ]
        widgets = {
            "instructions": forms.Textarea(attrs={"rows": 4}),
            "consent_text": forms.Textarea(attrs={"rows": 4}),
            "survey_question": forms.Textarea(attrs={"rows": 2}),
        }

    def __init__(self, *args, owner=None, requester=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner or (self.instance.owner if self.instance.pk else None)
        self.requester = requester or self.owner
        # only data sets and models the researcher may see (studies.core.sharing), and the
        # study's own (a collaborator editing it keeps them without being shown others')
        keep_dataset = Q(pk=self.instance.dataset_id) if self.instance.pk else Q(pk__in=[])
        keep_model = Q(pk=self.instance.model_id) if self.instance.pk else Q(pk__in=[])
        if self.requester is not None:
            datasets = Dataset.objects.filter(visible_q(self.requester) | keep_dataset)
            models = ModelSpec.objects.filter(visible_q(self.requester) | keep_model)
        else:
            datasets, models = Dataset.objects.none(), ModelSpec.objects.none()
        self.fields["dataset"].queryset = datasets.distinct().order_by("name")
        self.fields["dataset"].label = "Data set"
        self.fields["model"] = ModelField(
            queryset=models.distinct().order_by("name"),
            widget=ModelSelect,
            help_text=MODEL_HELP,
            disabled=self.fields["model"].disabled,
        )
        self.fields["kind"] = forms.ChoiceField(
            choices=kind_choices(),
            initial=self.instance.kind or "prompting",
            label="Kind",
            help_text="Prompting: annotators click points and a segmenter answers with a mask. "
            "Intervention: annotators delete or insert regions in front of a classifier. Only "
            "the chosen kind's options are shown below.",
        )
        # Collaborators by exact username: the form never lists the site's accounts.
        self.fields["collaborators"] = forms.CharField(
            required=False,
            label="Collaborators",
            help_text="Exact usernames of other researchers, separated by commas or spaces.",
            initial=" ".join(
                self.instance.collaborators.order_by("username").values_list("username", flat=True)
            )
            if self.instance.pk
            else "",
        )
        self.fields["max_participants"].required = False
        for name, (label, help_text) in FIELD_TEXTS.items():
            self.fields[name].label, self.fields[name].help_text = label, help_text
        if self.instance.pk and self.instance.attention_images:
            self.fields["attention_images"].initial = ", ".join(
                map(str, self.instance.attention_images)
            )
        threshold = self.fields["attention_threshold"]
        threshold.required = False  # empty keeps the study's threshold
        threshold.help_text = (
            "How well a participant's answer must match the known one on an attention-check "
            "image (IoU, between 0 and 1)."
        )
        current = self.instance.protocol if self.instance.pk else {}
        self.options = _all_options()
        for name, option in self.options.items():
            field = _protocol_field(name, option)
            field.initial = current.get(name, option.default)
            self.fields[PROTOCOL_PREFIX + name] = field
        # logged actions exist once any assignment has taken one (next_seq moved on)
        self.locked = (
            bool(self.instance.pk)
            and self.instance.participants.filter(assignments__next_seq__gt=0).exists()
        )
        if self.locked:
            for name in [
                "kind",
                "dataset",
                "model",
                *(PROTOCOL_PREFIX + n for n in self.options),
            ]:
                self.fields[name].disabled = True
        # the experimental design: arms over these options (studies/core/design_form.py)
        add_design_fields(self, self.options, list(models.distinct().order_by("name")))

    @property
    def study_fields(self) -> list:
        """The study's own fields (not the protocol's, not the design's), in order."""
        skip = set(design_field_names(self))
        return [f for f in self if not f.name.startswith(PROTOCOL_PREFIX) and f.name not in skip]

    def design_table(self) -> dict:
        return design_table(self)

    def clean_collaborators(self) -> list:
        # one error for unknown and refused names (studies.core.sharing)
        return parse_collaborators(
            self.cleaned_data.get("collaborators", ""), owner=self.owner, requester=self.requester
        )

    def clean_max_participants(self) -> int:
        value = self.cleaned_data.get("max_participants")
        if value is None:
            return self.instance.max_participants  # the default for a new study
        return value

    @property
    def current_kind(self) -> str:
        """The kind the page shows options for: the posted one, else the study's / default."""
        posted = self.data.get("kind") if self.is_bound else None
        names = [k.name for k in all_kinds()]
        if self.fields["kind"].disabled or posted not in names:
            return self.fields["kind"].initial
        return posted

    def protocol_sections(self) -> list[dict]:
        """The protocol fields in sections: the options several kinds share first, then each
        kind's own. Each row: the bound field, the kinds that use it, and its label and help
        per kind (`texts`: [(kind name or "" for all, label, help)]); the page shows the
        chosen kind's rows and texts only (static/core/study_form.js)."""
        kinds = all_kinds()
        shown = self.current_kind
        users = {n: [k for k in kinds if n in k.options] for n in self.options}
        shared = [n for n in self.options if len(users[n]) > 1]

        def row(name: str) -> dict:
            texts = [
                (
                    k.name,
                    k.options[name].label or name.replace("_", " ").capitalize(),
                    k.options[name].help,
                )
                for k in users[name]
            ]
            if len({(label, help) for _, label, help in texts}) == 1:
                texts = [("", texts[0][1], texts[0][2])]
            kind_names = [k.name for k in users[name]]
            return {
                "field": self[PROTOCOL_PREFIX + name],
                "kinds": " ".join(kind_names),
                "hidden": shown not in kind_names,
                "texts": [
                    {"kind": kind, "label": label, "help": help, "hidden": kind not in ("", shown)}
                    for kind, label, help in texts
                ],
            }

        sections = []
        if shared:
            sections.append(
                {
                    "heading": "Task page",
                    "kinds": " ".join(k.name for k in kinds if set(k.options) & set(shared)),
                    "hidden": not any(shown in row(n)["kinds"].split() for n in shared),
                    "rows": [row(n) for n in shared],
                }
            )
        for kind in kinds:
            names = [n for n in kind.options if n not in shared]
            if names:
                sections.append(
                    {
                        "heading": f"{kind.label} protocol",
                        "kinds": kind.name,
                        "hidden": kind.name != shown,
                        "rows": [row(n) for n in names],
                    }
                )
        return sections

    def clean_attention_images(self) -> list[int]:
        text = self.cleaned_data.get("attention_images") or ""
        try:
            indices = sorted({int(part) for part in text.replace(" ", "").split(",") if part})
        except ValueError:
            raise forms.ValidationError(
                "attention_images: comma-separated image indices, e.g. 0, 4"
            ) from None
        dataset = self.cleaned_data.get("dataset") or (
            self.instance.dataset if self.instance.pk else None
        )
        if dataset is not None and indices:
            known = set(dataset.images.filter(index__in=indices).values_list("index", flat=True))
            missing = [i for i in indices if i not in known]
            if missing:
                raise forms.ValidationError(
                    f"attention_images: {dataset.name} has no image {', '.join(map(str, missing))}"
                )
        return indices

    def clean_attention_threshold(self) -> float:
        value = self.cleaned_data.get("attention_threshold")
        if value is None:  # left empty: keep the study's (or the default) threshold
            return self.instance.attention_threshold
        if not 0.0 <= value <= 1.0:
            raise forms.ValidationError("attention_threshold: an IoU between 0 and 1")
        return value

    def clean(self) -> dict:
        data = super().clean()
        kind_name, model = data.get("kind"), data.get("model")
        if not kind_name:
            return data
        kind = get_kind(kind_name)
        options = {
            name: data[PROTOCOL_PREFIX + name]
            for name in kind.options
            if PROTOCOL_PREFIX + name in data
        }
        for name, value in list(options.items()):
            if kind.options[name].since and value in (None, ""):
                options[name] = kind.options[name].default
        if len(options) == len(kind.options):
            dataset = data.get("dataset") or (self.instance.dataset if self.instance.pk else None)
            try:
                data["protocol"] = kind.validate_protocol(options)
            except ProtocolError as exc:
                self.add_error(None, str(exc))
            else:
                try:  # the practice image must be an image of the study's data set
                    check_practice_image(dataset, data["protocol"].get("practice_image"))
                except ProtocolError as exc:
                    del data["protocol"]
                    self.add_error(PROTOCOL_PREFIX + "practice_image", str(exc))
        clean_design(self, data, kind)
        if model and model.kind not in kind.model_kinds:
            wanted = " or ".join(kind.model_kinds)
            self.add_error(
                "model",
                f"a {kind.name} study needs a model of kind {wanted}, not {model.kind}",
            )
        elif data.get("dataset") is not None:
            problem = kind.fit_problem(data["dataset"], model)
            if problem:
                self.add_error(*problem)
        return data

    def save(self, commit: bool = True) -> Study:
        study = super().save(commit=False)
        if "protocol" in self.cleaned_data:
            study.protocol = self.cleaned_data["protocol"]
        study.attention_images = self.cleaned_data.get("attention_images") or []
        if "design" in self.cleaned_data:
            study.design = self.cleaned_data["design"]
        if not study.pk and self.owner is not None:
            study.owner = self.owner
        if commit:
            study.save()
            self.save_m2m()
            study.collaborators.set(self.cleaned_data.get("collaborators", []))
        return study


class GenerateLinksForm(forms.Form):
    """How many new participant links to create at once."""

    count = forms.IntegerField(min_value=1, max_value=500, initial=5, label="New participant links")
