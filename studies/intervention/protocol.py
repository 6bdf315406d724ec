"""The options of an intervention study: what a deletion becomes, the annotator's goal, the
explanation shown as the experimental condition."""

from studies.core.kinds import Option
from studies.core.workspace_options import workspace_options

SUBSTRATES = ("zero", "blur", "mean", "noise")
GOALS = ("flip", "restore", "explore")
OVERLAYS = ("none", "gradcam", "voice")
OPTIONS = {
    "show_ground_truth": Option(
        True,
        "Show annotators the ground truth (prompting: its own panel, PointPrompt: on; "
        "intervention: the object's outline).",
    ),
    "show_top5": Option(True, "Show the model's top-5 predictions."),
    "substrate": Option("zero", "What a deleted region becomes.", SUBSTRATES),
    "goal": Option(
        "flip", "flip: smallest deletion that flips; restore: smallest insertion; explore.", GOALS
    ),
    "overlay": Option(
        "none", "Explanation shown to the annotator (experimental condition).", OVERLAYS
    ),
} | workspace_options(rounds=False, step="trials")
