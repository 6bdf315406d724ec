"""A design's summary as the study page and the analysis show it (docs/experiments.md): what
each arm changes in words, its model and target, and the dropout per arm. No views here."""

from __future__ import annotations

from django.db.models import Count, Q

from studies.core import design
from studies.core.kinds import kind_of
from studies.models import Assignment, Study


def arm_words(study: Study, arm: design.Arm) -> list[str]:
    """What the arm changes, in the study form's words ("Show the score: no")."""
    kind = kind_of(study)
    words = []
    for name, value in arm.options.items():
        option = kind.options[name]
        label = option.label or name.replace("_", " ").capitalize()
        if isinstance(option.default, bool):
            text = "yes" if value else "no"
        elif option.choices:
            text = option.choice_labels.get(value, str(value))
        else:
            text = str(value)
        words.append(f"{label}: {text}")
    return words


def dropout(study: Study) -> list[dict]:
    """Per arm: participants consented, started (an action logged), finished (completed), and
    the shares of the consented; pilots and excluded participants are counted apart."""
    rows = []
    between = design.method(study) == "between"
    people = study.participants.exclude(consented_at=None)
    started_q = Q(assignments__next_seq__gt=0, assignments__practice=False)
    for arm in design.arms(study):
        scope = people.filter(arm=arm.name) if between else people
        if between:
            started = scope.filter(started_q).distinct().count()
        else:  # within: started in this arm = an action logged on one of its images
            started = (
                scope.filter(
                    assignments__arm=arm.name,
                    assignments__next_seq__gt=0,
                    assignments__practice=False,
                )
                .distinct()
                .count()
            )
        consented = scope.count()
        finished = (
            scope.exclude(completed_at=None).count()
            if between
            else Assignment.objects.real()
            .filter(participant__in=scope, arm=arm.name)
            .values("participant")
            .annotate(open=Count("pk", filter=~Q(status="finished")))
            .filter(open=0)
            .count()
        )
        rows.append(
            {
                "arm": arm.name,
                "consented": consented,
                "started": started,
                "finished": finished,
                "started_share": started / consented if consented else None,
                "finished_share": finished / consented if consented else None,
                "excluded": scope.filter(excluded=True).count(),
                "target": arm.target,
            }
        )
    return rows


def design_context(study: Study) -> dict:
    """The study page's design card."""
    if not design.has_design(study):
        return {"design": None}
    by_arm = {row["arm"]: row for row in dropout(study)}
    arms = []
    for arm in design.arms(study):
        view = design.study_view(study, arm.name)
        arms.append(
            {
                "name": arm.name,
                "changes": arm_words(study, arm),
                "model": view.model,
                "own_model": bool(arm.model),
                "target": arm.target,
                **{k: by_arm[arm.name][k] for k in ("consented", "started", "finished")},
            }
        )
    return {
        "design": {
            "method": study.design["assignment"],
            "seed": study.design["seed"],
            "block_size": study.design["block_size"],
            "arms": arms,
            "allocated": study.allocations.count(),
        }
    }
