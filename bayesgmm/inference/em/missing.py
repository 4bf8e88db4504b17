"""EM for data with missing values (missing at random): the observed-data likelihood.

A row's likelihood is the mixture density of its observed coordinates, the exact
marginal over the missing ones. EM for incomplete data (Dempster, Laird & Rubin 1977;
Ghahramani & Jordan 1994) takes, for each row and component, the conditional mean
``x_hat`` of the missing coordinates given the observed ones and their conditional
covariance ``C``, and uses ``E[x] = x_hat`` and ``E[x x^T] = x_hat x_hat^T + C`` in the
M-step's sufficient statistics. Each iteration cannot lower the observed-data likelihood.

The masked formula that handles every missingness pattern at once, and the densities
and conditional moments, are in :mod:`bayesgmm.incomplete`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from bayesgmm.incomplete import conditional_moments, joint_observed, observed_log_density
from bayesgmm.params import GMMParams

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from bayesgmm.inference.em.result import EMResult


class EMLoop(NamedTuple):
    """One point of an EM iteration for incomplete data.

    ``carry`` is what a step updates (the parameters, and the noise weight with a noise
    component); ``log_lik`` is the mean log-likelihood at the carry before the last step and
    ``previous`` the one before that; ``history`` holds each iteration's ``log_lik``.
    """

    carry: Any
    log_lik: jnp.ndarray
    previous: jnp.ndarray
    n_iter: jnp.ndarray
    history: jnp.ndarray


def iterate(
    advance: Callable[[Any], tuple[Any, jnp.ndarray]], carry: Any, tol: Any, max_iter: int, dtype: Any
) -> tuple[EMLoop, jnp.ndarray]:
    """Run ``carry, log_lik_at_old = advance(carry)`` until ``log_lik`` changes by less than ``tol``.

    Traced inside the caller's jit: a ``lax.while_loop`` of at most ``max_iter`` steps.

    Returns
    -------
    state : EMLoop
    converged : bool array

    Examples
    --------
    >>> state, converged = iterate(lambda c: (c / 2, -c), jnp.float64(1.0), 1e-3, 50, jnp.float64)
    >>> int(state.n_iter), bool(converged)
    (11, True)
    """

    def body(s: EMLoop) -> EMLoop:
        new, at_old = advance(s.carry)
        return EMLoop(new, at_old, s.log_lik, s.n_iter + 1, s.history.at[s.n_iter].set(at_old))

    def change(s: EMLoop) -> jnp.ndarray:
        return jnp.abs(s.log_lik - s.previous)

    def going(s: EMLoop) -> jnp.ndarray:
        return (s.n_iter < max_iter) & (change(s) >= tol)

    inf = jnp.asarray(jnp.inf, dtype)
    state = jax.lax.while_loop(going, body, EMLoop(carry, -inf, inf, 0, jnp.full(max_iter, jnp.nan, dtype)))
    return state, change(state) < tol


def m_step(
    resp: jnp.ndarray, x_hat: jnp.ndarray, C: jnp.ndarray, covariance_type: str, reg_covar: float
) -> GMMParams:
    """Weights, means and covariances from weighted responsibilities and conditional moments.

    ``resp`` (n_obs, n_components) already carries the sample weights.
    """
    n_features = x_hat.shape[-1]
    nk = resp.sum(axis=0) + 10 * jnp.finfo(resp.dtype).eps
    means = jnp.einsum("nk,nki->ki", resp, x_hat) / nk[:, None]
    d = x_hat - means[None]
    scatter = jnp.einsum("nk,nki,nkj->kij", resp, d, d) + jnp.einsum("nk,nkij->kij", resp, C)
    cov = scatter / nk[:, None, None]
    eye = jnp.eye(n_features, dtype=resp.dtype)
    if covariance_type == "diag":
        cov = jnp.diagonal(cov, axis1=-2, axis2=-1)[..., None] * eye
    elif covariance_type == "spherical":
        cov = jnp.trace(cov, axis1=-2, axis2=-1)[:, None, None] / n_features * eye
    elif covariance_type == "tied":
        cov = jnp.broadcast_to(jnp.einsum("k,kij->ij", nk, cov) / nk.sum(), cov.shape)
    return GMMParams.from_covariances(nk / nk.sum(), means, cov + reg_covar * eye)


def step(
    params: GMMParams,
    X: jnp.ndarray,
    observed: jnp.ndarray,
    w: jnp.ndarray,
    covariance_type: str,
    reg_covar: float,
) -> tuple[GMMParams, jnp.ndarray]:
    """One EM iteration; returns the new parameters and the mean log-likelihood at ``params``."""
    logits = jnp.log(params.weights) + observed_log_density(params, X, observed)
    rows = jax.nn.logsumexp(logits, axis=1)
    resp = jnp.exp(logits - rows[:, None]) * w[:, None]
    x_hat, C = conditional_moments(params, X, observed)
    return m_step(resp, x_hat, C, covariance_type, reg_covar), (w @ rows) / w.sum()


@partial(jax.jit, static_argnames=("covariance_type", "max_iter"))
def run(
    params: GMMParams,
    X: jnp.ndarray,
    observed: jnp.ndarray,
    w: jnp.ndarray,
    covariance_type: str,
    reg_covar: float,
    tol: float,
    max_iter: int,
) -> tuple[EMLoop, jnp.ndarray, jnp.ndarray]:
    """Iterate ``step`` until the mean log-likelihood changes by less than ``tol``.

    Parameters
    ----------
    params : GMMParams
        Starting values.
    X : array, shape (n_obs, n_features)
    observed : bool array, shape (n_obs, n_features)
    w : array, shape (n_obs,)
        Sample weights.
    covariance_type : {"full", "tied", "diag", "spherical"}
    reg_covar, tol : float
    max_iter : int

    Returns
    -------
    state : EMLoop
        ``state.carry`` holds the parameters.
    converged : bool array
    final : array, shape (n_obs, n_components)
        The joint log densities ``log pi_k + log N(x_O | mu_O, S_OO)`` at the returned parameters.
    """
    X = jnp.where(observed, X, 0.0)
    state, converged = iterate(
        lambda p: step(p, X, observed, w, covariance_type, reg_covar), params, tol, max_iter, X.dtype
    )
    return state, converged, joint_observed(state.carry, X, observed)


MISSING = ("error", "marginalize")


def check_incomplete(X: ArrayLike, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate data that may hold NaN: return ``X`` as float64 and its observed mask.

    Raises
    ------
    ValueError
        As ``check_X`` does for anything but NaN, and when a row or a column has no
        observed value (nothing to fit it on; drop it).
    """
    from bayesgmm._validation import check_X

    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    arr = np.asarray(X)
    nan = np.isnan(arr) if np.issubdtype(arr.dtype, np.floating) else np.zeros(arr.shape, bool)
    X = check_X(np.where(nan, 0.0, arr), n_components)
    observed = ~nan.reshape(X.shape)
    for axis, what in ((1, "row"), (0, "column")):
        empty = np.flatnonzero(~observed.any(axis=axis))
        if empty.size:
            raise ValueError(
                f"X has {empty.size} {what}(s) with every value missing (first: {empty[:5].tolist()}); "
                f"a {what} without an observed value carries no information: drop it."
            )
    return np.where(observed, X, np.nan), observed


