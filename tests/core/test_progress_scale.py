"""The study page and its live progress fragment at PointPrompt size (issue "A PointPrompt-size
study in seconds"): the tables are computed in the database for the page shown, so the number
of queries does not grow with the participants (attention checks included), the HTML stays
small (a participant row links its first replays and "and k more"), and every sort key, the
search and the pagers give what a plain loop over the assignments gives."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from interventions.metrics import rle_encode
from studies.core.enrolment import enrol_participant, record_consent
from studies.core.quality import BATCHED, attention_statuses
from studies.core.views_researcher import (
    ASSIGNMENTS_PAGE_SIZE,
    IMAGE_SORTS,
    PAGE_SIZE,
    PARTICIPANT_SORTS,
    REPLAY_LINKS,
)
from studies.models import Assignment, InterventionTrial, Participant, PromptEvent

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from pointprompt_scale import generate_study  # noqa: E402

pytestmark = pytest.mark.django_db
HTML_LIMIT = 200 * 1024


def codes(html: str) -> list[str]:
    return re.findall(r'<tr data-code="([^"]+)"', html)


def image_indices(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-index="(\d+)"', html)]


def more_people(study, n: int, seed: int = 1) -> None:
    """n more participants: consented, some with a few scored clicks (finished or not), one
    completed, one excluded, and one without any image."""
    rng = np.random.default_rng(seed)
    now = timezone.now()
    for i in range(n):
        p = record_consent(enrol_participant(study), study.consent_version)
        if i % 3 == 0:
            continue  # consented, nothing done
        for a in list(p.assignments.real().order_by("order")[: 1 + i % 4]):
            start = now - timedelta(minutes=60 - i)
            for seq in range(3):
                PromptEvent.objects.create(
                    assignment=a, seq=seq, client_event_id=f"x{a.pk}-{seq}", action="add",
                    mode="green", x=1.0, y=1.0, timestep=seq, round=1, iou=float(rng.uniform(0.2, 0.99)),
                    server_ts=start + timedelta(seconds=3 * seq + i),
                )  # fmt: skip
            finished = bool(seq % 2 or i % 2)
            Assignment.objects.filter(pk=a.pk).update(
                status="finished" if finished else "active",
                started_at=None if i % 5 == 0 else start,  # a hand-made log: no started_at
                finished_at=start + timedelta(seconds=9 + i) if finished else None,
            )
        if i == 4:
            Participant.objects.filter(pk=p.pk).update(completed_at=now)
        if i == 5:
            Participant.objects.filter(pk=p.pk).update(excluded=True, excluded_reason="bots")
    number = study.participants.count() + 1
    Participant.objects.create(study=study, number=number, code=f"st{number}")  # no images


def queries(client, url: str) -> tuple[list[str], str]:
    """The queries of one page (their tables and clauses, no values) and its HTML."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    values = [re.sub(r"'[^']*'|\b\d+\b", "?", q["sql"]) for q in captured]
    shapes = [re.sub(r"\?(, \?)+", "?", sql)[:300] for sql in values]
    return shapes, response.content.decode()


URLS = (
    "/studies/{pk}/",
    "/studies/{pk}/progress",
    "/studies/{pk}/progress?sort=-time&isort=-best&page=2",
    "/studies/{pk}/progress?sort=status&q=st",
    "/studies/{pk}/progress?who=st1&apage=2",
)


def test_queries_and_html_do_not_grow_with_the_participants(client):
    study, counts = generate_study(2000, seed=0)
    study.attention_images, study.attention_threshold = [0, 1], 0.6
    study.save()
    client.force_login(study.owner)
    small = {url: queries(client, url.format(pk=study.pk))[0] for url in URLS}
    more_people(study, 60)  # 3 -> 64 participants, 3 pages of them
    grown = {url: queries(client, url.format(pk=study.pk))[0] for url in URLS}
    more_people(study, 60, seed=2)  # 125
    assert study.participants.count() == counts["participants"] + 122
    for url in URLS:
        after, html = queries(client, url.format(pk=study.pk))
        assert after == grown[url], url
        # (with fewer participants a query can only be left out: one for no rows at all)
        assert len(after) <= len(small[url]), (url, [q for q in after if q not in small[url]])
        assert len(html.encode()) < HTML_LIMIT, url
        assert "attention: " in html or "?who=" in url


