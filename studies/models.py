"""The models of the `studies` app, gathered from the kinds' packages (Django loads this module)."""

from studies.core.models import (  # noqa: F401
    Allocation,
    Assignment,
    Dataset,
    DatasetImage,
    Job,
    ModelSpec,
    Participant,
    Study,
    default_protocol,
    image_upload_path,
    mask_upload_path,
    new_token,
)
from studies.intervention.models import ImageAnalysis, InterventionTrial  # noqa: F401
from studies.prompting.models import AnalysisResult, BaselineResult, PromptEvent  # noqa: F401
from studies.trust.models import TrustEvaluation, TrustScoreRow  # noqa: F401