def hot_deck(X: np.ndarray, observed: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Return a copy of ``X`` with each missing cell a random observed value of its column.

    A start, not an estimate.

    Random rather than mean imputation, because rows sharing one imputed value are tied
    values on which a starting EM component can collapse.
    """
    filled = X.copy()
    for j in range(X.shape[1]):
        gaps = ~observed[:, j]
        filled[gaps, j] = rng.choice(X[observed[:, j], j], size=gaps.sum())
    return filled


def _numpy_rng(seed) -> np.random.RandomState:
    """Return the RandomState that ``fit_em``'s seed gives, for the completion and the starts."""
    from sklearn.utils import check_random_state

    if isinstance(seed, np.random.Generator):
        return np.random.RandomState(seed.integers(2**31 - 1))
    if isinstance(seed, jax.Array):
        return np.random.RandomState(int(jax.random.randint(seed, (), 0, 2**31 - 1)))
    return check_random_state(seed)


def fit_missing(
    X: ArrayLike, n_components: int, covariance_type: str, missing: str, **options: Any
) -> EMResult:
    """``fit_em`` with ``missing="marginalize"``: maximise the observed-data likelihood.

    EM on a random (hot-deck) completion of the data gives the start, with ``options``
    (restarts, ``init_params``, starting values, seed); EM for incomplete data then runs
    from it with the same ``max_iter``, ``tol`` and ``reg_covar``.

    Returns
    -------
    EMResult
        ``X`` holds the NaN; ``log_prob`` and ``responsibilities`` take rows with NaN.
    """
    from bayesgmm._validation import column_names
    from bayesgmm.inference.em.fit import fit_em
    from bayesgmm.inference.em.result import EMResult

    if missing not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}, got {missing!r}.")
    if options["prior"] is not None or np.dtype(options["dtype"]) != np.float64:
        raise ValueError("prior and dtype=float32 are not available with missing='marginalize'.")
    names = column_names(X)
    X, observed = check_incomplete(X, n_components)
    rng = _numpy_rng(options["seed"])
    start = fit_em(hot_deck(X, observed, rng), n_components, covariance_type, **{**options, "seed": rng})
    w = np.ones(len(X)) if options["sample_weight"] is None else np.asarray(options["sample_weight"], float)
    params = GMMParams(*(jnp.asarray(a, jnp.float64) for a in start.params))
    max_iter = int(options["max_iter"])
    state, converged, final = run(
        params, jnp.asarray(X), jnp.asarray(observed), jnp.asarray(w), covariance_type,
        options["reg_covar"], options["tol"], max_iter,
    )  # fmt: skip
    final = np.asarray(final)
    n_iter = int(state.n_iter)
    return EMResult(
        params=state.carry,
        covariance_type=covariance_type,
        log_likelihood=float(w @ logsumexp(final, axis=1)),
        lower_bound=float(state.log_lik),
        lower_bounds=np.asarray(state.history[:n_iter]),
        converged=bool(converged),
        n_iter=n_iter,
        X=X,
        sample_weight=options["sample_weight"],
        labels=final.argmax(axis=1).astype(np.int32),
        feature_names=names,
    )