def test_a_big_participant_links_its_first_replays_and_the_rest_a_page_at_a_time(client):
    study, counts = generate_study(6000, seed=1)  # 3 participants, 182 images each
    client.force_login(study.owner)
    html = client.get(f"/studies/{study.pk}/").content.decode()
    assert len(html.encode()) < HTML_LIMIT
    first = study.participants.get(number=1)
    mine = list(first.assignments.real().order_by("order"))
    assert len(mine) == counts["images_per_participant"] > REPLAY_LINKS
    row = html.split('<tr data-code="st1"')[1].split("</tr>")[0]
    linked = [int(pk) for pk in re.findall(r"/assignments/(\d+)/replay", row)]
    assert linked == [a.pk for a in mine[:REPLAY_LINKS]]
    assert f"and {len(mine) - REPLAY_LINKS} more" in row and "who=st1#assignments-of" in row
    finished = sum(a.status == "finished" for a in mine)
    assert f'<td class="num">{finished} / {len(mine)}</td>' in row
    # the participant's list: every assignment, once, a page at a time
    seen, url = [], f"/studies/{study.pk}/progress?who=st1"
    while url:
        part = client.get(url).content.decode().split('id="assignments-of"')[1]
        part = part.split("</section>")[0]
        seen += [int(pk) for pk in re.findall(r"/assignments/(\d+)/replay", part)]
        following = re.search(r'href="(\?[^"#]*)#assignments-of" class="pager-next"', part)
        url = (
            f"/studies/{study.pk}/progress{following.group(1).replace('&amp;', '&')}"
            if following
            else ""
        )
    assert seen == [a.pk for a in mine] and len(mine) > ASSIGNMENTS_PAGE_SIZE
    best = max(
        PromptEvent.objects.filter(assignment=mine[0], iou__isnull=False).values_list(
            "iou", flat=True
        )
    )
    assert f"best IoU {best:.3f}" in html  # the link's title


def expected_participants(study) -> list[dict]:
    """The participant table by a plain loop over every assignment and logged action."""
    out = []
    for p in study.participants.order_by("number"):
        rows = list(p.assignments.real())
        bests, seconds, last, actions = [], 0.0, None, 0
        for a in rows:
            times = list(a.events.values_list("server_ts", flat=True)) + list(
                a.trials.values_list("server_ts", flat=True)
            )
            actions += len(times)
            scores = [s for s in a.events.values_list("iou", flat=True) if s is not None]
            if scores:
                bests.append(max(scores))
            start = a.started_at or (min(times) if times else None)
            end = a.finished_at or (max(times) if times else None)
            if start and end:
                seconds += max(0.0, (end - start).total_seconds())
            if times and (last is None or max(times) > last):
                last = max(times)
        if p.excluded:
            status = "excluded"
        elif not rows:
            status = "no images"
        elif p.completed_at:
            status = "completed"
        elif actions:
            status = "in progress"
        elif p.consented_at:
            status = "consented"
        else:
            status = "not started"
        out.append(
            {
                "code": p.code,
                "crowd": p.prolific_pid,
                "status": status,
                "finished": sum(a.status == "finished" for a in rows),
                "assigned": len(rows),
                "best": sum(bests) / len(bests) if bests else None,
                "actions": actions,
                "time": seconds,
                "last": last,
            }
        )
    return out


PLAIN_KEYS = {
    "code": lambda r: int(r["code"][2:]),
    "status": lambda r: r["status"],
    "finished": lambda r: r["finished"],
    "best": lambda r: -1.0 if r["best"] is None else r["best"],
    "actions": lambda r: r["actions"],
    "time": lambda r: r["time"],
    "last": lambda r: r["last"].timestamp() if r["last"] else 0.0,
}


def all_pages(client, url: str, param: str, rows) -> list:
    """The rows of every page of one table (`param`: page or ipage)."""
    table = "participants" if param == "page" else "images"
    html = client.get(url).content.decode()
    found = re.search(rf"{table} page 1 of (\d+)", html)
    out = rows(html)
    for number in range(2, int(found.group(1)) + 1 if found else 2):
        out += rows(client.get(f"{url}&{param}={number}").content.decode())
    return out


