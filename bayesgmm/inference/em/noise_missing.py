"""EM with a uniform noise component for data with missing values (missing at random).

A row with observed features ``O`` has the density ``pi_0 / V_O + sum_k pi_k N(x_O | mu_O,
S_OO)``: the Gaussians' marginals over the missing features (:mod:`.missing`) and the
noise's, the uniform density of the noise box's projection on ``O``, ``V_O = prod_{j in O}
(upper_j - lower_j)``. The box is the bounding box of each feature's observed values, or
that box scaled to ``noise_volume`` (:func:`bayesgmm.noise_region.noise_box`); for a
complete row ``V_O`` is the box's volume ``V``, as without missing values.

EM takes the E-step of both (the noise's column is one more column of the joint log
densities) and the M-step of EM for incomplete data on the Gaussian columns, whose
responsibilities no longer sum to one in a row; the noise weight is the mean noise
responsibility. The start is ``fit_em(noise="uniform")`` on a random (hot-deck)
completion of the data, as ``missing="marginalize"`` starts without noise.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from bayesgmm import incomplete
from bayesgmm.inference.em import missing, noise
from bayesgmm.noise_region import noise_box, stored_box
from bayesgmm.params import GMMParams

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from bayesgmm.inference.em.result import EMResult


def joint_log_prob(
    params: GMMParams, noise_weight: Any, log_volume: Any, log_ranges: jnp.ndarray, X: jnp.ndarray,
    observed: jnp.ndarray,
) -> jnp.ndarray:  # fmt: skip
    """``log pi_k + log N(x_O | mu_O, S_OO)`` and, last, ``log pi_0 - log V_O``, per row.

    Parameters
    ----------
    params : GMMParams
        Gaussian components; their weights sum to ``1 - noise_weight``.
    noise_weight : float
    log_volume : float
        ``log V``, the box's log volume.
    log_ranges : array, shape (n_features,)
        ``log(upper_j - lower_j)`` of the box.
    X : array, shape (n_obs, n_features)
        Values where ``observed``; anything finite elsewhere.
    observed : bool array, shape (n_obs, n_features)

    Returns
    -------
    array, shape (n_obs, n_components + 1)

    Examples
    --------
    >>> p = GMMParams(jnp.array([0.5]), jnp.zeros((1, 2)), jnp.eye(2)[None])
    >>> X, seen = jnp.zeros((1, 2)), jnp.array([[True, False]])
    >>> out = joint_log_prob(p, 0.5, jnp.log(8.0), jnp.log(jnp.array([2.0, 4.0])), X, seen)
    >>> round(float(jnp.exp(out[0, -1])), 6)  # 0.5 / 2: the box's side on the observed feature
    0.25
    """
    gauss = incomplete.joint_observed(params, X, observed)
    unseen = (~observed).astype(gauss.dtype) @ jnp.asarray(log_ranges, gauss.dtype)
    log_noise = jnp.log(jnp.asarray(noise_weight, gauss.dtype)) - jnp.asarray(log_volume, gauss.dtype)
    return jnp.concatenate([gauss, (log_noise + unseen)[:, None]], axis=1)


def joint_log_prob_nan(
    params: GMMParams, noise_weight: float, noise_volume: float, lower: Any, upper: Any, X: np.ndarray
) -> jnp.ndarray:
    """Joint log densities with the noise last of rows where NaN marks a missing value.

    Complete data take :func:`bayesgmm.inference.em.noise.joint_log_prob`'s program. The box
    (``lower``, ``upper``, shape (n_features,)) is needed only when ``X`` holds NaN.

    Returns
    -------
    array, shape (n_obs, n_components + 1)
    """
    X = np.asarray(X, np.float64)
    log_volume = float(np.log(noise_volume))
    observed = ~np.isnan(X)
    if observed.all():
        return noise.joint_log_prob(params, noise_weight, log_volume, jnp.asarray(X))
    lower, upper = stored_box(lower, upper)
    terms = (
        jnp.asarray(np.log(upper - lower)),
        jnp.asarray(np.where(observed, X, 0.0)),
        jnp.asarray(observed),
    )
    return joint_log_prob(params, noise_weight, log_volume, *terms)


def conditional_mean(
    params: GMMParams, noise_weight: float, noise_volume: float, lower: Any, upper: Any, X: np.ndarray
) -> np.ndarray:
    """``E[x | x_obs]`` of each row (NaN: missing) under the mixture with noise.

    Under the noise the missing features are uniform on the box's sides, independent of the
    observed ones, so their mean there is the box's centre; the Gaussians give their
    conditional means. Both are weighted by the row's responsibilities.

    Returns
    -------
    ndarray, shape (n_obs, n_features)
        Observed values as they are.
    """
    X = np.asarray(X, np.float64)
    observed = ~np.isnan(X)
    X0 = jnp.asarray(np.where(observed, X, 0.0))
    resp = np.asarray(
        jax.nn.softmax(joint_log_prob_nan(params, noise_weight, noise_volume, lower, upper, X), axis=1)
    )
    x_hat, _ = incomplete.conditional_moments(params, X0, jnp.asarray(observed))
    centre = (np.asarray(lower, np.float64) + np.asarray(upper, np.float64)) / 2
    mean = np.einsum("nk,nki->ni", resp[:, :-1], np.asarray(x_hat)) + resp[:, -1:] * centre
    return np.where(observed, X, mean)


def step(
    params: GMMParams, noise_weight: Any, data: tuple, covariance_type: str, reg_covar: Any
) -> tuple[GMMParams, jnp.ndarray, jnp.ndarray]:
    """Run one EM iteration (pure).

    ``data`` is ``(X, observed, w, log_volume, log_ranges)`` with ``X`` zero where missing.
    Returns the new parameters, the new noise weight and the mean log-likelihood at the old.
    """
    X, observed, w, log_volume, log_ranges = data
    logits = joint_log_prob(params, noise_weight, log_volume, log_ranges, X, observed)
    rows = jax.nn.logsumexp(logits, axis=1)
    resp = jnp.exp(logits - rows[:, None]) * w[:, None]
    x_hat, C = incomplete.conditional_moments(params, X, observed)
    gauss = missing.m_step(resp[:, :-1], x_hat, C, covariance_type, reg_covar)
    new_noise = jnp.sum(resp[:, -1]) / jnp.sum(w)
    return gauss._replace(weights=gauss.weights * (1 - new_noise)), new_noise, (w @ rows) / jnp.sum(w)


@partial(jax.jit, static_argnames=("covariance_type", "max_iter"))
def run(
    params: GMMParams, noise_weight: Any, data: tuple, covariance_type: str, reg_covar: Any, tol: Any,
    max_iter: int,
) -> tuple[missing.EMLoop, jnp.ndarray, jnp.ndarray]:  # fmt: skip
    """Iterate ``step`` until the mean log-likelihood changes by less than ``tol``.

    Returns the state (``state.carry`` is the parameters and the noise weight), whether it
    converged and the final joint log densities (n_obs, n_components + 1) at the returned
    parameters.
    """
    X, observed, _, log_volume, log_ranges = data

    def advance(carry: tuple) -> tuple[tuple, jnp.ndarray]:
        new, new_noise, at_old = step(*carry, data, covariance_type, reg_covar)
        return (new, new_noise), at_old

    start = (params, jnp.asarray(noise_weight, X.dtype))
    state, converged = missing.iterate(advance, start, tol, max_iter, X.dtype)
    return state, converged, joint_log_prob(*state.carry, log_volume, log_ranges, X, observed)


def fit_noise_missing(
    X: ArrayLike, n_components: int, covariance_type: str, noise_volume: float | None, **options: Any
) -> EMResult:
    """``fit_em`` with ``noise="uniform"`` and ``missing="marginalize"`` on data with NaN.

    ``options`` are ``fit_em``'s other keyword arguments. The box is the bounding box of
    the observed values of the rows with positive weight, or that box scaled to
    ``noise_volume``.

    Returns
    -------
    EMResult
        As ``fit_em(noise="uniform")``'s, with ``X`` holding the NaN; ``log_prob``,
        ``responsibilities`` and ``impute`` take rows with NaN.

    Examples
    --------
    >>> from bayesgmm import fit_em, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> X = np.vstack([X, [[1.0, 120.0], [6.5, np.nan]]])
    >>> X[:3, 1] = np.nan
    >>> res = fit_em(X, 2, noise="uniform", missing="marginalize", seed=0)
    >>> res.labels[-2:].tolist()  # the outlier is noise, even seen on one feature only
    [-1, -1]
    """
    from bayesgmm._validation import column_names
    from bayesgmm.inference.em.fit import _check_sample_weight, fit_em
    from bayesgmm.inference.em.result import EMResult

    names = column_names(X)
    X, observed = missing.check_incomplete(X, n_components)
    w = _check_sample_weight(options["sample_weight"], len(X), np.float64)
    volume = noise.bounding_box_volume(X[w > 0]) if noise_volume is None else float(noise_volume)
    lower, upper = noise_box(X[w > 0], noise_volume)
    rng = missing._numpy_rng(options["seed"])
    completed = missing.hot_deck(X, observed, rng)
    start = fit_em(completed, n_components, covariance_type, **options, noise="uniform", noise_volume=volume)
    data = (
        jnp.asarray(np.where(observed, X, 0.0)), jnp.asarray(observed), jnp.asarray(w), np.log(volume),
        jnp.asarray(np.log(upper - lower)),
    )  # fmt: skip
    params = GMMParams(*(jnp.asarray(a, jnp.float64) for a in start.params))
    state, converged, final = run(
        params, start.noise_weight, data, covariance_type, options["reg_covar"], options["tol"],
        int(options["max_iter"]),
    )  # fmt: skip
    final = np.asarray(final)
    n_iter = int(state.n_iter)
    params, noise_weight = state.carry
    return EMResult(
        params=params,
        covariance_type=covariance_type,
        log_likelihood=float(w @ jax.nn.logsumexp(final, axis=1)),
        lower_bound=float(state.log_lik),
        lower_bounds=np.asarray(state.history[:n_iter]),
        converged=bool(converged),
        n_iter=n_iter,
        X=X,
        sample_weight=None if options["sample_weight"] is None else w,
        labels=noise.labels(final).astype(np.int32),
        feature_names=names,
        noise_weight=float(noise_weight),
        noise_volume=volume,
        noise_lower=lower,
        noise_upper=upper,
    )
