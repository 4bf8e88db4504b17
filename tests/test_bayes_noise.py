"""The uniform noise component of the Bayesian fits (``noise="uniform"``: fit_nuts, fit_svi, BayesianGMM)."""

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from scipy import stats
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from sklearn.utils._param_validation import InvalidParameterError

from bayesgmm import BayesianGMM, fit_nuts, fit_svi, load, membership_probabilities, n_components_posterior
from bayesgmm.models import gmm_model
from bayesgmm.posterior.noise import noise_probability
from bayesgmm.priors import Priors

TRUE_MEANS = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
N_PER_CLUSTER = 100
N_OUTLIERS = 6  # 2% of the 306 rows


@pytest.fixture(scope="module")
def contaminated():
    """Three unit-variance clusters 10 apart plus 2% outliers uniform over [-50, 60]^2 (outliers last)."""
    rng = np.random.default_rng(19)
    clusters = [rng.normal(m, 1.0, size=(N_PER_CLUSTER, 2)) for m in TRUE_MEANS]
    return np.vstack([*clusters, rng.uniform(-50, 60, size=(N_OUTLIERS, 2))])


@pytest.fixture(scope="module")
def noisy_gmm(contaminated):
    return BayesianGMM(
        3, inference="svi", num_samples=200, num_chains=1, random_state=0, noise="uniform"
    ).fit(contaminated)


def _scipy_density(X, weights, means, covariances, noise_weight, volume):
    gauss = [
        w * stats.multivariate_normal(m, c).pdf(X)
        for w, m, c in zip(weights, means, covariances, strict=True)
    ]
    return np.log(np.sum(gauss, axis=0) + noise_weight / volume)


