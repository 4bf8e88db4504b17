"""One streamed pass of EM: each chunk on one local device, with no collectives between devices.

The chunks go to the local devices in turn (``stream.padded_chunks`` puts chunk ``i`` on
device ``i mod n_devices``); each device sums its own chunks' statistics and the per-device
totals are added at the end of the pass. A chunk's program thus never waits on another
device: spreading each chunk over the devices with an all-reduce instead made many queued
chunk programs wait on each other's rendezvous until XLA aborted the process. At most
``n_devices`` chunks' totals are in flight: after dispatching chunk ``i`` the pass waits for
chunk ``i - n_devices``, which keeps each device busy with one chunk while the next is queued,
and bounds the memory of the chunks queued on the devices.

The chunk programs build their features block by block (``chunk_em_data``): the same numbers
as ``kernel.em_data``, without transposing the expanded features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from bayesgmm._jit import jit
from bayesgmm.inference.em import kernel as em
from bayesgmm.inference.em.mclust_models import sklearn_layout
from bayesgmm.inference.em.stats import second_moment
from bayesgmm.inference.em.stream import Chunk

__all__ = ["chunk_em_data", "device_pass"]


def chunk_em_data(Z: jnp.ndarray, w: jnp.ndarray, covariance_type: str, block_size: int = 4096) -> em.EMData:
    """Build ``kernel.em_data(Z, w, ...)``'s blocks with the rows blocked before the features.

    Transposing ``Z`` (``n_features`` values a row) rather than its features (``n_stats``,
    66 a row for 10 full-covariance features) costs the chunk programs far less; the values
    are the same, bit for bit, the padding rows' zero features included.

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
    layout = sklearn_layout(covariance_type)
    if Z.dtype == jnp.float32:  # no features: em_data blocks the rows themselves
        return em.em_data(Z, w, covariance_type, block_size)
    n_obs, n_features = Z.shape
    size = min(block_size, n_obs)
    n_blocks = -(-n_obs // size)
    pad = n_blocks * size - n_obs
    Zp = jnp.concatenate([Z, jnp.zeros((pad, n_features), Z.dtype)]) if pad else Z
    wp = jnp.concatenate([w, jnp.zeros(pad, w.dtype)]) if pad else w
    T = jnp.swapaxes(Zp.reshape(n_blocks, size, n_features), 1, 2)
    # em_data pads the features, so a padding row's constant feature is 0 there too.
    ones = (np.arange(n_blocks * size) < n_obs).astype(Z.dtype).reshape(n_blocks, 1, size)
    if layout == "tied":
        quad = []
    elif layout == "full":
        quad = [T[:, i : i + 1] * T[:, i:] for i in range(n_features)]
    else:
        quad = [T * T]
    F = jnp.concatenate([jnp.asarray(ones), T, *quad], axis=1)
    second = second_moment(Z, w) if layout == "tied" else None
    return em.EMData(F, wp.reshape(n_blocks, size), second)


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
