"""EM with a uniform noise component and values missing at random, against scipy oracles.

For a row with observed features O, the oracle density is
``pi_0 / prod_{j in O}(upper_j - lower_j) + sum_k pi_k N(x_O | mu_O, S_OO)``, computed row by
row with ``scipy.stats.multivariate_normal`` on the observed sub-vector.
"""

import warnings

import numpy as np
import pytest
from noise_missing_helpers import COVS, MEANS, oracle_conditional_mean, oracle_joint, params_of, simulate
from scipy.special import logsumexp, softmax

from bayesgmm import GaussianMixture, add_predictive, membership_probabilities, sample_assignments
from bayesgmm.inference.em.fit import fit_em

COV_TYPES = ["full", "tied", "diag", "spherical"]


@pytest.fixture(scope="module")
def tiny():
    return simulate(80, 0.2, 0.05, seed=3)[0]


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_log_likelihood_and_responsibilities_are_the_oracles(tiny, covariance_type):
    X = tiny
    # A tight tol: the noise weight's M-step identity below holds only as closely as EM converged.
    res = fit_em(
        X, 2, covariance_type, noise="uniform", missing="marginalize", seed=0, tol=1e-14, max_iter=5000
    )
    lower, upper = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    np.testing.assert_array_equal(res.noise_lower, lower)
    np.testing.assert_array_equal(res.noise_upper, upper)
    assert res.noise_volume == pytest.approx(np.prod(upper - lower), rel=1e-14)
    weights, means, covs, noise_weight = params_of(res)
    assert float(weights.sum()) + noise_weight == pytest.approx(1.0, abs=1e-12)
    joint = oracle_joint(X, weights, means, covs, noise_weight, lower, upper)
    rows = logsumexp(joint, axis=1)
    np.testing.assert_allclose(res.log_prob(X), rows, rtol=1e-10)
    assert res.log_likelihood == pytest.approx(rows.sum(), rel=1e-10)
    np.testing.assert_allclose(res.responsibilities(X), softmax(joint, axis=1), atol=1e-10)
    best = joint.argmax(axis=1)
    np.testing.assert_array_equal(res.labels, np.where(best == 2, -1, best))
    # At convergence the noise weight is its M-step: the mean noise responsibility.
    assert noise_weight == pytest.approx(softmax(joint, axis=1)[:, -1].mean(), rel=1e-6)
    np.testing.assert_allclose(
        res.impute(), oracle_conditional_mean(X, weights, means, covs, noise_weight, lower, upper), rtol=1e-9
    )


def test_a_given_noise_volume_scales_the_box_and_projects_it(tiny):
    X = tiny
    res = fit_em(X, 2, "diag", noise="uniform", missing="marginalize", noise_volume=1e5, seed=0, tol=1e-10)
    lower, upper = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    factor = (1e5 / np.prod(upper - lower)) ** (1 / 3)
    centre, half = (lower + upper) / 2, (upper - lower) * factor / 2
    np.testing.assert_allclose(res.noise_lower, centre - half, rtol=1e-12)
    np.testing.assert_allclose(res.noise_upper, centre + half, rtol=1e-12)
    weights, means, covs, noise_weight = params_of(res)
    joint = oracle_joint(X, weights, means, covs, noise_weight, centre - half, centre + half)
    np.testing.assert_allclose(res.log_prob(X), logsumexp(joint, axis=1), rtol=1e-10)


def observed_log_likelihood(X, weights, means, covs, noise_weight, lower, upper):
    return float(logsumexp(oracle_joint(X, weights, means, covs, noise_weight, lower, upper), axis=1).sum())


@pytest.fixture(scope="module")
def contaminated():
    """600 rows, 15% of cells missing, 2% outliers (last)."""
    return simulate(600, 0.15, 0.02, seed=11)


