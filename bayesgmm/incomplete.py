"""Pure JAX math of rows with missing coordinates (missing at random) under one GMMParams.

A row's likelihood is the mixture density of its observed coordinates, the exact marginal
over the missing ones. Every row is handled by one masked formula, so that the cost stays
vectorised whatever the missingness patterns: with ``m`` the row's observed mask, the
covariance ``S' = (m m^T) * S + diag(1 - m)`` and the mean and data zeroed where missing,
the Gaussian density of ``S'`` is that of the observed block times a standard normal
density at zero for each missing coordinate, and ``v = S'^{-1} (x - mu)`` is
``S_oo^{-1} (x_o - mu_o)`` on the observed coordinates and zero elsewhere, so that the
conditional mean is ``x_hat = mu + S v`` and the conditional covariance
``C = S - S ((m m^T) * S'^{-1}) S``.

EM for incomplete data (``inference.em.missing``), the NumPyro model (``models``), the
``log_likelihood`` group and the imputations all use these functions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bayesgmm.params import GMMParams

_LOG_2PI = float(np.log(2 * np.pi))


# jaxlib's CPU LAPACK kernels split a large batch of factorisations into tasks on XLA's
# intra-op thread pool and wait for them from a thread of that same pool; with every worker
# waiting, none runs the tasks and the program never returns (seen with jaxlib 0.10.2 on
# imputations over many posterior draws). These batches are of small matrices, one per row
# and component, so plain element-wise JAX, unrolled over the features, does them instead.


def _cholesky(A: jnp.ndarray) -> jnp.ndarray:
    """Lower Cholesky factor of each matrix in ``A``, shape (..., n_features, n_features)."""
    n = A.shape[-1]
    rows = jnp.arange(n)
    cols: list[jnp.ndarray] = []
    for j in range(n):
        s = A[..., :, j]
        for col in cols:
            s = s - col * col[..., j : j + 1]
        d = jnp.sqrt(s[..., j : j + 1])
        cols.append(jnp.where(rows > j, s / d, jnp.where(rows == j, d, 0.0)))
    return jnp.stack(cols, axis=-1)


def _solve_lower(L: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """``L^{-1} b`` for lower-triangular ``L`` (..., n, n) and ``b`` (..., n, m)."""
    out: list[jnp.ndarray] = []
    for i in range(L.shape[-1]):
        acc = b[..., i, :]
        for k, row in enumerate(out):
            acc = acc - L[..., i, k, None] * row
        out.append(acc / L[..., i, i, None])
    return jnp.stack(out, axis=-2)


def _solve_upper_t(L: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """``L^{-T} b`` for lower-triangular ``L`` (..., n, n) and ``b`` (..., n, m)."""
    n = L.shape[-1]
    out: list = [None] * n
    for i in reversed(range(n)):
        acc = b[..., i, :]
        for k in range(i + 1, n):
            acc = acc - L[..., k, i, None] * out[k]
        out[i] = acc / L[..., i, i, None]
    return jnp.stack(out, axis=-2)


def _cho_solve(L: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """``(L L^T)^{-1} b`` for ``b`` shaped (..., n, m)."""
    return _solve_upper_t(L, _solve_lower(L, b))


def _masked(params: GMMParams, X: jnp.ndarray, observed: jnp.ndarray):
    """Per row and component: the Cholesky factor of ``S'``, the centred data and ``S``.

    Shapes (n_obs, n_components, n_features, n_features), (n_obs, n_components, n_features)
    and (n_components, n_features, n_features).
    """
    m = observed.astype(X.dtype)
    cov = params.covariances
    both = m[:, None, :, None] * m[:, None, None, :]
    eye = jnp.eye(X.shape[1], dtype=X.dtype)
    masked_cov = both * cov[None] + (1 - m)[:, None, :, None] * eye
    diff = (jnp.where(observed, X, 0.0)[:, None, :] - params.means[None]) * m[:, None, :]
    return _cholesky(masked_cov), diff, cov


def observed_log_density(params: GMMParams, X: jnp.ndarray, observed: jnp.ndarray) -> jnp.ndarray:
    """Log density of each row's observed coordinates under each component.

    Parameters
    ----------
    params : GMMParams
    X : array, shape (n_obs, n_features)
        Values where ``observed``; anything (NaN) elsewhere.
    observed : bool array, shape (n_obs, n_features)

    Returns
    -------
    array, shape (n_obs, n_components)
        ``log N(x_o | mu_o, S_oo)``, the weights not included.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.ones(1), jnp.zeros((1, 2)), 2.0 * jnp.eye(2)[None])
    >>> X = jnp.array([[0.0, jnp.nan]])
    >>> float(observed_log_density(p, X, ~jnp.isnan(X))[0, 0])  # N(0 | 0, 4) in one dimension
    -1.612085713764618
    """
    L, diff, _ = _masked(params, X, observed)
    white = _solve_lower(L, diff[..., None])[..., 0]
    log_det = jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
    n_seen = observed.sum(axis=1, dtype=X.dtype)[:, None]
    return -0.5 * jnp.sum(white**2, axis=-1) - log_det - 0.5 * n_seen * _LOG_2PI


def conditional_moments(
    params: GMMParams, X: jnp.ndarray, observed: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Conditional mean and covariance of each row given its observed coordinates.

    Parameters
    ----------
    params : GMMParams
    X : array, shape (n_obs, n_features)
    observed : bool array, shape (n_obs, n_features)

    Returns
    -------
    x_hat : array, shape (n_obs, n_components, n_features)
        The observed values, and ``E[x_m | x_o, component]`` where missing.
    C : array, shape (n_obs, n_components, n_features, n_features)
        ``Cov[x | x_o, component]``: zero but on the missing block.
    """
    L, diff, cov = _masked(params, X, observed)
    v = _cho_solve(L, diff[..., None])[..., 0]
    x_hat = params.means[None] + jnp.einsum("kij,nkj->nki", cov, v)
    eye = jnp.broadcast_to(jnp.eye(X.shape[1], dtype=X.dtype), L.shape)
    inv = _cho_solve(L, eye)
    m = observed.astype(X.dtype)
    inv_oo = inv * (m[:, None, :, None] * m[:, None, None, :])
    C = cov[None] - jnp.einsum("kij,nkjl,klm->nkim", cov, inv_oo, cov)
    return x_hat, C


