"""Exact EM over a global ``jax.Array`` whose rows are spread over the processes of ``jax.distributed``.

After ``jax.distributed.initialize(...)`` every process holds some rows of ``X`` (built with
``jax.make_array_from_process_local_data`` over a mesh of all devices, rows sharded). Each
process streams its own rows through the chunked EM's passes (:mod:`.chunked`) and the small
statistics of every pass (counts, sums, scatter matrices, log-likelihood) are summed over the
processes (``multihost_utils.process_allgather``, then a sum in process order, the same to the
bit on every process), so that every process takes the same M-step and the same convergence
decision and returns the same ``EMResult``. The checks of the data (non-finite values, weights)
are summed the same way, so that every process raises the same error rather than one of them
leaving the others waiting.

Starts: the rows of a uniform random subsample of about ``n_subsample`` rows (all rows when
there are fewer, and then the start is in-memory ``fit_em``'s with the same ``seed``) are
gathered on every process in global row order; the starts computed there on process 0 are
broadcast to the others (``multihost_utils.broadcast_one_to_all``), so that even ``seed=None``
starts every process at the same point.

Uneven shares: a global array has as many rows on every device, so a process with fewer rows
pads them with rows of zeros and gives them zero ``sample_weight`` (a global array sharded like
``X``, or a numpy array of all the weights), which leaves every statistic unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import numpy as np
from jax.experimental import multihost_utils
from numpy.typing import ArrayLike, DTypeLike

from bayesgmm.inference.em import chunked
from bayesgmm.inference.em import kernel as em
from bayesgmm.inference.em.init import check_options, random_state
from bayesgmm.inference.em.report import pick_best, warn_empty, warn_not_converged
from bayesgmm.inference.em.result import EMResult
from bayesgmm.inference.em.stream import is_process_sharded, padded_chunks, prefetched
from bayesgmm.sources import ArraySource

if TYPE_CHECKING:
    from bayesgmm._typing import EMSeed

__all__ = ["all_sum", "fit_em_multihost", "local_rows"]


def fit_em_multihost(
    X: jax.Array,
    n_components: int,
    covariance_type: str = "full",
    *,
    chunk_size: int | None = None,
    n_init: int = 1,
    init_params: str = "kmeans",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    sample_weight: ArrayLike | jax.Array | None = None,
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
    """Fit a Gaussian mixture by exact EM on a global array sharded over processes.

    ``fit_em`` calls this for a ``jax.Array`` that is not fully addressable. Every process
    calls it with the same arguments (collectives run in it) and gets the same result.

    Parameters
    ----------
    X : jax.Array, shape (n_obs, n_features)
        Rows sharded over the devices of all processes (columns not sharded).
    n_components : int
    covariance_type : {"full", "tied", "diag", "spherical"}
    chunk_size : int, optional
        Rows per chunk of each process's pass (by default its rows, up to 65536).
    n_init, init_params, max_iter, tol, reg_covar, seed, dtype, initial_lower_bound, block_size
        As for :func:`fit_em`.
    weights_init, means_init, precisions_init
        As for :func:`fit_em`, the same on every process.
    sample_weight : jax.Array or array, shape (n_obs,), optional
        A global array sharded like ``X``'s rows, or every row's weight on every process.
        Zero weights mark rows that pad a process's share.
    progress_bar : bool
        Show a bar over the iterations of each restart.
    n_subsample : int
        About how many rows the starts are computed on.
    **refused
        ``fit_em``'s ``prior``, ``missing``, ``noise`` and ``noise_volume``: at their defaults only.

    Returns
    -------
    EMResult
        ``labels`` of all ``n_obs`` rows on every process; ``X`` and ``sample_weight`` are None.
    """
    _refuse(refused, covariance_type)
    dtype = check_options(init_params, dtype, n_init, max_iter, tol, reg_covar)
    rows, idx = local_rows(X)
    w = _local_weights(sample_weight, idx, X.shape[0])
    total_weight, shift = _checked_mean(rows, w, n_components)
    given = dict(weights_init=weights_init, means_init=means_init, precisions_init=precisions_init)
    options = dict(init_params=init_params, dtype=dtype, reg_covar=reg_covar, **given)
    n_init = 1 if all(v is not None for v in given.values()) else int(n_init)
    rs = random_state(seed)
    sub, w_sub = _gathered_subsample(rows, idx, w, X.shape[0], rs, n_subsample)
    starts = chunked.starts_on(sub, w_sub, shift, n_components, covariance_type, rs, n_init, options)
    starts = multihost_utils.broadcast_one_to_all(jax.device_get(starts))
    source, size = ArraySource(rows), _chunk_size(chunk_size, len(rows))

    def one_pass(params, chunk_fn):
        chunks = prefetched(padded_chunks(source, size, w, shift, dtype, len(rows), jax.local_devices()))
        out = chunked._pass(params, chunks, covariance_type, block_size, chunk_fn)
        return all_sum(out) if chunk_fn is chunked._chunk_stats else (all_sum(out[0]), out[1])

    consts = (dtype.type(total_weight), dtype.type(tol), dtype.type(reg_covar))
    history = chunked._bucket_history(int(max_iter))
    states = [
        chunked._iterate(em.init_state(p, initial_lower_bound, history), one_pass, consts,
                         covariance_type, int(max_iter), progress_bar)
        for p in starts
    ]  # fmt: skip
    stacked = jax.tree.map(lambda *parts: np.stack(parts), *jax.device_get(states))
    state = states[pick_best(stacked, max_iter)]
    log_lik, labels = one_pass(state.params, chunked._chunk_labels)
    labels = _gather_rows(idx, np.concatenate(labels))[1]
    result = chunked._result(state, covariance_type, float(log_lik), labels, shift, max_iter,
                             initial_lower_bound, None, None, None)  # fmt: skip
    warn_empty(np.asarray(result.params.weights), total_weight, np.finfo(dtype).eps)
    warn_not_converged(result, max_iter, tol)
    return result


def all_sum(tree: object) -> object:
    """Sum a pytree of arrays over the processes, in process order (the same bits on every process).

    Parameters
    ----------
    tree : pytree of arrays
        This process's values; every process passes the same structure and shapes.

    Returns
    -------
    pytree of numpy arrays
        The sums, on every process.
    """
    gathered = multihost_utils.process_allgather(jax.device_get(tree), tiled=False)
    return jax.tree.map(lambda a: np.sum(np.asarray(a), axis=0), gathered)


def local_rows(X: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """Return this process's rows of ``X`` and their global indices, in row order.

    Each row comes once over the processes (the shards of replica 0).

    Parameters
    ----------
    X : jax.Array, shape (n_obs, ...)
        Sharded along its first axis only.

    Returns
    -------
    rows : ndarray, shape (n_local, ...), float64
    idx : ndarray of int64, shape (n_local,)

    Examples
    --------
    >>> rows, idx = local_rows(jax.numpy.arange(6.0).reshape(3, 2))
    >>> rows.shape, idx.tolist()
    ((3, 2), [0, 1, 2])
    """
    if X.ndim not in (1, 2) or X.sharding.shard_shape(X.shape)[1:] != X.shape[1:]:
        raise ValueError(
            f"A sharded X must be 2-D (n_obs, n_features) and sharded by rows only, e.g. with "
            f"NamedSharding(mesh, PartitionSpec(axis, None)); got shape {X.shape}, sharding {X.sharding}."
        )
    shards = sorted(
        (s for s in X.addressable_shards if s.replica_id == 0), key=lambda s: s.index[0].start or 0
    )
    if not shards:
        return np.zeros((0, *X.shape[1:])), np.zeros(0, np.int64)
    rows = np.concatenate([np.asarray(s.data, np.float64) for s in shards])
    idx = np.concatenate([np.arange(*s.index[0].indices(X.shape[0])) for s in shards]).astype(np.int64)
    return rows, idx


def _refuse(refused: dict, covariance_type: str) -> None:
    """Raise, on every process alike, for the options a sharded fit does not take."""
    defaults = {"prior": None, "missing": "error", "noise": None, "noise_volume": None}
    unknown = set(refused) - set(defaults)
    if unknown:
        raise TypeError(f"Unexpected arguments {sorted(unknown)}.")
    for name, value in refused.items():
        if value != defaults[name]:
            raise ValueError(
                f"EM on a jax.Array sharded over processes does not take {name}={value!r}; gather the "
                "rows on one process (e.g. multihost_utils.process_allgather) and fit them as a numpy array."
            )
    if covariance_type not in chunked._TYPES:
        raise ValueError(
            f"EM on a sharded jax.Array takes covariance_type in {chunked._TYPES}, got {covariance_type!r}."
        )


def _local_weights(sample_weight, idx, n_obs):
    """Return this process's weights (float64, aligned with its rows), or None."""
    if sample_weight is None:
        return None
    if is_process_sharded(sample_weight):
        if sample_weight.shape != (n_obs,):
            raise ValueError(f"sample_weight must have shape ({n_obs},), got {sample_weight.shape}.")
        w, w_idx = local_rows(sample_weight)
        if not np.array_equal(w_idx, idx):
            raise ValueError(
                "A sharded sample_weight must be sharded like X's rows (the same mesh and axis)."
            )
        return w
    w = np.asarray(sample_weight, np.float64)
    if w.shape != (n_obs,):
        raise ValueError(f"sample_weight must have shape ({n_obs},), got {w.shape}.")
    return w[idx]


