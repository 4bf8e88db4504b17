"""EM for Gaussian mixtures as pure JAX functions, laid out like a sampler kernel.

One EM iteration needs only two matrix products over the data. Every covariance type's
log density is linear in a fixed feature map of one observation,
``F(x) = [1, x, q(x)]`` with ``q(x)`` the upper triangle of ``x x^T`` (full, tied) or
``x * x`` (diag, spherical). So

- E-step: ``logits = F @ C(params)``, shape (n_obs, n_components), one GEMM;
- M-step: ``S = F.T @ (w * resp)``, shape (n_stats, n_components), one GEMM: the weighted
  counts, sums and second moments from which every covariance type's update follows.

``F`` depends on the data only and is built once per fit. This is the full-covariance
analogue of scikit-learn's own diag/spherical formulas. The data are centred on their
(weighted) mean before ``F`` is built, which keeps the moment expansion's cancellation
error at ``eps * (spread / component scale)**2``; parameters inside this module are in
those centred coordinates, and ``fit_em`` maps them back.

The state is a NamedTuple, ``step`` is pure, ``run_em`` drives it with ``lax.while_loop``
and ``run_em_restarts`` runs several starts in parallel with ``vmap``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp

from bayesgmm.params import GMMParams

_LOG_2PI = float(jnp.log(2.0 * jnp.pi))


class EMPrior(NamedTuple):
    """Conjugate prior for MAP-EM (Fraley & Raftery 2007), in the fit's coordinates.

    Weights ~ Dirichlet(``weight_concentration``); given the covariance, each mean ~
    Normal(``mean``, covariance / ``mean_precision``); each covariance ~ inverse-Wishart
    (``dof``, ``scale``). ``diag`` uses the diagonal of ``scale`` (inverse-gamma per
    feature) and ``spherical`` the mean of its diagonal.

    Attributes
    ----------
    mean : array, shape (n_features,)
    mean_precision : float
        Pseudo-count kappa of the mean prior.
    dof : float
        Degrees of freedom nu of the inverse-Wishart prior.
    scale : array, shape (n_features, n_features)
        Scale matrix Psi of the inverse-Wishart prior.
    weight_concentration : float
        Dirichlet concentration alpha (1 leaves the weights unpenalised).
    """

    mean: jnp.ndarray
    mean_precision: jnp.ndarray
    dof: jnp.ndarray
    scale: jnp.ndarray
    weight_concentration: jnp.ndarray


class EMState(NamedTuple):
    """State of one EM run.

    Attributes
    ----------
    params : GMMParams
        Current parameters (centred coordinates).
    lower_bound : scalar
        Objective at the parameters *before* the last M-step (scikit-learn's convention):
        mean log-likelihood per unit weight, plus log prior / total weight for MAP-EM.
    n_iter : int scalar
    converged : bool scalar
    ok : bool scalar
        False once an M-step produced an empty component or a covariance that is not
        positive definite; the driver stops and ``params`` keeps the last valid values.
    lower_bounds : array, shape (max_iter,)
        History of ``lower_bound``; NaN after the last iteration.
    """

    params: GMMParams
    lower_bound: jnp.ndarray
    n_iter: jnp.ndarray
    converged: jnp.ndarray
    ok: jnp.ndarray
    lower_bounds: jnp.ndarray


def features(X, covariance_type: str) -> jnp.ndarray:
    """Data-only features ``[1, x, q(x)]``, shape (n_obs, n_stats).

    ``n_stats`` is ``1 + n_features + n_features (n_features + 1) / 2`` for full and
    tied, ``1 + 2 n_features`` for diag and spherical.
    """
    n_obs, n_features = X.shape
    if covariance_type in ("full", "tied"):
        rows, cols = jnp.triu_indices(n_features)
        quad = X[:, rows] * X[:, cols]
    else:
        quad = X * X
    return jnp.concatenate([jnp.ones((n_obs, 1), X.dtype), X, quad], axis=1)


def _precisions(scale_tril):
    """Precision matrices and ``-0.5 log|Sigma|`` from the Cholesky factors, per component."""
    eye = jnp.eye(scale_tril.shape[-1], dtype=scale_tril.dtype)
    # The moment expansion needs the precision itself; build it from L^{-1} by a
    # triangular solve (as scikit-learn does) rather than inverting Sigma.
    inv_tril = jax.vmap(lambda L: solve_triangular(L, eye, lower=True))(scale_tril)
    precisions = jnp.swapaxes(inv_tril, -1, -2) @ inv_tril
    half_log_det = -jnp.sum(jnp.log(jnp.diagonal(scale_tril, axis1=-2, axis2=-1)), axis=-1)
    return precisions, half_log_det


def coefficients(params: GMMParams, covariance_type: str) -> jnp.ndarray:
    """Coefficients ``C`` with ``features(X) @ C = log w_k + log N(x | mu_k, Sigma_k)``.

    Returns
    -------
    array, shape (n_stats, n_components)
    """
    weights, means, scale_tril = params
    n_features = means.shape[-1]
    prec, half_log_det = _precisions(scale_tril)
    lin = jnp.einsum("kij,kj->ki", prec, means)
    const = (
        jnp.log(weights) - 0.5 * n_features * _LOG_2PI + half_log_det - 0.5 * jnp.sum(means * lin, axis=-1)
    )
    if covariance_type in ("full", "tied"):
        rows, cols = jnp.triu_indices(n_features)
        # An off-diagonal product x_i x_j appears twice in x^T P x.
        quad = -0.5 * prec[:, rows, cols] * jnp.where(rows == cols, 1.0, 2.0)
    else:
        quad = -0.5 * jnp.diagonal(prec, axis1=-2, axis2=-1)
    return jnp.concatenate([const[:, None], lin, quad], axis=1).T


def e_step(params: GMMParams, F, covariance_type: str):
    """Log normaliser and responsibilities.

    Returns
    -------
    log_norm : array, shape (n_obs,)
        ``log p(x_i | params)``.
    resp : array, shape (n_obs, n_components)
        Responsibilities; each row sums to one.
    """
    logits = F @ coefficients(params, covariance_type)
    log_norm = logsumexp(logits, axis=1)
    return log_norm, jnp.exp(logits - log_norm[:, None])


def _unpack_symmetric(v, n_features):
    """Upper-triangle vectors, shape (n, n_features (n_features + 1) / 2) -> (n, D, D)."""
    rows, cols = jnp.triu_indices(n_features)
    M = jnp.zeros((v.shape[0], n_features, n_features), v.dtype).at[:, rows, cols].set(v)
    return M + jnp.swapaxes(M, -1, -2) * (1.0 - jnp.eye(n_features, dtype=v.dtype))


def m_step(S, reg_covar, covariance_type: str, prior: EMPrior | None = None):
    """New parameters from the sufficient statistics ``S = F.T @ (w * resp)``.

    Follows scikit-learn's ``_estimate_gaussian_parameters`` (``nk + 10 eps``, ``reg_covar``
    added to the diagonal); with a prior, the posterior-mode updates of Fraley & Raftery
    (2007).

    Parameters
    ----------
    S : array, shape (n_stats, n_components)
    reg_covar : float
    covariance_type : str
    prior : EMPrior or None

    Returns
    -------
    params : GMMParams
    ok : bool scalar
        False when a component is empty or a covariance is not positive definite.
    """
    dtype = S.dtype
    eps = jnp.finfo(dtype).eps
    n_stats, n_components = S.shape
    n_features = (n_stats - 1) // 2 if covariance_type in ("diag", "spherical") else _n_feat_full(n_stats)
    counts = S[0]
    nk = counts + 10 * eps
    sums = S[1 : 1 + n_features].T
    xbar = sums / nk[:, None]
    second = S[1 + n_features :].T / nk[:, None]
    eye = jnp.eye(n_features, dtype=dtype)
    if covariance_type in ("full", "tied"):
        # Scatter about each component mean, per unit weight: E_k[x x^T] - xbar xbar^T.
        scatter = _unpack_symmetric(second, n_features) - xbar[:, :, None] * xbar[:, None, :]
    else:
        scatter = second - xbar * xbar
    if prior is None:
        means = xbar
        if covariance_type == "full":
            cov = scatter
        elif covariance_type == "tied":
            cov = jnp.sum(nk[:, None, None] * scatter, axis=0) / jnp.sum(nk)
        else:
            cov = scatter
        weights = nk / jnp.sum(nk)
    else:
        means, cov, weights = _map_update(nk, xbar, scatter, covariance_type, prior)
    if covariance_type == "spherical":
        cov = jnp.mean(cov, axis=-1, keepdims=True) * jnp.ones((1, n_features), dtype)
    if covariance_type in ("diag", "spherical"):
        scale_tril = jax.vmap(jnp.diag)(jnp.sqrt(cov + reg_covar))
    else:
        cov = cov + reg_covar * eye
        if covariance_type == "tied":
            cov = jnp.broadcast_to(cov, (n_components, n_features, n_features))
        scale_tril = jnp.linalg.cholesky(cov)
    diag = jnp.diagonal(scale_tril, axis1=-2, axis2=-1)
    ok = jnp.all(jnp.isfinite(scale_tril)) & jnp.all(diag > 0) & jnp.all(counts > jnp.sqrt(eps))
    return GMMParams(weights, means, scale_tril), ok


def _n_feat_full(n_stats):
    # n_stats = 1 + D + D (D + 1) / 2  =>  D = (-3 + sqrt(1 + 8 n_stats)) / 2
    return int(round((-3 + (1 + 8 * n_stats) ** 0.5) / 2))


def _map_update(nk, xbar, scatter, covariance_type, prior):
    """Posterior-mode updates for the conjugate prior (Fraley & Raftery 2007, Table 2)."""
    kappa, nu, psi, alpha = prior.mean_precision, prior.dof, prior.scale, prior.weight_concentration
    n_components, n_features = xbar.shape
    means = (nk[:, None] * xbar + kappa * prior.mean) / (nk + kappa)[:, None]
    d = xbar - prior.mean
    shrink = kappa * nk / (kappa + nk)
    if covariance_type in ("full", "tied"):
        num = nk[:, None, None] * scatter + shrink[:, None, None] * d[:, :, None] * d[:, None, :]
        if covariance_type == "full":
            cov = (psi + num) / (nu + nk + n_features + 2)[:, None, None]
        else:
            cov = (psi + jnp.sum(num, axis=0)) / (nu + jnp.sum(nk) + n_features + 1 + n_components)
    elif covariance_type == "diag":
        cov = (jnp.diagonal(psi) + nk[:, None] * scatter + shrink[:, None] * d * d) / (nu + nk + 3)[:, None]
    else:
        tr = jnp.sum(nk[:, None] * scatter + shrink[:, None] * d * d, axis=-1)
        var = (jnp.trace(psi) / n_features + tr) / (nu + (nk + 1) * n_features + 2)
        cov = var[:, None] * jnp.ones((1, n_features), xbar.dtype)
    weights = (nk + alpha - 1) / (jnp.sum(nk) + n_components * (alpha - 1))
    return means, cov, weights


def log_prior(params: GMMParams, covariance_type: str, prior: EMPrior | None):
    """Log prior density up to a constant (0 without a prior): the MAP-EM objective's extra term."""
    if prior is None:
        return jnp.zeros((), params.means.dtype)
    weights, means, scale_tril = params
    prec, half_log_det = _precisions(scale_tril)
    n_features = means.shape[-1]
    d = means - prior.mean
    lp_weights = (prior.weight_concentration - 1) * jnp.sum(jnp.log(weights))
    mean_quad = prior.mean_precision * jnp.einsum("kij,ki,kj->k", prec, d, d)
    if covariance_type == "tied":
        # One shared inverse-Wishart factor, K normal factors for the means.
        iw = (prior.dof + n_features + 1) * half_log_det[0] - 0.5 * jnp.trace(prec[0] @ prior.scale)
        return lp_weights + iw + jnp.sum(half_log_det - 0.5 * mean_quad)
    if covariance_type == "full":
        power, psi = prior.dof + n_features + 2, prior.scale
    elif covariance_type == "diag":
        # Inverse-gamma per feature; half_log_det sums over features.
        power, psi = prior.dof + 3, jnp.diag(jnp.diagonal(prior.scale))
    else:
        # Inverse-gamma(nu / 2, s2 / 2) on sigma^2 with s2 = tr(Psi) / D; half_log_det is
        # -D/2 log sigma^2, so this power gives sigma^2 the exponent -(nu + 2 + D) / 2.
        power = (prior.dof + 2) / n_features + 1
        psi = jnp.trace(prior.scale) / n_features**2 * jnp.eye(n_features)
    quad = mean_quad + jnp.einsum("kij,ji->k", prec, psi)
    return lp_weights + jnp.sum(power * half_log_det - 0.5 * quad)


