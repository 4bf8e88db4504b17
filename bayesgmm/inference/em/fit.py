"""``fit_em``: EM fits of a Gaussian mixture, several restarts in one program, and their result."""

from __future__ import annotations

import inspect
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from bayesgmm._jit import jit
from bayesgmm._validation import check_n_components, check_X, column_names
from bayesgmm.inference.em import kernel as em
from bayesgmm.inference.em import sklearn_shapes as em_shapes
from bayesgmm.inference.em.chunked import fit_em_chunked, is_streamed
from bayesgmm.inference.em.criteria import aic, bic, icl, n_parameters
from bayesgmm.inference.em.init import INIT_PARAMS, check_options, initial_starts, resp_from_start
from bayesgmm.inference.em.mclust_models import check_em_covariance_type
from bayesgmm.inference.em.missing import fit_missing
from bayesgmm.inference.em.mstep import EMPrior, centred_prior, default_prior
from bayesgmm.inference.em.multihost import fit_em_multihost
from bayesgmm.inference.em.noise import fit_noise
from bayesgmm.inference.em.report import pick_best, warn_empty, warn_not_converged
from bayesgmm.inference.em.result import EMResult
from bayesgmm.inference.em.shards import default_n_shards
from bayesgmm.inference.em.stream import is_process_sharded
from bayesgmm.params import GMMParams

if TYPE_CHECKING:
    from bayesgmm._typing import EMSeed

__all__ = ["EMResult", "aic", "bic", "default_prior", "fit_em", "icl", "n_parameters"]


