import json
import os

from django.core.management.base import BaseCommand, CommandError

from studies.core.demo import seed_demo


class Command(BaseCommand):
    help = (
        "Create the demo data sets, a researcher, open studies and participants; print their links."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print only the JSON"
        )
        parser.add_argument(
            "--base-url",
            default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}",
            help="where the printed links point (default: port $PORT, else 8000)",
        )

    def handle(self, *args, as_json: bool = False, base_url: str = "", **options):
        try:
            result = seed_demo(base_url=base_url)
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc
        if as_json:
            self.stdout.write(json.dumps(result, indent=2))
            return
        self.stdout.write(f"Segmentation: {result['segmentation_backend']}")
        self.stdout.write(
            f"Researcher: {result['researcher']['username']} / {result['researcher']['password']}"
            f"  ->  {result['researcher_url']}"
        )
        for study in result["studies"]:
            self.stdout.write(
                f"\n[{study['kind']}] {study['title']}  (study {study['id']}, model {study['model']})"
            )
            for p in study["participants"]:
                self.stdout.write(f"  {p['code']}: {p['join_url']}")