def to_blocks(F, w, block_size: int = 4096):
    """Split rows into blocks, padding with zero-weight rows.

    Returns ``F`` as (n_blocks, block_size, n_stats) and ``w`` as (n_blocks, block_size);
    with fewer rows than ``block_size`` there is one block of all rows.
    """
    n_obs = F.shape[0]
    block_size = min(block_size, n_obs)
    n_blocks = -(-n_obs // block_size)
    pad = n_blocks * block_size - n_obs
    F = jnp.concatenate([F, jnp.zeros((pad, F.shape[1]), F.dtype)]) if pad else F
    w = jnp.concatenate([w, jnp.zeros(pad, w.dtype)]) if pad else w
    return F.reshape(n_blocks, block_size, -1), w.reshape(n_blocks, block_size)


def sufficient_stats(params: GMMParams, F_blocks, w_blocks, covariance_type: str):
    """E-step fused with the M-step's statistics, one pass over the data.

    Each block is read once while it sits in cache: logits, responsibilities and its
    contribution to ``S`` are computed together, because EM on large data is bound by
    memory traffic rather than arithmetic.

    Returns
    -------
    S : array, shape (n_stats, n_components)
        ``F.T @ (w * resp)``.
    log_lik : scalar
        ``sum_i w_i log p(x_i | params)``.
    """
    C = coefficients(params, covariance_type)

    def block(carry, fw):
        f, w = fw
        logits = f @ C
        log_norm = logsumexp(logits, axis=1)
        resp = jnp.exp(logits - log_norm[:, None]) * w[:, None]
        return (carry[0] + f.T @ resp, carry[1] + w @ log_norm), None

    init = (jnp.zeros((F_blocks.shape[-1], C.shape[1]), F_blocks.dtype), jnp.zeros((), F_blocks.dtype))
    (S, log_lik), _ = jax.lax.scan(block, init, (F_blocks, w_blocks))
    return S, log_lik


def step(state: EMState, F_blocks, w_blocks, tol, reg_covar, prior, covariance_type: str) -> EMState:
    """One EM iteration: E-step at ``state.params`` then M-step (pure).

    ``F_blocks`` and ``w_blocks`` come from ``to_blocks(features(X), w)``.
    """
    S, log_lik = sufficient_stats(state.params, F_blocks, w_blocks, covariance_type)
    lower_bound = (log_lik + log_prior(state.params, covariance_type, prior)) / jnp.sum(w_blocks)
    new_params, ok = m_step(S, reg_covar, covariance_type, prior)
    ok = ok & jnp.isfinite(lower_bound)
    params = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_params, state.params)
    converged = ok & (jnp.abs(lower_bound - state.lower_bound) < tol)
    return EMState(
        params=params,
        lower_bound=lower_bound,
        n_iter=state.n_iter + 1,
        converged=converged,
        ok=ok,
        lower_bounds=state.lower_bounds.at[state.n_iter].set(lower_bound),
    )


