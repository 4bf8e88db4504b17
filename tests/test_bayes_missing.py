"""Missing values (at random) in the Bayesian fits, and imputations, against scipy oracles."""

import itertools
import subprocess
import sys

import arviz as az
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_likelihood
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.utils._param_validation import InvalidParameterError

from bayesgmm import BayesianGMM, GaussianMixture, fit_em, fit_nuts, fit_svi, incomplete
from bayesgmm.models import MixtureLikelihood, gmm_model
from bayesgmm.params import GMMParams
from bayesgmm.posterior.imputation import impute_from_params

WEIGHTS = np.array([0.3, 0.7])
MEANS = np.array([[0.0, 1.0, -1.0], [2.0, -1.0, 0.5]])
SCALES = np.array([[1.0, 0.5, 2.0], [0.7, 1.5, 1.0]])
CORR = np.linalg.cholesky(
    np.array(
        [
            [[1.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 1.0]],
            [[1.0, -0.6, 0.1], [-0.6, 1.0, 0.4], [0.1, 0.4, 1.0]],
        ]
    )
)
TRIL = SCALES[..., :, None] * CORR
COVS = TRIL @ np.swapaxes(TRIL, -1, -2)
#: Five rows, every pattern of one or two missing values and a complete row.
TINY = np.array(
    [
        [0.3, np.nan, -0.5],
        [np.nan, np.nan, 1.0],
        [1.5, -0.2, 0.4],
        [np.nan, 0.8, np.nan],
        [2.2, -1.1, np.nan],
    ]
)


def component_logpdf(k, row):
    o = ~np.isnan(row)
    return multivariate_normal(MEANS[k][o], COVS[k][np.ix_(o, o)]).logpdf(row[o])


def brute_force_log_likelihood(X):
    """log sum over all K^N assignments of prod_i w_{z_i} N(x_i,obs | mu_obs, S_obs)."""
    terms = [
        sum(np.log(WEIGHTS[k]) + component_logpdf(k, row) for k, row in zip(z, X, strict=True))
        for z in itertools.product(range(len(WEIGHTS)), repeat=len(X))
    ]
    return logsumexp(terms)


def scipy_conditional_mean(weights, means, covs, row):
    """E[x | x_obs] by the textbook partitioned formulas, one component at a time."""
    o, m = ~np.isnan(row), np.isnan(row)
    logits = [
        np.log(w) + multivariate_normal(mu[o], S[np.ix_(o, o)]).logpdf(row[o])
        for w, mu, S in zip(weights, means, covs, strict=True)
    ]
    resp = np.exp(logits - logsumexp(logits))
    out = row.copy()
    cond = [
        mu[m] + S[np.ix_(m, o)] @ np.linalg.solve(S[np.ix_(o, o)], row[o] - mu[o])
        for mu, S in zip(means, covs, strict=True)
    ]
    out[m] = np.tensordot(resp, np.array(cond), axes=1)
    return out


def test_model_log_likelihood_is_brute_force_marginal():
    sites = {
        "weights": WEIGHTS[None],
        "means": MEANS[None],
        "scales": SCALES[None],
        "corr_cholesky": CORR[None],
    }
    kwargs = dict(n_components=2, n_features=3, missing="marginalize")
    rows = log_likelihood(gmm_model, sites, Z=jnp.asarray(TINY), **kwargs)["Z"]
    oracle = brute_force_log_likelihood(TINY)
    assert abs(float(rows.sum()) - oracle) < 1e-10
    params = GMMParams(jnp.asarray(WEIGHTS), jnp.asarray(MEANS), jnp.asarray(TRIL))
    direct = MixtureLikelihood(params, missing=True).log_prob(jnp.asarray(TINY))
    assert abs(float(direct.sum()) - oracle) < 1e-10
    # On complete rows the masked density is the complete-data one.
    full = TINY[2:3]
    assert abs(float(direct[2]) - float(MixtureLikelihood(params).log_prob(jnp.asarray(full))[0])) < 1e-12


def simulate(n_obs=300, seed=3):
    rng = np.random.default_rng(seed)
    means = np.array([[-3.0, 0.0], [3.0, 2.0]])
    labels = rng.integers(0, 2, n_obs)
    X = means[labels] + rng.normal(size=(n_obs, 2))
    gaps = rng.random(X.shape) < 0.2
    gaps[gaps.all(axis=1), 0] = False  # a wholly missing row is refused
    return means, np.where(gaps, np.nan, X)


@pytest.fixture(scope="module")
def incomplete_data():
    return simulate()


def sorted_means(idata):
    means = idata.posterior["means"]
    order = means.mean(("chain", "draw")).values[:, 0].argsort()
    return means.isel(component=order)


