"""EM with values missing at random: the observed-data likelihood, computed independently by scipy."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm import fit_em
from bayesgmm.inference.em import missing
from bayesgmm.params import GMMParams

MEANS = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [0.0, 6.0, 6.0]])
COVS = np.array([np.eye(3), [[1.0, 0.6, 0.0], [0.6, 1.0, 0.0], [0.0, 0.0, 1.0]], np.diag([2.0, 1.0, 0.5])])


def observed_log_likelihood(weights, means, covs, X):
    """Sum over rows of log sum_k w_k N(x_o | mu_o, S_oo), row by row with scipy."""
    total = 0.0
    for row in X:
        o = ~np.isnan(row)
        comps = [
            np.log(w) + multivariate_normal(m[o], S[np.ix_(o, o)]).logpdf(row[o])
            for w, m, S in zip(weights, means, covs, strict=True)
        ]
        total += logsumexp(comps)
    return total


def of(result):
    p = result.params
    return np.asarray(p.weights), np.asarray(p.means), np.asarray(p.covariances)


@pytest.fixture(scope="module")
def data():
    """600 rows of three clusters with 20% of cells missing (no row wholly missing)."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 600)
    X = np.array([rng.multivariate_normal(MEANS[k], COVS[k]) for k in labels])
    holes = rng.random(X.shape) < 0.2
    holes[holes.all(axis=1), 0] = False
    return np.where(holes, np.nan, X), labels


@pytest.fixture(scope="module")
def fitted(data):
    return fit_em(data[0], 3, missing="marginalize", n_init=3, seed=0)


def test_masked_formulas_are_the_marginal_and_conditional_gaussians():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 4, 4))
    covs = A @ A.transpose(0, 2, 1) + np.eye(4)
    params = GMMParams.from_covariances(np.array([0.2, 0.3, 0.5]), rng.normal(size=(3, 4)), covs)
    X = rng.normal(size=(30, 4))
    observed = rng.random((30, 4)) > 0.4
    observed[0], observed[1] = True, [True, False, False, False]
    observed[~observed.any(axis=1), 2] = True
    X[~observed] = np.nan
    filled, mask = jnp.asarray(np.nan_to_num(X)), jnp.asarray(observed)
    dens = np.asarray(missing.observed_log_density(params, filled, mask))
    x_hat, C = missing.conditional_moments(params, filled, mask)
    for n, (row, o) in enumerate(zip(X, observed, strict=True)):
        m = ~o
        for k, (mu, S) in enumerate(zip(np.asarray(params.means), covs, strict=True)):
            ref = multivariate_normal(mu[o], S[np.ix_(o, o)]).logpdf(row[o])
            assert dens[n, k] == pytest.approx(ref, abs=1e-10)
            gain = S[np.ix_(m, o)] @ np.linalg.inv(S[np.ix_(o, o)])
            expected = row.copy()
            expected[m] = mu[m] + gain @ (row[o] - mu[o])
            np.testing.assert_allclose(x_hat[n, k], expected, atol=1e-10)
            cond = np.zeros((4, 4))
            cond[np.ix_(m, m)] = S[np.ix_(m, m)] - gain @ S[np.ix_(o, m)]
            np.testing.assert_allclose(C[n, k], cond, atol=1e-10)


def test_fit_maximises_the_observed_data_likelihood(data, fitted):
    X, labels = data
    ours = observed_log_likelihood(*of(fitted), X)
    assert fitted.converged
    assert fitted.log_likelihood == pytest.approx(ours, rel=1e-10)
    truth = observed_log_likelihood(np.bincount(labels) / len(labels), MEANS, COVS, X)
    complete = ~np.isnan(X).any(axis=1)
    complete_case = observed_log_likelihood(*of(fit_em(X[complete], 3, n_init=3, seed=0)), X)
    assert ours > truth and ours > complete_case
    # EM never lowers the likelihood, and the means are found (to a few standard errors).
    assert np.all(np.diff(fitted.lower_bounds) >= -1e-12)
    means = np.asarray(fitted.params.means)
    rows, cols = linear_sum_assignment(np.linalg.norm(MEANS[:, None] - means[None], axis=-1))
    np.testing.assert_allclose(means[cols], MEANS, atol=0.3)


def test_fit_is_a_local_maximum(data, fitted):
    """Moving any mean a little in any direction lowers the observed-data likelihood."""
    X, _ = data
    weights, means, covs = of(fitted)
    best = observed_log_likelihood(weights, means, covs, X)
    for k in range(3):
        for j in range(3):
            for step in (-0.05, 0.05):
                moved = means.copy()
                moved[k, j] += step
                assert observed_log_likelihood(weights, moved, covs, X) < best


def test_scores_of_incomplete_rows_are_the_exact_marginal_density(data, fitted):
    X, _ = data
    rows = X[:40]
    expected = [observed_log_likelihood(*of(fitted), row[None]) for row in rows]
    np.testing.assert_allclose(fitted.log_prob(rows), expected, rtol=1e-10)
    resp = fitted.responsibilities(rows)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(fitted.labels[:40], resp.argmax(axis=1))


