"""The study form's design section (docs/experiments.md): the assignment method, seed, block
size and one column per arm (name, target, model, and a value for any protocol option of the
kind, or the study's own value), checked by `studies.core.design.validate_design`.

The page needs no script: "Add an arm" posts the form back with one more empty column (the
view re-renders it without saving), and each arm has a "remove" box. Like the protocol, the
design is locked once participants have logged actions.
"""

from __future__ import annotations

from django import forms

from studies.core import design
from studies.core.kinds import Option, all_kinds

AS_STUDY = ""  # an arm option left at the study's value
METHOD_CHOICES = [
    ("", "No design: one protocol for everyone"),
    ("between", "Between participants: each participant works in one arm"),
    ("within", "Within participants: everyone works in every arm, on different images"),
]
ADD_ARM = "design_add_arm"


def _option_field(option: Option) -> forms.Field:
    if isinstance(option.default, bool):
        return forms.ChoiceField(
            choices=[(AS_STUDY, "as the study"), ("true", "yes"), ("false", "no")],
            required=False,
        )
    if isinstance(option.default, int):
        return forms.IntegerField(
            required=False,
            min_value=option.minimum,
            max_value=option.maximum,
            widget=forms.NumberInput(attrs={"placeholder": "as the study"}),
        )
    if option.choices:
        return forms.ChoiceField(
            choices=[(AS_STUDY, "as the study"), *option.choices_with_labels], required=False
        )
    return forms.CharField(required=False)


def _value(option: Option, raw):
    if raw in (None, AS_STUDY):
        return None
    if isinstance(option.default, bool):
        return raw == "true"
    return raw


def _initial(option: Option, value):
    if value is None:
        return AS_STUDY
    if isinstance(option.default, bool):
        return "true" if value else "false"
    return value


def slot_count(form) -> int:
    arms = design.arms(form.instance) if form.instance.pk else []
    if form.is_bound:
        try:
            n = int(form.data.get("design_arms", len(arms) or 2))
        except (TypeError, ValueError):
            n = 2
        if ADD_ARM in form.data:
            n += 1
    else:
        n = len(arms) or 2
    return max(1, min(n, design.MAX_ARMS))


def add_design_fields(form, options: dict[str, Option], models) -> None:
    """Add the design fields to the study form (`form.instance` is the study being edited)."""
    plan = form.instance.design if form.instance.pk else {}
    arms = plan.get("arms", []) if plan else []
    n = slot_count(form)
    form.design_slots = n
    form.fields["design_assignment"] = forms.ChoiceField(
        choices=METHOD_CHOICES,
        required=False,
        initial=plan.get("assignment", "") if plan else "",
        label="Experimental design",
        help_text="Arms are versions of the protocol (or model) compared in one study: each "
        "participant is randomised to an arm at consent (between), or works in every arm on "
        "different images (within). The arm is recorded in every export.",
    )
    form.fields["design_seed"] = forms.IntegerField(
        required=False,
        initial=plan.get("seed") if plan else None,
        label="Randomisation seed",
        help_text="Seeds the allocation; empty: the assignment seed. The same seed and consent "
        "order give the same arms.",
    )
    form.fields["design_block_size"] = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=1000,
        initial=plan.get("block_size") if plan else None,
        label="Block size",
        help_text="Between: consents are allocated in blocks that hold every arm equally often "
        "(a multiple of the number of arms); empty: twice the number of arms.",
    )
    model_choices = [("", "the study's model")] + [
        (spec.model_id, f"{spec.name} ({spec.get_kind_display().lower()})") for spec in models
    ]
    form.arm_model_kinds = {spec.model_id: spec.kind for spec in models}
    for i in range(n):
        arm = arms[i] if i < len(arms) else {}
        form.fields[f"arm{i}_name"] = forms.CharField(
            required=False, max_length=design.MAX_NAME, initial=arm.get("name", ""), label="Name"
        )
        form.fields[f"arm{i}_target"] = forms.IntegerField(
            required=False,
            min_value=1,
            initial=arm.get("target"),
            label="Target",
            widget=forms.NumberInput(attrs={"placeholder": "no limit"}),
        )
        form.fields[f"arm{i}_model"] = forms.ChoiceField(
            choices=model_choices, required=False, initial=arm.get("model") or "", label="Model"
        )
        form.fields[f"arm{i}_remove"] = forms.BooleanField(required=False, label="Remove")
        for name, option in options.items():
            field = _option_field(option)
            field.initial = _initial(option, (arm.get("options") or {}).get(name))
            field.label = option.label or name.replace("_", " ").capitalize()
            form.fields[f"arm{i}_opt_{name}"] = field
        for key in ("name", "target", "model", *(f"opt_{o}" for o in options)):
            field = form.fields[f"arm{i}_{key}"]
            field.widget.attrs["aria-label"] = f"Arm {i + 1}: {field.label}"
    if getattr(form, "locked", False):
        for name in design_field_names(form):
            form.fields[name].disabled = True