def _fit_contaminated(X, covariance_type):
    return fit_em(
        X,
        2,
        covariance_type,
        noise="uniform",
        missing="marginalize",
        n_init=3,
        seed=0,
        tol=1e-10,
        max_iter=1000,
    )


def test_fit_beats_the_true_parameters(contaminated):
    X, n_out = contaminated
    res = _fit_contaminated(X, "full")
    assert res.converged
    lower, upper = res.noise_lower, res.noise_upper
    share = n_out / len(X)
    truth = observed_log_likelihood(X, np.full(2, (1 - share) / 2), MEANS, COVS, share, lower, upper)
    weights, means, covs, noise_weight = params_of(res)
    fitted = observed_log_likelihood(X, weights, means, covs, noise_weight, lower, upper)
    assert res.log_likelihood == pytest.approx(fitted, rel=1e-10)
    assert fitted > truth
    # The outliers that the noise explains best are labelled -1; inliers hardly ever.
    assert np.mean(res.labels[-n_out:] == -1) >= 0.75
    assert np.mean(res.labels[:-n_out] == -1) < 0.01


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_fit_is_a_local_maximum(contaminated, covariance_type):
    """No small move of a mean, or of weight between a component and the noise, does better."""
    X, _ = contaminated
    res = _fit_contaminated(X, covariance_type)
    weights, means, covs, noise_weight = params_of(res)
    box = (res.noise_lower, res.noise_upper)
    fitted = observed_log_likelihood(X, weights, means, covs, noise_weight, *box)
    h = 1e-3
    for k in range(2):
        for j in range(3):
            for sign in (-1, 1):
                m = means.copy()
                m[k, j] += sign * h
                assert observed_log_likelihood(X, weights, m, covs, noise_weight, *box) <= fitted + 1e-8
        for sign in (-1, 1):
            wk = weights.copy()
            wk[k] += sign * h * noise_weight
            moved = observed_log_likelihood(X, wk, means, covs, noise_weight * (1 - sign * h), *box)
            assert moved <= fitted + 1e-8


def test_complete_data_fit_as_without_missing():
    X, _ = simulate(200, 0.0, 0.03, seed=5)
    kw = dict(noise="uniform", seed=0, tol=1e-10, max_iter=500)
    plain, marginal = fit_em(X, 2, **kw), fit_em(X, 2, missing="marginalize", **kw)
    assert marginal.log_likelihood == plain.log_likelihood
    assert marginal.noise_weight == plain.noise_weight


def test_estimator_scores_rows_with_nan_with_the_noise_term(tiny):
    X = tiny
    gm = GaussianMixture(
        2, noise="uniform", missing="marginalize", random_state=0, tol=1e-10, max_iter=500
    ).fit(X)
    weights, means, covs = gm.weights_, gm.means_, gm.covariances_
    lower, upper = gm.noise_lower_, gm.noise_upper_
    np.testing.assert_array_equal(lower, np.nanmin(X, axis=0))
    joint = oracle_joint(X, weights, means, covs, gm.noise_weight_, lower, upper)
    np.testing.assert_allclose(gm.score_samples(X), logsumexp(joint, axis=1), rtol=1e-10)
    np.testing.assert_allclose(gm.predict_proba(X), softmax(joint, axis=1), atol=1e-10)
    best = joint.argmax(axis=1)
    labels = gm.predict(X)
    np.testing.assert_array_equal(labels, np.where(best == 2, -1, best))
    assert -1 in labels
    np.testing.assert_array_equal(labels, gm.em_result_.labels)
    np.testing.assert_allclose(
        gm.impute(X),
        oracle_conditional_mean(X, weights, means, covs, gm.noise_weight_, lower, upper),
        rtol=1e-9,
    )


