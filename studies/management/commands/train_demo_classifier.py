"""``python manage.py train_demo_classifier``: train the demo CNN on generated demo scenes.

A thin wrapper around ``interventions.demo_classifier.train``; the defaults reproduce the
committed ``interventions/weights/demo_cnn.pt`` (see interventions/weights/README.md).
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandParser

from interventions.demo_classifier import DELETION_LOSS_WEIGHT, train
from interventions.models import DEMO_WEIGHTS


class Command(BaseCommand):
    help = "Train the demo CNN on generated demo scenes, save its weights and sha256, evaluate it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", default=str(DEMO_WEIGHTS), help="weights file to write")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--n-per-dataset", type=int, default=1500)
        parser.add_argument("--epochs", type=int, default=45)
        parser.add_argument("--threads", type=int, default=1)
        parser.add_argument("--eval-per-dataset", type=int, default=100)
        parser.add_argument(
            "--localisation-weight",
            type=float,
            default=0.5,
            help="weight of the Grad-CAM localisation term (0: cross-entropy only)",
        )
        parser.add_argument(
            "--deletion-weight",
            type=float,
            default=DELETION_LOSS_WEIGHT,
            help="loss weight of training images whose object was deleted (uniform target)",
        )

    def handle(self, *args: object, **options: object) -> None:
        report = train(
            out_path=options["out"],
            n_per_dataset=options["n_per_dataset"],
            epochs=options["epochs"],
            seed=options["seed"],
            threads=options["threads"],
            eval_per_dataset=options["eval_per_dataset"],
            localisation_weight=options["localisation_weight"],
            deletion_weight=options["deletion_weight"],
            progress=True,
        )
        self.stdout.write(json.dumps(report.as_dict(), indent=2))
