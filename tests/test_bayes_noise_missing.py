"""Bayesian fits with a uniform noise component and values missing at random, against scipy oracles."""

import os
import tempfile

import jax.numpy as jnp
import numpy as np
import pytest
from noise_missing_helpers import MEANS, oracle_joint, simulate
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp, softmax

from bayesgmm import (
    BayesianGMM,
    fit_nuts,
    fit_svi,
    impute,
    load,
    membership_probabilities,
    sample_assignments,
)
from bayesgmm.models import MixtureLikelihood
from bayesgmm.params import GMMParams


@pytest.fixture(scope="module")
def data():
    """300 rows, 15% of cells missing, 3% outliers (last)."""
    return simulate(300, 0.15, 0.03, seed=2)


@pytest.fixture(scope="module")
def idata(data):
    return fit_svi(data[0], 2, noise="uniform", missing="marginalize", seed=0, num_samples=100)


def draws(idata):
    post = idata.posterior.stack(sample=("chain", "draw"))
    return (
        post["weights"].transpose("sample", "component").values,
        post["means"].transpose("sample", "component", "feature").values,
        post["covariances"].transpose("sample", "component", "feature", "feature_col").values,
        post["noise_weight"].values,
    )


def oracle_resp_and_log_lik(idata, X, n_draws=20):
    """The oracle's responsibilities and row log densities of the first ``n_draws`` draws."""
    lower, upper = np.asarray(idata.attrs["noise_lower"]), np.asarray(idata.attrs["noise_upper"])
    out = []
    for w, m, c, nw in list(zip(*draws(idata), strict=True))[:n_draws]:
        joint = oracle_joint(X, w, m, c, nw, lower, upper)
        out.append((softmax(joint, axis=1), logsumexp(joint, axis=1)))
    return np.stack([r for r, _ in out]), np.stack([ll for _, ll in out])


def test_the_model_likelihood_is_the_oracle():
    X, _ = simulate(40, 0.3, 0.1, seed=4)
    rng = np.random.default_rng(0)
    covs = np.stack([np.eye(3) * 1.5, np.diag([1.0, 2.0, 0.5])])
    params = GMMParams.from_covariances(
        jnp.array([0.6, 0.3]), jnp.asarray(rng.normal(size=(2, 3))), jnp.asarray(covs)
    )
    lower, upper = np.nanmin(X, axis=0) - 1, np.nanmax(X, axis=0) + 2
    log_ranges = np.log(upper - lower)
    log_noise = np.log(0.1) - log_ranges.sum()
    got = MixtureLikelihood(params, None, True, jnp.asarray(log_noise), jnp.asarray(log_ranges)).log_prob(X)
    want = logsumexp(oracle_joint(X, [0.6, 0.3], np.asarray(params.means), covs, 0.1, lower, upper), axis=1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10)


def test_svi_recovers_the_means_and_keeps_the_box(data, idata):
    X, n_out = data
    np.testing.assert_array_equal(idata.attrs["noise_lower"], np.nanmin(X, axis=0))
    np.testing.assert_array_equal(idata.attrs["noise_upper"], np.nanmax(X, axis=0))
    assert idata.attrs["noise_volume"] == pytest.approx(np.prod(np.nanmax(X, 0) - np.nanmin(X, 0)), rel=1e-12)
    means = idata.posterior["means"].mean(("chain", "draw")).values
    rows, cols = linear_sum_assignment(((means[:, None] - MEANS[None]) ** 2).sum(-1))
    # Within 5 standard errors of each mean: unit-or-smaller sd over ~ 290 / 2 rows, 85% observed.
    se = np.sqrt(2.0 / (0.85 * (len(X) - n_out) / 2))
    assert np.abs(means[rows] - MEANS[cols]).max() < 5 * se
    share = n_out / len(X)
    noise_weight = float(idata.posterior["noise_weight"].mean())
    assert noise_weight == pytest.approx(share, abs=4 * np.sqrt(share * (1 - share) / len(X)))


def test_log_likelihood_and_memberships_are_the_oracles(data, idata):
    X, n_out = data
    resp, log_lik = oracle_resp_and_log_lik(idata, X)
    got = idata.log_likelihood["X"].stack(sample=("chain", "draw")).transpose("sample", "obs").values
    np.testing.assert_allclose(got[: len(log_lik)], log_lik, rtol=1e-9)
    probs = membership_probabilities(idata)
    all_resp, _ = oracle_resp_and_log_lik(idata, X, n_draws=idata.posterior.sizes["draw"])
    np.testing.assert_allclose(probs["noise"].values, all_resp[..., -1].mean(axis=0), atol=1e-9)
    assert probs["noise"].values[-n_out:].mean() > 0.9
    z = sample_assignments(idata, seed=1).assignments["assignments"].values
    # Rows the oracle gives to the noise with probability one are assigned -1 in every draw.
    sure = all_resp[..., -1].min(axis=0) > 1 - 1e-12
    assert sure.any() and (z[..., sure] == -1).all()