def _checked_mean(rows, w, n_components):
    """Check the rows and weights of all processes; return the total weight and weighted mean.

    The checks are sums over the processes, so every process raises the same error.
    """
    finite = np.isfinite(rows).all(axis=1)
    w_all = np.ones(len(rows)) if w is None else w
    bad_w = ~(np.isfinite(w_all) & (w_all >= 0))
    w_ok = np.where(bad_w | ~finite, 0.0, w_all)
    clean = np.where(finite[:, None], rows, 0.0)
    n_rows, n_bad, n_bad_w, total, sums = all_sum(
        (np.int64(len(rows)), np.int64((~finite).sum()), np.int64(bad_w.sum()), w_ok.sum(), w_ok @ clean)
    )
    if n_bad:
        raise ValueError(
            f"The data contain NaN or infinity in {n_bad} rows; remove or impute them before fitting."
        )
    if n_bad_w:
        raise ValueError("sample_weight must be finite and non-negative.")
    if n_rows < n_components:
        raise ValueError(f"The data have {n_rows} rows, fewer than n_components={n_components}.")
    if total <= 0:
        raise ValueError("sample_weight must not be all zero.")
    return float(total), sums / total


def _gathered_subsample(rows, idx, w, n_obs, rs, n_sub):
    """Gather about ``n_sub`` uniformly drawn rows (and weights) of all processes, in row order.

    Rows of zero weight are left out: they stand for padding.
    """
    keep = min(1.0, n_sub / n_obs)
    take = np.ones(len(rows), bool) if w is None else w > 0
    if keep < 1:
        # One draw from the seed's state on process 0, then one stream of draws per process.
        base = int(multihost_utils.broadcast_one_to_all(np.int64(rs.randint(2**31 - 1))))
        take &= np.random.default_rng([base, jax.process_index()]).random(len(rows)) < keep
    w_local = np.ones(len(rows)) if w is None else w
    _, sub = _gather_rows(idx[take], np.column_stack([rows[take], w_local[take]]))
    return sub[:, :-1], None if w is None else sub[:, -1]


def _gather_rows(idx, values):
    """Gather every process's ``values`` (one row per ``idx``) on every process, in the order of ``idx``."""
    counts = np.asarray(multihost_utils.process_allgather(np.int64(len(idx)), tiled=False)).ravel()
    n_max = int(counts.max())
    pad = [(0, n_max - len(idx))] + [(0, 0)] * (values.ndim - 1)
    all_idx, all_values = multihost_utils.process_allgather(
        (np.pad(idx, (0, n_max - len(idx))), np.pad(values, pad)), tiled=False
    )
    all_idx = np.concatenate([np.asarray(all_idx)[p, :c] for p, c in enumerate(counts)])
    all_values = np.concatenate([np.asarray(all_values)[p, :c] for p, c in enumerate(counts)])
    order = np.argsort(all_idx, kind="stable")
    return all_idx[order], all_values[order]


def _chunk_size(chunk_size, n_local):
    """Return the rows per chunk: ``chunk_size``, or the local rows up to a power of two (at most 65536)."""
    if chunk_size is not None:
        if int(chunk_size) != chunk_size or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
        return int(chunk_size)
    return min(chunked.DEFAULT_CHUNK_SIZE, max(16, 1 << (max(n_local, 1) - 1).bit_length()))
