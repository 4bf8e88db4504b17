"""The rows an SVI fit sees: loaded or streamed, standardised, sent to the device chunk by chunk.

Full batch, every step sees all rows. With a ``batch_size``, the rows of an in-memory array
are copied to the device once and indexed there; a memmap or chunk callable is streamed
(standardised with one-pass moments) and each chunk's minibatches are sent from the host.
When ``X`` is sharded over several devices (``bayesgmm.sharding``) its rows stay on the
devices that hold them, full batch or indexed: each device takes an equal share of every
minibatch from its own rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from numpy.typing import DTypeLike

from bayesgmm._validation import standardize
from bayesgmm.inference.prepare import Loaded, check_data
from bayesgmm.inference.svi.config import DEFAULT_BATCH_SIZE, ROW_INDEX, Batching
from bayesgmm.sharding import row_sharding
from bayesgmm.sources import as_source, observed_rows, row_blocks, streaming_moments


@dataclass(frozen=True)
class SVIRows:
    """The standardised rows of an SVI fit, on the host.

    Parameters
    ----------
    batching : Batching
    Z_init : ndarray, shape (n_init_rows, n_features)
        Rows the EM start is fitted to.
    Z_device : ndarray, shape (n_rows, n_features)
        Rows sent to the device first: all of them, or a first minibatch of a stream.
    blocks : iterator of ndarray, optional
        A stream's raw blocks of ``batch_size * chunk_size`` rows (None for arrays).
    rng : numpy.random.Generator
        Draws the minibatch rows of an in-memory array.
    sharding : NamedSharding, optional
        The row sharding of a sharded ``X``, which ``Z_device`` is placed with (full batch
        and ``"index"`` mode).
    """

    batching: Batching
    Z_init: np.ndarray
    Z_device: np.ndarray
    blocks: Iterator | None
    rng: np.random.Generator
    sharding: NamedSharding | None = None


def is_minibatch(X: Any, batch_size: int | None) -> bool:
    """Return whether the fit sees minibatches: a ``batch_size``, a memmap or a chunk callable."""
    return batch_size is not None or is_stream(X)


def is_stream(X: Any) -> bool:
    """Return whether ``X`` is streamed rather than loaded: a memmap or a chunk callable."""
    return callable(X) or isinstance(X, np.memmap)


def load_rows(
    X: Any,
    n_components: int,
    keys: dict,
    missing: str = "error",
    *,
    batch_size: int | None,
    chunk_size: int,
    init_rows: int,
    max_observed: int,
) -> Loaded:
    """Load or stream ``X`` for SVI (a loader of ``prepare.prepare``); ``extra`` is ``SVIRows``.

    Parameters
    ----------
    X : array-like, numpy.memmap or callable
    n_components : int
    keys : dict
        Its ``"rng"`` key seeds the host's row draws.
    missing : {"error", "marginalize"}
        As in ``fit_svi``; only in-memory arrays may hold missing values.
    batch_size, chunk_size, init_rows, max_observed : int
        As in ``fit_svi``.

    Returns
    -------
    Loaded
    """
    rng = np.random.default_rng(keys["rng"])
    if is_stream(X) and missing != "error":
        raise ValueError(
            "missing='marginalize' needs X in memory: a memmap or chunk callable is streamed, and "
            "its standardisation and EM start do not handle missing values. Load the rows as an "
            "array (batch_size still fits minibatches)."
        )
    if is_stream(X):
        loaded = _streamed(X, n_components, rng, batch_size, chunk_size, init_rows, max_observed)
    else:
        loaded = _in_memory(X, n_components, rng, batch_size, init_rows, max_observed, missing)
    batching = loaded.extra.batching
    if batching.mode == "index" and batching.n_obs > np.iinfo(ROW_INDEX).max:
        raise ValueError(
            f"X has {batching.n_obs} rows, too many to index in memory: pass it as a numpy.memmap."
        )
    return loaded


def _streamed(X, n_components, rng, batch_size, chunk_size, init_rows, max_observed) -> Loaded:
    source = as_source(X)
    n_obs, loc, scale = streaming_moments(source)
    batch_size = min(batch_size or DEFAULT_BATCH_SIZE, n_obs)
    blocks = row_blocks(source, batch_size * chunk_size, rng)
    Z_init = (next(row_blocks(source, min(init_rows, n_obs), rng)) - loc) / scale
    X_obs = observed_rows(source, n_obs, max_observed, rng)
    if n_obs < n_components:
        raise ValueError(f"X has {n_obs} observations but n_components={n_components}.")
    Z_device = (next(blocks)[:batch_size] - loc) / scale
    rows = SVIRows(Batching("stream", batch_size, n_obs), Z_init, Z_device, blocks, rng)
    return Loaded(X_obs, loc, scale, n_obs, rows)


def _in_memory(X, n_components, rng, batch_size, init_rows, max_observed, missing) -> Loaded:
    sharding = row_sharding(X)
    X = check_data(X, n_components, missing)
    Z, loc, scale = standardize(X)
    n_obs = X.shape[0]
    batch_size = None if batch_size is None else min(batch_size, n_obs)
    n_shards = 1 if sharding is None or batch_size is None else _shard_count(sharding, n_obs, batch_size)
    Z_init = Z if n_obs <= init_rows else Z[rng.choice(n_obs, init_rows, replace=False)]
    X_obs = X if n_obs <= max_observed else X[np.sort(rng.choice(n_obs, max_observed, replace=False))]
    batching = Batching("full" if batch_size is None else "index", batch_size, n_obs, n_shards)
    rows = SVIRows(batching, Z_init, Z, None, rng, sharding)
    return Loaded(X_obs, loc, scale, n_obs, rows, incomplete=bool(np.isnan(X).any()))


def _shard_count(sharding: NamedSharding, n_obs: int, batch_size: int) -> int:
    """Return how many devices hold blocks of the rows; refuse a batch they cannot share evenly."""
    n_shards = n_obs // sharding.shard_shape((n_obs, 1))[0]
    if n_obs % n_shards:
        raise ValueError(
            f"X's {n_obs} rows are not split evenly over its {n_shards} devices: "
            "make it with bayesgmm.shard_rows."
        )
    if batch_size % n_shards:
        low, high = batch_size - batch_size % n_shards, batch_size - batch_size % n_shards + n_shards
        works = f"{low} or {high}" if low else f"{high}"
        raise ValueError(
            f"batch_size={batch_size} cannot be split evenly over the {n_shards} devices that hold X's "
            f"rows: pass a multiple of {n_shards} (such as {works})."
        )
    return n_shards


@dataclass(frozen=True)
class DeviceRows:
    """The rows of an SVI fit on the device, in its ``dtype``.

    ``data`` is the chunk program's data argument (all rows, or a stream's first minibatch);
    ``batch`` one minibatch (the guide start's data); ``draw_Z`` the draw program's data.
    """

    data: jax.Array
    batch: jax.Array
    draw_Z: jax.Array

    @classmethod
    def from_rows(cls, rows: SVIRows, dtype: DTypeLike) -> DeviceRows:
        """Send ``rows.Z_device`` to the device; call under the fit's precision."""
        mode, batch_size, Z = rows.batching.mode, rows.batching.batch_size, rows.Z_device
        # Sliced on the host: on the device each slice would compile a program of its own.
        if rows.sharding is None:
            data = jnp.asarray(Z, dtype)
        else:  # the rows stay on the devices they came on
            data = jax.device_put(Z.astype(dtype), rows.sharding)
        batch = jnp.asarray(Z[:batch_size], dtype) if mode == "index" else data
        # Full batch: one row is enough to set the guide up, and keeps the draw program's
        # shapes (so its compiled code) the same for every n_obs.
        draw_Z = jnp.asarray(Z[:1], dtype) if mode == "full" else batch
        return cls(data, batch, draw_Z)

    def chunk_types(self, batching: Batching, chunk_size: int) -> tuple:
        """Return the chunk program's ``(data, rows)`` arguments, as arrays or shapes."""
        data, rows = self.data, None
        if batching.mode == "stream":
            n_features = data.shape[-1]
            data = jax.ShapeDtypeStruct((chunk_size, batching.batch_size, n_features), data.dtype)
        if batching.mode == "index":
            rows = jax.ShapeDtypeStruct((chunk_size, batching.batch_size), ROW_INDEX)
        return data, rows


def chunk_feed(
    rows: SVIRows, device: DeviceRows, loaded: Loaded, chunk_size: int, dtype: DTypeLike
) -> Callable[[], tuple]:
    """Return ``feed() -> (data, rows)``: the chunk program's data for the next chunk.

    Full batch, the device's rows; with an in-memory array, the device's rows and the
    chunk's minibatch row indices, shape (chunk_size, batch_size), drawn on the host; with a
    stream, the chunk's minibatches, shape (chunk_size, batch_size, n_features).
    """
    mode, batch_size, n_obs = rows.batching.mode, rows.batching.batch_size, rows.batching.n_obs
    # Sharded rows: indices into each device's block of n_obs / n_shards rows, in turn
    # (program.local_rows).
    n_high = n_obs // rows.batching.n_shards

    def feed():
        if mode == "full":
            return device.data, None
        if mode == "index":
            return device.data, rows.rng.integers(0, n_high, (chunk_size, batch_size), dtype=ROW_INDEX)
        block = ((next(rows.blocks) - loaded.loc) / loaded.scale).reshape(chunk_size, batch_size, -1)
        return jnp.asarray(block, dtype), None

    return feed
