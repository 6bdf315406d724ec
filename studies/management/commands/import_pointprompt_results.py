from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from studies.core.sharing import visible_datasets, visible_models
from studies.models import Dataset, ModelSpec
from studies.prompting.exports.import_results import import_pointprompt_results


class Command(BaseCommand):
    help = (
        "Import PointPrompt prompting results (the 'Prompting results/<Dataset>' folder of st<k> folders) "
        "as a closed study on an already imported data set (see import_pointprompt)."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", help="the 'Prompting results/<Dataset>' folder")
        parser.add_argument(
            "--dataset",
            required=True,
            help="name of the data set (import it with import_pointprompt)",
        )
        parser.add_argument(
            "--model", required=True, type=int, help="ModelSpec id the results were made with"
        )
        parser.add_argument(
            "--owner", required=True, help="username of the researcher who owns the new study"
        )
        parser.add_argument("--title", default=None)

    def handle(self, directory, dataset, model, owner, title=None, **options):
        found = Dataset.objects.filter(name=dataset).first()
        if found is None:
            raise CommandError(f"no data set named {dataset!r}")
        spec = ModelSpec.objects.filter(pk=model).first()
        if spec is None:
            raise CommandError(f"no model with id {model}")
        user = get_user_model().objects.filter(username=owner).first()
        if user is None:
            raise CommandError(f"no user named {owner!r}")
        # the new study shows the data set's images to its owner: they must be allowed to see
        # the data set and the model (studies.core.sharing)
        if not visible_datasets(user).filter(pk=found.pk).exists():
            raise CommandError(f"{owner} may not see data set {dataset!r} (not shared with them)")
        if not visible_models(user).filter(pk=spec.pk).exists():
            raise CommandError(f"{owner} may not see model {spec.name} (not shared with them)")
        try:
            study = import_pointprompt_results(directory, found, spec, user, title)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        events = sum(
            a.events.count() for p in study.participants.all() for a in p.assignments.all()
        )
        self.stdout.write(
            f"imported study {study.pk}: {study.participants.count()} participants, {events} timesteps"
        )
