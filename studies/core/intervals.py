"""The 95% interval of a mean that every analysis page reports; the pure code lives in
`interventions.intervals` (the science package uses it too), re-exported here for the pages."""

from interventions.intervals import (  # noqa: F401 (re-exported)
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    INTERVAL_METHOD,
    MeanCI,
    mean_ci95,
)
