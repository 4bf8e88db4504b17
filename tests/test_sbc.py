"""Simulation-based calibration (Talts et al. 2018) of NUTS on ``gmm_model``.

Each replication draws parameters and a small data set jointly from the prior predictive of
the standardised model, fits the posterior of that same model to those data with NUTS, and
records the rank of each true test quantity among ``N_DRAWS`` thinned posterior draws. If the
sampler draws from the exact posterior, every rank is uniform on ``{0, ..., N_DRAWS}``.

The data are not standardised again before the fit (``fit_nuts`` would do so): SBC holds only
when the posterior is computed under the prior the data were simulated from.

Components can swap labels, so ranks of per-component parameters are not uniform; every test
quantity is a symmetric function of the components (see ``invariant_quantities``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Predictive
from numpyro.infer.hmc import hmc
from numpyro.infer.util import initialize_model, log_density
from scipy import stats

from bayesgmm import densities
from bayesgmm.models import gmm_model, params_from_sites

N_OBS = 30
N_COMPONENTS = 2
N_FEATURES = 2
N_REPS = 200
#: Posterior draws per replication: ranks take N_DRAWS + 1 = 100 values, 10 per bin.
N_DRAWS = 99
N_BINS = 10
#: Keeping every THIN-th draw brings the draws close to independent: correlated draws pile the
#: ranks up at the ends even for an exact sampler (Talts et al. 2018, section 5.1).
THIN = 6
NUM_WARMUP = 500
#: fit_nuts's default, so that the sampler as the package runs it is what is calibrated.
TARGET_ACCEPT = 0.85
#: Replications vectorised together: vmapped NUTS runs in lock step, so a small batch keeps
#: the slowest trajectory from setting everyone's pace while still amortising per-op overhead.
BATCH_SIZE = 10
#: False-failure rate of one SBC test (one covariance type), split over its test quantities.
ALPHA = 0.01

QUANTITIES = (
    "max_weight",
    "low_weight",
    "low_mean_f0",
    "mean_of_means_f0",
    "mean_of_means_f1",
    "log_det_pooled",
    "log_lik",
    "log_prior",
)


def rank_uniformity_pvalue(ranks, n_draws: int, n_bins: int = N_BINS) -> float:
    """Chi-square p-value of the hypothesis that ranks are uniform on ``{0, ..., n_draws}``.

    Parameters
    ----------
    ranks : int array, shape (n_reps,)
        Rank of the truth among ``n_draws`` posterior draws in each replication.
    n_draws : int
        ``n_draws + 1`` must be a multiple of ``n_bins`` so that every bin holds as many
        rank values and is equally likely.
    n_bins : int

    Returns
    -------
    float

    Examples
    --------
    >>> rank_uniformity_pvalue(np.arange(100), 99) == 1.0
    True
    """
    if (n_draws + 1) % n_bins:
        raise ValueError(f"n_draws + 1 = {n_draws + 1} is not a multiple of n_bins = {n_bins}.")
    counts = np.bincount(np.asarray(ranks) * n_bins // (n_draws + 1), minlength=n_bins)
    return float(stats.chisquare(counts).pvalue)


def sbc_ranks(truth, draws):
    """Rank of the truth among the draws: the number of draws below it.

    Parameters
    ----------
    truth : array, shape (n_reps, ...)
    draws : array, shape (n_reps, n_draws, ...)

    Returns
    -------
    int array, shape (n_reps, ...)
        Values in ``{0, ..., n_draws}``; the quantities are continuous, so ties have
        probability zero.
    """
    return np.sum(np.asarray(draws) < np.asarray(truth)[:, None], axis=1)


def invariant_quantities(sites: dict, Z, model) -> dict:
    """Label-invariant scalars of one parameter set and its data set.

    Parameters
    ----------
    sites : dict
        One draw of the model's sites (``weights``, ``means``, ``scale_tril`` and the latent
        covariance sites; ``Z`` is ignored), standardised units.
    Z : array, shape (n_obs, n_features)
        The simulated data; data-dependent quantities are as valid for SBC as parameters
        (Modrák et al. 2023) and see how the parameters fit the data jointly.
    model : callable
        ``gmm_model`` with its settings bound, for the prior density.

    Returns
    -------
    dict of scalar arrays, keyed by ``QUANTITIES``

    Notes
    -----
    Each is invariant to relabelling the components, so label switching within or between
    chains leaves its posterior, and hence its rank, unchanged:

    - ``max_weight``: the largest weight, a sorted statistic.
    - ``low_weight``, ``low_mean_f0``: weight and first-feature mean of the component whose
      first-feature mean is lowest; relabelling by that ordering identifies the components
      (the ordering is applied the same way to truth and draws).
    - ``mean_of_means_f*``: the mean over components of each feature's mean, a symmetric sum.
    - ``log_det_pooled``: log-determinant of the average covariance over components.
    - ``log_lik``: log-likelihood of the data, a log-sum-exp over components.
    - ``log_prior``: the prior is exchangeable (symmetric Dirichlet, i.i.d. means, scales and
      LKJ factors), so its density is too.
    """
    params = params_from_sites(sites)
    low = jnp.argmin(params.means[:, 0])
    log_lik = jnp.sum(densities.log_prob(params, Z))
    # The prior density is that of the sampled sites; scale_tril is a function of them.
    latent = {k: v for k, v in sites.items() if k not in ("scale_tril", "Z")}
    log_joint, _ = log_density(model, (Z,), {}, latent)
    return {
        "max_weight": jnp.max(params.weights),
        "low_weight": params.weights[low],
        "low_mean_f0": params.means[low, 0],
        "mean_of_means_f0": jnp.mean(params.means[:, 0]),
        "mean_of_means_f1": jnp.mean(params.means[:, 1]),
        "log_det_pooled": jnp.linalg.slogdet(jnp.mean(params.covariances, axis=0))[1],
        "log_lik": log_lik,
        "log_prior": log_joint - log_lik,
    }


def nuts_sampler(model, Z_example):
    """A jitted ``sample(keys, Z)`` running one NUTS chain per replication.

    Built on numpyro's functional ``hmc`` with the data as a model argument, so it compiles
    once and serves every replication; ``MCMC.run`` sets its kernel up again on every call.

    Parameters
    ----------
    model : callable
        ``gmm_model`` with its settings bound; takes ``Z``.
    Z_example : array, shape (n_obs, n_features)
        Any data set of the right shape, to set up the potential energy.

    Returns
    -------
    callable
        ``sample(keys, Z)`` with keys of shape (n_reps,) and ``Z`` of shape
        (n_reps, n_obs, n_features); returns the sites of ``N_DRAWS`` draws per replication
        (leading axes n_reps, n_draws) and the number of divergent transitions after warmup,
        shape (n_reps,).
    """
    info = initialize_model(jax.random.PRNGKey(0), model, model_args=(Z_example,), dynamic_args=True)
    init_kernel, sample_kernel = hmc(potential_fn_gen=info.potential_fn, algo="NUTS")
    leaves, treedef = jax.tree.flatten(info.param_info.z)

    def one_chain(key, Z):
        key_init, key_chain = jax.random.split(key)
        # numpyro's default init_to_uniform: uniform on (-2, 2) in the unconstrained space.
        init = [
            jax.random.uniform(k, x.shape, x.dtype, -2.0, 2.0)
            for k, x in zip(jax.random.split(key_init, len(leaves)), leaves, strict=True)
        ]
        state = init_kernel(
            treedef.unflatten(init),
            NUM_WARMUP,
            target_accept_prob=TARGET_ACCEPT,
            model_args=(Z,),
            rng_key=key_chain,
        )
        state = jax.lax.fori_loop(0, NUM_WARMUP, lambda _, s: sample_kernel(s, model_args=(Z,)), state)

        def thinned(carry, _):
            def step(_, c):
                s, n_div = c
                s = sample_kernel(s, model_args=(Z,))
                return s, n_div + s.diverging

            carry = jax.lax.fori_loop(0, THIN, step, carry)
            return carry, carry[0].z

        (_, n_div), z = jax.lax.scan(thinned, (state, 0), None, length=N_DRAWS)
        return jax.vmap(info.postprocess_fn(Z))(z), n_div

    @jax.jit
    def sample(keys, Z):
        return jax.lax.map(lambda a: one_chain(*a), (keys, Z), batch_size=BATCH_SIZE)

    return sample


def run_sbc(covariance_type: str, seed: int):
    """Ranks of every test quantity over ``N_REPS`` replications.

    Parameters
    ----------
    covariance_type : {"full", "tied", "diag", "spherical"}
    seed : int

    Returns
    -------
    ranks : dict of int arrays, shape (n_reps,), keyed by ``QUANTITIES``
    n_divergent : int array, shape (n_reps,)
        Divergent transitions after warmup in each replication's chain.
    """
    model = partial(
        gmm_model, n_components=N_COMPONENTS, n_features=N_FEATURES, covariance_type=covariance_type
    )
    key_prior, key_fit = jax.random.split(jax.random.PRNGKey(seed))
    # One joint draw of parameters and data per replication, on the standardised scale.
    truth = Predictive(model, num_samples=N_REPS)(key_prior, n_obs=N_OBS)
    Z = truth["Z"]
    draws, n_div = nuts_sampler(model, Z[0])(jax.random.split(key_fit, N_REPS), Z)
    quantities = jax.jit(jax.vmap(partial(invariant_quantities, model=model)))
    true_q = quantities(truth, Z)
    # Draws are (n_reps, n_draws, ...): lift over draws inside, replications outside.
    draw_q = jax.jit(jax.vmap(jax.vmap(partial(invariant_quantities, model=model), (0, None))))(draws, Z)
    return {name: sbc_ranks(true_q[name], draw_q[name]) for name in QUANTITIES}, np.asarray(n_div)


@pytest.mark.slow
@pytest.mark.parametrize("covariance_type, seed", [("full", 0), ("diag", 1)])
def test_nuts_posterior_is_calibrated(covariance_type, seed):
    """Ranks of all label-invariant quantities are uniform (chi-square over 10 bins).

    Each of the 8 quantities is tested at ``ALPHA / 8`` (Bonferroni), so an exact sampler
    fails this test with probability at most ``ALPHA`` = 0.01 per covariance type, 0.02 for
    both; the seed is fixed, so a given version of the code passes or fails every time.
    """
    ranks, n_div = run_sbc(covariance_type, seed)
    pvalues = {name: rank_uniformity_pvalue(r, N_DRAWS) for name, r in ranks.items()}
    failed = {name: p for name, p in pvalues.items() if p < ALPHA / len(QUANTITIES)}
    assert not failed, (
        f"ranks not uniform: {failed}; all p-values {pvalues}; "
        f"replications with divergences: {int(np.sum(n_div > 0))} of {N_REPS}"
    )


def _normal_ranks(rng, prior_sd_fit=1.0, shift_sd=0.0, noise_sd=1.0):
    """SBC ranks of ``theta ~ N(0, 1)`` given one ``y ~ N(theta, noise_sd**2)``, the posterior
    computed conjugately under a prior of sd ``prior_sd_fit`` and shifted by ``shift_sd`` of
    its sds."""
    theta = rng.normal(size=N_REPS)
    y = theta + noise_sd * rng.normal(size=N_REPS)
    precision = 1.0 / prior_sd_fit**2 + 1.0 / noise_sd**2
    sd = 1.0 / np.sqrt(precision)
    mean = y / noise_sd**2 / precision + shift_sd * sd
    draws = mean[:, None] + sd * rng.normal(size=(N_REPS, N_DRAWS))
    return sbc_ranks(theta, draws)


@pytest.mark.parametrize(
    "prior_sd_fit, shift_sd, noise_sd, rejected",
    [
        (1.0, 0.0, 1.0, False),  # the exact posterior
        # A prior twice as wide where the prior carries most of the information (as for a small
        # component's parameters): the posterior is too wide, the ranks pile up mid-range.
        (2.0, 0.0, 3.0, True),
        (0.5, 0.0, 1.0, True),  # a prior half as wide: too narrow, ranks pile up at both ends
        (1.0, 0.5, 1.0, True),  # shifted by half a posterior sd: ranks skewed to one side
    ],
)
def test_rank_test_has_power(prior_sd_fit, shift_sd, noise_sd, rejected):
    """At the SBC test's threshold and number of replications, the rank test rejects the
    miscalibrated posteriors of a conjugate normal model and accepts the exact one.

    Its power has limits: with the datum as informative as the prior, a prior twice as wide
    makes the posterior sd only 26% too wide and is rarely detected in 200 replications.
    """
    ranks = _normal_ranks(np.random.default_rng(3), prior_sd_fit, shift_sd, noise_sd)
    pvalue = rank_uniformity_pvalue(ranks, N_DRAWS)
    assert (pvalue < ALPHA / len(QUANTITIES)) == rejected, pvalue


def test_rank_uniformity_pvalue_rejects_bad_binning():
    with pytest.raises(ValueError, match="multiple of n_bins"):
        rank_uniformity_pvalue(np.zeros(5, dtype=int), 98)
