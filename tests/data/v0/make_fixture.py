"""Builds the v0 fixture (run once at commit 5b7438a, before `studies/` was split by study kind).

A SQLite database filled through the services of that time (a prompting study with scripted
sessions, an intervention study with trials and precomputed analyses, a baseline run) and
every export of both studies written by that code. `tests/core/test_v0_database.py` migrates a
copy of the database in place with today's code and checks that nothing was lost and that
every export is byte-identical (the manifest's `exported_at` and `code_version` aside).

    DATABASE_URL=sqlite:////tmp/v0/db.sqlite3 MEDIA_ROOT=/tmp/v0/media \
        python tests/data/v0/make_fixture.py /tmp/v0
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

out = Path(sys.argv[1])
call_command("migrate", verbosity=0)

import numpy as np  # noqa: E402
from studies.baselines import start_baselines  # noqa: E402
from studies.intervention_jobs import start_image_analyses  # noqa: E402
from studies.trials import submit_trial  # noqa: E402

from interventions.metrics import rle_encode  # noqa: E402
from studies.exports import FORMATS, run_export  # noqa: E402
from tests.export_sessions import run_sessions  # noqa: E402
from tests.factories import prompting_study  # noqa: E402
from tests.intervention_fixtures import classifier_spec, intervention_study  # noqa: E402

weights = out / "demo_random.pt"
import torch  # noqa: E402

from interventions.models import build_demo_cnn  # noqa: E402

torch.manual_seed(0)
torch.save(build_demo_cnn().state_dict(), weights)

p = prompting_study(n_images=3, participants=2)
run_sessions(p, seed=3)
from interventions.prompt_strategies import STRATEGIES  # noqa: E402

start_baselines(p, list(STRATEGIES)[:2], seed=0, fixed=None)

i = intervention_study(classifier_spec(weights), n_images=2, participants=1)
start_image_analyses(i)
participant = i.participants.first()
from django.utils import timezone  # noqa: E402

participant.consent_version = i.consent_version
participant.consented_at = timezone.now()
participant.save()
for a in participant.assignments.select_related("image").order_by("order"):
    for seq, (op, box) in enumerate([("delete", (5, 5, 40, 40)), ("insert", (20, 30, 90, 100))]):
        m = np.zeros((a.image.height, a.image.width), bool)
        m[box[1] : box[3], box[0] : box[2]] = True
        submit_trial(
            participant,
            a.pk,
            {
                "client_event_id": f"t{a.pk}-{seq}",
                "seq": seq,
                "operation": op,
                "region_rle": rle_encode(m),
                "client_ts": 1.7e12 + seq,
            },
        )
for study in (p, i):
    for fmt in FORMATS:
        run_export(study, fmt, out / "exports" / f"{study.kind}-{fmt}.zip")
print("ok", p.pk, i.pk)
