from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from studies.models import Study


class Command(BaseCommand):
    help = "Fill the embedding cache for every image of a study (runs in this process, with a progress bar)."

    def add_arguments(self, parser):
        parser.add_argument("study", type=int)

    def handle(self, study, **options):
        from workers.tasks import image_embedding

        row = Study.objects.select_related("model", "dataset").filter(pk=study).first()
        if row is None:
            raise CommandError(f"no study {study}")
        if row.model.kind not in ("sam", "classical"):
            raise CommandError(
                f"study {study} uses a {row.model.kind} model: no image embeddings to compute"
            )
        ids = list(row.dataset.images.order_by("index").values_list("pk", flat=True))
        for image_id in tqdm(ids, desc=f"embeddings ({row.model.name})", unit="image"):
            image_embedding(row.model, image_id)
        self.stdout.write(f"{len(ids)} embeddings cached for study {study}")