def fit_em(
    X: ArrayLike,
    n_components: int,
    covariance_type: str = "full",
    *,
    n_init: int = 1,
    init_params: str = "kmeans",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    sample_weight: ArrayLike | None = None,
    prior: str | dict | EMPrior | None = None,
    seed: EMSeed = None,
    dtype: DTypeLike = np.float64,
    weights_init: ArrayLike | None = None,
    means_init: ArrayLike | None = None,
    precisions_init: ArrayLike | None = None,
    initial_lower_bound: float = -np.inf,
    block_size: int = 4096,
    missing: str = "error",
    noise: str | None = None,
    noise_volume: float | None = None,
    chunk_size: int | None = None,
    progress_bar: bool = False,
) -> EMResult:
    """Fit a Gaussian mixture by EM (maximum likelihood, or MAP with ``prior``).

    Semantics are scikit-learn's ``GaussianMixture``: ``reg_covar`` is added to the
    covariance diagonals, iteration stops when the mean log-likelihood changes by less
    than ``tol``, and of ``n_init`` restarts (run in one compiled program) the one with the largest
    lower bound is kept.

    Parameters
    ----------
    X : array, shape (n_obs, n_features)
        A ``jax.Array`` sharded over the local devices (:func:`bayesgmm.shard_rows`) is
        gathered to the host, as ``np.asarray(X)``; EM spreads its row blocks over the devices.
    n_components : int
    covariance_type : str
        scikit-learn's "full", "tied", "diag", "spherical", or mclust's models by name (Celeux &
        Govaert 1995; :mod:`.mclust_models`): "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
        "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV", with VII, VVI, EEE, VVV aliases of
        spherical, diag, tied, full. The other ten take no ``prior`` or ``missing``.
    n_init : int
        Number of restarts. Restart ``i`` is the same run whatever ``n_init`` is (restarts
        draw their starts one after another), so more restarts never give a lower ``lower_bound``.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}
    max_iter, tol, reg_covar
        As in scikit-learn.
    sample_weight : array, shape (n_obs,), optional
        Non-negative observation weights; integer weights fit like repeated rows.
    prior : None, "default", dict or EMPrior
        Conjugate prior for MAP-EM, in the user's units. ``"default"`` is
        :func:`default_prior`; a dict overrides some of its fields.
    seed : int, numpy Generator/RandomState, JAX key or None
        Random state of the starts, which are scikit-learn's for ``init_params`` (an int or
        RandomState starts where ``sklearn.mixture.GaussianMixture(random_state=seed)`` does).
    dtype : numpy float dtype
        ``np.float64`` (default) or ``np.float32`` for speed.
    weights_init, means_init, precisions_init : arrays, optional
        Starting values in scikit-learn's shapes; those not given come from ``init_params``.
    initial_lower_bound : float
        Lower bound to compare the first iteration against (warm starts).
    block_size : int
        Rows per block of the fused E/M pass (a cache-size tuning knob).
    missing : {"error", "marginalize"}
        What NaN in ``X`` means: an error, or values missing at random, whose likelihood is
        the exact marginal over them (EM for incomplete data, :mod:`.missing`; ``X`` may then
        hold NaN, but no row or column may be wholly missing).
    noise : {None, "uniform"}
        ``"uniform"`` adds mclust's noise component, a uniform density ``1 / noise_volume``
        whose weight EM estimates with the others, for scattered outliers (:mod:`.noise`);
        the result's ``labels`` are then -1 for rows most probably noise.
    noise_volume : float, optional
        Hypervolume of the noise's support; by default that of the bounding box of the rows
        with positive weight.

    chunk_size : int, optional
        Stream the rows in chunks of this many (exact EM out of core, :mod:`.chunked`). A
        ``numpy.memmap``, a callable returning an iterable of row chunks, or a Parquet file or
        directory ``X`` is always streamed (65536 rows by default); an array only with ``chunk_size``.
        So is a global ``jax.Array`` whose rows are spread over the processes of
        ``jax.distributed`` (``X.is_fully_addressable`` False, see
        :func:`bayesgmm.inference.em.multihost.fit_em_multihost`): each process streams its rows
        and the statistics of every pass are summed over the processes; every process calls
        ``fit_em`` alike and gets the same result (``labels`` of all rows). Uneven shares: pad
        with zero rows of zero ``sample_weight``. Not with ``prior``, ``missing`` or ``noise``.
    progress_bar : bool
        Streamed fits only: show a bar over the iterations.

    Returns
    -------
    EMResult

    Warns
    -----
    sklearn.exceptions.ConvergenceWarning
        When the best restart did not converge within ``max_iter`` iterations.

    Raises
    ------
    ValueError
        On bad input, or when every restart collapsed (a covariance that is not positive
        definite, as for an empty component without ``reg_covar``); the message says what
        to change.

    A component left without observations is kept at its regularised covariance, as in
    scikit-learn, with a warning that the fit has fewer components than asked.

    Examples
    --------
    >>> from bayesgmm import load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> res = fit_em(X, 2, seed=0)
    >>> round(res.log_likelihood, 2)
    -1130.26

    With three gross outliers and a noise component, which labels them -1:

    >>> import numpy as np
    >>> X_out = np.vstack([X, [[1.0, 120.0], [6.5, 20.0], [0.5, 30.0]]])
    >>> noisy = fit_em(X_out, 2, noise="uniform", seed=0)
    >>> noisy.labels[-3:].tolist(), round(noisy.noise_weight, 3)
    ([-1, -1, -1], 0.015)
    """
    if is_streamed(X, chunk_size):
        options = {k: v for k, v in locals().items() if k not in ("X", "n_components", "covariance_type")}
        fit = fit_em_multihost if is_process_sharded(X) else fit_em_chunked
        return fit(X, n_components, covariance_type, **options)
    if missing != "error" or noise is not None or noise_volume is not None:
        covariance_type = check_em_covariance_type(covariance_type, missing=missing, noise=noise)
        options = {k: v for k, v in locals().items() if k not in ("X", "n_components", "covariance_type")}
        del options["chunk_size"], options["progress_bar"]
        if noise is not None or noise_volume is not None:
            return fit_noise(X, n_components, covariance_type, **options)
        return fit_missing(X, n_components, covariance_type, options.pop("missing"), **options)
    call = _program_call(
        X, n_components, covariance_type, n_init=n_init, init_params=init_params, max_iter=max_iter,
        tol=tol, reg_covar=reg_covar, sample_weight=sample_weight, prior=prior, seed=seed, dtype=dtype,
        weights_init=weights_init, means_init=means_init, precisions_init=precisions_init,
        initial_lower_bound=initial_lower_bound, block_size=block_size,
    )  # fmt: skip
    state, (log_liks, labels) = _run_restarts(call)
    best = pick_best(state, max_iter)
    result = _result(call, state, log_liks, labels, best, covariance_type, sample_weight, max_iter,
                     initial_lower_bound, column_names(X))  # fmt: skip
    warn_empty(np.asarray(result.params.weights), float(call.w.sum()), np.finfo(dtype).eps)
    warn_not_converged(result, max_iter, tol)
    return result


