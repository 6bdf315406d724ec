"""Quality control of crowd studies: attention-check images.

A study lists easy images with a known answer (`Study.attention_images`, data set indices); every
participant gets them (enrolment). Whether a participant failed one is the study kind's call
(`StudyKind.attention_failed(assignment, threshold)`: True failed, False passed, None not
decided yet):

- prompting: the image was finished and the best IoU of the participant's timesteps is below
  `Study.attention_threshold` (no timestep at all is a failure too);
- intervention: the image was finished and none of the participant's regions on it overlaps the
  ground-truth object with IoU >= `Study.attention_threshold` (the known answer is the object).
"""

from __future__ import annotations


def attention_status(study, participant) -> str:
    """ "" (no checks in this study), "passed", "failed", "pending" or "none assigned"."""
    if not study.attention_images:
        return ""
    assignments = (
        participant.assignments.real()
        .filter(image__index__in=study.attention_images)
        .select_related("image")
    )
    results = [study.kind_spec.attention_failed(a, study.attention_threshold) for a in assignments]
    if not results:
        return "none assigned"
    if any(r is True for r in results):
        return "failed"
    if any(r is None for r in results):
        return "pending"
    return "passed"
