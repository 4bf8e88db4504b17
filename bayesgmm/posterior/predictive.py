"""Posterior-averaged quantities at new points, lifted over draws in bounded memory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from bayesgmm import densities
from bayesgmm.params import GMMParams


def _flat_draws(params: GMMParams) -> GMMParams:
    lead = params.weights.ndim - 1
    return jax.tree_util.tree_map(lambda a: jnp.reshape(a, (-1, *a.shape[lead:])), params)


def log_predictive_density(params: GMMParams, X, batch_size: int = 64) -> np.ndarray:
    """Log posterior predictive density ``log (1/S) sum_s p(x_i | draw_s)``.

    Parameters
    ----------
    params : GMMParams
        Draws with any leading axes, e.g. (chain, draw).
    X : array, shape (n_obs, n_features)

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
    flat = _flat_draws(params)
    X = jnp.asarray(X, dtype=flat.means.dtype)
    ll = jax.lax.map(lambda p: densities.log_prob(p, X), flat, batch_size=batch_size)
    return np.asarray(logsumexp(ll, axis=0) - jnp.log(ll.shape[0]))


def mean_responsibilities(params: GMMParams, X, batch_size: int = 64) -> np.ndarray:
    """Membership probabilities averaged over draws, shape (n_obs, n_components).

    Only meaningful when the draws share one labelling: relabel first.
    """
    flat = _flat_draws(params)
    X = jnp.asarray(X, dtype=flat.means.dtype)
    resp = jax.lax.map(lambda p: densities.responsibilities(p, X), flat, batch_size=batch_size)
    return np.asarray(resp.mean(axis=0))
