import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from interventions.pointprompt.released_names import RELEASED_STRATEGIES, UNAVAILABLE
from studies.models import Job, Study
from studies.prompting.baselines import STRATEGIES, start_baselines


class Command(BaseCommand):
    help = (
        "Run automated prompting baselines on a study's images with its model (batch queue, "
        "seeded). Default: PointPrompt's released strategies under the released names and "
        "protocol (docs/pointprompt.md); the platform's own families by their names."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", type=int)
        parser.add_argument(
            "--strategy",
            action="append",
            choices=(*STRATEGIES, *UNAVAILABLE),
            help=f"repeat for several; default the released ones ({', '.join(RELEASED_STRATEGIES)})",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--fixed", nargs=2, type=int, metavar=("GREEN", "RED"),
            help="the same point counts for every image (default: the released table for PointPrompt's "
            "data sets, else the human mean; the families: each annotator's best-timestep counts)",
        )  # fmt: skip
        parser.add_argument(
            "--one-point", action="store_true",
            help="1 green + 1 red per image (the released _1pt mode; released strategies only)",
        )  # fmt: skip
        parser.add_argument("--no-progress", action="store_true")

    def handle(
        self,
        study,
        strategy=None,
        seed=0,
        fixed=None,
        one_point=False,
        no_progress=False,
        **options,
    ):
        found = Study.objects.select_related("model", "dataset").filter(pk=study).first()
        if found is None:
            raise CommandError(f"no study with id {study}")
        try:
            job = start_baselines(
                found,
                strategy or list(RELEASED_STRATEGIES),
                seed,
                tuple(fixed) if fixed else None,
                one_point,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        # Eager Celery has already run it; with a broker, follow the worker's progress.
        with tqdm(
            total=1, desc="baselines", unit="prompt", disable=no_progress, file=self.stderr._out
        ) as bar:
            while True:
                job = Job.objects.get(pk=job.pk)
                bar.total = max(job.total, 1)
                bar.n = job.done
                bar.refresh()
                if job.status in ("done", "failed"):
                    break
                time.sleep(0.5)
        if job.status == "failed":
            raise CommandError(f"baseline job {job.pk} failed: {job.error}")
        self.stdout.write(f"baseline job {job.pk}: {job.done} results stored")
