"""Pure JAX densities of one Gaussian mixture parameter set, and ``over_draws`` to lift them.

Everything here is written for one parameter set; :func:`over_draws` applies such a
function to every posterior draw in bounded memory, and nothing loops over draws in Python.
The precision, log-determinant and quadratic-feature helpers are the ones EM's expanded
E-step (``inference.em.stats``) uses too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp

from bayesgmm._jit import jit
from bayesgmm.params import GMMParams

# A Python float: no JAX array at import time, so host devices can still be configured.
LOG_2PI = math.log(2.0 * math.pi)


def inverse_factors(scale_tril: jnp.ndarray) -> jnp.ndarray:
    """Inverses ``L^{-1}`` of the Cholesky factors, one triangular solve against the identity each.

    No covariance matrix is ever inverted: the factor is triangular, so its inverse is
    cheap and as accurate as the factor.

    Parameters
    ----------
    scale_tril : array, shape (n_components, n_features, n_features)

    Returns
    -------
    array, shape (n_components, n_features, n_features)
        Lower triangular.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> inverse_factors(2.0 * jnp.ones((1, 1, 1))).tolist()
    [[[0.5]]]
    """
    eye = jnp.eye(scale_tril.shape[-1], dtype=scale_tril.dtype)
    return jax.vmap(lambda factor: solve_triangular(factor, eye, lower=True))(scale_tril)


def log_det(scale_tril: jnp.ndarray) -> jnp.ndarray:
    """``log|Sigma_k|`` from the diagonals of the Cholesky factors.

    Parameters
    ----------
    scale_tril : array, shape (n_components, n_features, n_features)

    Returns
    -------
    array, shape (n_components,)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> round(float(log_det(jnp.e * jnp.eye(2)[None])[0]), 6)
    4.0
    """
    return 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(scale_tril, axis1=-2, axis2=-1))), axis=-1)


def precisions(scale_tril: jnp.ndarray) -> jnp.ndarray:
    """Precision matrices ``Sigma_k^{-1} = L_k^{-T} L_k^{-1}`` from the Cholesky factors.

    Parameters
    ----------
    scale_tril : array, shape (n_components, n_features, n_features)

    Returns
    -------
    array, shape (n_components, n_features, n_features)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> precisions(2.0 * jnp.eye(2)[None]).tolist()
    [[[0.25, 0.0], [0.0, 0.25]]]
    """
    L_inv = inverse_factors(scale_tril)
    return jnp.einsum("kji,kjl->kil", L_inv, L_inv)


def quadratic_coefficients(precision: jnp.ndarray) -> jnp.ndarray:
    """Coefficients ``c`` with ``quadratic_features(x) @ c_k = x' P_k x``.

    The upper triangle of each precision, row by row, off-diagonal terms doubled
    (``x_i x_j`` appears twice in ``x' P x``).

    Parameters
    ----------
    precision : array, shape (n_components, n_features, n_features)

    Returns
    -------
    array, shape (n_components, n_features * (n_features + 1) // 2)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> quadratic_coefficients(jnp.array([[[2.0, 0.5], [0.5, 3.0]]])).tolist()
    [[2.0, 1.0, 3.0]]
    """
    n_features = precision.shape[-1]
    doubled = jnp.where(jnp.arange(n_features) == 0, 1.0, 2.0)
    return jnp.concatenate(
        [precision[:, i, i:] * doubled[: n_features - i] for i in range(n_features)], axis=1
    )


def quadratic_features(X: jnp.ndarray) -> jnp.ndarray:
    """Products ``x_i x_j`` (i <= j) of each row, the upper triangle row by row.

    Parameters
    ----------
    X : array, shape (n_obs, n_features)

    Returns
    -------
    array, shape (n_obs, n_features * (n_features + 1) // 2)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> quadratic_features(jnp.array([[1.0, 2.0, 3.0]])).tolist()
    [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]
    """
    return jnp.concatenate([X[:, i : i + 1] * X[:, i:] for i in range(X.shape[-1])], axis=1)


def component_log_prob(params: GMMParams, X: jnp.ndarray) -> jnp.ndarray:
    """Log density of each observation under each component (weights excluded).

    Parameters
    ----------
    params : GMMParams
        One parameter set: weights (n_components,), means (n_components, n_features),
        scale_tril (n_components, n_features, n_features).
    X : array, shape (n_obs, n_features)

    Returns
    -------
    array, shape (n_obs, n_components)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.ones(1), jnp.zeros((1, 1)), jnp.ones((1, 1, 1)))
    >>> round(float(component_log_prob(p, jnp.zeros((1, 1)))[0, 0]), 6)
    -0.918939
    """
    X = jnp.asarray(X)
    # Each small Cholesky factor is inverted once and applied to all observations with one
    # matrix product: on CPU, XLA's triangular solve over n_obs right-hand sides is much
    # slower than the product.
    L_inv = inverse_factors(params.scale_tril)
    z = jnp.einsum("nd,ked->nke", X, L_inv) - jnp.einsum("ked,kd->ke", L_inv, params.means)
    return -0.5 * (jnp.sum(z * z, axis=-1) + log_det(params.scale_tril) + X.shape[-1] * LOG_2PI)


def component_log_prob_expanded(params: GMMParams, X: jnp.ndarray) -> jnp.ndarray:
    """``component_log_prob`` through the expanded quadratic form; for the models' likelihood.

    With ``P`` the precision of a component, ``(x - mu)' P (x - mu) = sum_{i <= j} c_ij x_i x_j
    - 2 x' P mu + mu' P mu``: one product of the rows' quadratic features (n_obs,
    n_features (n_features + 1) / 2) with the components' coefficients, where
    ``component_log_prob`` makes and reads an (n_obs, n_components, n_features) array, which
    with its gradient makes a likelihood step memory-bound.

    The terms cancel for rows far from a component relative to its spread, so the result
    is exact to about ``eps * (x' P x + mu' P mu)``, not to ``eps`` times itself: negligible
    in float64, noticeable in float32 for rows far from a component. Use
    ``component_log_prob`` where accuracy matters more than speed.

    Parameters
    ----------
    params : GMMParams
        One parameter set (see ``component_log_prob``).
    X : array, shape (n_obs, n_features)

    Returns
    -------
    array, shape (n_obs, n_components)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.ones(1), jnp.zeros((1, 1)), jnp.ones((1, 1, 1)))
    >>> round(float(component_log_prob_expanded(p, jnp.zeros((1, 1)))[0, 0]), 6)
    -0.918939
    """
    X = jnp.asarray(X)
    precision = precisions(params.scale_tril)
    coefficients = quadratic_coefficients(precision).astype(X.dtype)
    linear = jnp.einsum("kij,kj->ki", precision, params.means)
    constant = jnp.einsum("ki,ki->k", linear, params.means)
    maha = quadratic_features(X) @ coefficients.T - 2.0 * X @ linear.T + constant
    return -0.5 * (maha + log_det(params.scale_tril) + X.shape[-1] * LOG_2PI)


def joint_log_prob(params: GMMParams, X: jnp.ndarray) -> jnp.ndarray:
    """``log w_k + log N(x_i | mu_k, Sigma_k)``.

    Parameters
    ----------
    params : GMMParams
        One parameter set.
    X : array, shape (n_obs, n_features)

    Returns
    -------
    array, shape (n_obs, n_components)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones((2, 1, 1)))
    >>> joint_log_prob(p, jnp.zeros((3, 1))).shape
    (3, 2)
    """
    return jnp.log(params.weights) + component_log_prob(params, X)


def log_prob(params: GMMParams, X: jnp.ndarray) -> jnp.ndarray:
    """Mixture log density of each observation.

    Parameters
    ----------
    params : GMMParams
        One parameter set.
    X : array, shape (n_obs, n_features)

    Returns
    -------
    array, shape (n_obs,)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones((2, 1, 1)))
    >>> log_prob(p, jnp.zeros((3, 1))).shape
    (3,)
    """
    return logsumexp(joint_log_prob(params, X), axis=-1)


def responsibilities(params: GMMParams, X: jnp.ndarray) -> jnp.ndarray:
    """Posterior membership probabilities ``p(z_i = k | x_i, params)``.

    Parameters
    ----------
    params : GMMParams
        One parameter set.
    X : array, shape (n_obs, n_features)

    Returns
    -------
    array, shape (n_obs, n_components)
        Each row sums to one.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones((2, 1, 1)))
    >>> responsibilities(p, jnp.array([[0.0], [5.0]])).round(3).tolist()
    [[0.5, 0.5], [0.0, 1.0]]
    """
    joint = joint_log_prob(params, X)
    return jnp.exp(joint - logsumexp(joint, axis=-1, keepdims=True))


def sample(params: GMMParams, key: jax.Array, n_obs: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Draw ``n_obs`` observations and their component labels.

    Parameters
    ----------
    params : GMMParams
        One parameter set.
    key : jax PRNG key
    n_obs : int

    Returns
    -------
    X : array, shape (n_obs, n_features)
    labels : int array, shape (n_obs,)

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> p = GMMParams(jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.ones((2, 1, 1)))
    >>> X, labels = sample(p, jax.random.PRNGKey(0), 4)
    >>> X.shape, labels.shape
    ((4, 1), (4,))
    """
    key_z, key_x = jax.random.split(key)
    labels = jax.random.categorical(key_z, jnp.log(params.weights), shape=(n_obs,))
    eps = jax.random.normal(key_x, (n_obs, params.n_features), dtype=params.means.dtype)
    X = params.means[labels] + jnp.einsum("nij,nj->ni", params.scale_tril[labels], eps)
    return X, labels


