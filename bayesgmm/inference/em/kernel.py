"""EM for Gaussian mixtures as pure JAX functions, laid out like a sampler kernel.

One EM iteration needs only two matrix products over the data (see ``stats``): the
E-step ``logits = F @ C(params)`` and the M-step's statistics ``S = F.T @ (w * resp)``, with
``F`` a fixed feature map of the data, built once per fit. The data are centred on their
(weighted) mean before ``F`` is built, which keeps the moment expansion's cancellation
error at ``eps * (spread / component scale)**2``; parameters inside this module are in
those centred coordinates, and ``fit_em`` maps them back. That error is negligible in
float64 but not in float32, so float32 data take ``stats.centred_stats`` instead,
which sums each row about each component's mean.

The state is a NamedTuple, ``step`` is pure and ``run_em`` drives it with ``lax.while_loop``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bayesgmm.inference.em.mclust_models import sklearn_layout
from bayesgmm.inference.em.mstep import EMPrior, log_prior, m_step
from bayesgmm.inference.em.shards import over_shards
from bayesgmm.inference.em.stats import (
    centred_logits,
    centred_stats,
    centred_stats_from_resp,
    coefficients,
    e_step,
    features,
    second_moment,
    softmax_parts,
    sufficient_stats,
    tied_quadratic,
    to_blocks,
)
from bayesgmm.params import GMMParams

__all__ = [
    "EMData",
    "EMPrior",
    "EMState",
    "coefficients",
    "e_step",
    "em_data",
    "features",
    "init_state",
    "data_stats",
    "log_prior",
    "m_step",
    "params_from_resp",
    "run_em",
    "step",
    "update",
    "sufficient_stats",
]


class EMData(NamedTuple):
    """What an EM iteration reads: the data's features in blocks, and constants of the data.

    Attributes
    ----------
    F_blocks : array, shape (n_blocks, n_stats, block_size)
        ``features(Z)`` in feature-major row blocks, zero-weight rows padding the last one;
        for float32 data the data themselves, shape (n_blocks, n_features, block_size),
        which ``centred_stats`` reads.
    w_blocks : array, shape (n_blocks, block_size)
        Observation weights in the same blocks.
    second : array, shape (n_features (n_features + 1) / 2,) or None
        Tied only: the total weighted second moment (the M-step's constant statistic).
    """

    F_blocks: jnp.ndarray
    w_blocks: jnp.ndarray
    second: jnp.ndarray | None


def em_data(Z: jnp.ndarray, w: jnp.ndarray, covariance_type: str, block_size: int = 4096) -> EMData:
    """Build the features, blocks and constant statistics of centred data.

    Parameters
    ----------
    Z : array, shape (n_obs, n_features)
        Centred data; float32 data are kept as they are, for ``centred_stats``.
    w : array, shape (n_obs,)
        Observation weights.
    covariance_type : str
    block_size : int
        Rows per block.

    Returns
    -------
    EMData
    """
    covariance_type = sklearn_layout(covariance_type)
    if _is_centred(Z):
        return EMData(*to_blocks(Z, w, block_size), None)
    F_blocks, w_blocks = to_blocks(features(Z, covariance_type), w, block_size)
    second = second_moment(Z, w) if covariance_type == "tied" else None
    return EMData(F_blocks, w_blocks, second)


def _is_centred(array) -> bool:
    # float32 cannot afford the moment expansion's cancellation (see ``centred_stats``).
    return array.dtype == jnp.float32


def data_stats(
    params: GMMParams, data: EMData, covariance_type: str, n_shards: int = 1
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray | None]:
    """Make one pass over the data: the statistics for ``m_step(S, ..., centre=centre)``.

    Parameters
    ----------
    params : GMMParams
        Current parameters (centred coordinates).
    data : EMData
    covariance_type : str
    n_shards : int
        Devices the row blocks are spread over (``shards.over_shards``).

    Returns
    -------
    S : array, shape (n_stats, n_components)
    log_lik : scalar
        ``sum_i w_i log p(x_i | params)``.
    centre : array, shape (n_components, n_features), or None
        None for the moment expansion's statistics (float64), the component means for
        ``centred_stats``'s (float32).
    """
    centred = _is_centred(data.F_blocks)
    layout = sklearn_layout(covariance_type)
    one_pass = partial(centred_stats if centred else sufficient_stats, covariance_type=layout)
    S, log_lik = over_shards(one_pass, n_shards, (True, True))(params, data.F_blocks, data.w_blocks)
    return S, log_lik, params.means if centred else None


def final_e_step(
    params: GMMParams, data: EMData, covariance_type: str, n_shards: int = 1
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Make the last pass over the data: the log-likelihood and each row's most probable component.

    Only the E-step: half the arithmetic of ``data_stats``.

    Parameters
    ----------
    params : GMMParams
        Final parameters (centred coordinates).
    data : EMData
    covariance_type : str
    n_shards : int
        As for ``data_stats``.

    Returns
    -------
    log_lik : scalar
        ``sum_i w_i log p(x_i | params)``.
    labels : int32 array, shape (n_blocks * block_size,)
        ``argmax_k p(k | x_i)`` for every row, the padding rows included.
    """
    centred = _is_centred(data.F_blocks)
    covariance_type = sklearn_layout(covariance_type)
    CT = None if centred else coefficients(params, covariance_type).T
    centred_of = centred_logits(params) if centred else None

    def block(total, fw):
        fT, w = fw
        logits = centred_of(fT)[0] if centred else CT @ fT
        log_norm = softmax_parts(logits, axis=0)[0]
        if covariance_type == "tied" and not centred:
            log_norm = log_norm + tied_quadratic(params, fT[1:])
        return total + w @ log_norm, jnp.argmax(logits, axis=0).astype(jnp.int32)

    def one_pass(params, F_blocks, w_blocks):
        return jax.lax.scan(block, jnp.zeros((), w_blocks.dtype), (F_blocks, w_blocks))

    log_lik, labels = over_shards(one_pass, n_shards, (True, False))(params, data.F_blocks, data.w_blocks)
    return log_lik, labels.reshape(-1)


def params_from_resp(
    Z: jnp.ndarray,
    w: jnp.ndarray,
    resp: jnp.ndarray,
    data: EMData,
    reg_covar: float | jnp.ndarray,
    covariance_type: str,
) -> tuple[GMMParams, jnp.ndarray]:
    """Run an M-step from given responsibilities of centred data (EM's start).

    Parameters
    ----------
    Z : array, shape (n_obs, n_features)
    w : array, shape (n_obs,)
    resp : array, shape (n_obs, n_components)
    data : EMData
        ``em_data(Z, w, covariance_type)``.
    reg_covar : float
    covariance_type : str

    Returns
    -------
    params : GMMParams
    ok : bool scalar
        As for ``m_step``.
    """
    rw = resp * w[:, None]
    if _is_centred(Z):
        nk = jnp.sum(rw, axis=0) + 10 * jnp.finfo(Z.dtype).eps
        centre = (rw.T @ Z) / nk[:, None]
        rw_blocks, _ = to_blocks(rw, w, data.F_blocks.shape[-1])
        S = centred_stats_from_resp(data.F_blocks, rw_blocks, centre, sklearn_layout(covariance_type))
        return m_step(S, reg_covar, covariance_type, None, None, centre)
    return m_step(
        features(Z, sklearn_layout(covariance_type)).T @ rw, reg_covar, covariance_type, None, data.second
    )


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
        False once an M-step produced a covariance that is not positive definite (or not
        finite); the driver stops and ``params`` keeps the last valid values.
    lower_bounds : array, shape (n_history,)
        History of ``lower_bound``; NaN after the last iteration.
    """

    params: GMMParams
    lower_bound: jnp.ndarray
    n_iter: jnp.ndarray
    converged: jnp.ndarray
    ok: jnp.ndarray
    lower_bounds: jnp.ndarray


def step(
    state: EMState,
    data: EMData,
    tol: float | jnp.ndarray,
    reg_covar: float | jnp.ndarray,
    map_prior: EMPrior | None,
    covariance_type: str,
    n_shards: int = 1,
) -> EMState:
    """Run one EM iteration: E-step at ``state.params``, then M-step (pure).

    Parameters
    ----------
    state : EMState
    data : EMData
        From ``em_data``.
    tol : float
        Convergence threshold on the change of ``lower_bound``.
    reg_covar : float
    map_prior : EMPrior or None
        Conjugate prior of MAP-EM; None is maximum likelihood.
    covariance_type : str
    n_shards : int
        As for ``data_stats``.

    Returns
    -------
    EMState
    """
    S, log_lik, centre = data_stats(state.params, data, covariance_type, n_shards)
    stats = (S, log_lik, centre, data.second, jnp.sum(data.w_blocks))
    return update(state, stats, tol, reg_covar, map_prior, covariance_type)


def update(
    state: EMState,
    stats: tuple,
    tol: float | jnp.ndarray,
    reg_covar: float | jnp.ndarray,
    map_prior: EMPrior | None,
    covariance_type: str,
) -> EMState:
    """Finish an EM iteration from the statistics of its pass over the data: the M-step (pure).

    ``step`` is ``data_stats`` then ``update``; a pass that streams the data in chunks
    (``chunked``) sums the statistics of its chunks and calls ``update`` the same way.

    Parameters
    ----------
    state : EMState
    stats : tuple
        ``(S, log_lik, centre)`` of ``data_stats`` at ``state.params``, then ``second``
        (``EMData.second``) and the total weight of the data.
    tol, reg_covar, map_prior, covariance_type
        As for ``step``.

    Returns
    -------
    EMState
    """
    S, log_lik, centre, second, total_weight = stats
    lower_bound = (log_lik + log_prior(state.params, covariance_type, map_prior)) / total_weight
    new_params, ok = m_step(S, reg_covar, covariance_type, map_prior, second, centre, state.params)
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


def init_state(params: GMMParams, lower_bound: float | jnp.ndarray, n_history: int) -> EMState:
    """Make the starting state.

    Parameters
    ----------
    params : GMMParams
    lower_bound : float
        ``-inf`` except when warm-starting.
    n_history : int
        Length of the lower-bound history (static, at least ``max_iter``).

    Returns
    -------
    EMState
    """
    dtype = params.means.dtype
    return EMState(
        params=params,
        lower_bound=jnp.asarray(lower_bound, dtype),
        n_iter=jnp.zeros((), jnp.int32),
        converged=jnp.zeros((), bool),
        ok=jnp.ones((), bool),
        lower_bounds=jnp.full((n_history,), jnp.nan, dtype),
    )


def run_em(
    params: GMMParams,
    data: EMData,
    lower_bound: float | jnp.ndarray,
    tol: float | jnp.ndarray,
    reg_covar: float | jnp.ndarray,
    map_prior: EMPrior | None,
    *,
    covariance_type: str,
    max_iter: int | jnp.ndarray,
    n_history: int | None = None,
    n_shards: int = 1,
) -> EMState:
    """Iterate ``step`` until ``|change| < tol``, ``max_iter`` steps or a collapse.

    Parameters
    ----------
    params : GMMParams
        Starting parameters (centred coordinates).
    data : EMData
    lower_bound : float
        What the first iteration's lower bound is compared with.
    tol, reg_covar : float
    map_prior : EMPrior or None
    covariance_type : str
    max_iter : int
        May be traced when the static ``n_history >= max_iter`` is given, so that one
        compiled program serves every ``max_iter`` up to ``n_history``.
    n_history : int, optional
    n_shards : int
        As for ``data_stats``.

    Returns
    -------
    EMState
    """
    state = init_state(params, lower_bound, max_iter if n_history is None else n_history)

    def cond(s):
        return (s.n_iter < max_iter) & ~s.converged & s.ok

    def body(s):
        return step(s, data, tol, reg_covar, map_prior, covariance_type, n_shards)

    return jax.lax.while_loop(cond, body, state)
