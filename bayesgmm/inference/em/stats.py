"""The E-step and the M-step's sufficient statistics: one pass over the data per EM iteration.

Every covariance type's log density is linear in a fixed feature map of one observation,
``F(x) = [1, x, q(x)]``, with ``q(x)`` the upper triangle of ``x x^T`` (full) or ``x * x``
(diag, spherical). So the E-step is one GEMM, ``logits = F @ C(params)``, and the M-step's
weighted counts, sums and second moments are another, ``S = F.T @ (w * resp)``.

``tied`` uses ``F(x) = [1, x]`` only: its quadratic term ``-x^T P x / 2`` is the same for
every component, so it is computed once per row (a (D, D) whitening) and cancels in the
responsibilities, and the M-step needs only the total second moment, a constant of the data.
That makes both GEMMs 6x narrower than for full covariance (11 columns instead of 66 at D=10).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from bayesgmm import densities
from bayesgmm.densities import LOG_2PI
from bayesgmm.params import GMMParams

# Cody-Waite split of ln 2 and Taylor coefficients of exp on [-ln2 / 2, ln2 / 2].
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_EXP_COEFS = [1.0 / math.factorial(i) for i in range(14)]


def n_stats(n_features: int, covariance_type: str) -> int:
    """Count the features ``F(x)`` of ``covariance_type``.

    Parameters
    ----------
    n_features : int
    covariance_type : str

    Returns
    -------
    int

    Examples
    --------
    >>> n_stats(2, "full"), n_stats(2, "tied"), n_stats(2, "diag")
    (6, 3, 5)
    """
    if covariance_type == "full":
        return 1 + n_features + n_features * (n_features + 1) // 2
    if covariance_type == "tied":
        return 1 + n_features
    return 1 + 2 * n_features


def features(X: jnp.ndarray, covariance_type: str) -> jnp.ndarray:
    """Build the data-only features ``[1, x, q(x)]``; ``[1, x]`` for tied.

    Parameters
    ----------
    X : array, shape (n_obs, n_features)
    covariance_type : str

    Returns
    -------
    array, shape (n_obs, n_stats)
    """
    n_obs, n_features = X.shape
    ones = jnp.ones((n_obs, 1), X.dtype)
    if covariance_type == "tied":
        return jnp.concatenate([ones, X], axis=1)
    quad = densities.quadratic_features(X) if covariance_type == "full" else X * X
    return jnp.concatenate([ones, X, quad], axis=1)


def second_moment(X: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """Compute the weighted second moment ``sum_i w_i x_i x_i^T`` as its upper triangle.

    Constant over EM iterations: the tied M-step's only quadratic statistic.

    Parameters
    ----------
    X : array, shape (n_obs, n_features)
    w : array, shape (n_obs,)

    Returns
    -------
    array, shape (n_features (n_features + 1) / 2,)
    """
    rows, cols = jnp.triu_indices(X.shape[1])
    return ((X * w[:, None]).T @ X)[rows, cols]


def precisions(scale_tril: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Precision matrices and ``-0.5 log|Sigma|`` from the Cholesky factors, per component.

    The moment expansion needs the precision itself; ``densities.precisions`` builds it from
    ``L^{-1}`` by a triangular solve (as scikit-learn does) rather than inverting Sigma.

    Parameters
    ----------
    scale_tril : array, shape (n_components, n_features, n_features)

    Returns
    -------
    precision : array, shape (n_components, n_features, n_features)
    half_log_det : array, shape (n_components,)
        ``-0.5 log|Sigma_k|``.
    """
    return densities.precisions(scale_tril), -0.5 * densities.log_det(scale_tril)


