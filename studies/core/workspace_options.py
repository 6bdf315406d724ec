"""Options of the participants' workspace (static/core/workspace.js) that both study kinds
declare: what participants saw is part of the record, so each is a protocol option, locked once
events exist and written into the export manifest."""

from __future__ import annotations

from studies.core.kinds import Option, ProtocolError

SINCE = 2  # protocol version that added these options: a study whose stored protocol predates them ran without them
LAYOUTS = ("workspace", "pointprompt")
OVERLAY_STYLES = ("fill", "outline")


def workspace_options(*, rounds: bool, step: str) -> dict[str, Option]:
    """The workspace options; `rounds` adds the round indicator (kinds that have rounds);
    `step` names what `min_timesteps` counts (predictions, trials)."""
    options = {
        "layout": Option(
            "workspace",
            "How the task page is laid out; the three panels reproduce PointPrompt's released "
            "tool for replication studies.",
            LAYOUTS,
            since=SINCE,
            label="Page layout",
            choice_labels={
                "workspace": "One image, the result drawn on it",
                "pointprompt": "Three panels as PointPrompt (image, true outline, mask)",
            },
        ),
        "overlay_style": Option(
            "fill",
            "How the model's mask (or region) is drawn over the image.",
            OVERLAY_STYLES,
            since=SINCE,
            label="Mask drawn as",
            choice_labels={"fill": "A filled area", "outline": "Its outline only"},
        ),
        "overlay_opacity": Option(
            55,
            "How opaque the mask is at the start, from 0 to 100 percent (participants may "
            "change it).",
            minimum=0,
            maximum=100,
            since=SINCE,
            label="Mask opacity (percent)",
        ),
    }
    if rounds:
        options["round_indicator"] = Option(
            False,
            "Show how close the round is to ending (off in PointPrompt, which did not show it).",
            since=SINCE,
            label="Show the round's progress",
        )
    options["practice_image"] = Option(
        -1,
        "The index of a data set image shown first, for practice (logged, but left out of "
        "progress, analysis and, unless asked, exports); -1 for none.",
        minimum=-1,
        since=SINCE,
        label="Practice image",
    )
    options["min_timesteps"] = Option(
        0,
        f"{step.capitalize()} an image needs before the participant may finish it (0: no minimum).",
        minimum=0,
        since=SINCE,
        label=f"{step.capitalize()} before an image can be finished",
    )
    return options


NO_PRACTICE = -1


def check_practice_image(dataset, index) -> None:
    """ProtocolError naming the index when `practice_image` names no image of `dataset`, or
    the only one (the practice image is left out of the real assignments)."""
    if dataset is None or index is None or index == NO_PRACTICE:
        return
    if not dataset.images.filter(index=index).exists():
        raise ProtocolError(
            f"protocol option practice_image: data set {dataset.name} has no image with index "
            f"{index} (use -1 for no practice image)"
        )
    if not dataset.images.exclude(index=index).exists():
        raise ProtocolError(
            f"protocol option practice_image: image {index} is the only image of {dataset.name}; "
            "the practice image is not one of the study's images, so none would be left"
        )