def test_estimator_predicts_noise_on_rows_with_nan_and_keeps_its_box(data):
    X, n_out = data
    gmm = BayesianGMM(
        2,
        inference="svi",
        num_samples=50,
        num_chains=1,
        random_state=0,
        noise="uniform",
        missing="marginalize",
    ).fit(X)
    np.testing.assert_array_equal(gmm.noise_lower_, gmm.idata_.attrs["noise_lower"])
    np.testing.assert_array_equal(gmm.noise_upper_, gmm.idata_.attrs["noise_upper"])
    resp, log_lik = oracle_resp_and_log_lik(gmm.idata_, X, n_draws=50)
    np.testing.assert_allclose(gmm.predict_proba(X), resp.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(gmm.score_samples(X), logsumexp(log_lik, axis=0) - np.log(50), rtol=1e-9)
    labels = gmm.predict(X)
    assert np.mean(labels[-n_out:] == -1) >= 0.75
    filled = gmm.impute(X, n_draws=10)
    assert not np.isnan(filled).any() and (filled[:, ~np.isnan(X)] == X[~np.isnan(X)]).all()
    path = os.path.join(tempfile.mkdtemp(), "gmm.nc")
    gmm.save(path)
    loaded = load(path)
    np.testing.assert_array_equal(loaded.noise_lower_, gmm.noise_lower_)
    np.testing.assert_array_equal(loaded.predict_proba(X), gmm.predict_proba(X))


def test_estimator_without_noise_has_no_box(data):
    X = data[0][:100]
    gmm = BayesianGMM(
        2, inference="svi", num_samples=20, num_chains=1, random_state=0, missing="marginalize"
    ).fit(X)
    assert gmm.noise_lower_ is None and gmm.noise_upper_ is None and gmm.noise_weight_ is None


@pytest.mark.filterwarnings("ignore::bayesgmm.DiagnosticsWarning")  # a short chain, checked against oracles
def test_nuts_runs_with_noise_and_missing_values(data):
    X = data[0][::3]
    idata = fit_nuts(
        X,
        2,
        "diag",
        noise="uniform",
        missing="marginalize",
        num_warmup=150,
        num_samples=100,
        num_chains=1,
        seed=0,
    )
    resp, log_lik = oracle_resp_and_log_lik(idata, X, n_draws=5)
    got = idata.log_likelihood["X"].stack(sample=("chain", "draw")).transpose("sample", "obs").values
    np.testing.assert_allclose(got[:5], log_lik, rtol=1e-9)
    means = idata.posterior["means"].mean(("chain", "draw")).values
    rows, cols = linear_sum_assignment(((means[:, None] - MEANS[None]) ** 2).sum(-1))
    se = np.sqrt(2.0 / (0.85 * len(X) / 2))
    assert np.abs(means[rows] - MEANS[cols]).max() < 5 * se


def test_imputation_draws_the_noise_rows_uniformly_in_the_box(data, idata):
    X, _ = data
    completed = impute(idata, seed=3)
    np.testing.assert_array_equal(
        completed[:, ~np.isnan(X)],
        np.broadcast_to(X[~np.isnan(X)], completed.shape[:1] + (int((~np.isnan(X)).sum()),)),
    )
    all_resp, _ = oracle_resp_and_log_lik(idata, X, n_draws=idata.posterior.sizes["draw"])
    sure = (all_resp[..., -1].min(axis=0) > 1 - 1e-12) & np.isnan(X).any(axis=1)
    assert sure.any()
    lower, upper = np.asarray(idata.attrs["noise_lower"]), np.asarray(idata.attrs["noise_upper"])
    holes = np.isnan(X[sure])
    values = completed[:, sure][:, holes]
    cols = np.broadcast_to(np.nonzero(holes)[1], values.shape)
    assert ((values >= lower[cols]) & (values <= upper[cols])).all()
    # Uniform on each side: the standardised position has mean 1/2 and sd 1/sqrt(12).
    u = (values - lower[cols]) / (upper - lower)[cols]
    assert abs(u.mean() - 0.5) < 4 / np.sqrt(12 * u.size)