def coefficients(params: GMMParams, covariance_type: str) -> jnp.ndarray:
    """Coefficients ``C`` with ``features(X) @ C = log w_k + log N(x | mu_k, Sigma_k)``.

    For tied the shared term ``-x^T P x / 2`` is left out (see ``tied_quadratic``).

    Parameters
    ----------
    params : GMMParams
    covariance_type : str

    Returns
    -------
    array, shape (n_stats, n_components)
    """
    weights, means, scale_tril = params
    n_features = means.shape[-1]
    prec, half_log_det = precisions(scale_tril)
    lin = jnp.einsum("kij,kj->ki", prec, means)
    const = jnp.log(weights) - 0.5 * n_features * LOG_2PI + half_log_det - 0.5 * jnp.sum(means * lin, axis=-1)
    if covariance_type == "tied":
        return jnp.concatenate([const[:, None], lin], axis=1).T
    if covariance_type == "full":
        quad = -0.5 * densities.quadratic_coefficients(prec)
    else:
        quad = -0.5 * jnp.diagonal(prec, axis1=-2, axis2=-1)
    return jnp.concatenate([const[:, None], lin, quad], axis=1).T


def exp_nonpositive(x: jnp.ndarray) -> jnp.ndarray:
    """float64 ``exp(x)`` for ``x <= 0`` (NaN stays NaN), within 1 ulp; 0 below ``-708``.

    XLA's CPU float64 ``exp`` is scalar code, slower than this vectorisable polynomial,
    and the E-step takes ``n_obs * n_components`` of them per iteration. Results below
    ``exp(-708) ~ 3e-308`` are flushed to 0: they cannot change a sum that contains 1.

    Parameters
    ----------
    x : float64 array, any shape

    Returns
    -------
    float64 array, the shape of ``x``
    """
    clipped = jnp.maximum(x, -708.0)
    n = jnp.round(clipped * 1.4426950408889634)  # x = n ln2 + r, |r| <= ln2 / 2
    r = (clipped - n * _LN2_HI) - n * _LN2_LO
    poly = _EXP_COEFS[-1]
    for c in _EXP_COEFS[-2::-1]:
        poly = poly * r + c
    # 2**n from its bit pattern; n is in [-1021, 0] after the clip, a normal number.
    scale = jax.lax.bitcast_convert_type((n.astype(jnp.int64) + 1023) << 52, jnp.float64)
    return jnp.where(x < -708.0, 0.0, poly * scale)


def softmax_parts(logits: jnp.ndarray, axis: int) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """``log(sum(exp(logits)))``, ``exp(logits - max)`` and its sum over ``axis``: one ``exp``."""
    top = jnp.max(logits, axis=axis, keepdims=True)
    shifted = logits - top
    e = exp_nonpositive(shifted) if logits.dtype == jnp.float64 else jnp.exp(shifted)
    total = jnp.sum(e, axis=axis, keepdims=True)
    return jnp.squeeze(top + jnp.log(total), axis), e, total


def tied_quadratic(params: GMMParams, xT: jnp.ndarray) -> jnp.ndarray:
    """``-x^T P x / 2`` for tied, shape (n_obs,), from ``xT`` (n_features, n_obs).

    It is common to all components, so it is computed once per row (``|L^{-1} x|^2``, one
    (D, D) product) and only enters the log normaliser, not the responsibilities.
    """
    z = densities.inverse_factors(params.scale_tril[:1])[0] @ xT
    return -0.5 * jnp.sum(z * z, axis=0)


