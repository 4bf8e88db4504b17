"""EM with a uniform noise component: mclust's model for scattered outliers.

The mixture is ``pi_0 / V + sum_k pi_k N(x | mu_k, Sigma_k)`` with ``pi_0 + sum_k pi_k = 1``
(Banfield & Raftery 1993; Fraley & Raftery 1998): a background of constant density ``1 / V``
over a region of hypervolume ``V`` takes the observations that no Gaussian component
explains. ``V`` is the volume of the data's bounding box unless given (mclust's ``hypvol``
takes the smaller of that box and the box of the principal-component scores; pass mclust's
value as ``noise_volume`` to fit its model). The region itself is a box
(:func:`bayesgmm.noise_region.noise_box`): the data's bounding box, or with ``noise_volume``
that box scaled about its centre by one factor in every feature to the volume given; the
result keeps it (``noise_lower``, ``noise_upper``) to draw the noise's rows from.

The E-step adds ``log pi_0 - log V`` as one more column of the joint log densities; the
M-step takes the noise weight as the mean noise responsibility and gives the Gaussian
columns of the responsibilities, which no longer sum to one in a row, to the plain M-step
(``mstep.m_step``). Tied covariances then read their pooled scatter from per-component
second moments (``full``'s statistics), because the data's total second moment is the
Gaussian components' only when the responsibilities sum to one.

The start is that of the plain fit (``init_params``, ``n_init``, ``*_init``), on all rows:
its responsibilities scaled by ``1 - noise_init`` and a noise responsibility of
``noise_init`` in every row, so the first M-step gives the plain start's Gaussians and a
noise weight of ``noise_init``. mclust starts from a user's guess of which rows are noise
instead; restarts (``n_init``) guard against a start that puts a Gaussian on the outliers.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesgmm import densities
from bayesgmm._jit import jit
from bayesgmm.inference.em import report
from bayesgmm.inference.em.init import INIT_PARAMS, resp_from_start
from bayesgmm.inference.em.mstep import m_step
from bayesgmm.inference.em.stats import features
from bayesgmm.noise_region import noise_box
from bayesgmm.params import GMMParams

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from bayesgmm.inference.em.result import EMResult

NOISE = (None, "uniform")
#: Noise weight of the start: small, so that the start's Gaussians first claim their rows.
NOISE_INIT = 0.05


def check_noise(noise: str | None, noise_volume: float | None) -> None:
    """Check ``fit_em``'s ``noise`` and ``noise_volume``.

    Raises
    ------
    ValueError
        For a ``noise`` other than None or ``"uniform"``, or a ``noise_volume`` that is not
        a positive finite number or given without ``noise``.
    """
    if noise not in NOISE:
        raise ValueError(f"noise must be one of {NOISE}, got {noise!r}.")
    if noise_volume is not None:
        if noise is None:
            raise ValueError("noise_volume is only used with noise='uniform'; pass both or neither.")
        v = np.asarray(noise_volume, dtype=float)
        if v.ndim or not (np.isfinite(v) and v > 0):
            raise ValueError(f"noise_volume must be a positive finite number, got {noise_volume!r}.")


def bounding_box_volume(X: ArrayLike) -> float:
    """Return the hypervolume of the data's bounding box, ``prod_j (max_j - min_j)``.

    Parameters
    ----------
    X : array, shape (n_obs, n_features)
        NaN (missing values) are skipped: each range is that of the feature's observed values.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When a feature is constant (the box is flat) or the volume is not a finite positive
        float; pass ``noise_volume`` or rescale the features.

    Examples
    --------
    >>> bounding_box_volume([[0.0, 1.0], [2.0, 4.0], [1.0, 2.0]])
    6.0
    """
    X = np.asarray(X, dtype=float)
    ranges = np.nanmax(X, axis=0) - np.nanmin(X, axis=0)
    volume = float(np.prod(ranges))
    if not (np.all(ranges > 0) and np.isfinite(volume) and volume > 0):
        raise ValueError(
            f"The data's bounding box has volume {volume!r} (feature ranges {ranges.tolist()}), "
            "which cannot be a noise density; pass noise_volume, or drop constant features / "
            "rescale the data."
        )
    return volume


def joint_log_prob(params: GMMParams, noise_weight: Any, log_volume: Any, X: jnp.ndarray) -> jnp.ndarray:
    """``log pi_k + log N(x_i | mu_k, Sigma_k)`` and, last, ``log pi_0 - log V``.

    Parameters
    ----------
    params : GMMParams
        Gaussian components; their weights sum to ``1 - noise_weight``.
    noise_weight : float
    log_volume : float
        ``log V``.
    X : array, shape (n_obs, n_features)

    Returns
    -------
    array, shape (n_obs, n_components + 1)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.array([0.9]), jnp.zeros((1, 1)), jnp.ones((1, 1, 1)))
    >>> joint_log_prob(p, 0.1, jnp.log(10.0), jnp.zeros((2, 1))).shape
    (2, 2)
    """
    gauss = densities.joint_log_prob(params, X)
    noise = jnp.log(jnp.asarray(noise_weight, gauss.dtype)) - jnp.asarray(log_volume, gauss.dtype)
    return jnp.concatenate([gauss, jnp.broadcast_to(noise, (gauss.shape[0], 1))], axis=1)


@jit
def log_prob(params: GMMParams, noise_weight: Any, log_volume: Any, X: jnp.ndarray) -> jnp.ndarray:
    """Log density of each row under the mixture with noise, shape (n_obs,)."""
    return jax.nn.logsumexp(joint_log_prob(params, noise_weight, log_volume, X), axis=1)


@jit
def responsibilities(params: GMMParams, noise_weight: Any, log_volume: Any, X: jnp.ndarray) -> jnp.ndarray:
    """Membership probabilities, shape (n_obs, n_components + 1): the noise last, as mclust's ``z``."""
    return jax.nn.softmax(joint_log_prob(params, noise_weight, log_volume, X), axis=1)


