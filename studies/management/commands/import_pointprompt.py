from django.core.management.base import BaseCommand, CommandError

from studies.core.importers import import_pointprompt, import_summary


class Command(BaseCommand):
    help = "Import a PointPrompt data set folder (samples.npy, labels.npy) without unpickling arbitrary classes."

    def add_arguments(self, parser):
        parser.add_argument("directory")
        parser.add_argument("--name", required=True)

    def handle(self, directory, name, **options):
        try:
            dataset = import_pointprompt(directory, name)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"imported {dataset.images.count()} images into data set {dataset.name!r} (id {dataset.pk})"
        )
        self.stdout.write(import_summary(dataset))
