"""Experimental designs: validation, block randomisation, within-participant splits, and the
arm each participant and assignment runs (studies/core/design.py, docs/experiments.md)."""

from collections import Counter

import pytest

from studies.core import design
from studies.core.enrolment import EnrolmentRefused, arms_full, enrol_participant, record_consent
from studies.core.kinds import get_kind
from studies.models import Allocation, Assignment, Study
from tests.factories import classical_spec, researcher, small_dataset

TWO_ARMS = {
    "assignment": "between",
    "seed": 7,
    "block_size": 4,
    "arms": [
        {"name": "score shown", "options": {"show_score": True}},
        {"name": "score hidden", "options": {"show_score": False}},
    ],
}


def make_study(plan, n=6, **fields):
    kind = get_kind("prompting")
    spec = classical_spec()
    return Study.objects.create(
        title="experiment",
        dataset=small_dataset(n=n),
        model=spec,
        owner=researcher(),
        status="open",
        design=design.validate_design(
            kind, plan, models=design.model_kinds_by_id([spec]), default_seed=0
        ),
        **fields,
    )


def consent(study, n):
    out = []
    for _ in range(n):
        p = enrol_participant(study)
        out.append(record_consent(p, study.consent_version))
    return out


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "plan, field",
    [
        ({"arms": []}, "design.arms"),
        ({"arms": [{"name": "a", "options": {"nonsense": 1}}]}, "design.arms[0].options.nonsense"),
        (
            {"arms": [{"name": "a", "options": {"mask_choice": "worst"}}]},
            "design.arms[0].options.mask_choice",
        ),
        (
            {"arms": [{"name": "a", "options": {"max_rounds": 0}}]},
            "design.arms[0].options.max_rounds",
        ),
        ({"arms": [{"name": "a"}, {"name": "a"}]}, "design.arms[1].name"),
        ({"arms": [{"name": " "}]}, "design.arms[0].name"),
        ({"arms": [{"name": "a", "model": "nope"}]}, "design.arms[0].model"),
        ({"arms": [{"name": "a", "model": "classifier-demo"}]}, "design.arms[0].model"),
        ({"assignment": "sideways", "arms": [{"name": "a"}]}, "design.assignment"),
        ({"block_size": 3, "arms": [{"name": "a"}, {"name": "b"}]}, "design.block_size"),
        ({"arms": [{"name": "a", "target": 0}]}, "design.arms[0].target"),
        (
            {"assignment": "within", "arms": [{"name": "a", "target": 5}]},
            "design.arms[0].target",
        ),
        (
            {"assignment": "within", "arms": [{"name": "a", "options": {"layout": "pointprompt"}}]},
            "design.arms[0].options.layout",
        ),
        ({"arms": [{"name": "a", "colour": "red"}]}, "design.arms[0].colour"),
        ({"wat": 1, "arms": [{"name": "a"}]}, "design.wat"),
        ([1, 2], "design"),
    ],
)
def test_bad_designs_name_the_field(plan, field):
    kind = get_kind("prompting")
    with pytest.raises(design.DesignError) as err:
        design.validate_design(
            kind, plan, models={"classifier-demo": "classifier", "classical-v1": "classical"}
        )
    assert err.value.field == field
    assert str(err.value).startswith(field + ":")


def test_empty_design_stays_empty_and_defaults_fill_in():
    kind = get_kind("prompting")
    assert design.validate_design(kind, {}) == {}
    assert design.validate_design(kind, None) == {}
    plan = design.validate_design(kind, {"arms": [{"name": "a"}, {"name": "b"}]}, default_seed=5)
    assert plan == {
        "assignment": "between",
        "seed": 5,
        "block_size": 4,
        "arms": [{"name": "a", "options": {}}, {"name": "b", "options": {}}],
    }


# ----------------------------------------------------------------------------- pure sequences


def test_blocks_hold_each_arm_equally_and_differ_between_blocks():
    names = ["a", "b"]
    seq = [design.block_arm(7, 4, names, slot)[0] for slot in range(40)]
    for b in range(10):
        assert Counter(seq[4 * b : 4 * b + 4]) == {"a": 2, "b": 2}
    assert len({tuple(seq[4 * b : 4 * b + 4]) for b in range(10)}) > 1  # shuffled per block
    assert seq == [design.block_arm(7, 4, names, slot)[0] for slot in range(40)]
    assert seq != [design.block_arm(8, 4, names, slot)[0] for slot in range(40)]