@pytest.mark.parametrize("covariance_type", ["diag", "spherical", "tied"])
def test_constrained_covariances_beat_the_complete_case_fit_of_their_type(data, covariance_type):
    X, _ = data
    fit = fit_em(X, 3, covariance_type, missing="marginalize", n_init=2, seed=0)
    covs = np.asarray(fit.params.covariances)
    off = covs - np.eye(3) * np.diagonal(covs, axis1=1, axis2=2)[:, None, :]
    if covariance_type in ("diag", "spherical"):
        np.testing.assert_allclose(off, 0.0, atol=1e-12)
    if covariance_type == "spherical":
        np.testing.assert_allclose(np.diagonal(covs, axis1=1, axis2=2), covs[:, :1, 0] * np.ones(3))
    if covariance_type == "tied":
        np.testing.assert_allclose(covs, covs[:1].repeat(3, axis=0), rtol=1e-12)
    complete = ~np.isnan(X).any(axis=1)
    cc = fit_em(X[complete], 3, covariance_type, n_init=2, seed=0)
    ours = observed_log_likelihood(*of(fit), X)
    assert ours == pytest.approx(fit.log_likelihood, rel=1e-10)
    assert ours > observed_log_likelihood(*of(cc), X)


def test_complete_data_reach_the_ordinary_em_optimum(data):
    X = np.nan_to_num(data[0], nan=1.0)
    ordinary = fit_em(X, 3, n_init=3, seed=0, tol=1e-8, max_iter=500)
    marginal = fit_em(X, 3, missing="marginalize", n_init=3, seed=0, tol=1e-8, max_iter=500)
    assert marginal.log_likelihood == pytest.approx(ordinary.log_likelihood, rel=1e-7)


def test_sample_weights_are_repeated_rows(data):
    X = data[0][:200]
    counts = np.random.default_rng(0).integers(1, 3, len(X))
    weighted = fit_em(X, 2, missing="marginalize", sample_weight=counts, seed=0, tol=1e-9, max_iter=500)
    repeated = fit_em(np.repeat(X, counts, axis=0), 2, missing="marginalize", seed=0, tol=1e-9, max_iter=500)
    assert weighted.log_likelihood == pytest.approx(repeated.log_likelihood, rel=1e-6)


def test_bad_input_is_refused_with_what_to_do(data):
    X = data[0]
    with pytest.raises(ValueError, match="contains NaN in .* with missing='marginalize' each row counts"):
        fit_em(X, 3)  # missing="error" by default
    with pytest.raises(ValueError, match="missing must be one of"):
        fit_em(X, 3, missing="impute")
    gap = X.copy()
    gap[7] = np.nan
    with pytest.raises(ValueError, match=r"1 row\(s\) with every value missing \(first: \[7\]\).*drop it"):
        fit_em(gap, 3, missing="marginalize")
    inf = np.nan_to_num(X, nan=0.0)
    inf[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        fit_em(inf, 3, missing="marginalize")
    with pytest.raises(ValueError, match="not available with missing='marginalize'"):
        fit_em(X, 3, missing="marginalize", dtype=np.float32)


def test_gaussian_mixture_fits_and_scores_incomplete_rows(data, fitted):
    from bayesgmm import GaussianMixture

    X, _ = data
    gm = GaussianMixture(3, n_init=3, random_state=0, missing="marginalize").fit(X)
    assert gm.em_result_.log_likelihood == pytest.approx(fitted.log_likelihood, rel=1e-6)
    expected = [observed_log_likelihood(gm.weights_, gm.means_, gm.covariances_, row[None]) for row in X[:30]]
    np.testing.assert_allclose(gm.score_samples(X[:30]), expected, rtol=1e-10)
    proba = gm.predict_proba(X[:30])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(gm.predict(X[:30]), proba.argmax(axis=1))
    assert gm.score(X) == pytest.approx(fitted.log_likelihood / len(X), rel=1e-6)
    # Complete rows are scored by the usual path, and agree with the marginal formula.
    complete = X[~np.isnan(X).any(axis=1)][:10]
    ref = [observed_log_likelihood(gm.weights_, gm.means_, gm.covariances_, row[None]) for row in complete]
    np.testing.assert_allclose(gm.score_samples(complete), ref, rtol=1e-10)
    with pytest.raises(ValueError, match="Input X contains NaN in .* missing=.marginalize. each row counts"):
        GaussianMixture(3).fit(X)  # scikit-learn's opening words, then the option
    with pytest.raises(ValueError, match="'missing' parameter of GaussianMixture must be a str among"):
        GaussianMixture(3, missing="drop").fit(X)


def test_gaussian_mixture_with_missing_values_round_trips(tmp_path, data):
    from bayesgmm import GaussianMixture, load

    X, _ = data
    gm = GaussianMixture(2, random_state=0, missing="marginalize").fit(X[:200])
    gm.save(tmp_path / "gm.nc")
    back = load(tmp_path / "gm.nc")
    assert back.missing == "marginalize"
    np.testing.assert_array_equal(back.score_samples(X[:50]), gm.score_samples(X[:50]))