def labels(resp: np.ndarray) -> np.ndarray:
    """Most probable column of each row of ``resp`` (n_obs, K + 1); -1 where it is the noise."""
    best = np.argmax(resp, axis=1)
    return np.where(best == resp.shape[1] - 1, -1, best)


def noise_m_step(
    Z: jnp.ndarray, w: jnp.ndarray, resp: jnp.ndarray, reg_covar: Any, covariance_type: str
) -> tuple[GMMParams, jnp.ndarray, jnp.ndarray]:
    """Gaussian parameters and noise weight from responsibilities with the noise column last.

    Parameters
    ----------
    Z : array, shape (n_obs, n_features)
        Centred data.
    w : array, shape (n_obs,)
    resp : array, shape (n_obs, n_components + 1)
    reg_covar : float
    covariance_type : str

    Returns
    -------
    params : GMMParams
        Weights summing to ``1 - noise_weight``.
    noise_weight : scalar
    ok : bool scalar
        As for ``mstep.m_step``.
    """
    layout = "full" if covariance_type == "tied" else covariance_type
    S = features(Z, layout).T @ (resp[:, :-1] * w[:, None])
    params, ok = m_step(S, reg_covar, covariance_type)
    noise_weight = (w @ resp[:, -1]) / jnp.sum(w)
    return params._replace(weights=params.weights * (1 - noise_weight)), noise_weight, ok


class NoiseState(NamedTuple):
    """One point of the iteration; fields as ``kernel.EMState``'s, plus the noise weight."""

    params: GMMParams
    noise_weight: jnp.ndarray
    lower_bound: jnp.ndarray
    n_iter: jnp.ndarray
    converged: jnp.ndarray
    ok: jnp.ndarray
    lower_bounds: jnp.ndarray


def _e_step(params, noise_weight, log_volume, Z, w):
    logits = joint_log_prob(params, noise_weight, log_volume, Z)
    rows = jax.nn.logsumexp(logits, axis=1)
    return jnp.exp(logits - rows[:, None]), (w @ rows) / jnp.sum(w)