def test_every_sort_search_and_page_matches_a_plain_loop(client):
    study, _ = generate_study(2000, seed=2)
    more_people(study, 40)
    Participant.objects.filter(number=7).update(prolific_pid="PROLIFIC-XYZ")
    client.force_login(study.owner)
    rows = expected_participants(study)
    base = f"/studies/{study.pk}/progress"
    assert set(PLAIN_KEYS) == set(PARTICIPANT_SORTS)
    for key, plain in PLAIN_KEYS.items():
        for sign in ("", "-"):
            want = [r["code"] for r in sorted(rows, key=plain, reverse=bool(sign))]
            got = all_pages(client, f"{base}?sort={sign}{key}", "page", codes)
            assert got == want, f"{sign}{key}"
    # the figures of each row
    html = "".join(
        client.get(f"{base}?page={n}").content.decode()
        for n in range(1, len(rows) // PAGE_SIZE + 2)
    )
    for r in rows:
        row = html.split(f'<tr data-code="{r["code"]}"')[1].split("</tr>")[0]
        assert f'<span class="status {r["status"].replace(" ", "-")}">' in row, r
        assert f'<td class="num">{r["finished"]} / {r["assigned"]}</td>' in row, r
        assert f'<td class="num">{r["actions"]}</td>' in row, r
        best = "—" if r["best"] is None else f"{r['best']:.3f}"
        assert f'<td class="num">{best}</td>' in row, r
        shown = re.search(r'time-on-task">([^<]*)</td>', row).group(1)
        assert shown == (f"{r['time']:.1f} s" if r["time"] else "—"), r
    # search by code or crowd id, in the database, with the pager
    found = client.get(f"{base}?q=xyz").content.decode()
    assert codes(found) == ["st7"] and "1 shown" in found
    want = [r["code"] for r in rows if "st1" in r["code"]]
    assert all_pages(client, f"{base}?q=ST1&sort=code", "page", codes) == want
    # images: every sort against a plain loop
    per_image: dict[int, dict] = {}
    for a in Assignment.objects.real().filter(participant__study=study).select_related("image"):
        im = per_image.setdefault(a.image.index, {"index": a.image.index, "assigned": 0,
                                                  "finished": 0, "best": None})  # fmt: skip
        im["assigned"] += 1
        im["finished"] += a.status == "finished"
        scores = [s for s in a.events.values_list("iou", flat=True) if s is not None]
        if scores:
            im["best"] = max(scores + ([im["best"]] if im["best"] is not None else []))
    plain_images = {
        "index": lambda im: im["index"],
        "finished": lambda im: im["finished"],
        "assigned": lambda im: im["assigned"],
        "best": lambda im: -1.0 if im["best"] is None else im["best"],
    }
    assert set(plain_images) == set(IMAGE_SORTS)
    for key, plain in plain_images.items():
        for sign in ("", "-"):
            want = [
                im["index"]
                for im in sorted(
                    sorted(per_image.values(), key=lambda im: im["index"]),
                    key=plain,
                    reverse=bool(sign),
                )
            ]
            got = all_pages(client, f"{base}?isort={sign}{key}", "ipage", image_indices)
            assert got == want, f"{sign}{key}"


def intervention_study():
    from tests.core.test_researcher_view import classifier_study

    return classifier_study(n_images=3, participants=4)


def test_batched_attention_checks_agree_with_each_kind_rule():
    from tests.factories import prompting_study

    # prompting: finished with a good / poor / no score, and unfinished
    study = prompting_study(n_images=3, participants=4)
    study.attention_images, study.attention_threshold = [0, 1], 0.5
    study.save()
    now = timezone.now()
    for i, p in enumerate(study.participants.order_by("number")):
        for j, a in enumerate(p.assignments.real().filter(image__index__in=[0, 1])):
            if (i + j) % 3:
                PromptEvent.objects.create(
                    assignment=a, seq=0, client_event_id="e", action="add", server_ts=now, round=1,
                    iou=0.3 + 0.2 * ((i + j) % 3),
                )  # fmt: skip
            if i:
                Assignment.objects.filter(pk=a.pk).update(status="finished")
    # intervention: finished with a region on / off the object, without a region, unfinished
    other = intervention_study()
    other.attention_images, other.attention_threshold = [0, 2], 0.3
    other.save()
    for i, p in enumerate(other.participants.order_by("number")):
        for j, a in enumerate(p.assignments.real().filter(image__index__in=[0, 2])):
            from PIL import Image

            with a.image.mask.open("rb") as handle:
                gt = np.asarray(Image.open(handle).convert("L")) > 127
            region = gt if (i + j) % 2 else np.roll(gt, gt.shape[0] // 2, axis=0) & ~gt
            if (i + j) % 3:
                InterventionTrial.objects.create(
                    assignment=a, seq=0, client_event_id="t", operation="delete",
                    region_rle=rle_encode(region), substrate="zero", target_class=1,
                    prob_before=0.9, prob_after=0.5, flipped=False, area_fraction=0.1,
                    server_ts=now,
                )  # fmt: skip
            if i:
                Assignment.objects.filter(pk=a.pk).update(status="finished")
    for s in (study, other):
        checks = list(
            Assignment.objects.real()
            .filter(participant__study=s, image__index__in=s.attention_images)
            .select_related("image")
        )
        one_by_one = {
            a.pk: (a.participant_id, s.kind_spec.attention_failed(a, s.attention_threshold))
            for a in checks
        }
        batch = Assignment.objects.filter(pk__in=[a.pk for a in checks])
        assert BATCHED[s.kind](batch, s.attention_threshold) == one_by_one
        assert {True, False, None} == {failed for _, failed in one_by_one.values()}
        pks = list(s.participants.values_list("pk", flat=True))
        with CaptureQueriesContext(connection) as captured:
            statuses = attention_statuses(s, pks)
        assert len(captured) <= 2 and set(statuses) == set(pks)
        assert "failed" in statuses.values() and "pending" in statuses.values()
