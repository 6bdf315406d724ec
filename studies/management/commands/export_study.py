from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from studies.core.exports import FORMATS, run_export
from studies.models import Study


class Command(BaseCommand):
    help = "Export a study as a zip (pointprompt | tidy | coco) with manifest.json; streamed, with a progress bar."

    def add_arguments(self, parser):
        parser.add_argument("study", type=int, help="study id")
        parser.add_argument("--format", required=True, choices=sorted(FORMATS))
        parser.add_argument("--out", required=True, help="path of the zip file to write")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument(
            "--include-practice",
            action="store_true",
            help="tidy only: write the practice assignments too, with a practice column",
        )
        parser.add_argument(
            "--with-stats",
            action="store_true",
            help="pointprompt only: add stats.csv, the released PointPrompt feature script's table",
        )

    def handle(
        self,
        study,
        format,
        out,
        no_progress=False,
        include_practice=False,
        with_stats=False,
        **options,
    ):
        found = Study.objects.select_related("dataset", "model").filter(pk=study).first()
        if found is None:
            raise CommandError(f"no study with id {study}")
        bar = tqdm(
            total=0, unit="img", desc=f"export {format}", disable=no_progress, file=self.stderr._out
        )

        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
            bar.n = done
            bar.refresh()

        try:
            params = {"include_practice": True} if include_practice else {}
            if with_stats:
                params["with_stats"] = True
            head = run_export(found, format, out, progress, params)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        counts = ", ".join(f"{k} {v}" for k, v in head["counts"].items())
        self.stdout.write(f"wrote {out}: {counts}")
