"""Posterior-averaged quantities at new points, lifted over draws in bounded memory."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from bayesgmm import densities, incomplete
from bayesgmm.params import GMMParams


def log_predictive_density(params: GMMParams, X: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Log posterior predictive density ``log (1/S) sum_s p(x_i | draw_s)``.

    Parameters
    ----------
    params : GMMParams
        ``S`` draws with any leading axes, e.g. leaves shaped (n_chains, n_draws, n_components, ...).
    X : array, shape (n_obs, n_features)
        NaN marks a missing value: that row's density is that of its observed values.
    batch_size : int
        Draws evaluated at a time.

    Returns
    -------
    ndarray, shape (n_obs,)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.ones((3, 1)), jnp.zeros((3, 1, 1)), jnp.ones((3, 1, 1, 1)))
    >>> log_predictive_density(p, jnp.zeros((2, 1))).shape
    (2,)
    """
    X = jnp.asarray(X, dtype=params.means.dtype)
    fn = incomplete.log_prob_nan if bool(jnp.isnan(X).any()) else densities.log_prob
    ll = densities.over_draws(fn, params, X, batch_size=batch_size)
    ll = ll.reshape(-1, X.shape[0])
    return np.asarray(logsumexp(ll, axis=0) - jnp.log(ll.shape[0]))


def mean_responsibilities(params: GMMParams, X: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Membership probabilities averaged over draws.

    Only meaningful when the draws share one labelling: relabel first.

    Parameters
    ----------
    params : GMMParams
        Draws with any leading axes, e.g. leaves shaped (n_chains, n_draws, n_components, ...).
    X : array, shape (n_obs, n_features)
        NaN marks a missing value: that row's probabilities are given its observed values.
    batch_size : int
        Draws evaluated at a time.

    Returns
    -------
    ndarray, shape (n_obs, n_components)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.full((3, 2), 0.5), jnp.zeros((3, 2, 1)), jnp.ones((3, 2, 1, 1)))
    >>> mean_responsibilities(p, jnp.zeros((1, 1))).tolist()
    [[0.5, 0.5]]
    """
    X = jnp.asarray(X, dtype=params.means.dtype)
    fn = incomplete.responsibilities_nan if bool(jnp.isnan(X).any()) else densities.responsibilities
    resp = densities.over_draws(fn, params, X, batch_size=batch_size)
    return np.asarray(resp.reshape(-1, *resp.shape[-2:]).mean(axis=0))
