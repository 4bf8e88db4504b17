import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer import Predictive
from numpyro.infer.util import log_density
from scipy import stats

from bayesgmm.inference.start import sites_from_params
from bayesgmm.models import LATENT_SITES, gmm_model, params_from_sites
from bayesgmm.params import GMMParams
from bayesgmm.priors import Priors

COV_TYPES = ["full", "tied", "diag", "spherical"]


def prior_draw(covariance_type, n_components, n_features, seed=0, priors=None):
    priors = Priors() if priors is None else priors
    model = partial(
        gmm_model,
        n_components=n_components,
        n_features=n_features,
        covariance_type=covariance_type,
        priors=priors,
    )
    draws = Predictive(model, num_samples=1)(jax.random.PRNGKey(seed), n_obs=1)
    return model, {k: v[0] for k, v in draws.items() if k != "Z"}


def brute_force_log_likelihood(params: GMMParams, Z):
    """log p(Z | params) by summing the joint over all K^N assignment vectors."""
    cov = np.asarray(params.covariances)
    comp = np.stack(
        [stats.multivariate_normal(params.means[k], cov[k]).logpdf(Z).reshape(-1) for k in range(len(cov))], 1
    )
    joint = np.log(np.asarray(params.weights)) + comp
    n_obs, n_components = joint.shape
    terms = [
        joint[np.arange(n_obs), list(z)].sum() for z in itertools.product(range(n_components), repeat=n_obs)
    ]
    return np.logaddexp.reduce(terms)


def log_prior_scipy(sites, covariance_type, priors):
    """The prior density written out with scipy, independently of numpyro (LKJ term from numpyro)."""
    lp = stats.dirichlet(np.full(len(sites["weights"]), priors.weight_concentration)).logpdf(
        np.asarray(sites["weights"])
    )
    lp += stats.norm(priors.mean_loc, priors.mean_scale).logpdf(np.asarray(sites["means"])).sum()
    lp += (
        stats.lognorm(s=priors.scale_scale, scale=priors.scale_loc).logpdf(np.asarray(sites["scales"])).sum()
    )
    return lp


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("n_features", [1, 2])
def test_marginal_likelihood_equals_brute_force(covariance_type, n_features):
    """The model's log joint = log prior + brute-force enumeration of all assignments."""
    priors = Priors(weight_concentration=1.5)
    model, sites = prior_draw(covariance_type, 3, n_features, seed=n_features, priors=priors)
    Z = np.random.default_rng(1).normal(size=(6, n_features))
    latent = {k: sites[k] for k in ("weights", "means", *LATENT_SITES[covariance_type]) if k in sites}
    log_joint, trace = log_density(model, (), {"Z": jnp.asarray(Z)}, latent)
    params = params_from_sites({**latent, "scale_tril": trace["scale_tril"]["value"]})
    lkj = sum(float(trace[k]["fn"].log_prob(trace[k]["value"]).sum()) for k in trace if k == "corr_cholesky")
    expected = brute_force_log_likelihood(params, Z) + log_prior_scipy(latent, covariance_type, priors) + lkj
    np.testing.assert_allclose(float(log_joint), expected, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_covariance_structure(covariance_type):
    _, sites = prior_draw(covariance_type, 3, 3, seed=4)
    cov = np.asarray(params_from_sites(sites).covariances)
    off = cov - np.einsum("kii->ki", cov)[:, :, None] * np.eye(3)
    if covariance_type in ("diag", "spherical"):
        np.testing.assert_allclose(off, 0.0, atol=1e-14)
    if covariance_type == "spherical":
        np.testing.assert_allclose(np.einsum("kii->ki", cov), np.einsum("kii->ki", cov)[:, :1] * np.ones(3))
    if covariance_type == "tied":
        np.testing.assert_allclose(cov, np.broadcast_to(cov[0], cov.shape))
    if covariance_type == "full":
        assert np.abs(off).max() > 0
        assert not np.allclose(cov[0], cov[1])


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_sites_from_params_round_trip(covariance_type):
    """Latent sites rebuilt from a parameter set reproduce its covariances exactly."""
    model, sites = prior_draw(covariance_type, 2, 3, seed=7)
    params = params_from_sites(sites)
    rebuilt = sites_from_params(params, covariance_type)
    trace = handlers.trace(handlers.seed(handlers.substitute(model, rebuilt), 0)).get_trace(n_obs=1)
    np.testing.assert_allclose(trace["scale_tril"]["value"], params.scale_tril, rtol=1e-10, atol=1e-12)


def test_priors_reject_bad_values():
    with pytest.raises(ValueError, match="mean_scale"):
        Priors(mean_scale=-1.0)
    with pytest.raises(ValueError, match="weight_concentration"):
        Priors(weight_concentration=float("nan"))


@pytest.mark.parametrize("e0", [0.05, 0.5])
def test_sparse_weights_are_dirichlet(e0):
    # The sparse prior's weights, sampled through Gamma(1 + e0) heads and Exponential(1)
    # decays, must have the Dirichlet(e0) law: each weight is Beta(e0, (K - 1) e0). (At
    # e0 = 0.01 a quarter of the dominant weights lie within 1e-16 of 1 and round to 1.0,
    # which the KS test cannot compare with the Beta's cdf.)
    n_components, n_draws = 4, 4000
    model = partial(gmm_model, n_components=n_components, n_features=1, weight_prior="sparse")
    fixed = handlers.condition(model, {"weight_concentration": jnp.asarray(e0)})
    draws = Predictive(fixed, num_samples=n_draws, return_sites=["weights"])(jax.random.PRNGKey(0), n_obs=1)
    weights = np.asarray(draws["weights"])
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-12)
    beta = stats.beta(e0, (n_components - 1) * e0)
    # Four KS tests at 0.001 each: a false failure in about 1 run in 250.
    for k in range(n_components):
        assert stats.kstest(weights[:, k], beta.cdf).pvalue > 1e-3, k


def test_sparse_sites_from_params_round_trip():
    params = GMMParams(jnp.asarray([0.6, 0.3, 0.1 - 1e-3, 1e-3]), jnp.zeros((4, 1)), jnp.ones((4, 1, 1)))
    sites = sites_from_params(params, "spherical", "sparse")
    model = partial(
        gmm_model, n_components=4, n_features=1, covariance_type="spherical", weight_prior="sparse"
    )
    trace = handlers.trace(handlers.seed(handlers.substitute(model, sites), 0)).get_trace(n_obs=1)
    np.testing.assert_allclose(trace["weights"]["value"], params.weights, rtol=1e-10)
