"""Run a trust evaluation in this process (no Celery), with a progress bar: the same rows,
summary and plots as the researcher pages' background job, shown there too."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from studies.core.sharing import visible_datasets, visible_models
from studies.models import Dataset, ModelSpec, TrustEvaluation
from studies.trust.evaluations import dataset_problem


class Command(BaseCommand):
    help = (
        "Score every image of a labelled data set with every trust score of a classifier, then "
        "AUROC/AUPR per score of telling correct from wrong predictions (shown on /trust/<id>/)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "model", nargs="?", help="classifier: ModelSpec database id or model_id"
        )
        parser.add_argument("dataset", nargs="?", type=int, help="data set database id")
        parser.add_argument("--user", required=True, help="username the evaluation belongs to")
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--mcd-seed", type=int, default=0)
        parser.add_argument(
            "--resume", type=int, metavar="EVALUATION", help="rerun an unfinished evaluation"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def _model(self, ref: str) -> ModelSpec:
        specs = ModelSpec.objects.all()
        found = specs.filter(pk=int(ref)).first() if ref.isdigit() else None
        found = found or next((s for s in specs if s.model_id == ref), None)
        if found is None:
            raise CommandError(f"no model spec with id or model_id {ref!r}")
        if found.kind != "classifier":
            raise CommandError(f"{found.name} is a {found.kind} model: choose a classifier")
        return found

    def handle(self, model, dataset, user, batch_size, mcd_seed, resume, no_progress, **options):
        from workers.trust_tasks import run_trust_evaluation

        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"no user {user!r}")
        if resume is not None:
            evaluation = TrustEvaluation.objects.filter(pk=resume, created_by=owner).first()
            if evaluation is None:
                raise CommandError(f"no trust evaluation {resume} of {user}")
            if evaluation.status == "done":
                raise CommandError(f"trust evaluation {resume} is already done")
        else:
            if model is None or dataset is None:
                raise CommandError("give MODEL and DATASET, or --resume EVALUATION")
            if batch_size < 1:
                raise CommandError("--batch-size must be >= 1")
            spec = self._model(model)
            data = Dataset.objects.filter(pk=dataset).first()
            if data is None:
                raise CommandError(f"no data set with id {dataset}")
            # the evaluation's rows show the data set's labels to its owner: they must be allowed
            # to see the data set and the classifier (studies.core.sharing)
            if not visible_datasets(owner).filter(pk=data.pk).exists():
                raise CommandError(f"{user} may not see data set {dataset} (not shared with them)")
            if not visible_models(owner).filter(pk=spec.pk).exists():
                raise CommandError(f"{user} may not see model {spec.name} (not shared with them)")
            problem = dataset_problem(data, spec)
            if problem:
                raise CommandError(problem)
            evaluation = TrustEvaluation.objects.create(
                model=spec,
                dataset=data,
                created_by=owner,
                params={"batch_size": batch_size, "mcd_seed": mcd_seed},
            )
        bar = tqdm(total=0, unit="img", desc="trust", disable=no_progress, file=self.stderr._out)

        def progress(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.n = done
            bar.refresh()

        try:
            run_trust_evaluation(evaluation.pk, progress)
        except Exception as exc:
            raise CommandError(f"trust evaluation {evaluation.pk} failed: {exc}") from exc
        finally:
            bar.close()
        evaluation.refresh_from_db()
        summary = evaluation.summary
        self.stdout.write(
            f"trust evaluation {evaluation.pk}: {summary['n_images']} images, accuracy "
            f"{summary['accuracy']:.4f}"
        )
        for s in summary["scores"]:
            auroc = "—" if s["auroc"] is None else f"{s['auroc']:.4f}"
            aupr = "—" if s["aupr"] is None else f"{s['aupr']:.4f}"
            self.stdout.write(f"  {s['score']:<20} AUROC {auroc:>6}  AUPR {aupr:>6}")