def init_state(params: GMMParams, lower_bound, max_iter: int) -> EMState:
    """Starting state; ``lower_bound`` is ``-inf`` except when warm-starting."""
    dtype = params.means.dtype
    return EMState(
        params=params,
        lower_bound=jnp.asarray(lower_bound, dtype),
        n_iter=jnp.zeros((), jnp.int32),
        converged=jnp.zeros((), bool),
        ok=jnp.ones((), bool),
        lower_bounds=jnp.full((max_iter,), jnp.nan, dtype),
    )


def run_em(
    params, F_blocks, w_blocks, lower_bound, tol, reg_covar, prior, *, covariance_type: str, max_iter: int
):
    """Iterate ``step`` until ``|change| < tol``, ``max_iter`` steps or a collapse."""
    state = init_state(params, lower_bound, max_iter)

    def cond(s):
        return (s.n_iter < max_iter) & ~s.converged & s.ok

    def body(s):
        return step(s, F_blocks, w_blocks, tol, reg_covar, prior, covariance_type)

    return jax.lax.while_loop(cond, body, state)


@partial(jax.jit, static_argnames=("covariance_type", "max_iter"))
def run_em_restarts(
    params, F_blocks, w_blocks, lower_bound, tol, reg_covar, prior, *, covariance_type, max_iter
):
    """``run_em`` over a leading restart axis of ``params`` (and ``lower_bound``), in parallel."""
    run = partial(run_em, covariance_type=covariance_type, max_iter=max_iter)
    return jax.vmap(run, in_axes=(0, None, None, 0, None, None, None))(
        params, F_blocks, w_blocks, lower_bound, tol, reg_covar, prior
    )
