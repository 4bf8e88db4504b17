"""Exact EM on data streamed in chunks: memmaps, chunk callables and Parquet files.

Each iteration makes one pass over the source: every chunk of ``chunk_size`` rows (the last
one padded with zero-weight rows, so one compiled program serves the pass) goes through the
same fused E-step and statistics as in-memory EM (``kernel.data_stats``), the chunks'
statistics are summed and ``kernel.update`` runs the M-step. The chunks go to the local
devices in turn, each summing its own, with no collectives between them (``chunk_pass``).
Only a few chunks are in memory at a time: the next ones are read and centred in a background
thread while the devices compute. From the same start the fit is in-memory ``fit_em``'s, up
to the order of the sums.

Starts: each restart begins where ``fit_em(..., max_iter=0)`` puts it on a uniform random
subsample of about ``n_subsample`` rows (each row kept with probability ``n_subsample / n_obs``;
all rows when there are fewer, and then the start is in-memory ``fit_em``'s with the same
``seed``): k-means there for ``init_params="kmeans"``, followed by one M-step on the subsample.
Starting values the user gives (``means_init`` ...) are used as they are.

``labels`` are computed chunk by chunk in a last pass at the final parameters, with the
log-likelihood; they are the only array with one entry per row that is kept (int32).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from bayesgmm._jit import jit
from bayesgmm.inference.em import kernel as em
from bayesgmm.inference.em.chunk_pass import chunk_em_data, chunk_stats, device_pass
from bayesgmm.inference.em.init import check_options, random_state
from bayesgmm.inference.em.report import pick_best, warn_empty, warn_not_converged
from bayesgmm.inference.em.result import EMResult
from bayesgmm.inference.em.stream import (
    is_process_sharded,
    padded_chunks,
    prefetched,
    row_chunks,
    weighted_mean,
)
from bayesgmm.inference.progress import progress_bar
from bayesgmm.params import GMMParams
from bayesgmm.sources import as_source, is_parquet

if TYPE_CHECKING:
    from bayesgmm._typing import EMSeed

__all__ = ["DEFAULT_CHUNK_SIZE", "fit_em_chunked", "is_streamed"]

_TYPES = ("full", "tied", "diag", "spherical")

#: Rows per chunk when ``chunk_size`` is not given.
DEFAULT_CHUNK_SIZE = 65_536


def fit_em_chunked(
    X: object,
    n_components: int,
    covariance_type: str = "full",
    *,
    chunk_size: int | None = None,
    n_init: int = 1,
    init_params: str = "kmeans",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    sample_weight: ArrayLike | None = None,
    seed: EMSeed = None,
    dtype: DTypeLike = np.float64,
    weights_init: ArrayLike | None = None,
    means_init: ArrayLike | None = None,
    precisions_init: ArrayLike | None = None,
    initial_lower_bound: float = -np.inf,
    block_size: int = 4096,
    progress_bar: bool = False,
    n_subsample: int = 100_000,
    **refused: object,
) -> EMResult:
    """Fit a Gaussian mixture by exact EM, streaming ``X`` chunk by chunk.

    ``fit_em`` calls this for a ``numpy.memmap``, a chunk callable, a Parquet path, or any
    ``X`` when ``chunk_size`` is given.

    Parameters
    ----------
    X : numpy.memmap or ndarray (n_obs, n_features), callable, or str / path
        A memmap (``np.load(path, mmap_mode="r")``), a callable returning a fresh iterable
        of row chunks (n_rows, n_features) per call (one call per pass), or a Parquet file
        or directory of ``*.parquet`` files (read by record batches).
    n_components : int
    covariance_type : {"full", "tied", "diag", "spherical"}
    chunk_size : int, optional
        Rows per chunk (default 65536); memory is a few chunks' worth, whatever ``n_obs`` is.
    n_init, init_params, max_iter, tol, reg_covar, seed, dtype, initial_lower_bound, block_size
        As for :func:`fit_em`; each restart streams the data.
    weights_init, means_init, precisions_init
        As for :func:`fit_em`.
    sample_weight : array, shape (n_obs,), optional
        Only with an array or memmap ``X`` (it may be a memmap too, read chunk by chunk).
    progress_bar : bool
        Show a bar over the iterations of each restart.
    n_subsample : int
        About how many rows the starts are computed on.
    **refused
        ``fit_em``'s ``prior``, ``missing``, ``noise`` and ``noise_volume``: accepted at their
        defaults only.

    Returns
    -------
    EMResult
        ``X`` is the memmap or array given, else None.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> rng = np.random.default_rng(0)
    >>> np.save(path, np.vstack([rng.normal(0, 1, (500, 2)), rng.normal(6, 1, (500, 2))]))
    >>> res = fit_em_chunked(np.load(path, mmap_mode="r"), 2, chunk_size=300, seed=0)
    >>> sorted(np.round(res.params.means[:, 0]).tolist()), res.labels.shape
    ([0.0, 6.0], (1000,))
    """
    _refuse(refused, covariance_type)
    chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    source, dtype = as_source(X), check_options(init_params, dtype, n_init, max_iter, tol, reg_covar)
    sample_weight = _check_weight_shape(source, sample_weight)
    n_obs, total_weight, shift = weighted_mean(source, chunk_size, sample_weight)
    if n_obs < n_components:
        raise ValueError(f"The data have {n_obs} rows, fewer than n_components={n_components}.")
    given = dict(weights_init=weights_init, means_init=means_init, precisions_init=precisions_init)
    options = dict(init_params=init_params, dtype=dtype, reg_covar=reg_covar, **given)
    n_init = 1 if all(v is not None for v in given.values()) else int(n_init)
    starts = _starts(source, n_obs, shift, n_components, covariance_type, chunk_size, sample_weight,
                     seed, n_init, options, n_subsample)  # fmt: skip

    def one_pass(params, chunk_fn):
        chunks = padded_chunks(source, chunk_size, sample_weight, shift, dtype, n_obs, jax.local_devices())
        chunks = prefetched(chunks)
        return _pass(params, chunks, covariance_type, block_size, chunk_fn)

    consts = (dtype.type(total_weight), dtype.type(tol), dtype.type(reg_covar))
    states = [
        _iterate(em.init_state(p, initial_lower_bound, _bucket_history(int(max_iter))), one_pass, consts,
                 covariance_type, int(max_iter), progress_bar)
        for p in starts
    ]  # fmt: skip
    stacked = jax.tree.map(lambda *parts: np.stack(parts), *jax.device_get(states))
    state = states[pick_best(stacked, max_iter)]
    log_lik, labels = _final_pass(state.params, one_pass, n_obs)
    names = getattr(source, "columns", None)
    result = _result(state, covariance_type, log_lik, labels, shift, max_iter, initial_lower_bound,
                     X if hasattr(source, "sample_rows") else None, sample_weight, names)  # fmt: skip
    warn_empty(np.asarray(result.params.weights), total_weight, np.finfo(dtype).eps)
    warn_not_converged(result, max_iter, tol)
    return result


def is_streamed(X: object, chunk_size: int | None) -> bool:
    """Return whether ``fit_em`` streams ``X``: a memmap, chunk callable or Parquet path, or ``chunk_size``.

    A global ``jax.Array`` sharded over processes is streamed too, by ``multihost``.

    Examples
    --------
    >>> is_streamed(np.zeros((4, 2)), None), is_streamed(np.zeros((4, 2)), 2), is_streamed("d.parquet", None)
    (False, True, True)
    """
    return (
        chunk_size is not None
        or isinstance(X, np.memmap)
        or callable(X)
        or is_parquet(X)
        or is_process_sharded(X)
    )


def _refuse(refused: dict, covariance_type: str) -> None:
    """Raise for the options streamed EM does not take."""
    defaults = {"prior": None, "missing": "error", "noise": None, "noise_volume": None}
    unknown = set(refused) - set(defaults)
    if unknown:
        raise TypeError(f"Unexpected arguments {sorted(unknown)}.")
    for name, value in refused.items():
        if value != defaults[name]:
            raise ValueError(
                f"Streamed EM (a memmap, chunk callable, Parquet path or chunk_size) does not take "
                f"{name}={value!r}; load the data into memory as an array for it."
            )
    if covariance_type not in _TYPES:
        raise ValueError(f"Streamed EM takes covariance_type in {_TYPES}, got {covariance_type!r}.")


def _check_weight_shape(source, sample_weight):
    if sample_weight is None:
        return None
    if not hasattr(source, "sample_rows"):
        raise ValueError(
            "sample_weight needs X as an array or memmap, whose rows it is aligned with; "
            "a chunk callable or Parquet source takes no weights."
        )
    if np.ndim(sample_weight) != 1 or len(sample_weight) != source.n_obs:
        raise ValueError(f"sample_weight must have shape ({source.n_obs},), got {np.shape(sample_weight)}.")
    return sample_weight


def _bucket_history(max_iter):
    """Return the lower-bound history length: a power of two, so ``_update`` compiles once per bucket."""
    return max(8, 1 << (max_iter - 1).bit_length()) if max_iter > 0 else 8


def _iterate(state, one_pass, consts, covariance_type, max_iter, show):
    """Run EM iterations, one streamed pass each, until convergence, ``max_iter`` or a collapse."""
    total_weight, tol, reg_covar = consts
    with progress_bar(max_iter, "EM", disable=not show) as bar:
        for _ in range(max_iter):
            S, log_lik, second = one_pass(state.params, _chunk_stats)
            centre = state.params.means if state.params.means.dtype == jnp.float32 else None
            second = second if covariance_type == "tied" and centre is None else None
            state = _update(
                state, (S, log_lik, centre, second, total_weight), tol, reg_covar, covariance_type
            )
            bar.update(1)
            if bool(state.converged) or not bool(state.ok):
                break
    return state


def _starts(source, n_obs, shift, n_components, covariance_type, chunk_size, sample_weight, seed, n_init,
            options, n_sub):  # fmt: skip
    """Centred starting parameters of each restart, from ``fit_em(max_iter=0)`` on a uniform subsample."""
    rs = random_state(seed)
    keep = min(1.0, n_sub / n_obs)
    # Drawn only when subsampling, so that small data start where in-memory fit_em does.
    rng = np.random.default_rng(rs.randint(2**31 - 1)) if keep < 1 else None
    rows, weights = [], []
    for chunk, w in row_chunks(source, chunk_size, sample_weight):
        take = rng.random(chunk.shape[0]) < keep if keep < 1 else slice(None)
        rows.append(chunk[take])
        weights.append(None if w is None else w[take])
    sub = np.concatenate(rows)
    w_sub = None if sample_weight is None else np.concatenate(weights)
    return starts_on(sub, w_sub, shift, n_components, covariance_type, rs, n_init, options)


def starts_on(
    sub: np.ndarray,
    w_sub: np.ndarray | None,
    shift: np.ndarray,
    n_components: int,
    covariance_type: str,
    rs: np.random.RandomState,
    n_init: int,
    options: dict,
) -> list[GMMParams]:
    """Return the centred starts of ``n_init`` restarts, ``fit_em(max_iter=0)``'s on the rows ``sub``.

    Parameters
    ----------
    sub : ndarray, shape (n_rows, n_features)
        The subsample, in the user's coordinates.
    w_sub : ndarray, shape (n_rows,), or None
        Its weights.
    shift : ndarray, shape (n_features,)
        The fit's centre, subtracted from the starting means.
    n_components, covariance_type
    rs : numpy.random.RandomState
        Drawn from, restart after restart.
    n_init : int
    options : dict
        ``fit_em``'s ``init_params``, ``dtype``, ``reg_covar`` and starting values.

    Returns
    -------
    list of GMMParams
    """
    from bayesgmm.inference.em.fit import fit_em  # fit imports this module

    if len(sub) < n_components:
        raise ValueError(f"The subsample has {len(sub)} rows, fewer than n_components; raise n_subsample.")
    starts = []
    for _ in range(n_init):
        res = fit_em(sub, n_components, covariance_type, max_iter=0, sample_weight=w_sub, seed=rs, **options)
        means = (np.asarray(res.params.means, np.float64) - shift).astype(options["dtype"])
        starts.append(GMMParams(jnp.asarray(res.params.weights), jnp.asarray(means),
                                jnp.asarray(res.params.scale_tril)))  # fmt: skip
    return starts


def _pass(params, chunks, covariance_type, block_size, chunk_fn):
    """Sum ``chunk_fn``'s sums over the chunks of one pass; collect its per-row outputs on the host."""
    static = dict(covariance_type=covariance_type, block_size=block_size)
    total, per_row = device_pass(params, chunks, chunk_fn, **static)
    rows = [np.asarray(r[:n]) for r, n in per_row]
    return total if chunk_fn is _chunk_stats else (total, rows)