def step(
    state: NoiseState, Z: jnp.ndarray, w: jnp.ndarray, log_volume: Any, tol: Any, reg_covar: Any,
    covariance_type: str,
) -> NoiseState:  # fmt: skip
    """Run one EM iteration: E-step at ``state``'s parameters, then M-step (pure).

    ``Z`` (n_obs, n_features) are the centred data, ``w`` (n_obs,) their weights and
    ``log_volume`` is ``log V``; ``lower_bound`` is the mean log-likelihood at ``state``.
    """
    resp, lower_bound = _e_step(state.params, state.noise_weight, log_volume, Z, w)
    params, noise_weight, ok = noise_m_step(Z, w, resp, reg_covar, covariance_type)
    ok = ok & jnp.isfinite(lower_bound) & jnp.isfinite(noise_weight)
    keep = partial(jax.tree.map, lambda new, old: jnp.where(ok, new, old))
    return NoiseState(
        params=keep(params, state.params),
        noise_weight=keep(noise_weight, state.noise_weight),
        lower_bound=lower_bound,
        n_iter=state.n_iter + 1,
        converged=ok & (jnp.abs(lower_bound - state.lower_bound) < tol),
        ok=ok,
        lower_bounds=state.lower_bounds.at[state.n_iter].set(lower_bound),
    )


@partial(jit, static_argnames=("covariance_type", "init_params", "n_components", "n_history"))
def _noise_program(start, Z, w, given, lb0, tol, reg_covar, max_iter, log_volume, noise_init, **static):
    """One restart, from its start to its final E-step, as one compiled program."""
    covariance_type, n_components = static["covariance_type"], static["n_components"]
    from_resp = (None,) * 3
    if start is not None:
        resp = resp_from_start(start, Z, w, n_components, static["init_params"])
        resp = jnp.concatenate([resp * (1 - noise_init), jnp.full_like(resp[:, :1], noise_init)], axis=1)
        from_resp = noise_m_step(Z, w, resp, reg_covar, covariance_type)[0]
    params = GMMParams(*(g if g is not None else r for g, r in zip(given, from_resp, strict=True)))
    if given[0] is not None:
        params = params._replace(weights=params.weights * (1 - noise_init))
    state = NoiseState(
        params, jnp.asarray(noise_init, Z.dtype), jnp.asarray(lb0, Z.dtype), jnp.zeros((), jnp.int32),
        jnp.zeros((), bool), jnp.ones((), bool), jnp.full((static["n_history"],), jnp.nan, Z.dtype),
    )  # fmt: skip

    def going(s):
        return (s.n_iter < max_iter) & ~s.converged & s.ok

    def advance(s):
        return step(s, Z, w, log_volume, tol, reg_covar, covariance_type)

    state = jax.lax.while_loop(going, advance, state)
    resp, mean_log_lik = _e_step(state.params, state.noise_weight, log_volume, Z, w)
    best = jnp.argmax(resp, axis=1)
    return state, mean_log_lik * jnp.sum(w), jnp.where(best == n_components, -1, best).astype(jnp.int32)