def design_field_names(form) -> list[str]:
    return [n for n in form.fields if n.startswith(("design_", "arm"))]


def clean_design(form, data: dict, kind) -> None:
    """Build the posted design, validate it for `kind`; put it in data["design"] or add the
    error to the field it names."""
    if getattr(form, "locked", False):
        data["design"] = form.instance.design
        return
    method = data.get("design_assignment") or ""
    if not method:
        data["design"] = {}
        return
    arms = []
    where = []  # form slot of each design arm (for errors)
    for i in range(form.design_slots):
        name = (data.get(f"arm{i}_name") or "").strip()
        options = {
            opt: _value(kind.options[opt], data.get(f"arm{i}_opt_{opt}"))
            for opt in kind.options
            if f"arm{i}_opt_{opt}" in data
        }
        options = {k: v for k, v in options.items() if v is not None}
        target, model = data.get(f"arm{i}_target"), data.get(f"arm{i}_model") or None
        if data.get(f"arm{i}_remove") or not (name or options or target or model):
            continue  # removed, or an empty column
        arm = {"name": name, "options": options}
        if target is not None:
            arm["target"] = target
        if model:
            arm["model"] = model
        arms.append(arm)
        where.append(i)
    plan = {"assignment": method, "arms": arms}
    if data.get("design_seed") is not None:
        plan["seed"] = data["design_seed"]
    if data.get("design_block_size") is not None:
        plan["block_size"] = data["design_block_size"]
    try:
        data["design"] = design.validate_design(
            kind,
            plan,
            models=form.arm_model_kinds,
            default_seed=data.get("assignment_seed") or 0,
        )
    except design.DesignError as exc:
        form.add_error(_form_field(exc.field, where), str(exc))
        return
    # as the study's own: an arm's practice image must be in the data set, its model fit it
    from studies.core.workspace_options import check_practice_image
    from studies.models import ModelSpec

    dataset = data.get("dataset") or (form.instance.dataset if form.instance.pk else None)
    if dataset is None:
        return
    for slot, arm in zip(where, data["design"]["arms"], strict=True):
        try:
            check_practice_image(dataset, arm["options"].get("practice_image"))
        except design.ProtocolError as exc:
            form.add_error(f"arm{slot}_opt_practice_image", str(exc))
        if arm.get("model"):
            spec = next(
                m
                for m in ModelSpec.objects.filter(kind__in=kind.model_kinds).order_by("pk")
                if m.model_id == arm["model"]
            )
            problem = kind.fit_problem(dataset, spec)
            if problem:
                form.add_error(f"arm{slot}_model", problem[1])


def _form_field(path: str, where: list[int]) -> str | None:
    """The form field a design error names (`design.arms[1].options.show_score` ->
    `arm<slot>_opt_show_score`), or None (a form-wide error)."""
    if path == "design.arms":
        return None
    if path.startswith("design.arms["):
        index = int(path[len("design.arms[") : path.index("]")])
        rest = path[path.index("]") + 2 :]
        slot = where[index] if index < len(where) else 0
        if rest.startswith("options."):
            return f"arm{slot}_opt_{rest[len('options.') :]}"
        if rest in ("name", "target", "model"):
            return f"arm{slot}_{rest}"
        return None
    return {
        "design.assignment": "design_assignment",
        "design.seed": "design_seed",
        "design.block_size": "design_block_size",
    }.get(path)


def design_table(form) -> dict:
    """What the template draws: the method fields, one column per arm (its header fields) and
    one row per protocol option (label and help per kind, one control per arm)."""
    kinds = all_kinds()
    users = {n: [k for k in kinds if n in k.options] for n in form.options}
    shown = form.current_kind
    columns = [
        {
            "index": i,
            "name": form[f"arm{i}_name"],
            "target": form[f"arm{i}_target"],
            "model": form[f"arm{i}_model"],
            "remove": form[f"arm{i}_remove"],
        }
        for i in range(form.design_slots)
    ]
    rows = []
    for name in form.options:
        kind_names = [k.name for k in users[name]]
        texts = [
            {
                "kind": k.name if len(users[name]) > 1 else "",
                "label": k.options[name].label or name.replace("_", " ").capitalize(),
                "help": k.options[name].help,
                "hidden": len(users[name]) > 1 and k.name != shown,
            }
            for k in users[name]
        ]
        rows.append(
            {
                "name": name,
                "kinds": " ".join(kind_names),
                "hidden": shown not in kind_names,
                "within_fixed": name in design.PAGE_OPTIONS,
                "texts": texts,
                "fields": [form[f"arm{i}_opt_{name}"] for i in range(form.design_slots)],
            }
        )
    return {
        "method": form["design_assignment"],
        "seed": form["design_seed"],
        "block_size": form["design_block_size"],
        "count": form.design_slots,
        "columns": columns,
        "rows": rows,
        "model_kinds": form.arm_model_kinds,
        "can_add": form.design_slots < design.MAX_ARMS and not getattr(form, "locked", False),
    }
