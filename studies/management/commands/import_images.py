from django.core.management.base import BaseCommand, CommandError

from studies.core.importers import import_images, import_summary


class Command(BaseCommand):
    help = "Import image/mask pairs (matched by file name) as a data set."

    def add_arguments(self, parser):
        parser.add_argument("images_dir")
        parser.add_argument("masks_dir")
        parser.add_argument("--name", required=True)

    def handle(self, images_dir, masks_dir, name, **options):
        try:
            dataset = import_images(images_dir, masks_dir, name)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"imported {dataset.images.count()} images into data set {dataset.name!r} (id {dataset.pk})"
        )
        self.stdout.write(import_summary(dataset))