def test_latin_rows_are_balanced():
    for k in (2, 3, 4, 5):
        rows = [design.latin_row(k, r) for r in range(k if k % 2 == 0 else 2 * k)]
        for row in rows:
            assert sorted(row) == list(range(k))
        for position in range(k):  # each arm in each position equally often
            counts = Counter(row[position] for row in rows)
            assert len(set(counts.values())) == 1 and len(counts) == k
    assert design.latin_row(4, 0) == [0, 1, 3, 2]


# ----------------------------------------------------------------------------- between


@pytest.mark.django_db
def test_between_allocation_is_blocked_logged_and_reproducible():
    study = make_study(TWO_ARMS)
    people = consent(study, 10)
    arms = [p.arm for p in people]
    assert set(arms) == {"score shown", "score hidden"}
    assert abs(arms.count("score shown") - arms.count("score hidden")) <= 4
    for p in people:  # every assignment carries the participant's arm
        assert set(p.assignments.values_list("arm", flat=True)) == {p.arm}
    log = list(study.allocations.order_by("sequence"))
    assert [a.sequence for a in log] == list(range(1, 11))
    assert [a.arm for a in log] == arms
    # the manifest's design and the consent order give the same allocation again
    assert [arm for arm, _ in design.replay_between(study.design, 10)] == arms
    assert [a.block for a in log] == [b for _, b in design.replay_between(study.design, 10)]


@pytest.mark.django_db
def test_consent_twice_allocates_once():
    study = make_study(TWO_ARMS)
    p = enrol_participant(study)
    first = record_consent(p, study.consent_version)
    again = record_consent(first, study.consent_version)
    assert again.arm == first.arm
    assert Allocation.objects.filter(participant=p).count() == 1


@pytest.mark.django_db
def test_targets_fill_and_then_the_study_is_full():
    plan = {
        **TWO_ARMS,
        "arms": [
            {"name": "score shown", "options": {"show_score": True}, "target": 3},
            {"name": "score hidden", "options": {"show_score": False}, "target": 2},
        ],
    }
    study = make_study(plan)
    people = consent(study, 5)
    assert Counter(p.arm for p in people) == {"score shown": 3, "score hidden": 2}
    assert arms_full(study)
    late = enrol_participant(study)
    with pytest.raises(EnrolmentRefused):
        record_consent(late, study.consent_version)
    late.refresh_from_db()
    assert not late.consented and late.arm == ""
    assert study.allocations.count() == 5
    # the replay skips full arms the same way
    assert Counter(arm for arm, _ in design.replay_between(study.design, 9)) == {
        "score shown": 3,
        "score hidden": 2,
    }


@pytest.mark.django_db
def test_the_arm_view_runs_the_arms_options():
    study = make_study(TWO_ARMS)
    people = consent(study, 4)
    for p in people:
        view = design.for_participant(p)
        assert view.option("show_score") is (p.arm == "score shown")
        a = p.assignments.first()
        assert design.for_assignment(a).option("show_score") is (p.arm == "score shown")
    with pytest.raises(RuntimeError):
        design.for_participant(people[0]).save()
    plain = make_study({})
    q = consent(plain, 1)[0]
    assert design.for_participant(q) is q.study or design.for_participant(q).pk == plain.pk
    assert q.arm == "" and not Allocation.objects.filter(participant=q).exists()


# ----------------------------------------------------------------------------- within


@pytest.mark.django_db
@pytest.mark.parametrize("k", [2, 3])
def test_within_every_participant_every_arm_and_images_balanced(k):
    plan = {
        "assignment": "within",
        "seed": 1,
        "arms": [{"name": f"arm {i}", "options": {"max_rounds": i + 1}} for i in range(k)],
    }
    study = make_study(plan, n=6)
    people = consent(study, 7)
    per_image = Counter()
    for p in people:
        rows = list(p.assignments.real().order_by("order").values_list("image_id", "arm"))
        arms = [arm for _, arm in rows]
        assert set(arms) == {f"arm {i}" for i in range(k)}
        assert max(Counter(arms).values()) - min(Counter(arms).values()) <= 1
        # the arms come in blocks, in the participant's Latin-square order
        blocks = [arm for i, arm in enumerate(arms) if i == 0 or arms[i - 1] != arm]
        assert blocks == p.allocation.arm_order
        per_image.update(rows)
    for image_id in {i for i, _ in per_image}:
        counts = [per_image[(image_id, f"arm {i}")] for i in range(k)]
        assert max(counts) - min(counts) <= 1
    firsts = Counter(p.allocation.arm_order[0] for p in people)
    assert len(firsts) == k  # counterbalanced: the first arm rotates
    a = Assignment.objects.filter(participant=people[0], practice=False).first()
    assert design.for_assignment(a).option("max_rounds") == int(a.arm.split()[1]) + 1
