"""The statistics of an experiment's arm comparison: each arm against the reference arm (the
design's first), on one outcome, for a between- or within-participants design (design.py).

The unit of analysis is one (participant, image) row. Every participant weighs the same: an
arm's mean is the mean of its participants' means, and the difference is arm minus reference.

- Interval: 95% percentile bootstrap (Efron & Tibshirani 1993, ch. 13) of that difference,
  resampling participants, the unit that was randomised. Between participants: participants
  drawn with replacement independently within each arm. Within participants: the participants
  with data in both arms drawn with replacement, each bringing their own arm-minus-reference
  difference of means (so the means and the difference of a within comparison are over those
  paired participants). numpy default_rng(seed), a fresh one per comparison, so the interval
  of arm B against A does not depend on which other arms the study has.
- Model: linear mixed model outcome ~ arm (indicator of the compared arm), fitted by REML
  with crossed random intercepts for participant and image (Baayen, Davidson & Bates 2008):
  statsmodels MixedLM with one group holding every row and the two intercepts as variance
  components, given as sparse indicator matrices: the fit of the formula way
  (vc_formula={"participant": "0 + C(participant)", "image": "0 + C(image)"}), whose dense
  matrices made it 3-10x slower at 200 participants x 24 images (2-20 s a fit against 1 s).
  Wald 95% interval and p-value of the arm coefficient. A fit that fails, does not
  converge or gives no finite standard error returns None estimates and says why in
  `model_note`; a variance component estimated at zero (a boundary, "singular" fit in lme4's
  words) keeps the estimates, which are then those of the smaller model, and the note says so.
  Statsmodels' warnings never print; they end in the note.

Binary outcomes use the same linear MixedLM (a linear probability mixed model), not
statsmodels' BinomialBayesMixedGLM, because:
  - its estimate is the difference in proportions, on the scale of the bootstrap interval and
    the means beside it; the GLMM's is a log-odds ratio, conditional on the random effects;
  - BinomialBayesMixedGLM is an approximate Bayesian fit: its mean-field variational fit
    (fit_vb) treats the fixed effects as independent of the random effects, which understates
    the arm coefficient's posterior sd almost three-fold in a between design (0.047 on the
    logit scale against a sampling sd of 0.128 over 30 generated studies of 200 participants x
    24 images, participant sd 0.8, image sd 0.5), and its Laplace fit (fit_map) did not converge
    on such a study (a log-sd driven to -200, 19 s); its results depend on the priors (vcp_p,
    fe_p), and it gives no p-value;
  - the linear model's fixed-effect estimate stays unbiased for the difference in proportions
    whatever the link; its standard error ignores that a binary outcome's variance depends on
    its mean, which matters only near 0 or 1, where the bootstrap interval is the one to read.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

METHODS = ("between", "within")
Z_95 = 1.959963984540054  # standard normal 97.5th percentile
MIN_PARTICIPANTS = 2
# A variance component below this share of the outcome's variance counts as zero (boundary).
BOUNDARY_SHARE = 1e-4
# Bound on the resample-index matrix held at once (entries), as interventions.intervals does.
CHUNK_ENTRIES = 2_000_000
# MixedLM tries these in turn until one converges. Nelder-Mead over the two variance ratios
# (the fixed effects and the residual variance are profiled out) reached BFGS's optimum in
# about half its time; statsmodels' default L-BFGS stopped early, "converged", at a
# participant variance 70% too large on a binary outcome (bench/design_analysis.py sizes).
OPTIMIZERS = ("nm", "bfgs")
FAILED_ATTEMPT = ("Maximum Likelihood optimization failed", "MixedLM optimization failed")

MODEL_LINEAR = (
    "linear mixed model (statsmodels MixedLM, REML): outcome ~ arm, "
    "crossed random intercepts for participant and image; Wald 95% interval"
)
MODEL_LINEAR_PROBABILITY = (
    "linear probability mixed model (statsmodels MixedLM, REML): outcome ~ arm, "
    "crossed random intercepts for participant and image; Wald 95% interval"
)


def interval_name(method: str, n_boot: int, seed: int) -> str:
    if method == "between":
        how = "participants resampled with replacement within each arm"
    else:
        how = "paired participants resampled with replacement, each with their own difference"
    return f"95% percentile bootstrap of the difference ({how}; {n_boot} resamples, seed {seed})"


def compare_arms(
    rows: Iterable[dict],
    outcome: str,
    *,
    arms: Sequence[str],
    method: str,
    binary: bool = False,
    seed: int = 0,
    n_boot: int = 2000,
) -> list[dict]:
    """Each non-reference arm against `arms[0]` on `outcome` (see the module doc).

    `rows`: one dict per (participant, image) with keys participant, image, arm and `outcome`
    (float or bool; None or NaN is missing and the row is dropped). Rows of an arm not in
    `arms` raise ValueError, as does a participant in two arms of a between design. Returns
    one dict per non-reference arm, in design order."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    arms = list(arms)
    if len(arms) < 2 or len(set(arms)) != len(arms):
        raise ValueError("arms: two or more distinct arm names, the reference first")
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    data = _frame(rows, outcome, arms, binary)
    if method == "between":
        arms_of = data.groupby("participant", sort=False)["arm"].nunique()
        crossed = arms_of[arms_of > 1]
        if len(crossed):
            raise ValueError(
                f"between-participants design: participant {crossed.index[0]!r} has rows in "
                f"{int(crossed.iloc[0])} arms"
            )
    # participant means per arm: index participant, one column per arm (NaN: no data there)
    means = data.groupby(["participant", "arm"], sort=False)["y"].mean().unstack("arm")
    reference = arms[0]
    return [
        _compare_pair(data, means, outcome, arm, reference, method, binary, seed, n_boot)
        for arm in arms[1:]
    ]


