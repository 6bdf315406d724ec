from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from studies.core.demo import segmentation_spec
from studies.models import ModelSpec, PromptEvent
from studies.prompting.exports.import_release import (
    import_release_dataset,
    previous_import,
    release_layout,
)


class Command(BaseCommand):
    help = (
        "Import the released PointPrompt data as it unpacks (ROOT/Image datasets/<Dataset>/"
        "samples.npy + labels.npy, ROOT/Prompting data/<Dataset>/st<k>/...): every data set, "
        "and per data set a read-only study of the imported human results. All or nothing per "
        "data set; a rerun skips the data sets already imported."
    )

    def add_arguments(self, parser):
        parser.add_argument("root", help="the folder holding 'Image datasets' and 'Prompting data'")
        parser.add_argument(
            "--owner", required=True, help="username of the researcher who owns the new studies"
        )
        parser.add_argument(
            "--model",
            type=int,
            default=None,
            help="ModelSpec id the studies' baselines run with (default: SAM from SAM_CHECKPOINT, "
            "else the classical segmenter); the human scores stay as recorded",
        )
        parser.add_argument("--prefix", default="", help="prepended to every data set's name")
        parser.add_argument(
            "--only", action="append", metavar="DATASET", help="import this data set (repeat)"
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, root, owner, model=None, prefix="", only=None, no_progress=False, **options):
        user = get_user_model().objects.filter(username=owner).first()
        if user is None:
            raise CommandError(f"no user named {owner!r}")
        if model is not None:
            spec = ModelSpec.objects.filter(pk=model).first()
            if spec is None:
                raise CommandError(f"no model with id {model}")
        else:
            spec, _ = segmentation_spec()
        try:
            entries = release_layout(root)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if only:
            unknown = sorted(set(only) - {e.name for e in entries})
            if unknown:
                raise CommandError(
                    f"no data set {', '.join(map(repr, unknown))} in {root}; it has "
                    f"{', '.join(e.name for e in entries)}"
                )
            entries = [e for e in entries if e.name in only]
        imported = []
        for entry in entries:
            name = prefix + entry.name
            try:
                if previous_import(entry, name) is not None:
                    self.stdout.write(f"{name}: already imported, skipped")
                    continue
                bars: dict[str, tqdm] = {}

                def progress(phase, done, total, name=name, bars=bars):
                    bar = bars.get(phase)
                    if bar is None:
                        bar = bars[phase] = tqdm(
                            total=total, desc=f"{name}: {phase}", unit="item",
                            disable=no_progress, file=self.stderr._out, leave=False,
                        )  # fmt: skip
                    bar.total = max(total, 1)
                    bar.n = done
                    bar.refresh()

                try:
                    dataset, study = import_release_dataset(
                        entry, model=spec, owner=user, name=name, progress=progress
                    )
                finally:
                    for bar in bars.values():
                        bar.close()
            except ValueError as exc:
                kept = f"; kept (complete): {', '.join(imported)}" if imported else ""
                raise CommandError(
                    f"{exc}\nnothing of {name!r} was stored{kept}. Fix the file and rerun: "
                    "data sets already imported are skipped."
                ) from exc
            imported.append(name)
            if study is None:
                self.stdout.write(
                    f"{name}: data set {dataset.pk} ({dataset.images.count()} images), no prompts"
                )
            else:
                events = PromptEvent.objects.filter(assignment__participant__study=study).count()
                self.stdout.write(
                    f"{name}: data set {dataset.pk} ({dataset.images.count()} images), "
                    f"study {study.pk} ({study.participants.count()} annotators, {events} timesteps)"
                )
