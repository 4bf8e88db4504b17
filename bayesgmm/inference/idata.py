"""One InferenceData builder for NUTS, SVI and EM: draws of the mixture in the user's units.

NUTS and SVI pass draws of the standardised model with the standardisation; EM passes its
estimate as one chain of one draw (:func:`point_inference_data`). Every posterior so gets
the same groups, variable names, dims and coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np

from bayesgmm import densities, incomplete
from bayesgmm.noise_region import predictive_draws_noise, stored_box, unobserved_log_ranges
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
    # The uniform noise component's weight (fits with noise="uniform").
    "noise_weight": [],
}
#: Dims of the data and the standardisation; ``log_likelihood``'s ``X`` is one density per
#: observation (the features are joint), so it has dims ``obs`` only. ``noise``: whether a
#: predictive group's row was drawn from a noise component.
DATA_DIMS = {
    "X": ["obs", "feature"],
    "noise": ["obs"],
    "standardize_loc": ["feature"],
    "standardize_scale": ["feature"],
}


def _unstandardize(params: GMMParams, loc: jnp.ndarray, scale: jnp.ndarray) -> GMMParams:
    return params.unstandardize(loc, scale)


def user_params(std_params: GMMParams, loc: jnp.ndarray, scale: jnp.ndarray) -> GMMParams:
    """Map standardised parameters to the user's units.

    Parameters
    ----------
    std_params : GMMParams
        Leaves with any leading batch axes, e.g. (n_chains, n_draws, n_components, ...).
    loc, scale : array, shape (n_features,)
        The standardisation ``Z = (X - loc) / scale``.

    Returns
    -------
    GMMParams
        Same shapes, in the units of ``X``.
    """
    # Through over_draws's one program: op by op, each operation would compile on its own.
    return densities.over_draws(
        _unstandardize, std_params, jnp.asarray(loc), jnp.asarray(scale), batch_size=None
    )


def pointwise_log_likelihood(params: GMMParams, X: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """``log p(x_i | draw)`` for every draw, ``batch_size`` draws at a time.

    Parameters
    ----------
    params : GMMParams
        Draws with leaves shaped (*batch, n_components, ...).
    X : array, shape (n_obs, n_features)
        NaN marks a missing value: that row's density is the marginal of its observed
        values (the observed-data likelihood).
    batch_size : int
        Draws evaluated at a time: memory stays ``O(batch_size * n_obs * n_components)``
        whatever the number of draws.

    Returns
    -------
    ndarray, shape (*batch, n_obs)
    """
    log_prob = incomplete.log_prob_nan if np.isnan(X).any() else densities.log_prob
    X = jnp.asarray(X, dtype=params.means.dtype)
    return np.asarray(densities.over_draws(log_prob, params, X, batch_size=batch_size))


def predictive_draws(params: GMMParams, key: jax.Array, n_obs: int) -> np.ndarray:
    """One simulated data set of ``n_obs`` rows per draw.

    Parameters
    ----------
    params : GMMParams
        Draws with leaves shaped (*batch, n_components, ...).
    key : jax PRNG key
    n_obs : int

    Returns
    -------
    ndarray, shape (*batch, n_obs, n_features)
    """
    lead = params.weights.shape[:-1]
    keys = jax.random.split(key, math.prod(lead))
    keys = keys.reshape((*lead, *keys.shape[1:]))
    # n_obs travels as the shape of an empty array: over_draws traces its arguments, and a
    # traced number cannot size the draws.
    rows = jnp.zeros((n_obs, 0))
    X = densities.over_draws(_sample_draw, (params, keys), rows, n_lead=len(lead), batch_size=None)
    return np.asarray(X)


def _sample_draw(draw: tuple, rows: jnp.ndarray) -> jnp.ndarray:
    params, key = draw
    return densities.sample(params, key, rows.shape[0])[0]


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


def _coords(n_components: int, n_obs: int, n_features: int, feature_names, hyper: dict) -> dict:
    features = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(n_features)]
    coords = {
        "component": np.arange(n_components),
        "feature": features,
        "feature_col": features,
        "obs": np.arange(n_obs),
    }
    if "sticks" in hyper:
        coords["stick"] = np.arange(hyper["sticks"].shape[-1])
    return coords


def _replicates(params: GMMParams, hyper: dict, box, key: jax.Array, n_obs: int) -> dict:
    """Return a predictive group's variables: ``X``, and with noise whether each row is the noise's."""
    if "noise_weight" not in hyper:
        return {"X": predictive_draws(params, key, n_obs)}
    X, noise = predictive_draws_noise(params, hyper["noise_weight"], *stored_box(*box), key, n_obs)
    return {"X": X, "noise": noise}


def _predictive_groups(post, hyper, prior, loc, scale, key, n_obs, posterior_predictive, box) -> dict:
    """``posterior_predictive``, ``prior`` and ``prior_predictive`` groups, as asked.

    ``prior`` is None or (prior draws in standardised units, their hyperparameters); ``box``
    is the noise's ``(lower, upper)`` when ``hyper`` holds a ``noise_weight``.
    """
    groups = {}
    if not posterior_predictive and prior is None:
        return groups
    key_post, key_prior = jax.random.split(key)
    if posterior_predictive:
        groups["posterior_predictive"] = _replicates(post, hyper, box, key_post, n_obs)
    if prior is not None:
        prior_draws, prior_hyper = user_params(prior[0], loc, scale), prior[1]
        groups["prior"] = {**_param_dict(prior_draws), **prior_hyper}
        groups["prior_predictive"] = _replicates(prior_draws, prior_hyper, box, key_prior, n_obs)
    return groups


def _assemble(groups: dict, log_lik: np.ndarray | None, coords: dict, attrs: dict | None) -> az.InferenceData:
    """One InferenceData from dicts of arrays per group, with ``log_likelihood`` dimmed ``obs``."""
    dims = {**PARAM_DIMS, **DATA_DIMS}
    idata = az.from_dict(**groups, coords=coords, dims=dims, attrs=attrs or {})
    if log_lik is not None:
        ll_dims = {**dims, "X": ["obs"]}
        idata.extend(
            az.from_dict(log_likelihood={"X": log_lik}, coords=coords, dims=ll_dims, attrs=attrs or {})
        )
    return idata


def build_inference_data(
    std_params: GMMParams,
    X: np.ndarray,
    loc: np.ndarray,
    scale: np.ndarray,
    *,
    key: jax.Array,
    sample_stats: dict | None = None,
    prior_std_params: GMMParams | None = None,
    posterior_predictive: bool = False,
    feature_names: Sequence[str] | None = None,
    attrs: dict | None = None,
    hyper_draws: dict | None = None,
    log_likelihood: bool = True,
    noise_volume: float | None = None,
    noise_box: tuple[np.ndarray, np.ndarray] | None = None,
    prior_hyper_draws: dict | None = None,
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
        Coordinates of the ``feature`` dim; ``x0, x1, ...`` by default.
    attrs : dict, optional
        The InferenceData's own ``attrs`` (fit settings, priors); the functions that
        return a new InferenceData from it keep them.
    hyper_draws : dict of arrays, optional
        Further posterior variables with leaves shaped (n_chains, n_draws, ...), unit-free
        (the weight prior's hyperparameters, see ``models.hyper_draws``).
    log_likelihood : bool
        Add the ``log_likelihood`` group (one density per draw and observation).
    noise_volume : float, optional
        Hypervolume (user's units) of a uniform noise component whose weight is
        ``hyper_draws["noise_weight"]``: the log-likelihood then includes its term
        ``noise_weight / noise_volume`` (``std_params``' weights sum to ``1 - noise_weight``);
        that of a row with missing values is the density of ``noise_box``'s projection on its
        observed features.
    noise_box : (lower, upper) of arrays shaped (n_features,), optional
        The noise's region (user's units), from which the predictive groups draw a row
        with the draw's probability ``noise_weight``; they then hold ``noise`` (chain,
        draw, obs), whether each replicate row is the noise's. Needed for them with noise.
    prior_hyper_draws : dict of arrays, optional
        As ``hyper_draws``, of the prior draws (with noise, their ``noise_weight``).

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior``, ``log_likelihood``, ``observed_data``,
        ``constant_data`` (the standardisation), ``sample_stats`` when given,
        and the optional predictive groups. The observed variable is ``X``.
    """
    n_obs, n_features = X.shape
    post = user_params(std_params, loc, scale)
    hyper = {k: np.asarray(v) for k, v in (hyper_draws or {}).items()}
    groups = {
        "posterior": {**_param_dict(post), **hyper},
        "observed_data": {"X": X},
        "constant_data": {"standardize_loc": np.asarray(loc), "standardize_scale": np.asarray(scale)},
    }
    if sample_stats is not None:
        groups["sample_stats"] = {k: np.asarray(v) for k, v in sample_stats.items()}
    prior = None if prior_std_params is None else (prior_std_params, prior_hyper_draws or {})
    box = (None, None) if noise_box is None else noise_box
    groups.update(_predictive_groups(post, hyper, prior, loc, scale, key, n_obs, posterior_predictive, box))
    log_lik = pointwise_log_likelihood(post, X) if log_likelihood else None
    if log_lik is not None and noise_volume is not None:
        log_noise = (np.log(hyper["noise_weight"]) - np.log(noise_volume))[..., None]
        if np.isnan(X).any():  # a row with missing values sees the box's projection on its observed ones
            log_noise = log_noise + unobserved_log_ranges(X, *stored_box(*box))
        log_lik = np.logaddexp(log_lik, log_noise)
    coords = _coords(post.n_components, n_obs, n_features, feature_names, hyper)
    return _assemble(groups, log_lik, coords, attrs)


