import csv

from django.core.management.base import BaseCommand, CommandError

from interventions.prompt_comparison import COLUMNS
from studies.core.kinds import ProtocolError, require_kind
from studies.core.plots import blank
from studies.models import Study
from studies.prompting.comparison import studies_comparison


class Command(BaseCommand):
    help = (
        "Humans against automated prompts over several prompting studies (e.g. the imported "
        "PointPrompt release, one study per data set): per data set and overall, as CSV "
        "(the columns of the analysis page's human_vs_automated.csv)."
    )

    def add_arguments(self, parser):
        parser.add_argument("studies", nargs="+", type=int, help="study ids")
        parser.add_argument("--out", default="-", help="CSV file (default: standard output)")

    def handle(self, studies, out="-", **options):
        found = {s.pk: s for s in Study.objects.select_related("dataset").filter(pk__in=studies)}
        missing = [str(pk) for pk in studies if pk not in found]
        if missing:
            raise CommandError(f"no study with id {', '.join(missing)}")
        for study in found.values():
            try:
                require_kind(study, "prompting")
            except ProtocolError as exc:
                raise CommandError(f"study {study.pk}: {exc}") from exc
        rows = studies_comparison(found[pk] for pk in dict.fromkeys(studies))
        handle = self.stdout if out == "-" else open(out, "w", newline="")
        try:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: blank(v) for k, v in row.items()})
        finally:
            if out != "-":
                handle.close()
        if out != "-":
            self.stdout.write(f"{len(rows)} rows written to {out}")
