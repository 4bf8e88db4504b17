"""One streamed pass of EM: each chunk on one local device, with no collectives between devices.

The chunks go to the local devices in turn (``stream.padded_chunks`` puts chunk ``i`` on
device ``i mod n_devices``); each device sums its own chunks' statistics and the per-device
totals are added at the end of the pass. A chunk's program thus never waits on another
device: spreading each chunk over the devices with an all-reduce instead made many queued
chunk programs wait on each other's rendezvous until XLA aborted the process. At most
``n_devices`` chunks' totals are in flight: after dispatching chunk ``i`` the pass waits for
chunk ``i - n_devices``, which keeps each device busy with one chunk while the next is queued,
and bounds the memory of the chunks queued on the devices.

The chunk programs build each block's features inside the pass over the blocks
(``chunk_stats``): the same numbers as ``kernel.em_data``'s, never a whole chunk's at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from bayesgmm._jit import jit
from bayesgmm.inference.em import kernel as em
from bayesgmm.inference.em.mclust_models import sklearn_layout
from bayesgmm.inference.em.stats import second_moment, sufficient_stats
from bayesgmm.inference.em.stream import Chunk
from bayesgmm.params import GMMParams

__all__ = ["chunk_em_data", "chunk_stats", "device_pass"]


def chunk_em_data(Z: jnp.ndarray, w: jnp.ndarray, covariance_type: str, block_size: int = 4096) -> em.EMData:
    """Build ``kernel.em_data(Z, w, ...)``'s blocks with the rows blocked before the features.

    The same values, bit for bit, the padding rows' zero features included.

    Parameters
    ----------
    Z : array, shape (n_obs, n_features)
        Centred rows.
    w : array, shape (n_obs,)
    covariance_type : str
    block_size : int

    Returns
    -------
    EMData
    """
    if Z.dtype == jnp.float32:  # no features: em_data blocks the rows themselves
        return em.em_data(Z, w, covariance_type, block_size)
    rows, w_blocks = _row_blocks(Z, w, block_size)
    features = jax.vmap(partial(_block_features, layout=sklearn_layout(covariance_type)))(rows)
    second = second_moment(Z, w) if sklearn_layout(covariance_type) == "tied" else None
    return em.EMData(features, w_blocks, second)


def chunk_stats(
    params: GMMParams, Z: jnp.ndarray, w: jnp.ndarray, covariance_type: str, block_size: int = 4096
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Return ``kernel.data_stats``'s ``(S, log_lik)`` on one chunk, and its tied second moment.

    Each block's features are built inside the pass, from the block's rows, and used while
    they are in cache: building a whole chunk's first (66 numbers a row for 10 features,
    full covariances) costs more than the pass itself. They are ``em_data``'s, bit for bit.

    Parameters
    ----------
    params : GMMParams
        Centred coordinates.
    Z : array, shape (n_obs, n_features)
        Centred rows.
    w : array, shape (n_obs,)
    covariance_type : str
    block_size : int

    Returns
    -------
    S : array, shape (n_stats, n_components)
    log_lik : scalar
    second : array
        ``stats.second_moment(Z, w)`` for tied float64 data, else ``zeros(1)``.
    """
    layout = sklearn_layout(covariance_type)
    if Z.dtype == jnp.float32:  # centred statistics, which need no second moment
        S, log_lik, _ = em.data_stats(params, em.em_data(Z, w, covariance_type, block_size), covariance_type)
        return S, log_lik, jnp.zeros(1, Z.dtype)
    second = second_moment(Z, w) if layout == "tied" else jnp.zeros(1, Z.dtype)
    rows, w_blocks = _row_blocks(Z, w, block_size)
    features = partial(_block_features, layout=layout)
    S, log_lik = sufficient_stats(params, rows, w_blocks, layout, block_features=features)
    return S, log_lik, second


def _row_blocks(Z, w, block_size):
    """Return ``[1, x]`` by blocks (n_blocks, 1 + n_features, block_size), and ``w`` by blocks.

    The constant is 0 on the padding rows, where ``em_data`` pads the features with zeros.
    """
    n_obs, n_features = Z.shape
    size = min(block_size, n_obs)
    n_blocks = -(-n_obs // size)
    pad = n_blocks * size - n_obs
    Zp = jnp.concatenate([Z, jnp.zeros((pad, n_features), Z.dtype)]) if pad else Z
    wp = jnp.concatenate([w, jnp.zeros(pad, w.dtype)]) if pad else w
    ones = (np.arange(n_blocks * size) < n_obs).astype(Z.dtype).reshape(n_blocks, 1, size)
    rows = jnp.concatenate([jnp.asarray(ones), jnp.swapaxes(Zp.reshape(n_blocks, size, n_features), 1, 2)], 1)
    return rows, wp.reshape(n_blocks, size)


def _block_features(rows, layout):
    """Return one block's features ``[1, x, q(x)]`` (``stats.features``'s), from its ``[1, x]``."""
    if layout == "tied":
        return rows
    x = rows[1:]
    if layout == "full":
        i, j = np.triu_indices(x.shape[0])
        return jnp.concatenate([rows, x[i] * x[j]])
    return jnp.concatenate([rows, x * x])


def device_pass(
    params: object, chunks: Iterable[Chunk], chunk_fn: Callable, **static: object
) -> tuple[object, list[tuple[jax.Array, int]]]:
    """Sum ``chunk_fn``'s sums over ``chunks``, each computed on its chunk's device.

    Parameters
    ----------
    params : GMMParams
        Copied to each device the chunks are on.
    chunks : iterable of Chunk
    chunk_fn : callable
        ``chunk_fn(params, Z, w, **static) -> (sums, per_row)``; ``per_row`` may be None.
    **static
        Passed to ``chunk_fn``.

    Returns
    -------
    sums : pytree
        The sum over all chunks, on the device of ``params``.
    per_row : list of (array, int)
        Each chunk's ``per_row`` (unless None) and its number of rows of data, in order.
    """
    home = _device_of(params)
    replicas, totals, pending, rows = {}, {}, [], []
    window = jax.local_device_count()
    for chunk in chunks:
        device = _device_of(chunk.Z)
        if device not in replicas:
            replicas[device] = jax.device_put(params, device)
        part, per_row = chunk_fn(replicas[device], chunk.Z, chunk.w, **static)
        totals[device] = part if device not in totals else _add(totals[device], part)
        pending.append(totals[device])
        if per_row is not None:
            rows.append((per_row, chunk.n_rows))
        if len(pending) > window:
            jax.block_until_ready(pending.pop(0))
    parts = [totals.pop(home)] if home in totals else []
    parts += [jax.device_put(t, home) for t in totals.values()]
    total = parts[0]
    for part in parts[1:]:
        total = _add(total, part)
    return total, rows


def _device_of(tree: object) -> jax.Device:
    leaf = jax.tree.leaves(tree)[0]
    return next(iter(leaf.devices())) if isinstance(leaf, jax.Array) else jax.local_devices()[0]


@jit
def _add(a, b):
    return jax.tree.map(jnp.add, a, b)