def fit_noise(X: ArrayLike, n_components: int, covariance_type: str, **options: Any) -> EMResult:
    """``fit_em`` with ``noise="uniform"``: EM for K Gaussians plus a uniform background.

    ``options`` are ``fit_em``'s keyword arguments. ``prior`` and ``dtype=float32`` are
    not available with noise (the MAP updates assume no noise column). A ``weights_init``
    that sums to less than one (a noise fit's ``weights_``, as a warm start passes it)
    leaves the rest to the noise's starting weight; otherwise that is ``NOISE_INIT``.
    With ``missing="marginalize"`` and NaN in ``X``, EM for incomplete data with the noise
    (:func:`bayesgmm.inference.em.noise_missing.fit_noise_missing`) runs instead.

    Returns
    -------
    EMResult
        With ``noise_weight``, ``noise_volume`` and the region's box ``noise_lower``,
        ``noise_upper`` (shape (n_features,)); ``params.weights`` sum to
        ``1 - noise_weight``; ``labels`` are -1 for rows most probably noise.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import fit_em, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> X_out = np.vstack([X, [[1.0, 120.0], [6.5, 20.0], [0.5, 30.0]]])
    >>> res = fit_em(X_out, 2, noise="uniform", seed=0)  # calls fit_noise
    >>> res.responsibilities(X_out).shape  # the noise last, as mclust's z
    (275, 3)
    >>> round(float(res.params.weights.sum()) + res.noise_weight, 12)
    1.0
    """
    from bayesgmm._validation import column_names
    from bayesgmm.inference.em import fit as em_fit

    noise, noise_volume = options.pop("noise"), options.pop("noise_volume")
    check_noise(noise, noise_volume)
    if options["prior"] is not None or np.dtype(options["dtype"]) != np.float64:
        raise ValueError("prior and dtype=float32 are not available with noise='uniform'.")
    if _marginalizes(X, options.pop("missing")):
        from bayesgmm.inference.em.noise_missing import fit_noise_missing

        return fit_noise_missing(X, n_components, covariance_type, noise_volume, **options)
    options, noise_init = _split_weights_init(options)
    call = em_fit._program_call(X, n_components, covariance_type, **options)
    # Rows of zero weight are not data: they neither widen the box nor enter the fit.
    volume = bounding_box_volume(call.X[call.w > 0]) if noise_volume is None else float(noise_volume)
    box = noise_box(call.X[call.w > 0], noise_volume)
    starts, Z, wz, given, lb0, tol, reg_covar, _, max_iter = call.args
    static = {k: call.static[k] for k in ("covariance_type", "init_params", "n_components", "n_history")}
    if starts is None:
        static["init_params"] = INIT_PARAMS[0]
    runs = [
        _noise_program(
            None if starts is None else starts[i],
            Z,
            wz,
            given,
            lb0[i],
            tol,
            reg_covar,
            max_iter,
            np.log(volume),
            noise_init,
            **static,
        )  # fmt: skip
        for i in range(call.static["n_init"])
    ]
    state, log_liks, labels = jax.tree.map(lambda *parts: np.stack(parts), *jax.device_get(runs))
    best = report.pick_best(state, int(max_iter))
    result = _result(
        call, state, log_liks, labels, best, covariance_type, options, column_names(X), volume, box
    )
    report.warn_empty(np.asarray(result.params.weights), float(call.w.sum()), np.finfo(np.float64).eps)
    report.warn_not_converged(result, int(max_iter), options["tol"])
    return result


def _marginalizes(X: Any, missing: str) -> bool:
    """Return whether ``missing`` says NaN are missing values and ``X`` holds some."""
    from bayesgmm.inference.em.missing import MISSING

    if missing not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}, got {missing!r}.")
    arr = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)
    return missing != "error" and np.issubdtype(arr.dtype, np.floating) and bool(np.isnan(arr).any())


def _split_weights_init(options: dict) -> tuple[dict, float]:
    """Return the options with ``weights_init`` summing to one, and the noise's starting weight."""
    weights = options["weights_init"]
    total = None if weights is None else float(np.sum(np.asarray(weights, dtype=float)))
    if total is None or not 0 < total < 1 - 1e-6:
        return options, NOISE_INIT
    return {**options, "weights_init": np.asarray(weights, dtype=float) / total}, 1.0 - total


def _result(call, state, log_liks, labels, best, covariance_type, options, names, volume, box) -> EMResult:
    """Build the EMResult of restart ``best``, in the user's coordinates."""
    from bayesgmm.inference.em.result import EMResult

    weights, means, scale_tril = (np.asarray(a[best]) for a in state.params)
    n_iter = int(state.n_iter[best])
    max_iter = int(options["max_iter"])
    return EMResult(
        params=GMMParams(jnp.asarray(weights), jnp.asarray(means + call.shift), jnp.asarray(scale_tril)),
        covariance_type=covariance_type,
        log_likelihood=float(log_liks[best]),
        labels=labels[best][: len(call.X)],
        lower_bound=float(state.lower_bound[best]) if max_iter > 0 else float(options["initial_lower_bound"]),
        lower_bounds=np.asarray(state.lower_bounds[best][:n_iter]),
        converged=bool(state.converged[best]),
        n_iter=n_iter,
        X=call.X,
        sample_weight=None if options["sample_weight"] is None else call.w,
        centred_means=np.asarray(means, np.float64),
        shift=call.shift,
        feature_names=names,
        noise_weight=float(state.noise_weight[best]),
        noise_volume=volume,
        noise_lower=box[0],
        noise_upper=box[1],
    )