def assert_recovers(idata, truth, mcse=None):
    means = sorted_means(idata)
    mean = means.mean(("chain", "draw")).values
    sd = means.std(("chain", "draw")).values
    err = sd if mcse is None else np.sqrt(sd**2 + mcse**2)
    # Four standard deviations on 4 coordinates: a false failure rate under 3e-4.
    z = np.abs(mean - truth) / err
    assert z.max() < 4, (mean, sd, z)


def test_nuts_recovers_means_with_missing_values(incomplete_data):
    truth, X = incomplete_data
    idata = fit_nuts(X, 2, num_warmup=300, num_samples=300, num_chains=1, seed=0, missing="marginalize")
    means = sorted_means(idata)
    mcse = az.mcse(means.to_dataset(name="m"))["m"].values
    assert_recovers(idata, truth, mcse)
    assert np.isnan(idata.observed_data["X"].values).sum() == np.isnan(X).sum()
    # log_likelihood holds each row's observed-data density: LOO works on it.
    assert np.isfinite(az.loo(idata).elpd_loo)


@pytest.fixture(scope="module")
def svi_gmm(incomplete_data):
    _, X = incomplete_data
    gmm = BayesianGMM(
        2, inference="svi", num_samples=400, num_chains=1, random_state=0, missing="marginalize"
    )
    return gmm.fit(X)


def test_svi_recovers_means_with_missing_values(svi_gmm, incomplete_data):
    truth, X = incomplete_data
    assert_recovers(svi_gmm.idata_, truth)
    # The log_likelihood group is the observed-data density at each draw.
    draw = svi_gmm.idata_.posterior.isel(chain=0, draw=0)
    params = GMMParams(
        jnp.asarray(draw["weights"].values),
        jnp.asarray(draw["means"].values),
        jnp.asarray(draw["scale_tril"].values),
    )
    stored = svi_gmm.idata_.log_likelihood["X"].isel(chain=0, draw=0).values
    np.testing.assert_allclose(
        stored, np.asarray(incomplete.log_prob_nan(params, jnp.asarray(X))), rtol=1e-10
    )


def test_estimator_scores_and_predicts_rows_with_nan(svi_gmm, incomplete_data):
    _, X = incomplete_data
    scores = svi_gmm.score_samples(X)
    assert np.isfinite(scores).all() and np.isfinite(svi_gmm.score(X))
    proba = svi_gmm.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert svi_gmm.predict(X).shape == (len(X),)
    with pytest.raises(ValueError, match="every value missing"):
        svi_gmm.predict(np.full((1, 2), np.nan))


def test_em_conditional_mean_is_scipy_formula():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    X[100:] += 4.0
    X[rng.random(X.shape) < 0.15] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    before = X.copy()
    gm = GaussianMixture(2, missing="marginalize", random_state=0).fit(X)
    filled = gm.impute(X)
    oracle = np.array([scipy_conditional_mean(gm.weights_, gm.means_, gm.covariances_, r) for r in X])
    np.testing.assert_allclose(filled, oracle, rtol=1e-9, atol=1e-9)
    seen = ~np.isnan(X)
    assert np.array_equal(filled[seen], X[seen]) and np.array_equal(X, before, equal_nan=True)
    res = fit_em(X, 2, seed=0, missing="marginalize")
    p = res.params
    oracle = np.array(
        [
            scipy_conditional_mean(np.asarray(p.weights), np.asarray(p.means), np.asarray(p.covariances), r)
            for r in X
        ]
    )
    np.testing.assert_allclose(res.impute(), oracle, rtol=1e-9, atol=1e-9)


def test_conditional_mean_by_hand():
    # One component, correlation 0.5, unit variances: E[x2 | x1 = 2] = 0.5 * 2.
    L = jnp.linalg.cholesky(jnp.array([[[1.0, 0.5], [0.5, 1.0]]]))
    out = incomplete.conditional_mean(
        GMMParams(jnp.ones(1), jnp.zeros((1, 2)), L), jnp.array([[2.0, jnp.nan]])
    )
    assert np.asarray(out).tolist() == [[2.0, 1.0]]
    params = GMMParams(jnp.asarray(WEIGHTS), jnp.asarray(MEANS), jnp.asarray(TRIL))
    oracle = np.array([scipy_conditional_mean(WEIGHTS, MEANS, COVS, r) for r in TINY])
    np.testing.assert_allclose(
        np.asarray(incomplete.conditional_mean(params, jnp.asarray(TINY))), oracle, atol=1e-12
    )


