"""Print a study as a spec: `python manage.py study_spec STUDY_ID > study.json`
(docs/researchers.md "A study as a file")."""

from django.core.management.base import BaseCommand, CommandError

from studies.core.study_spec import spec_json, study_to_spec
from studies.models import Study


class Command(BaseCommand):
    help = (
        "Print a study as one JSON document (its spec), which create_study turns back into a study."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", type=int, help="study id")

    def handle(self, study, **options):
        found = Study.objects.select_related("dataset", "model").filter(pk=study).first()
        if found is None:
            raise CommandError(f"no study with id {study}")
        self.stdout.write(spec_json(study_to_spec(found)), ending="")