def _result(
    call, state, log_liks, labels, best, covariance_type, sample_weight, max_iter, initial_lower_bound,
    feature_names,
) -> EMResult:  # fmt: skip
    """Build the EMResult of restart ``best``, in the user's coordinates."""
    weights, means, scale_tril = (np.asarray(a[best]) for a in state.params)
    n_iter = int(state.n_iter[best])
    means = (means.astype(np.float64) + call.shift).astype(means.dtype)
    return EMResult(
        params=GMMParams(jnp.asarray(weights), jnp.asarray(means), jnp.asarray(scale_tril)),
        covariance_type=covariance_type,
        log_likelihood=float(log_liks[best]),
        labels=labels[best][: len(call.X)],
        lower_bound=float(state.lower_bound[best]) if max_iter > 0 else float(initial_lower_bound),
        lower_bounds=np.asarray(state.lower_bounds[best][:n_iter]),
        converged=bool(state.converged[best]),
        n_iter=n_iter,
        X=call.X,
        sample_weight=None if sample_weight is None else call.w,
        centred_means=np.asarray(state.params.means[best], np.float64),
        shift=call.shift,
        feature_names=feature_names,
    )


class _Call(NamedTuple):
    """``_fit_program``'s arguments for one ``fit_em`` call, and what its result needs."""

    args: tuple
    static: dict
    X: np.ndarray
    w: np.ndarray
    shift: np.ndarray


def _program_call(
    X, n_components, covariance_type, *, n_init, init_params, max_iter, tol, reg_covar, sample_weight,
    prior, seed, dtype, weights_init, means_init, precisions_init, initial_lower_bound, block_size,
) -> _Call:  # fmt: skip
    """Validate ``fit_em``'s arguments into those of the compiled program."""
    n_components = check_n_components(n_components)
    dtype = check_options(init_params, dtype, n_init, max_iter, tol, reg_covar)
    covariance_type = check_em_covariance_type(covariance_type, prior=prior)
    # Validated and centred in float64, then cast: data far from the origin keep their
    # spread in float32 (1e7 + N(0, 1) cast first has a handful of distinct values).
    X = check_X(X, n_components, dtype=np.float64)
    n_obs, n_features = X.shape
    w = _check_sample_weight(sample_weight, n_obs, np.float64)
    # Centre on the weighted mean: the moment-based E/M steps lose accuracy with the offset.
    shift = w @ X / w.sum()
    # Pad with zero-weight rows to a bucketed size so that similar sizes share one compiled
    # program; zero weights leave every init and EM statistic unchanged.
    n_shards = default_n_shards(n_obs, block_size)
    n_pad = _bucket(n_obs, block_size, n_shards) - n_obs
    Z = np.concatenate([(X - shift).astype(dtype), np.zeros((n_pad, n_features), dtype)])
    wz = np.concatenate([w.astype(dtype), np.zeros(n_pad, dtype)])
    given = em_shapes.starting_values(
        weights_init, means_init, precisions_init, covariance_type, n_components, shift, dtype
    )
    starts = None
    if all(v is not None for v in given):
        n_init = 1  # every restart would be identical
    else:
        starts = initial_starts(
            seed, X.astype(dtype, copy=False), None if sample_weight is None else w, n_components,
            init_params, int(n_init), len(Z),
        )  # fmt: skip
    map_prior = centred_prior(prior, X, w, n_components, shift, dtype)
    args = (
        starts, Z, wz, given, np.full(n_init, initial_lower_bound, dtype), dtype.type(tol),
        dtype.type(reg_covar), map_prior, np.int32(max_iter),
    )  # fmt: skip
    static = dict(
        covariance_type=covariance_type, init_params=init_params, n_components=n_components,
        n_init=int(n_init), n_history=_bucket_history(int(max_iter)), block_size=block_size,
        n_shards=n_shards,
    )  # fmt: skip
    return _Call(args, static, X, w.astype(dtype), shift)


def lower_em(
    X: ArrayLike, n_components: int, covariance_type: str = "full", **kwargs: Any
) -> jax.stages.Lowered:
    """Trace and lower the program ``fit_em(X, n_components, covariance_type, **kwargs)`` runs.

    Its ``compile()`` can run in another thread (XLA compiles without the GIL) while
    this one does other work; ``fit_em`` with arguments of the same shapes then finds it
    compiled. The program depends on the shapes and types of the arguments only.

    Parameters
    ----------
    X, n_components, covariance_type, **kwargs
        As for :func:`fit_em`.

    Returns
    -------
    jax.stages.Lowered

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(50, 2))
    >>> compiled = lower_em(X, 2, seed=0).compile()  # in a worker thread, say
    >>> fit_em(X, 2, seed=0).n_iter > 0  # runs the program compiled above
    True
    """
    bound = inspect.signature(fit_em).bind(X, n_components, covariance_type, **kwargs)
    bound.apply_defaults()
    if bound.arguments.pop("noise") is not None or bound.arguments.pop("noise_volume") is not None:
        raise ValueError("lower_em lowers the plain EM program; noise='uniform' has its own.")
    if bound.arguments.pop("missing") != "error":
        raise ValueError("lower_em lowers the program for complete data; missing='marginalize' has its own.")
    if bound.arguments.pop("chunk_size") is not None or bound.arguments.pop("progress_bar"):
        raise ValueError("lower_em lowers the in-memory EM program; a streamed fit compiles per chunk.")
    call = _program_call(**bound.arguments)
    return _fit_program.lower(*_restart_args(call, 0), **_restart_static(call))