def _frame(rows: Iterable[dict], outcome: str, arms: list[str], binary: bool) -> pd.DataFrame:
    kept = []
    for row in rows:
        value = row[outcome]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if row["arm"] not in arms:
            raise ValueError(f"a row's arm {row['arm']!r} is not one of the design's arms")
        value = float(value)
        if binary and value not in (0.0, 1.0):
            raise ValueError(f"binary outcome {outcome!r} has the value {value!r}")
        kept.append((str(row["participant"]), str(row["image"]), row["arm"], value))
    data = pd.DataFrame(kept, columns=["participant", "image", "arm", "y"])
    data["y"] = data["y"].astype(np.float64)
    return data


def _compare_pair(
    data: pd.DataFrame,
    means: pd.DataFrame,
    outcome: str,
    arm: str,
    reference: str,
    method: str,
    binary: bool,
    seed: int,
    n_boot: int,
) -> dict:
    in_arm = _column(means, arm)
    in_ref = _column(means, reference)
    result = {
        "outcome": outcome,
        "arm": arm,
        "reference": reference,
        "method": method,
        "n_participants_arm": int(in_arm.notna().sum()),
        "n_participants_reference": int(in_ref.notna().sum()),
        "n_rows_arm": int((data["arm"] == arm).sum()),
        "n_rows_reference": int((data["arm"] == reference).sum()),
    }
    if method == "between":
        a, r = in_arm.dropna().to_numpy(), in_ref.dropna().to_numpy()
        enough = min(a.size, r.size) >= MIN_PARTICIPANTS
        short = (
            f"fewer than {MIN_PARTICIPANTS} participants in an arm "
            f"({a.size} in {arm!r}, {r.size} in {reference!r})"
        )
    else:
        paired = in_arm.notna() & in_ref.notna()
        a, r = in_arm[paired].to_numpy(), in_ref[paired].to_numpy()
        result["n_participants_paired"] = int(paired.sum())
        enough = a.size >= MIN_PARTICIPANTS
        short = (
            f"fewer than {MIN_PARTICIPANTS} participants with data in both {arm!r} and "
            f"{reference!r} ({a.size})"
        )
    mean_arm = float(a.mean()) if a.size else None
    mean_ref = float(r.mean()) if r.size else None
    difference = None if mean_arm is None or mean_ref is None else mean_arm - mean_ref
    result.update(mean_arm=mean_arm, mean_reference=mean_ref, difference=difference)
    result["interval"] = interval_name(method, n_boot, seed)
    if enough:
        rng = np.random.default_rng(seed)
        if method == "between":
            boot = _boot_means(a, n_boot, rng) - _boot_means(r, n_boot, rng)
        else:
            boot = _boot_means(a - r, n_boot, rng)
        low, high = np.percentile(boot, [2.5, 97.5])
        result.update(ci_low=float(low), ci_high=float(high))
    else:
        result.update(ci_low=None, ci_high=None)
    result["model"] = MODEL_LINEAR_PROBABILITY if binary else MODEL_LINEAR
    if enough:
        result.update(_mixed_model(data[data["arm"].isin([arm, reference])], arm))
    else:
        result.update(_no_model(f"no interval, no model: {short}"))
    return result