def test_posterior_draw_imputations_have_the_conditional_mean():
    n_draws = 4000
    draws = GMMParams(
        *(jnp.broadcast_to(jnp.asarray(a), (1, n_draws, *np.shape(a))) for a in (WEIGHTS, MEANS, TRIL))
    )
    before = TINY.copy()
    out = impute_from_params(draws, TINY, seed=1)
    assert out.shape == (n_draws, *TINY.shape)
    assert np.array_equal(TINY, before, equal_nan=True)
    seen = ~np.isnan(TINY)
    assert all(np.array_equal(o[seen], TINY[seen]) for o in out)
    oracle = np.array([scipy_conditional_mean(WEIGHTS, MEANS, COVS, r) for r in TINY])
    se = out.std(axis=0) / np.sqrt(n_draws)
    gaps = ~seen
    # Six missing cells at four Monte Carlo standard errors.
    assert (np.abs(out.mean(axis=0) - oracle)[gaps] < 4 * se[gaps]).all()


def test_bayesian_gmm_impute(svi_gmm, incomplete_data):
    _, X = incomplete_data
    before = X.copy()
    out = svi_gmm.impute(X, n_draws=50)
    assert out.shape == (50, *X.shape) and not np.isnan(out).any()
    seen = ~np.isnan(X)
    assert np.array_equal(out[:, seen], np.broadcast_to(X[seen], (50, seen.sum())))
    assert np.array_equal(X, before, equal_nan=True)


def test_missing_error_and_bad_values(incomplete_data):
    _, X = incomplete_data
    with pytest.raises(ValueError, match="contains NaN in .* with missing='marginalize' each row counts"):
        fit_svi(X, 2, guide="map", num_samples=1)
    infinite = np.where(np.isnan(X), 0.0, X)
    infinite[3, 0] = np.inf
    with pytest.raises(
        ValueError, match=r"contains NaN or infinity in 1 row\(s\) \(first: \[3\]\); remove or impute"
    ):
        fit_svi(infinite, 2, guide="map", num_samples=1)
    with pytest.raises(ValueError, match="missing must be one of"):
        fit_nuts(X, 2, missing="drop")
    with pytest.raises(InvalidParameterError, match="missing"):
        BayesianGMM(2, missing="drop").fit(X)
    gappy = X.copy()
    gappy[0] = np.nan
    with pytest.raises(ValueError, match="every value missing"):
        fit_svi(gappy, 2, missing="marginalize")
    with pytest.raises(ValueError, match="needs X in memory"):
        fit_svi(lambda: iter([X]), 2, missing="marginalize")


def test_missing_marginalize_on_complete_data_runs_the_complete_model():
    from bayesgmm.inference.prepare import prepare

    X = np.random.default_rng(0).normal(size=(20, 2))
    setup = prepare(
        X, 2, "full", priors=None, weight_prior="dirichlet", feature_names=None, seed=0,
        key_names=("a",), missing="marginalize",
    )  # fmt: skip
    assert "missing" not in setup.model_kwargs


def test_batched_factorisations_match_lapack():
    # incomplete.py factorises its batches itself (jaxlib's batched LAPACK kernels deadlock on
    # large batches): the factors and solves must be LAPACK's.
    from bayesgmm.incomplete import _cho_solve, _cholesky, _solve_lower

    rng = np.random.default_rng(3)
    G = rng.normal(size=(7, 3, 5, 5))
    A = G @ np.swapaxes(G, -1, -2) + 0.1 * np.eye(5)
    b = rng.normal(size=(7, 3, 5, 2))
    L = np.asarray(_cholesky(jnp.asarray(A)))
    np.testing.assert_allclose(L, np.linalg.cholesky(A), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_solve_lower(jnp.asarray(L), jnp.asarray(b)), np.linalg.solve(L, b), rtol=1e-9)
    np.testing.assert_allclose(_cho_solve(jnp.asarray(L), jnp.asarray(b)), np.linalg.solve(A, b), rtol=1e-9)


def test_imputations_over_many_draws_return():
    # 1000 draws of 150 rows made jaxlib's batched Cholesky deadlock; in a subprocess, so that
    # a regression fails on the timeout instead of holding the suite.
    code = """
import numpy as np, jax.numpy as jnp
from bayesgmm.params import GMMParams
from bayesgmm.posterior.imputation import impute_from_params
rng = np.random.default_rng(0)
X = rng.normal(size=(150, 4)); X[rng.random(X.shape) < 0.1] = np.nan
n = 1000
p = GMMParams(jnp.full((1, n, 3), 1 / 3), jnp.asarray(rng.normal(size=(1, n, 3, 4))),
              jnp.broadcast_to(jnp.eye(4), (1, n, 3, 4, 4)))
out = impute_from_params(p, X)
assert out.shape == (n, 150, 4) and np.isfinite(out).all()
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
