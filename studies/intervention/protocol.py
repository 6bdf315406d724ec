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
        "Draw the object's outline on the image, so annotators know which object is meant.",
        label="Show the object's outline",
    ),
    "show_top5": Option(
        True,
        "List the model's five most likely classes with their probabilities.",
        label="Show the top 5 classes",
    ),
    "substrate": Option(
        "zero",
        "What a deleted region is replaced by (an inserted region starts from the same).",
        SUBSTRATES,
        label="Deleted regions become",
        choice_labels={
            "zero": "The data set's mean colour (zero input)",
            "blur": "A blurred copy of the image",
            "mean": "The image's own mean colour",
            "noise": "Random noise (seeded)",
        },
    ),
    "goal": Option(
        "flip",
        "The task annotators are given.",
        GOALS,
        label="Annotators' goal",
        choice_labels={
            "flip": "Change the prediction with the smallest deletion",
            "restore": "Bring back the prediction with the smallest insertion",
            "explore": "Explore freely",
        },
    ),
    "overlay": Option(
        "none",
        "The explanation annotators see over the image (the experimental condition).",
        OVERLAYS,
        label="Explanation shown",
        choice_labels={
            "none": "None",
            "gradcam": "Grad-CAM heat map",
            "voice": "VOICE uncertainty map",
        },
    ),
} | workspace_options(rounds=False, step="trials")
