"""A click on an image at the documented pixel limit (4096 x 4096) answers within the
interactive timeout on the default (classical) segmenter: the import stores a working copy of
at most IMPORT_MAX_SIDE a side (issue 25: 12.9 s, then 503s at 20 s, on the full-size image)."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from interventions.metrics import iou, rle_decode
from studies.core.enrolment import enrol_participant
from studies.core.importers import import_images
from studies.models import PromptEvent, Study
from tests.factories import ParticipantClient, classical_spec, researcher

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

SIDE = 4096


def test_a_click_on_a_4096_square_image_answers_within_the_interactive_timeout(
    client, tmp_path, media
):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    yy, xx = np.mgrid[:SIDE, :SIDE]
    disc = (yy - 1500) ** 2 + (xx - 2200) ** 2 < 700**2
    picture = np.empty((SIDE, SIDE, 3), np.uint8)
    picture[:] = (40 + (xx // 64) % 8)[..., None]
    picture[disc] = (200, 120, 60)
    Image.fromarray(picture).save(images / "scan.png", compress_level=1)
    Image.fromarray(disc.astype(np.uint8) * 255).save(masks / "scan.png", compress_level=1)
    del yy, xx, picture
    dataset = import_images(images, masks, "large scan")
    row = dataset.images.get()
    assert (row.width, row.height) == (settings.IMPORT_MAX_SIDE,) * 2
    assert (row.original_width, row.original_height) == (SIDE, SIDE)

    study = Study.objects.create(
        kind="prompting", title="large", dataset=dataset, model=classical_spec(),
        owner=researcher(), status="open",
        protocol=Study._meta.get_field("protocol").get_default(),
    )  # fmt: skip
    api = ParticipantClient(client, enrol_participant(study))
    api.consent()
    assignment = api.get("participants/me").json()["assignments"][0]
    assert (assignment["width"], assignment["height"]) == (row.width, row.height)
    scale = row.width / SIDE
    # a green point on the object, then a red one on the background: the second predicts
    for seq, (mode, x, y) in enumerate((("green", 2200, 1500), ("red", 300, 3800))):
        started = time.perf_counter()
        response = api.post(
            f"assignments/{assignment['id']}/events",
            {
                "client_event_id": str(uuid.uuid4()), "seq": seq, "action": "add", "mode": mode,
                "x": x * scale, "y": y * scale, "client_ts": 1.7e12,
            },
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.content
        assert elapsed < settings.INTERACTIVE_TIMEOUT_S  # the embedding and the decode included
    event = PromptEvent.objects.get(timestep=0)
    mask = rle_decode(event.mask_rle)
    assert mask.shape == (row.height, row.width)
    gt = np.asarray(Image.open(row.mask.path)) > 127
    assert iou(mask, gt) > 0.5