def _column(means: pd.DataFrame, arm: str) -> pd.Series:
    if arm in means.columns:
        return means[arm]
    return pd.Series(np.nan, index=means.index)


def _boot_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of n_boot resamples of `values` drawn with replacement, in chunks of bounded
    memory; the same rng state gives the same means."""
    n = values.size
    out = np.empty(n_boot)
    chunk = max(1, CHUNK_ENTRIES // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        out[start:stop] = values[rng.integers(0, n, (stop - start, n))].mean(axis=1)
    return out


def _no_model(note: str) -> dict:
    return {
        "model_estimate": None,
        "model_se": None,
        "model_ci_low": None,
        "model_ci_high": None,
        "model_p": None,
        "model_note": note,
    }


def _mixed_model(pair: pd.DataFrame, arm: str) -> dict:
    """REML fit of y ~ x with crossed participant and image intercepts (module doc)."""
    from scipy import sparse
    from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

    y = pair["y"].to_numpy()
    if not np.var(y) > 0:
        return _no_model("not fitted: the outcome does not vary")
    n = y.size
    exog = np.column_stack([np.ones(n), (pair["arm"] == arm).to_numpy(np.float64)])
    notes, names, columns, matrices = [], [], [], []
    for name in ("participant", "image"):
        codes, levels = pd.factorize(pair[name])
        if levels.size < 2:
            notes.append(f"one {name}: no {name} random intercept")
            continue
        z = sparse.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, levels.size))
        names.append(name)
        columns.append([np.arange(levels.size)])
        matrices.append([z])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = MixedLM(y, exog, groups=np.zeros(n), exog_vc=VCSpec(names, columns, matrices))
            fit = model.fit(reml=True, method=list(OPTIMIZERS))
        except (np.linalg.LinAlgError, ValueError, ZeroDivisionError) as error:
            return _no_model(f"not fitted: {type(error).__name__}: {error}")
    messages = []
    for warning in caught:
        text = str(warning.message)
        # statsmodels flags any variance under 0.01 in absolute terms, which on a [0, 1]
        # outcome is most fits; the boundary is judged below against the outcome's variance.
        if text.startswith("The MLE may be on the boundary"):
            continue
        if text.startswith("Retrying MixedLM optimization with"):
            text = f"{OPTIMIZERS[0]} did not converge, retried with {text.split()[-1]}"
        elif fit.converged and text.startswith(FAILED_ATTEMPT):
            continue  # an earlier optimizer's failure; a later one converged
        if text not in messages:
            messages.append(text)
    if not fit.converged:
        return _no_model("; ".join(["did not converge", *messages]))
    estimate, se = float(fit.fe_params[1]), float(fit.bse_fe[1])
    if not (math.isfinite(estimate) and math.isfinite(se) and se > 0):
        return _no_model("; ".join(["no finite standard error for the arm", *messages]))
    for name, variance in zip(names, np.atleast_1d(fit.vcomp), strict=True):
        if variance < BOUNDARY_SHARE * np.var(y):
            notes.append(f"singular fit: {name} variance estimated at 0 (boundary)")
    notes.extend(messages)
    p = float(2 * _normal_sf(abs(estimate / se)))
    return {
        "model_estimate": estimate,
        "model_se": se,
        "model_ci_low": estimate - Z_95 * se,
        "model_ci_high": estimate + Z_95 * se,
        "model_p": p,
        "model_note": "; ".join(notes),
    }


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def dropout_table(participants: Iterable[dict], arms: Sequence[str]) -> list[dict]:
    """Per arm, in design order: how many consented, started and finished, and the started and
    finished shares of those who consented (None when none consented). The stages nest: a
    participant counts as started only if consented, as finished only if also started."""
    counts = {arm: [0, 0, 0] for arm in arms}
    for person in participants:
        if person["arm"] not in counts:
            raise ValueError(f"a participant's arm {person['arm']!r} is not one of the arms")
        consented = bool(person["consented"])
        started = consented and bool(person["started"])
        finished = started and bool(person["finished"])
        tally = counts[person["arm"]]
        tally[0] += consented
        tally[1] += started
        tally[2] += finished
    table = []
    for arm, (consented, started, finished) in counts.items():
        table.append(
            {
                "arm": arm,
                "consented": consented,
                "started": started,
                "finished": finished,
                "started_share": started / consented if consented else None,
                "finished_share": finished / consented if consented else None,
            }
        )
    return table
