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
            "workspace: the mask on the image being clicked; pointprompt: the released tool's "
            "three panels (image, ground truth, mask) for replication studies.",
            LAYOUTS,
            since=SINCE,
        ),
        "overlay_style": Option(
            "fill",
            "How the model's mask is drawn: a filled area or its outline.",
            OVERLAY_STYLES,
            since=SINCE,
        ),
        "overlay_opacity": Option(
            55,
            "Starting opacity of the mask overlay in percent (participants may change it).",
            minimum=0,
            maximum=100,
            since=SINCE,
        ),
    }
    if rounds:
        options["round_indicator"] = Option(
            False,
            "Show how close the round is to ending (off in PointPrompt, which did not show it).",
            since=SINCE,
        )
    options["practice_image"] = Option(
        -1,
        "Data set index of a practice image shown before the real ones (logged, left out of "
        "coverage, progress, analysis and exports by default); -1 = no practice image.",
        minimum=-1,
        since=SINCE,
    )
    options["min_timesteps"] = Option(
        0,
        f"{step.capitalize()} an image needs before 'Finish image' is allowed (0 = none).",
        minimum=0,
        since=SINCE,
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
