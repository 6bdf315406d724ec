import json
import os
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from studies.core.demo import DEMO_PASSWORD, seed_demo


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
        parser.add_argument(
            "--force-production",
            action="store_true",
            help="seed a production deployment anyway; the researcher gets a random password, "
            "printed once",
        )

    def handle(
        self,
        *args,
        as_json: bool = False,
        base_url: str = "",
        force_production: bool = False,
        **options,
    ):
        password = DEMO_PASSWORD
        if getattr(settings, "PRODUCTION", False):
            if not force_production:
                raise CommandError(
                    "refusing to seed the demo on a production deployment (DJANGO_ENV=production): "
                    "it creates a superuser; pass --force-production to do it with a random password"
                )
            password = secrets.token_urlsafe(18)
        try:
            result = seed_demo(base_url=base_url, password=password)
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc
        if as_json:
            self.stdout.write(json.dumps(result, indent=2))
            return
        self.stdout.write(f"Segmentation: {result['segmentation_backend']}")
        shown = result["researcher"]["password"] or "(existing account, password unchanged)"
        self.stdout.write(
            f"Researcher: {result['researcher']['username']} / {shown}"
            f"  ->  {result['researcher_url']}"
        )
        if password != DEMO_PASSWORD and result["researcher"]["password"]:
            self.stdout.write("This password is shown only now: store it or change it.")
        for study in result["studies"]:
            self.stdout.write(
                f"\n[{study['kind']}] {study['title']}  (study {study['id']}, model {study['model']})"
            )
            for p in study["participants"]:
                self.stdout.write(f"  {p['code']}: {p['join_url']}")