def over_draws(
    fn: Callable, draws: Any, *args: Any, n_lead: int | None = None, batch_size: int | None = 64
) -> Any:
    """Lift ``fn(draw, *args)``, written for one draw, over the leading (chain, draw) axes of ``draws``.

    The leading axes are merged, ``fn`` is mapped over them ``batch_size`` draws at a time
    (so memory stays that of ``batch_size`` draws whatever their number) and its outputs get
    the leading axes back. It runs as one compiled program: an eager ``lax.map`` would compile
    its body again on every call. The program is cached on ``fn``, so pass a module-level
    function, not a fresh lambda, and a second call with the same shapes does not compile.

    Parameters
    ----------
    fn : callable
        ``fn(draw, *args)`` for one draw (a slice of ``draws`` without its leading axes);
        returns a pytree of arrays.
    draws : pytree of arrays
        Usually a GMMParams with leaves shaped (*lead, n_components, ...); any pytree whose
        leaves share ``n_lead`` leading axes (e.g. ``(params, keys)``).
    *args
        Arrays passed unchanged to every call (e.g. the data, shape (n_obs, n_features)).
    n_lead : int, optional
        Number of leading axes; by default that of a GMMParams, ``draws.weights.ndim - 1``.
    batch_size : int or None, default 64
        Draws evaluated at a time; None evaluates all of them at once (``vmap``).

    Returns
    -------
    pytree of arrays
        ``fn``'s outputs, each shaped (*lead, ...).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.full((2, 3, 1), 1.0), jnp.zeros((2, 3, 1, 1)), jnp.ones((2, 3, 1, 1, 1)))
    >>> over_draws(log_prob, p, jnp.zeros((5, 1))).shape  # (chain, draw, obs)
    (2, 3, 5)
    """
    if n_lead is None:
        n_lead = draws.weights.ndim - 1
    # Inside a caller's own jit the program is the caller's: a nested jit may not set options.
    traced = any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves((draws, args)))
    return (_map_draws if traced else _map_draws_jit)(fn, draws, args, n_lead, batch_size)


def _map_draws(fn, draws, args, n_lead, batch_size):
    lead = jax.tree_util.tree_leaves(draws)[0].shape[:n_lead]
    flat = jax.tree_util.tree_map(lambda a: a.reshape((-1, *a.shape[n_lead:])), draws)
    if batch_size is None:
        out = jax.vmap(lambda d: fn(d, *args))(flat)
    else:
        out = jax.lax.map(lambda d: fn(d, *args), flat, batch_size=batch_size)
    return jax.tree_util.tree_map(lambda a: a.reshape((*lead, *a.shape[1:])), out)


_map_draws_jit = jit(_map_draws, static_argnums=(0, 3, 4))
