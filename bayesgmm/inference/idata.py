"""Turn draws of the standardised model into one ArviZ InferenceData, in the user's units.

NUTS and SVI both end here, so every posterior has the same groups, names and dims.
"""

from __future__ import annotations

from functools import partial

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np

from bayesgmm import densities
from bayesgmm._jit import jit
from bayesgmm.params import GMMParams

#: Dims of every posterior variable after ``chain`` and ``draw``.
PARAM_DIMS = {
    "weights": ["component"],
    "means": ["component", "feature"],
    "covariances": ["component", "feature", "feature_col"],
    "scale_tril": ["component", "feature", "feature_col"],
    # Hyperparameters of the sparse and dp weight priors (see models.hyper_draws).
    "weight_concentration": [],
    "concentration": [],
    "stick_remainder": [],
    "sticks": ["stick"],
}


def _flat(tree, n_lead: int):
    """Merge the first ``n_lead`` axes of every leaf into one."""
    return jax.tree_util.tree_map(lambda a: a.reshape((-1, *a.shape[n_lead:])), tree)


# Jitted: op by op, each of its few operations would compile on its own in a fresh process.
@jit
def user_params(std_params: GMMParams, loc, scale) -> GMMParams:
    """Map standardised parameters with any leading batch axes to the user's units."""
    lead = std_params.weights.ndim - 1
    flat = _flat(std_params, lead)
    out = jax.vmap(lambda p: p.unstandardize(loc, scale))(flat)
    return jax.tree_util.tree_map(lambda a: a.reshape((*std_params.weights.shape[:lead], *a.shape[1:])), out)


def pointwise_log_likelihood(params: GMMParams, X, batch_size: int = 64) -> np.ndarray:
    """``log p(x_i | draw)`` for every draw, shape (*batch, n_obs).

    Draws are processed ``batch_size`` at a time so that memory stays
    ``O(batch_size * n_obs * n_components)`` whatever the number of draws.
    """
    lead = params.weights.shape[:-1]
    flat = _flat(params, len(lead))
    X = jnp.asarray(X, dtype=flat.means.dtype)
    return np.asarray(_log_prob_draws(flat, X, batch_size)).reshape((*lead, X.shape[0]))


@partial(jit, static_argnums=2)
def _log_prob_draws(flat: GMMParams, X, batch_size: int):
    # Jitted at module level: an eager lax.map recompiles its body on every call.
    return jax.lax.map(lambda p: densities.log_prob(p, X), flat, batch_size=batch_size)


def predictive_draws(params: GMMParams, key, n_obs: int) -> np.ndarray:
    """One simulated data set of ``n_obs`` rows per draw, shape (*batch, n_obs, n_features)."""
    lead = params.weights.shape[:-1]
    flat = _flat(params, len(lead))
    keys = jax.random.split(key, flat.weights.shape[0])
    X, _ = jax.vmap(lambda p, k: densities.sample(p, k, n_obs))(flat, keys)
    return np.asarray(X).reshape((*lead, n_obs, params.n_features))


def _param_dict(params: GMMParams) -> dict:
    # The covariances with numpy: op by op in JAX, each operation compiles on its own in a
    # fresh process.
    scale_tril = np.asarray(params.scale_tril)
    return {
        "weights": np.asarray(params.weights),
        "means": np.asarray(params.means),
        "covariances": scale_tril @ np.swapaxes(scale_tril, -1, -2),
        "scale_tril": scale_tril,
    }


def build_inference_data(
    std_params: GMMParams,
    X: np.ndarray,
    loc: np.ndarray,
    scale: np.ndarray,
    *,
    key,
    sample_stats: dict | None = None,
    prior_std_params: GMMParams | None = None,
    posterior_predictive: bool = False,
    feature_names=None,
    attrs: dict | None = None,
    hyper_draws: dict | None = None,
    log_likelihood: bool = True,
) -> az.InferenceData:
    """Assemble the InferenceData of a Bayesian mixture fit.

    Parameters
    ----------
    std_params : GMMParams
        Posterior draws in standardised units, leaves shaped (n_chains, n_draws, ...).
    X : ndarray, shape (n_obs, n_features)
        The data in the user's units.
    loc, scale : ndarray, shape (n_features,)
        The standardisation ``Z = (X - loc) / scale``.
    key : jax PRNG key
        Used only for predictive draws.
    sample_stats : dict of arrays shaped (n_chains, n_draws), optional
    prior_std_params : GMMParams, optional
        Prior draws (standardised units, leaves shaped (1, n_draws, ...)); adds
        the ``prior`` and ``prior_predictive`` groups.
    posterior_predictive : bool
        Add a ``posterior_predictive`` group with one replicate data set per draw.
    feature_names : sequence of str, optional
    attrs : dict, optional
        The InferenceData's own ``attrs`` (fit settings, priors); the functions that
        return a new InferenceData from it keep them.
    hyper_draws : dict of arrays, optional
        Further posterior variables with leaves shaped (n_chains, n_draws, ...), unit-free
        (the weight prior's hyperparameters, see ``models.hyper_draws``).
    log_likelihood : bool
        Add the ``log_likelihood`` group (one density per draw and observation).

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior``, ``log_likelihood``, ``observed_data``,
        ``constant_data`` (the standardisation), ``sample_stats`` when given,
        and the optional predictive groups. The observed variable is ``X``.
    """
    n_obs, n_features = X.shape
    post = user_params(std_params, loc, scale)
    features = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(n_features)]
    coords = {
        "component": np.arange(post.n_components),
        "feature": features,
        "feature_col": features,
        "obs": np.arange(n_obs),
    }
    hyper = {k: np.asarray(v) for k, v in (hyper_draws or {}).items()}
    if "sticks" in hyper:
        coords["stick"] = np.arange(hyper["sticks"].shape[-1])
    dims = {
        **PARAM_DIMS,
        "X": ["obs", "feature"],
        "standardize_loc": ["feature"],
        "standardize_scale": ["feature"],
    }
    groups = {
        "posterior": {**_param_dict(post), **hyper},
        "log_likelihood": {"X": pointwise_log_likelihood(post, X) if log_likelihood else None},
        "observed_data": {"X": X},
        "constant_data": {"standardize_loc": np.asarray(loc), "standardize_scale": np.asarray(scale)},
    }
    if sample_stats is not None:
        groups["sample_stats"] = {k: np.asarray(v) for k, v in sample_stats.items()}
    if posterior_predictive or prior_std_params is not None:
        key_post, key_prior = jax.random.split(key)
    if posterior_predictive:
        groups["posterior_predictive"] = {"X": predictive_draws(post, key_post, n_obs)}
    if prior_std_params is not None:
        prior = user_params(prior_std_params, loc, scale)
        groups["prior"] = _param_dict(prior)
        groups["prior_predictive"] = {"X": predictive_draws(prior, key_prior, n_obs)}
    # log_likelihood's X is one density per observation (features are joint).
    ll_dims = {**dims, "X": ["obs"]}
    idata = az.from_dict(
        **{k: v for k, v in groups.items() if k not in ("log_likelihood",)},
        coords=coords,
        dims=dims,
        attrs=attrs or {},
    )
    if log_likelihood:
        ll = az.from_dict(
            log_likelihood=groups["log_likelihood"], coords=coords, dims=ll_dims, attrs=attrs or {}
        )
        idata.extend(ll)
    return idata
