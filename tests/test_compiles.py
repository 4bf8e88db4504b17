"""Repeated calls reuse compiled programs: a second call on new draws of the same shape compiles nothing."""

import warnings

import numpy as np
import pytest
from compile_helpers import CompileTimes

import bayesgmm as bg

FIT = dict(num_warmup=60, num_samples=60, num_chains=2)


@pytest.fixture(scope="module")
def two_fits():
    X, _ = bg.load_dataset("faithful")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few draws for clean diagnostics
        return X, [bg.fit_nuts(X + 0.01 * s, 2, seed=s, **FIT) for s in range(2)]


HELPERS = {
    "relabel": lambda i: bg.relabel(i),
    "membership_probabilities": lambda i: bg.membership_probabilities(i),
    "sample_assignments": lambda i: bg.sample_assignments(i, seed=0),
    "coclustering_matrix": lambda i: bg.coclustering_matrix(i),
    "best_partition": lambda i: bg.best_partition(i),
    "add_predictive": lambda i: bg.add_predictive(i.copy(), seed=0),
    "ppc_pvalues": lambda i: bg.ppc_pvalues(bg.add_predictive(i.copy(), seed=0)),
    "loo": lambda i: bg.loo(i),
    "label_switching_report": lambda i: bg.label_switching_report(i),
    "summary": lambda i: bg.summary(i),
    "params_from_idata": lambda i: bg.params_from_idata(i),
    "n_components_posterior": lambda i: bg.n_components_posterior(i),
}


@pytest.mark.parametrize("name", sorted(HELPERS))
def test_posterior_helpers_compile_once(two_fits, name):
    _, (first, second) = two_fits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with CompileTimes() as once:
            HELPERS[name](first)
        with CompileTimes() as again:
            HELPERS[name](second)
    assert again.seconds == [], (
        f"{name} compiled {len(again.seconds)} programs again ({len(once.seconds)} at first)"
    )


def test_estimator_predictions_compile_once():
    X, _ = bg.load_dataset("faithful")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bg.BayesianGMM(2, random_state=0, **FIT).fit(X)
    calls = {
        "predict_proba": model.predict_proba,
        "predict": model.predict,
        "score_samples": model.score_samples,
        "sample": lambda X: model.sample(50),
    }
    rng = np.random.default_rng(0)
    for name, call in calls.items():
        call(X)
        with CompileTimes() as again:
            call(X + rng.normal(0, 0.1, X.shape))
        assert again.seconds == [], name
