"""Create a study from a spec or an export's manifest.json:
`python manage.py create_study SPEC.json [--open] [--owner USERNAME]` prints the new study's id
(docs/researchers.md "A study as a file")."""

import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from studies.core.study_spec import SpecError, create_from_spec


def spec_owner(username: str | None):
    """The account `username`, else the site's only superuser; CommandError otherwise."""
    User = get_user_model()
    if username:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"--owner: no account is called {username!r}")
        return user
    superusers = list(User.objects.filter(is_superuser=True, is_active=True).order_by("pk")[:2])
    if len(superusers) != 1:
        found = "no superuser" if not superusers else "several superusers"
        raise CommandError(f"the site has {found}: say who owns the study with --owner USERNAME")
    return superusers[0]


class Command(BaseCommand):
    help = (
        "Create a draft study from a study spec (study_spec's output) or an export's "
        "manifest.json; prints the new study's id."
    )

    def add_arguments(self, parser):
        parser.add_argument("spec", help="path of the JSON file (a study spec or a manifest.json)")
        parser.add_argument(
            "--open", dest="open_now", action="store_true", help="open the study at once"
        )
        parser.add_argument("--owner", help="username of the owner (default: the only superuser)")

    def handle(self, spec, open_now=False, owner=None, **options):
        path = Path(spec)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"{path} is not a JSON document: {exc}") from None
        user = spec_owner(owner)
        try:
            study = create_from_spec(document, owner=user, open_now=open_now)
        except SpecError as exc:
            raise CommandError(f"{path}: {exc}") from None
        self.stdout.write(str(study.pk))