def joint_observed(params: GMMParams, X: jnp.ndarray, observed: jnp.ndarray) -> jnp.ndarray:
    """``log w_k + log N(x_o | mu_o, S_oo)``, shape (n_obs, n_components)."""
    return jnp.log(params.weights) + observed_log_density(params, X, observed)


def log_likelihood_rows(params: GMMParams, X: jnp.ndarray, observed: jnp.ndarray) -> jnp.ndarray:
    """Observed-data log-likelihood of each row, shape (n_obs,)."""
    return jax.nn.logsumexp(joint_observed(params, X, observed), axis=1)


def log_prob_nan(params: GMMParams, X: jnp.ndarray) -> jnp.ndarray:
    """Observed-data log-likelihood of each row of ``X``, where NaN marks a missing value.

    Parameters
    ----------
    params : GMMParams
    X : array, shape (n_obs, n_features)

    Returns
    -------
    array, shape (n_obs,)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.ones(1), jnp.zeros((1, 2)), 2.0 * jnp.eye(2)[None])
    >>> float(log_prob_nan(p, jnp.array([[0.0, jnp.nan]]))[0])
    -1.612085713764618
    """
    observed = ~jnp.isnan(X)
    return log_likelihood_rows(params, jnp.where(observed, X, 0.0), observed)


def joint_log_prob_nan(params: GMMParams, X: jnp.ndarray) -> jnp.ndarray:
    """``log w_k + log N(x_o | mu_o, S_oo)`` of each row (NaN: missing), (n_obs, n_components)."""
    observed = ~jnp.isnan(X)
    return joint_observed(params, jnp.where(observed, X, 0.0), observed)


def responsibilities_nan(params: GMMParams, X: jnp.ndarray) -> jnp.ndarray:
    """Membership probabilities given each row's observed values (NaN: missing), (n_obs, n_components)."""
    return jax.nn.softmax(joint_log_prob_nan(params, X), axis=1)


def conditional_mean(params: GMMParams, X: jnp.ndarray) -> jnp.ndarray:
    """``E[x | x_obs]`` of each row, where NaN marks a missing value.

    The components' conditional means weighted by the responsibilities given the observed
    values; the observed values are returned as they are.

    Parameters
    ----------
    params : GMMParams
    X : array, shape (n_obs, n_features)

    Returns
    -------
    array, shape (n_obs, n_features)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> L = jnp.linalg.cholesky(jnp.array([[[1.0, 0.5], [0.5, 1.0]]]))
    >>> p = GMMParams(jnp.ones(1), jnp.zeros((1, 2)), L)
    >>> conditional_mean(p, jnp.array([[2.0, jnp.nan]])).tolist()  # 0 + 0.5 / 1 * (2 - 0)
    [[2.0, 1.0]]
    """
    observed = ~jnp.isnan(X)
    X0 = jnp.where(observed, X, 0.0)
    resp = jax.nn.softmax(joint_observed(params, X0, observed), axis=1)
    x_hat, _ = conditional_moments(params, X0, observed)
    return jnp.where(observed, X, jnp.einsum("nk,nki->ni", resp, x_hat))


def impute_draw(params: GMMParams, key: jax.Array, X: jnp.ndarray) -> jnp.ndarray:
    """One draw of the missing values (NaN in ``X``) from their law given the observed ones.

    Draws each row's component from its responsibilities given the observed values, then
    the missing values from that component's conditional Gaussian. Observed values are
    returned as they are.

    Parameters
    ----------
    params : GMMParams
    key : jax PRNG key
    X : array, shape (n_obs, n_features)

    Returns
    -------
    array, shape (n_obs, n_features)

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> p = GMMParams(jnp.ones(1), jnp.zeros((1, 2)), jnp.eye(2)[None])
    >>> out = impute_draw(p, jax.random.PRNGKey(0), jnp.array([[1.0, jnp.nan]]))
    >>> float(out[0, 0]), bool(jnp.isfinite(out[0, 1]))
    (1.0, True)
    """
    observed = ~jnp.isnan(X)
    X0 = jnp.where(observed, X, 0.0)
    key_z, key_x = jax.random.split(key)
    labels = jax.random.categorical(key_z, joint_observed(params, X0, observed), axis=1)
    x_hat, C = conditional_moments(params, X0, observed)
    rows = jnp.arange(X.shape[0])
    mean, cov = x_hat[rows, labels], C[rows, labels]
    # C is zero on the observed block: a unit diagonal there makes it positive definite
    # without touching the missing block's factor.
    factor = _cholesky(cov + jax.vmap(jnp.diag)(observed.astype(X.dtype)))
    eps = jax.random.normal(key_x, X.shape, dtype=X.dtype)
    return jnp.where(observed, X, mean + jnp.einsum("nij,nj->ni", factor, eps))