_STATIC = ("covariance_type", "init_params", "n_components", "n_history", "block_size", "n_shards")


def _restart_args(call: _Call, i: int) -> tuple:
    """``_fit_program``'s arguments for restart ``i``: its start and initial lower bound."""
    starts, Z, w, given, lb0, *rest = call.args
    return (None if starts is None else starts[i], Z, w, given, lb0[i], *rest)


def _restart_static(call: _Call) -> dict:
    static = {name: call.static[name] for name in _STATIC}
    if call.args[0] is None:  # no init to draw: one program whatever init_params says
        static["init_params"] = INIT_PARAMS[0]
    return static


def _run_restarts(call: _Call):
    """``(state, (log_liks, labels))`` of every restart, stacked on a leading restart axis (numpy).

    Each restart is one call of the same compiled program, so restart ``i`` is the same
    computation, to the last bit, whatever ``n_init`` is (in one vmapped batch its last bits
    would depend on the batch size, so more restarts could score lower), and one program
    serves every ``n_init``. The calls are dispatched before any result is read.
    """
    starts, Z, w, *_ = call.args
    Z, w = jax.device_put(Z), jax.device_put(w)  # to the device once, not once a restart
    call = call._replace(args=(starts, Z, w, *call.args[3:]))
    runs = [
        _fit_program(*_restart_args(call, i), **_restart_static(call)) for i in range(call.static["n_init"])
    ]
    return jax.tree.map(lambda *parts: np.stack(parts), *jax.device_get(runs))


@partial(jit, static_argnames=_STATIC)
def _fit_program(start, Z, w, given, lb0, tol, reg_covar, map_prior, max_iter, **static):
    """One restart, from its init to its final log-likelihood, as one compiled program.

    One program per shape instead of several keeps compile time low for repeated small fits;
    ``max_iter`` is traced and only its bucket ``n_history`` is static, for the same reason.
    ``start`` is the restart's entry of ``init.initial_starts`` (None when ``given`` is
    complete); ``given`` holds (weights, centred means, covariance Cholesky factors), each or
    None; ``lb0`` is the lower bound the first iteration is compared with.
    """
    covariance_type = static["covariance_type"]
    data = em.em_data(Z, w, covariance_type, static["block_size"])
    from_resp = (None,) * 3
    if start is not None:
        resp = resp_from_start(start, Z, w, static["n_components"], static["init_params"])
        from_resp, _ = em.params_from_resp(Z, w, resp, data, reg_covar, covariance_type)
    params0 = GMMParams(*(g if g is not None else r for g, r in zip(given, from_resp, strict=True)))
    state = em.run_em(
        params0, data, lb0, tol, reg_covar, map_prior,
        covariance_type=covariance_type, max_iter=max_iter, n_history=static["n_history"],
        n_shards=static["n_shards"],
    )  # fmt: skip
    return state, em.final_e_step(state.params, data, covariance_type, static["n_shards"])


def _bucket(n_obs, block_size, n_shards=1):
    """Return the padded size: the next power of two up to ``block_size``, then a multiple of it.

    With ``n_shards`` devices, a multiple of ``n_shards`` blocks, so that each gets as many.
    """
    if n_obs <= block_size:
        return max(16, 1 << (n_obs - 1).bit_length())
    return -(-n_obs // (block_size * n_shards)) * block_size * n_shards


def _bucket_history(max_iter):
    """Length of the lower-bound history: the next power of two, at least 8."""
    return max(8, 1 << (max_iter - 1).bit_length()) if max_iter > 0 else 8


def _check_sample_weight(sample_weight, n_obs, dtype):
    if sample_weight is None:
        return np.ones(n_obs, dtype)
    w = np.asarray(sample_weight, dtype=dtype)
    if w.ndim == 0:
        w = np.full(n_obs, w, dtype)
    if w.shape != (n_obs,):
        raise ValueError(f"sample_weight must have shape ({n_obs},), got {w.shape}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("sample_weight must be finite, non-negative and not all zero.")
    return w