def _final_pass(params, one_pass, n_obs):
    """Log-likelihood and labels at the final parameters, one more pass."""
    log_lik, labels = one_pass(params, _chunk_labels)
    labels = np.concatenate(labels)
    assert labels.shape == (n_obs,)
    return float(log_lik), labels


@partial(jit, static_argnames=("covariance_type", "block_size"))
def _chunk_stats(params, Z, w, covariance_type, block_size):
    """``(S, log_lik, second)`` of one chunk: the fused E-step and statistics of in-memory EM."""
    return chunk_stats(params, Z, w, covariance_type, block_size), None


@partial(jit, static_argnames=("covariance_type", "block_size"))
def _chunk_labels(params, Z, w, covariance_type, block_size):
    """``log_lik`` and the labels of one chunk's rows (padding included)."""
    data = chunk_em_data(Z, w, covariance_type, block_size)
    log_lik, labels = em.final_e_step(params, data, covariance_type)
    return log_lik, labels


@partial(jit, static_argnames=("covariance_type",))
def _update(state, stats, tol, reg_covar, covariance_type):
    return em.update(state, stats, tol, reg_covar, None, covariance_type)


def _result(
    state, covariance_type, log_lik, labels, shift, max_iter, lb0, X, sample_weight, names
) -> EMResult:
    weights, means, scale_tril = (np.asarray(a) for a in state.params)
    n_iter = int(state.n_iter)
    return EMResult(
        params=GMMParams(
            jnp.asarray(weights), jnp.asarray((means + shift).astype(means.dtype)), jnp.asarray(scale_tril)
        ),  # fmt: skip
        covariance_type=covariance_type,
        log_likelihood=log_lik,
        lower_bound=float(state.lower_bound) if max_iter > 0 else float(lb0),
        lower_bounds=np.asarray(state.lower_bounds[:n_iter]),
        converged=bool(state.converged),
        n_iter=n_iter,
        X=X,
        sample_weight=sample_weight,
        centred_means=np.asarray(means, np.float64),
        shift=shift,
        labels=labels,
        feature_names=None if names is None else tuple(names),
    )