def e_step(params: GMMParams, F: jnp.ndarray, covariance_type: str) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Log normaliser and responsibilities.

    Parameters
    ----------
    params : GMMParams
    F : array, shape (n_obs, n_stats)
        ``features(X, covariance_type)``.
    covariance_type : str

    Returns
    -------
    log_norm : array, shape (n_obs,)
        ``log p(x_i | params)``.
    resp : array, shape (n_obs, n_components)
        Responsibilities; each row sums to one.
    """
    log_norm, e, total = softmax_parts(F @ coefficients(params, covariance_type), axis=1)
    if covariance_type == "tied":
        log_norm = log_norm + tied_quadratic(params, F[:, 1:].T)
    return log_norm, e / total


def to_blocks(F: jnp.ndarray, w: jnp.ndarray, block_size: int = 4096) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Split rows into feature-major blocks, padding with zero-weight rows.

    Returns ``F`` as (n_blocks, n_stats, block_size) and ``w`` as (n_blocks, block_size);
    with fewer rows than ``block_size`` there is one block of all rows. Observations run
    along the last, contiguous axis: XLA's dots and the softmax over components vectorise
    along it.

    Parameters
    ----------
    F : array, shape (n_obs, n_stats)
    w : array, shape (n_obs,)
    block_size : int

    Returns
    -------
    F_blocks : array, shape (n_blocks, n_stats, block_size)
    w_blocks : array, shape (n_blocks, block_size)
    """
    n_obs = F.shape[0]
    block_size = min(block_size, n_obs)
    n_blocks = -(-n_obs // block_size)
    pad = n_blocks * block_size - n_obs
    F = jnp.concatenate([F, jnp.zeros((pad, F.shape[1]), F.dtype)]) if pad else F
    w = jnp.concatenate([w, jnp.zeros(pad, w.dtype)]) if pad else w
    return jnp.swapaxes(F.reshape(n_blocks, block_size, -1), 1, 2), w.reshape(n_blocks, block_size)


def sufficient_stats(
    params: GMMParams,
    F_blocks: jnp.ndarray,
    w_blocks: jnp.ndarray,
    covariance_type: str,
    block_features: Callable | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """E-step fused with the M-step's statistics, one pass over the data.

    Each block is read once while it sits in cache: logits, responsibilities and its
    contribution to ``S`` are computed together, because EM on large data is bound by
    memory traffic rather than arithmetic.

    Parameters
    ----------
    params : GMMParams
    F_blocks : array, shape (n_blocks, n_stats, block_size)
    w_blocks : array, shape (n_blocks, block_size)
    covariance_type : str
    block_features : callable, optional
        Maps each of ``F_blocks``'s blocks to its features (n_stats, block_size) first, in
        the scan, so that only one block's features are ever built.

    Returns
    -------
    S : array, shape (n_stats, n_components)
        ``F.T @ (w * resp)``.
    log_lik : scalar
        ``sum_i w_i log p(x_i | params)``.
    """
    CT = coefficients(params, covariance_type).T

    def block(carry, fw):
        fT, w = fw
        fT = fT if block_features is None else block_features(fT)
        log_norm, e, total = softmax_parts(CT @ fT, axis=0)
        if covariance_type == "tied":
            log_norm = log_norm + tied_quadratic(params, fT[1:])
        resp_T = e * (w / total)
        return (carry[0] + fT @ resp_T.T, carry[1] + w @ log_norm), None

    init = (jnp.zeros((CT.shape[1], CT.shape[0]), F_blocks.dtype), jnp.zeros((), F_blocks.dtype))
    (S, log_lik), _ = jax.lax.scan(block, init, (F_blocks, w_blocks))
    return S, log_lik


def _centred_moments(r, Y, covariance_type: str):
    """Sum counts, sums and second moments of ``Y`` (K, D, B) weighted by ``r`` (K, B).

    Returns ``S`` of shape (n_stats, n_components) in the layout of ``sufficient_stats``,
    except that ``tied`` gets the per-component second moments of ``full``.
    """
    counts = jnp.sum(r, axis=1)
    sums = jnp.einsum("kb,kdb->dk", r, Y)
    if covariance_type in ("full", "tied"):
        rows, cols = jnp.triu_indices(Y.shape[1])
        second = jnp.einsum("kb,kdb,keb->kde", r, Y, Y)[:, rows, cols].T
    else:
        second = jnp.einsum("kb,kdb->dk", r, Y * Y)
    return jnp.concatenate([counts[None], sums, second], axis=0)


def centred_stats(
    params: GMMParams, X_blocks: jnp.ndarray, w_blocks: jnp.ndarray, covariance_type: str
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """E-step and statistics about each component's current mean, one pass over the data.

    The float32 path. The moment expansion of ``sufficient_stats`` subtracts
    ``E_k[x x^T]`` and ``mu_k mu_k^T``, which cancel to ``eps * (|mu_k| / sigma_k)**2``
    relative error: in float32 a cluster a thousand standard deviations from the data's
    mean loses its covariance. Here every row is shifted by each component's mean first
    (``K`` whitening products per block instead of one wide GEMM), so only the spread
    within a component is ever summed.

    Parameters
    ----------
    params : GMMParams
    X_blocks : array, shape (n_blocks, n_features, block_size)
        Centred data in feature-major blocks (``to_blocks(X, w)``).
    w_blocks : array, shape (n_blocks, block_size)
    covariance_type : str

    Returns
    -------
    S : array, shape (n_stats, n_components)
        Weighted counts, and sums and second moments of ``x - mu_k`` (``full``'s layout
        for ``tied``); ``m_step(..., centre=params.means)`` turns them into parameters.
    log_lik : scalar
        ``sum_i w_i log p(x_i | params)``.
    """
    means = params.means
    n_features = means.shape[-1]
    logits_of = centred_logits(params)

    def block(carry, xw):
        xT, w = xw
        logits, Y = logits_of(xT)
        log_norm, e, total = softmax_parts(logits, axis=0)
        r = e * (w / total)
        return (carry[0] + _centred_moments(r, Y, covariance_type), carry[1] + w @ log_norm), None

    n_out = n_stats(n_features, "full" if covariance_type == "tied" else covariance_type)
    init = (jnp.zeros((n_out, means.shape[0]), X_blocks.dtype), jnp.zeros((), X_blocks.dtype))
    (S, log_lik), _ = jax.lax.scan(block, init, (X_blocks, w_blocks))
    return S, log_lik


def centred_logits(params: GMMParams) -> Callable:
    """Return ``block -> (logits, Y)`` for feature-major blocks ``xT`` (n_features, B) of centred data.

    ``logits`` (K, B) is ``log w_k + log N(x | mu_k, Sigma_k)`` computed from ``Y = x - mu_k``
    (K, n_features, B), as ``centred_stats`` needs it.
    """
    weights, means, scale_tril = params
    inv_tril = densities.inverse_factors(scale_tril)
    const = jnp.log(weights) - 0.5 * means.shape[-1] * LOG_2PI - 0.5 * densities.log_det(scale_tril)

    def logits_of(xT):
        Y = xT[None] - means[:, :, None]
        white = jnp.einsum("kij,kjb->kib", inv_tril, Y)
        return const[:, None] - 0.5 * jnp.sum(white * white, axis=1), Y

    return logits_of


def centred_stats_from_resp(
    X_blocks: jnp.ndarray, rw_blocks: jnp.ndarray, centre: jnp.ndarray, covariance_type: str
) -> jnp.ndarray:
    """``centred_stats``'s ``S`` for given weighted responsibilities ``rw_blocks`` (n_blocks, K, B).

    Starts EM from responsibilities (k-means and the other inits) without the moment
    expansion's cancellation.

    Parameters
    ----------
    X_blocks : array, shape (n_blocks, n_features, block_size)
    rw_blocks : array, shape (n_blocks, n_components, block_size)
    centre : array, shape (n_components, n_features)
        Each component's reference point, usually its weighted mean.
    covariance_type : str

    Returns
    -------
    array, shape (n_stats, n_components)
    """

    def block(carry, xr):
        xT, r = xr
        return carry + _centred_moments(r, xT[None] - centre[:, :, None], covariance_type), None

    n_features, n_components = centre.shape[1], centre.shape[0]
    n_out = n_stats(n_features, "full" if covariance_type == "tied" else covariance_type)
    S, _ = jax.lax.scan(block, jnp.zeros((n_out, n_components), X_blocks.dtype), (X_blocks, rw_blocks))
    return S
