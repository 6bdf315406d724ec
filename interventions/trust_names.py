"""The trust scores of ``interventions.trust``: each one's key, title, direction and definition,
in the order of the GradTrust paper's comparison table.

Free of torch, so the web process (pages, exports) can name and describe the scores without
loading the model code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrustScore:
    """One score of ``trust_scores``: its key, a title for tables and plots, whether a higher
    value means a more trustworthy prediction, and its definition (P: the predicted class)."""

    name: str
    title: str
    higher_is_trustworthy: bool
    definition: str


TRUST_SCORES: tuple[TrustScore, ...] = (
    TrustScore("softmax", "Softmax", True, "max_c softmax(z)_c"),
    TrustScore("entropy", "Entropy", False, "-sum_c p_c log p_c (the released demo prints -this)"),
    TrustScore("margin", "Margin", True, "p_(1) - p_(2)"),
    TrustScore("logit", "Max logit", True, "max_c z_c"),
    TrustScore("nll", "Log-likelihood", True, "-nll_loss(z, P) on raw logits, i.e. z_P"),
    TrustScore(
        "odin", "ODIN", True, "max softmax(f(x - 0.0014 sign grad_x CE(f(x)/100, P)) / 100)"
    ),
    TrustScore(
        "mcd", "MC dropout", True, "sum_c m_c log(m_c + 1e-4), m: mean softmax of 10 dropout passes"
    ),
    TrustScore(
        "purview_initial",
        "Purview (initial)",
        True,
        "-mean over the first half of parameter tensors of sum (dBCE(z, 1)/dtheta)^2",
    ),
    TrustScore(
        "purview_final",
        "Purview (final)",
        True,
        "-mean over the second half of parameter tensors of sum (dBCE(z, 1)/dtheta)^2",
    ),
    TrustScore("gradnorm", "GradNorm", True, "-|| dKLDiv(u, softmax(z)) / dW ||_2, u = 1/C"),
    TrustScore(
        "grad_trust",
        "GradTrust (tutorial)",
        True,
        "Var_d dL/dW[P] / mean_{q in top-k after P} Var_d dL/dW[q], L = MSE(z, 1/C)",
    ),
    TrustScore(
        "grad_trust_released",
        "GradTrust",
        True,
        "max_c Var_d (dL/dW[c, d])^2 / mean_c Var_d (dL/dW[c, d])^2, L = MSE(z, 1/C)",
    ),
)
TRUST_SCORE_NAMES: tuple[str, ...] = tuple(s.name for s in TRUST_SCORES)
_BY_NAME = {s.name: s for s in TRUST_SCORES}


def trust_score(name: str) -> TrustScore:
    """The ``TrustScore`` called ``name``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown trust score {name!r}; choose from {TRUST_SCORE_NAMES}") from None