def test_model_log_density_matches_scipy():
    """The model's likelihood site: sum_k pi_k N(z | mu_k, Sigma_k) + pi_0 / V, scipy as oracle."""
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(40, 2)) * 2
    shares, noise_weight, log_volume = np.array([0.2, 0.5, 0.3]), 0.07, np.log(37.0)
    means = rng.normal(size=(3, 2))
    scales = np.array([[0.5, 1.2], [1.0, 0.8], [0.7, 0.6]])
    corr = np.stack([np.linalg.cholesky(np.array([[1.0, r], [r, 1.0]])) for r in (0.3, -0.5, 0.0)])
    sites = {
        "weights": shares,
        "noise_weight": noise_weight,
        "means": means,
        "scales": scales,
        "corr_cholesky": corr,
    }
    model = handlers.substitute(gmm_model, data={k: jnp.asarray(v) for k, v in sites.items()})
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(
        jnp.asarray(Z), n_components=3, n_features=2, noise_log_density=-log_volume
    )
    got = np.asarray(trace["Z"]["fn"].log_prob(jnp.asarray(Z)))
    L = scales[..., :, None] * corr
    expected = _scipy_density(
        Z, shares * (1 - noise_weight), means, L @ np.swapaxes(L, 1, 2), noise_weight, 37.0
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_noise_prior_is_dirichlet_over_k_plus_one():
    """Beta(beta, K alpha) noise weight, Dirichlet(alpha) shares: Dirichlet(alpha, ..., beta) (scipy)."""
    priors = Priors(weight_concentration=1.5, noise_concentration=0.3)
    shares, noise_weight = np.array([0.2, 0.5, 0.3]), 0.07
    sites = {"weights": jnp.asarray(shares), "noise_weight": jnp.asarray(noise_weight)}
    model = handlers.substitute(gmm_model, data=sites)
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(
        jnp.zeros((2, 2)), n_components=3, n_features=2, priors=priors, noise_log_density=0.0
    )
    got = sum(float(trace[k]["fn"].log_prob(trace[k]["value"])) for k in ("weights", "noise_weight"))
    full = np.append(shares * (1 - noise_weight), noise_weight)
    # Change of variables from (shares, noise_weight) to the K + 1 weights: Jacobian (1 - pi_0)^(K - 1).
    expected = stats.dirichlet([1.5, 1.5, 1.5, 0.3]).logpdf(full) + 2 * np.log(1 - noise_weight)
    assert got == pytest.approx(expected, abs=1e-10)


def _matched(means, reference):
    """``means`` (n_components, n_features) reordered to match ``reference``'s rows."""
    cost = ((means[:, None] - reference[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost.T)
    return cols


def _errors_in_sd(idata):
    """|posterior mean - truth| of the means and of the variances (true: 1), in posterior sd.

    Returns two arrays shaped (n_components, n_features), components matched to the truth.
    """
    means = idata.posterior["means"].values.reshape(-1, 3, 2)
    order = _matched(means.mean(0), TRUE_MEANS)
    means = means[:, order]
    covariances = idata.posterior["covariances"].values.reshape(-1, 3, 2, 2)[:, order]
    variances = np.diagonal(covariances, axis1=2, axis2=3)
    mean_errors = np.abs(means.mean(0) - TRUE_MEANS) / means.std(0)
    return mean_errors, np.abs(variances.mean(0) - 1.0) / variances.std(0)


def test_svi_noise_recovers_means_and_labels_outliers(contaminated, noisy_gmm):
    mean_errors, variance_errors = _errors_in_sd(noisy_gmm.idata_)
    # 12 quantities each within 4 sd of the truth: false failure < 12 * 6e-5 for a calibrated posterior.
    assert mean_errors.max() < 4, mean_errors
    assert variance_errors.max() < 4, variance_errors
    labels = noisy_gmm.predict(contaminated)
    assert np.mean(labels[-N_OUTLIERS:] == -1) >= 5 / 6
    assert np.mean(labels[:-N_OUTLIERS] == -1) <= 0.01
    assert noisy_gmm.predict_proba(contaminated).shape == (len(contaminated), 4)
    np.testing.assert_allclose(noisy_gmm.predict_proba(contaminated).sum(1), 1.0, atol=1e-12)
    assert noisy_gmm.weights_.sum() + noisy_gmm.noise_weight_ == pytest.approx(1.0, abs=1e-12)
    probs = membership_probabilities(noisy_gmm.idata_)
    np.testing.assert_allclose(probs["mean"].sum("component") + probs["noise"], 1.0, atol=1e-12)
    np.testing.assert_allclose(probs["noise"], noise_probability(noisy_gmm.idata_), atol=1e-12)


def test_noise_free_fit_is_pulled_by_outliers(contaminated):
    """Without noise the Gaussians take the outliers: their variances grow many sd past the truth."""
    idata = fit_svi(contaminated, 3, num_samples=200, seed=0)
    mean_errors, variance_errors = _errors_in_sd(idata)
    assert variance_errors.max() > 4, variance_errors


@pytest.mark.filterwarnings("ignore::bayesgmm.DiagnosticsWarning")  # 200 draws: ESS below the advice
def test_nuts_noise_recovers_means(contaminated):
    idata = fit_nuts(contaminated, 3, num_warmup=200, num_samples=200, num_chains=1, seed=0, noise="uniform")
    assert idata.posterior["noise_weight"].dims == ("chain", "draw")
    mean_errors, variance_errors = _errors_in_sd(idata)
    assert mean_errors.max() < 4, mean_errors
    assert variance_errors.max() < 4, variance_errors
    assert idata.attrs["noise_volume"] == pytest.approx(np.prod(np.ptp(contaminated, axis=0)))


def test_log_likelihood_and_score_include_noise(contaminated, noisy_gmm):
    """The stored log-likelihood of a draw and score_samples, against scipy in the user's units."""
    post, volume = noisy_gmm.idata_.posterior, noisy_gmm.noise_volume_
    draw = {k: post[k].values[0, 5] for k in ("weights", "means", "covariances", "noise_weight")}
    expected = _scipy_density(contaminated, *draw.values(), volume)
    np.testing.assert_allclose(noisy_gmm.idata_.log_likelihood["X"].values[0, 5], expected, atol=1e-8)
    ll = np.stack(
        [
            _scipy_density(contaminated[-10:], *(post[k].values[0, d] for k in draw), volume)
            for d in range(post.sizes["draw"])
        ]
    )
    expected_score = logsumexp(ll, axis=0) - np.log(len(ll))
    np.testing.assert_allclose(noisy_gmm.score_samples(contaminated[-10:]), expected_score, atol=1e-8)


def test_save_load_round_trip(contaminated, noisy_gmm):
    path = os.path.join(tempfile.mkdtemp(), "noisy.nc")
    noisy_gmm.save(path)
    loaded = load(path)
    assert loaded.noise == "uniform" and loaded.noise_weight_ == noisy_gmm.noise_weight_
    np.testing.assert_array_equal(loaded.predict(contaminated), noisy_gmm.predict(contaminated))
    np.testing.assert_array_equal(loaded.score_samples(contaminated), noisy_gmm.score_samples(contaminated))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"noise": "bogus"}, "noise must be one of"),
        ({"noise": "uniform", "noise_volume": 0.0}, "positive finite"),
        ({"noise": "uniform", "noise_volume": -1.0}, "positive finite"),
        ({"noise_volume": 3.0}, "only used with noise='uniform'"),
    ],
)
@pytest.mark.parametrize("fit", [fit_nuts, fit_svi])
def test_bad_noise_arguments(contaminated, fit, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit(contaminated, 3, **kwargs)


@pytest.mark.parametrize("params", [{"noise": "bogus"}, {"noise": "uniform", "noise_volume": 0.0}])
def test_estimator_refuses_bad_noise(contaminated, params):
    with pytest.raises(InvalidParameterError, match="noise"):
        BayesianGMM(3, **params).fit(contaminated)


def test_noise_free_programs_unchanged():
    """Without noise, the model's trace has no noise site and its likelihood no noise column."""
    trace = handlers.trace(handlers.seed(gmm_model, jax.random.PRNGKey(0))).get_trace(
        jnp.zeros((4, 2)), n_components=2, n_features=2
    )
    assert "noise_weight" not in trace
    assert trace["Z"]["fn"].base_dist.log_noise is None


@pytest.mark.parametrize("weight_prior", ["sparse", "dp"])
def test_overfitted_noise_fit_finds_three_clusters_and_the_outliers(contaminated, weight_prior):
    """Six components under the sparse / dp prior with noise: three occupied, outliers labelled -1."""
    gmm = BayesianGMM(
        6, inference="svi", weight_prior=weight_prior, noise="uniform", num_samples=200, random_state=0
    ).fit(contaminated)
    labels = gmm.predict(contaminated)
    assert np.mean(labels[-N_OUTLIERS:] == -1) >= 5 / 6
    assert np.mean(labels[:-N_OUTLIERS] == -1) <= 0.01
    assert gmm.weights_.sum() + gmm.noise_weight_ == pytest.approx(1.0, abs=1e-12)
    k_plus = n_components_posterior(gmm.idata_)
    # The noise is not a cluster: rows drawn into it never count as an occupied component.
    assert k_plus.attrs["mode"] == 3, k_plus
    assert k_plus.loc[3, "probability"] > 0.5