def test_a_fit_on_complete_data_scores_rows_with_nan(tiny):
    """A noise fit on complete rows (fit about its centre) scores incomplete rows by the projected box."""
    X = tiny
    complete = X[~np.isnan(X).any(axis=1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_em(complete, 2, "full", noise="uniform", seed=0)
    weights, means, covs, noise_weight = params_of(res)
    joint = oracle_joint(X, weights, means, covs, noise_weight, res.noise_lower, res.noise_upper)
    np.testing.assert_allclose(res.log_prob(X), logsumexp(joint, axis=1), rtol=1e-10)
    np.testing.assert_allclose(
        res.impute(X),
        oracle_conditional_mean(X, weights, means, covs, noise_weight, res.noise_lower, res.noise_upper),
        rtol=1e-9,
    )


@pytest.mark.parametrize("missing_share", [0.0, 0.2])
def test_inference_data_of_a_noise_fit_reads_as_a_bayesian_one(missing_share):
    """The InferenceData holds the noise as fit_svi's does, so the posterior functions see it."""
    X, n_out = simulate(150, missing_share, 0.05, seed=8)
    kw = dict(missing="marginalize") if missing_share else {}
    res = fit_em(X, 2, noise="uniform", seed=0, tol=1e-10, max_iter=500, **kw)
    idata = res.to_inference_data()
    assert idata.posterior["noise_weight"].values.item() == res.noise_weight
    assert idata.attrs["noise"] == "uniform" and idata.attrs["noise_volume"] == res.noise_volume
    np.testing.assert_array_equal(idata.attrs["noise_lower"], res.noise_lower)
    np.testing.assert_array_equal(idata.attrs["noise_upper"], res.noise_upper)
    weights, means, covs, noise_weight = params_of(res)
    joint = oracle_joint(X, weights, means, covs, noise_weight, res.noise_lower, res.noise_upper)
    np.testing.assert_allclose(idata.log_likelihood["X"].values[0, 0], logsumexp(joint, axis=1), rtol=1e-10)
    resp = res.responsibilities(X)
    np.testing.assert_allclose(resp, softmax(joint, axis=1), atol=1e-10)
    probs = membership_probabilities(idata)
    np.testing.assert_allclose(probs["noise"].values, resp[:, -1], atol=1e-10)
    # One draw: relabelling may permute the components, never the noise.
    np.testing.assert_allclose(probs["mean"].values.sum(axis=1), resp[:, :-1].sum(axis=1), atol=1e-10)
    np.testing.assert_allclose(
        np.sort(probs["mean"].values, axis=1), np.sort(resp[:, :-1], axis=1), atol=1e-10
    )
    z = sample_assignments(idata, seed=0).assignments["assignments"].values[0, 0]
    sure = resp[:, -1] > 1 - 1e-12
    assert sure.any() and (z[sure] == -1).all() and (z[resp[:, -1] < 1e-12] != -1).all()
    reps = add_predictive(idata, seed=1).posterior_predictive
    inside = (reps["X"].values >= res.noise_lower - 1e-9) & (reps["X"].values <= res.noise_upper + 1e-9)
    assert inside[reps["noise"].values].all() and reps["noise"].values.any()


def test_sample_weight_equals_repeated_rows():
    """Zero-weight rows drop out of the box as of the fit; integer weights fit like repeated rows."""
    X, _ = simulate(200, 0.2, 0.05, seed=1)
    w = np.random.default_rng(0).integers(0, 3, len(X)).astype(float)
    kw = dict(noise="uniform", missing="marginalize", seed=0, tol=1e-12, max_iter=2000)
    weighted = fit_em(X, 2, sample_weight=w, **kw)
    repeated = fit_em(np.repeat(X, w.astype(int), axis=0), 2, **kw)
    np.testing.assert_array_equal(weighted.noise_lower, repeated.noise_lower)
    np.testing.assert_array_equal(weighted.noise_upper, repeated.noise_upper)
    assert weighted.log_likelihood == pytest.approx(repeated.log_likelihood, rel=1e-10)
    assert weighted.noise_weight == pytest.approx(repeated.noise_weight, rel=1e-7)
