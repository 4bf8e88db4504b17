"""BIC, AIC and ICL of EM fits against mclust's own numbers and against repeated rows."""

import json
from pathlib import Path

import numpy as np
import pytest

from bayesgmm import load_dataset
from bayesgmm.inference.em.fit import aic, bic, fit_em, icl

# mclust 6.0.0 fits of the bundled data, written by tests/data/mclust_parameters.R.
MCLUST = json.loads((Path(__file__).parent / "data" / "mclust_parameters.json").read_text())
MCLUST_MODELS = {"EEE": "tied", "VVV": "full", "VVI": "diag", "VII": "spherical"}


def _precisions(covariances, covariance_type):
    cov = np.asarray(covariances)
    if covariance_type == "tied":
        return np.linalg.inv(cov[0])
    if covariance_type == "diag":
        return 1.0 / np.diagonal(cov, axis1=1, axis2=2)
    if covariance_type == "spherical":
        return 1.0 / cov[:, 0, 0]
    return np.linalg.inv(cov)


@pytest.mark.parametrize("ref", MCLUST, ids=lambda r: f"{r['data']}-{r['model']}-{r['G']}")
def test_criteria_at_mclust_parameters_equal_mclust(ref):
    # At mclust's own parameters (max_iter=0 keeps the start), the log-likelihood, BIC and
    # ICL are mclust's: ICL uses the MAP classification, not the soft entropy.
    X, _ = load_dataset(ref["data"])
    covariance_type = MCLUST_MODELS[ref["model"]]
    res = fit_em(
        X, ref["G"], covariance_type, max_iter=0, weights_init=np.asarray(ref["weights"]),
        means_init=np.asarray(ref["means"]), precisions_init=_precisions(ref["covariances"], covariance_type),
    )  # fmt: skip
    # mclust's own loglik/BIC/ICL come from the E-step before its last M-step; the
    # reference evaluates them at the returned parameters with mclust's estep, bic and icl.
    assert res.log_likelihood == pytest.approx(ref["loglik_at_parameters"], abs=1e-6)
    assert -bic(res) == pytest.approx(ref["bic_at_parameters"], abs=1e-6)
    assert -icl(res) == pytest.approx(ref["icl_at_parameters"], abs=1e-6)


def test_icl_faithful_eee_3_is_mclust():
    # mclust: BIC -2314.316, ICL -2357.824 (its sign). Our optimum is 0.01 higher in
    # log-likelihood (mclust stops on a relative change of 1e-5) on a flat ridge, so ICL,
    # which depends on the hard partition, is within 1 of mclust's rather than exact.
    X, _ = load_dataset("faithful")
    res = fit_em(X, 3, "tied", n_init=10, seed=0, tol=1e-9, max_iter=1000, reg_covar=0.0)
    assert -icl(res) == pytest.approx(-2357.824, abs=1.0)
    # The soft-entropy version would be about 42 lower.
    assert icl(res) - bic(res) == pytest.approx(2357.824 - 2314.316, abs=1.0)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_criteria_of_weighted_fit_equal_repeated_rows(covariance_type):
    # Integer sample weights fit like repeated rows, and so must their criteria: the
    # weighted log-likelihood and the total weight as n.
    X, _ = load_dataset("faithful")
    counts = np.random.default_rng(3).integers(0, 4, size=len(X))
    start = fit_em(X, 2, covariance_type, seed=0)
    init = dict(
        weights_init=np.asarray(start.params.weights), means_init=np.asarray(start.params.means),
        precisions_init=_precisions(np.asarray(start.params.covariances), covariance_type),
    )  # fmt: skip
    kw = dict(tol=1e-10, max_iter=500, **init)
    weighted = fit_em(X, 2, covariance_type, sample_weight=counts, **kw)
    repeated = fit_em(np.repeat(X, counts, axis=0), 2, covariance_type, **kw)
    for criterion in (bic, aic, icl):
        assert criterion(weighted) == pytest.approx(criterion(repeated), rel=1e-8), criterion.__name__
    # An explicit X without weights is the unweighted criterion on those rows.
    assert bic(weighted, X) != pytest.approx(bic(weighted))


def test_unconverged_em_warns_and_converged_is_quiet():
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    X, _ = load_dataset("faithful")
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        res = fit_em(X, 3, seed=0, max_iter=2)
    assert not res.converged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit_em(X, 2, seed=0).converged
