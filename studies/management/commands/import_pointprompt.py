from django.core.management.base import BaseCommand, CommandError

from studies.core.importers import import_pointprompt, import_summary
from studies.core.sharing import command_owner, give_owner


class Command(BaseCommand):
    help = "Import a PointPrompt data set folder (samples.npy, labels.npy) without unpickling arbitrary classes."

    def add_arguments(self, parser):
        parser.add_argument("directory")
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--owner",
            default=None,
            help="username of the researcher who owns the data set (default: the first "
            "superuser); only the owner, collaborators and superusers see it until shared",
        )

    def handle(self, directory, name, owner=None, **options):
        try:
            user = command_owner(owner)
            dataset = import_pointprompt(directory, name)
            give_owner(dataset, user)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"imported {dataset.images.count()} images into data set {dataset.name!r} (id {dataset.pk}), "
            + (
                f"owned by {user.username}"
                if user
                else "owned by no one (no superuser yet): only superusers see it"
            )
        )
        self.stdout.write(import_summary(dataset))