def point_inference_data(
    params: GMMParams,
    X: np.ndarray,
    *,
    feature_names: Sequence[str] | None = None,
    attrs: dict | None = None,
    noise: tuple | None = None,
) -> az.InferenceData:
    """Build the InferenceData of a point estimate (EM's): one chain of one draw.

    Parameters
    ----------
    params : GMMParams
        One parameter set in the user's units: weights (n_components,), means
        (n_components, n_features), scale_tril (n_components, n_features, n_features).
    X : ndarray, shape (n_obs, n_features)
        The data in the user's units.
    feature_names : sequence of str, optional
        Coordinates of the ``feature`` dim; ``x0, x1, ...`` by default.
    attrs : dict, optional
        The InferenceData's own ``attrs``.
    noise : (noise_weight, noise_volume, lower, upper), optional
        A uniform noise component (``params.weights`` sum to ``1 - noise_weight``): as the
        Bayesian fits hold it, ``posterior["noise_weight"]`` and ``attrs`` ``noise="uniform"``,
        ``noise_volume``, ``noise_lower`` and ``noise_upper`` (the box, lists of floats);
        ``log_likelihood`` includes the noise term.

    Returns
    -------
    arviz.InferenceData
        As :func:`build_inference_data` with the identity standardisation (``constant_data``
        ``standardize_loc`` 0 and ``standardize_scale`` 1): ``posterior`` (chain and draw of
        size one), ``log_likelihood``, ``observed_data`` and ``constant_data``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones((2, 1, 1)))
    >>> idata = point_inference_data(p, np.zeros((3, 1)))
    >>> dict(idata.posterior["means"].sizes)
    {'chain': 1, 'draw': 1, 'component': 2, 'feature': 1}
    """
    dtype = np.asarray(params.means).dtype
    n_features = np.shape(params.means)[-1]
    draws = GMMParams(*(jnp.asarray(a)[None, None] for a in params))
    loc, scale = np.zeros(n_features, dtype), np.ones(n_features, dtype)
    extra: dict = {}
    if noise is not None:
        weight, volume, lower, upper = noise
        lower, upper = stored_box(lower, upper)
        extra = dict(hyper_draws={"noise_weight": np.full((1, 1), weight)}, noise_volume=float(volume))
        extra["noise_box"] = (lower, upper)
        attrs = {**(attrs or {}), "noise": "uniform", "noise_volume": float(volume)}
        attrs.update(noise_lower=lower.tolist(), noise_upper=upper.tolist())
    return build_inference_data(
        draws, X, loc, scale, key=jax.random.PRNGKey(0), feature_names=feature_names, attrs=attrs, **extra
    )
