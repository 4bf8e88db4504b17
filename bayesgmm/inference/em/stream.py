"""Rows of a data source in fixed-shape chunks for streamed EM, read ahead in a background thread.

Every chunk has exactly ``chunk_size`` rows: the last one is padded with zero rows of zero
weight, which leave every EM statistic unchanged, so one compiled per-chunk program serves
the whole pass. The chunks are centred on the fit's ``shift`` in float64 before they are
cast, as ``fit_em`` centres in-memory data.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import jax
import numpy as np

from bayesgmm.sources import ArraySource, ChunkSource, ParquetSource

Source = ArraySource | ChunkSource | ParquetSource


class Chunk(NamedTuple):
    """One fixed-shape chunk of centred rows.

    Attributes
    ----------
    Z : array, shape (chunk_size, n_features)
        Centred rows, zero rows after ``n_rows``.
    w : array, shape (chunk_size,)
        Their weights, zero after ``n_rows``.
    n_rows : int
        Rows of data in the chunk.
    """

    Z: jax.Array
    w: jax.Array
    n_rows: int


def rechunk(chunks: Iterable[np.ndarray], chunk_size: int) -> Iterator[np.ndarray]:
    """Regroup row chunks of any sizes into chunks of ``chunk_size`` rows (the last shorter).

    Examples
    --------
    >>> [c.shape[0] for c in rechunk([np.zeros((3, 1)), np.zeros((4, 1))], 5)]
    [5, 2]
    """
    parts, n = [], 0
    for chunk in chunks:
        while chunk.shape[0]:
            take = min(chunk_size - n, chunk.shape[0])
            parts.append(chunk[:take])
            n, chunk = n + take, chunk[take:]
            if n == chunk_size:
                yield parts[0] if len(parts) == 1 else np.concatenate(parts)
                parts, n = [], 0
    if n:
        yield np.concatenate(parts)


def check_weights(w: np.ndarray) -> np.ndarray:
    """Return a chunk of ``sample_weight`` as float64, or raise if it is not finite and non-negative."""
    w = np.asarray(w, np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative.")
    return w


def row_chunks(
    source: Source, chunk_size: int, sample_weight: np.ndarray | None
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield ``(rows, weights)`` of one pass, ``chunk_size`` rows at a time (the last shorter).

    ``weights`` is None without ``sample_weight`` (an array aligned with an ``ArraySource``).
    """
    if isinstance(source, ArraySource):
        for start, rows in zip(range(0, source.n_obs, chunk_size), source.chunks(chunk_size), strict=True):
            w = None if sample_weight is None else check_weights(sample_weight[start : start + chunk_size])
            yield rows, w
        return
    for rows in rechunk(source.chunks(chunk_size), chunk_size):
        yield rows, None


def weighted_mean(
    source: Source, chunk_size: int, sample_weight: np.ndarray | None
) -> tuple[int, float, np.ndarray]:
    """Make a first pass: the number of rows, total weight and weighted mean (float64).

    Returns
    -------
    n_obs : int
    total_weight : float
    mean : ndarray, shape (n_features,)
    """
    n_obs, total, sums = 0, 0.0, 0.0
    for rows, w in row_chunks(source, chunk_size, sample_weight):
        n_obs += rows.shape[0]
        total += rows.shape[0] if w is None else float(w.sum())
        sums = sums + (rows.sum(axis=0) if w is None else w @ rows)
    if n_obs == 0:
        raise ValueError("The data source yielded no rows.")
    if total <= 0:
        raise ValueError("sample_weight must not be all zero.")
    return n_obs, total, np.asarray(sums) / total


def padded_chunks(
    source: Source,
    chunk_size: int,
    sample_weight: np.ndarray | None,
    shift: np.ndarray,
    dtype: np.dtype,
    n_obs: int,
    devices: Sequence[jax.Device] | None = None,
) -> Iterator[Chunk]:
    """Yield one pass as ``Chunk``s of exactly ``chunk_size`` rows, on the devices in turn.

    Chunk ``i`` is put on ``devices[i % len(devices)]`` (default: JAX's default device only).

    Raises
    ------
    ValueError
        When the pass yields another number of rows than ``n_obs`` (a chunk callable that
        does not replay the same data).
    """
    seen, devices = 0, [None] if devices is None else list(devices)
    for i, (rows, w) in enumerate(row_chunks(source, chunk_size, sample_weight)):
        n = rows.shape[0]
        Z = np.zeros((chunk_size, rows.shape[1]), dtype)
        Z[:n] = rows - shift
        wz = np.zeros(chunk_size, dtype)
        wz[:n] = 1.0 if w is None else w
        seen += n
        device = devices[i % len(devices)]
        yield Chunk(jax.device_put(Z, device), jax.device_put(wz, device), n)
    if seen != n_obs:
        raise ValueError(
            f"The data source yielded {seen} rows in this pass and {n_obs} in the first; a chunk "
            "callable must return the same rows each time it is called."
        )


def is_process_sharded(X: object) -> bool:
    """Return whether ``X`` is a global ``jax.Array`` with rows on other processes (``jax.distributed``).

    Examples
    --------
    >>> is_process_sharded(jax.numpy.zeros((4, 2))), is_process_sharded(np.zeros((4, 2)))
    (False, False)
    """
    return isinstance(X, jax.Array) and not X.is_fully_addressable


_DONE = object()


def prefetched(items: Iterator, depth: int = 2) -> Iterator:
    """Yield ``items``, read up to ``depth`` ahead in a background thread.

    Reading and centring the next chunk (file reads release the GIL) overlaps the compiled
    pass over the current one. An exception in the reader is raised here, in order.

    Examples
    --------
    >>> list(prefetched(iter(range(5))))
    [0, 1, 2, 3, 4]
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read():
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            put(_Failed(error))
            return
        put(_DONE)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while (item := buffer.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        reader.join()


class _Failed(NamedTuple):
    error: BaseException
