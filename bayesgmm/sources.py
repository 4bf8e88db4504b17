"""Data that do not fit in memory: streaming moments and random minibatches.

A *source* is an in-memory array, a ``numpy.memmap``, a callable that returns a
fresh iterable of row chunks each time it is called (one call = one pass over the
data), or a Parquet file or directory of Parquet files (read by record batches). Nothing
here holds more than one chunk of the raw data at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

#: Rows read at a time when streaming over an array or memmap.
READ_ROWS = 262_144


class ArraySource:
    """Rows of an array or ``numpy.memmap``, read chunk by chunk and sampled at random.

    Parameters
    ----------
    X : ndarray or numpy.memmap, shape (n_obs, n_features)
    """

    random_access = True

    def __init__(self, X: np.ndarray) -> None:
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"X must be 2-D with shape (n_obs, n_features), got shape {X.shape}.")
        self.X = X
        self.n_obs, self.n_features = X.shape

    def chunks(self, n_rows: int = READ_ROWS) -> Iterator[np.ndarray]:
        """Yield the rows ``n_rows`` at a time, each chunk shape (n_rows, n_features) (the last shorter)."""
        for start in range(0, self.n_obs, n_rows):
            yield _check_chunk(self.X[start : start + n_rows], self.n_features)

    def sample_rows(self, rng: np.random.Generator, n_rows: int) -> np.ndarray:
        """Draw ``n_rows`` rows uniformly with replacement, shape (n_rows, n_features)."""
        idx = rng.integers(0, self.n_obs, n_rows)
        # Read in file order (fast on a memmap), then put the rows back in random order.
        order = np.argsort(idx)
        rows = np.empty((n_rows, self.n_features), dtype=np.float64)
        rows[order] = self.X[idx[order]]
        return _check_chunk(rows, self.n_features)


class ChunkSource:
    """Rows from a callable that returns an iterable of arrays of shape (n_rows, n_features).

    The callable is called once per pass. Rows are only shuffled within a buffer,
    so the chunks should come in random order (or at least not sorted by cluster).
    """

    random_access = False

    def __init__(self, make_chunks: Callable[[], Iterable]) -> None:
        self.make_chunks = make_chunks
        self.n_obs, self.n_features = None, None

    def chunks(self, n_rows: int | None = None) -> Iterator[np.ndarray]:
        """Yield the chunks of one pass, each shape (n_rows, n_features), checked.

        ``n_rows`` is ignored: the chunks are the callable's.
        """
        for chunk in self.make_chunks():
            chunk = np.asarray(chunk, dtype=np.float64)
            chunk = chunk[:, None] if chunk.ndim == 1 else chunk
            if self.n_features is None:
                self.n_features = chunk.shape[1]
            yield _check_chunk(chunk, self.n_features)


class ParquetSource:
    """Rows of a Parquet file, or of the ``*.parquet`` files of a directory in name order.

    Every column is a feature and must be numeric; a null is a missing value and fails
    the check of its chunk. Only one record batch is read into memory at a time.

    Parameters
    ----------
    path : str or path-like
        A ``.parquet`` file or a directory of them.

    Examples
    --------
    >>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
    >>> path = Path(tempfile.mkdtemp()) / "x.parquet"
    >>> pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 0.0]}), path)
    >>> source = ParquetSource(path)
    >>> source.n_obs, [c.shape for c in source.chunks(2)]
    (3, [(2, 2), (1, 2)])
    """

    random_access = False

    def __init__(self, path: str | os.PathLike) -> None:
        import pyarrow.parquet as pq

        path = Path(path)
        self.files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        if not self.files:
            raise ValueError(f"The directory {path} holds no *.parquet files.")
        metas = [pq.ParquetFile(f).metadata for f in self.files]
        schema = pq.ParquetFile(self.files[0]).schema_arrow
        bad = [f.name for f in schema if not (f.type.num_fields == 0 and _is_numeric(f.type))]
        if bad:
            raise ValueError(f"Every Parquet column must be numeric; drop or encode the columns {bad}.")
        self.columns = schema.names
        self.n_obs, self.n_features = sum(m.num_rows for m in metas), len(self.columns)

    def chunks(self, n_rows: int = READ_ROWS) -> Iterator[np.ndarray]:
        """Yield record batches of at most ``n_rows`` rows as arrays (n_rows, n_features), checked."""
        import pyarrow.parquet as pq

        for f in self.files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=n_rows, columns=self.columns):
                cols = [c.to_numpy(zero_copy_only=False).astype(np.float64) for c in batch.columns]
                yield _check_chunk(np.column_stack(cols), self.n_features)


def _is_numeric(arrow_type) -> bool:
    import pyarrow.types as pt

    return pt.is_integer(arrow_type) or pt.is_floating(arrow_type)


def is_parquet(X: object) -> bool:
    """Return whether ``X`` names a Parquet file (``.parquet``) or a directory.

    Examples
    --------
    >>> is_parquet("rows.parquet"), is_parquet(np.zeros((2, 2)))
    (True, False)
    """
    if not isinstance(X, (str, os.PathLike)):
        return False
    return Path(X).suffix == ".parquet" or Path(X).is_dir()


def as_source(
    X: np.ndarray | Callable[[], Iterable] | str | os.PathLike,
) -> ArraySource | ChunkSource | ParquetSource:
    """Wrap ``X`` (array, memmap, chunk callable, Parquet file or directory) as a source."""
    if callable(X):
        return ChunkSource(X)
    if is_parquet(X):
        return ParquetSource(X)
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    return ArraySource(X if isinstance(X, np.ndarray) else np.asarray(X))


def _check_chunk(chunk, n_features: int) -> np.ndarray:
    chunk = np.asarray(chunk, dtype=np.float64)
    if chunk.ndim != 2 or chunk.shape[1] != n_features:
        raise ValueError(f"Every chunk must have shape (n_rows, {n_features}), got {chunk.shape}.")
    if not np.isfinite(chunk).all():
        raise ValueError("The data contain NaN or infinity; remove or impute them before fitting.")
    return chunk


def streaming_moments(source: ArraySource | ChunkSource) -> tuple[int, np.ndarray, np.ndarray]:
    """Return the number of rows, mean and standard deviation per feature, in one pass.

    Chunks are merged with Chan et al.'s pairwise update of (count, mean, sum of
    squared deviations), which stays accurate where ``E[x^2] - E[x]^2`` would cancel.

    Returns
    -------
    n_obs : int
    loc, scale : ndarray, shape (n_features,)
        ``scale`` is 1 for a constant feature, as in ``_validation.standardize``.

    Examples
    --------
    >>> X = np.arange(10.0).reshape(5, 2)
    >>> n, loc, scale = streaming_moments(ArraySource(X))
    >>> n, loc.tolist()
    (5, [4.0, 5.0])
    """
    count, mean, m2 = 0, 0.0, 0.0
    for chunk in source.chunks():
        n_b = chunk.shape[0]
        mean_b = chunk.mean(axis=0)
        m2_b = ((chunk - mean_b) ** 2).sum(axis=0)
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * n_b / total
        m2 = m2 + m2_b + delta**2 * count * n_b / total
        count = total
    if count == 0:
        raise ValueError("The data source yielded no rows.")
    scale = np.sqrt(m2 / count)
    return count, np.asarray(mean), np.where(scale > 0, scale, 1.0)


def row_blocks(
    source: ArraySource | ChunkSource, n_rows: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Yield endless blocks of ``n_rows`` random rows, shape (n_rows, n_features).

    Arrays and memmaps are sampled uniformly with replacement, so every block is
    an i.i.d. sample and the scaled minibatch likelihood is unbiased. Chunk
    callables are streamed pass after pass and shuffled within a buffer of the
    last chunk and ``n_rows`` rows.
    """
    if source.random_access:
        while True:
            yield source.sample_rows(rng, n_rows)
    pool = np.empty((0, 0))
    while True:
        n_seen = 0
        for chunk in source.chunks():
            n_seen += chunk.shape[0]
            pool = chunk if pool.size == 0 else np.concatenate([pool, chunk])
            while pool.shape[0] >= n_rows:
                pool = pool[rng.permutation(pool.shape[0])]
                yield pool[:n_rows]
                pool = pool[n_rows:]
        if n_seen == 0:
            raise ValueError("The data source yielded no rows.")


def observed_rows(
    source: ArraySource | ChunkSource, n_obs: int, max_observed: int, rng: np.random.Generator
) -> np.ndarray:
    """Return all rows, or ``max_observed`` distinct rows drawn uniformly at random, in file order.

    A chunk callable is read in one more pass: the row numbers are drawn first (``n_obs``
    is known from :func:`streaming_moments`), then each chunk gives the drawn rows it
    holds, so only the kept rows are held. Every subset of ``max_observed`` rows is
    equally likely, whatever order the chunks come in.

    Parameters
    ----------
    source : ArraySource or ChunkSource
    n_obs : int
        Number of rows of ``source``.
    max_observed : int
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (min(n_obs, max_observed), n_features)

    Examples
    --------
    >>> X = np.arange(10.0)[:, None]
    >>> rows = observed_rows(ChunkSource(lambda: np.array_split(X, 3)), 10, 4, np.random.default_rng(0))
    >>> rows.shape
    (4, 1)
    """
    if source.random_access:
        if n_obs <= max_observed:
            return np.asarray(source.X, dtype=np.float64)
        return np.asarray(source.X[np.sort(rng.choice(n_obs, max_observed, replace=False))], dtype=np.float64)
    keep = (
        np.arange(n_obs) if n_obs <= max_observed else np.sort(rng.choice(n_obs, max_observed, replace=False))
    )
    rows, start = [], 0
    for chunk in source.chunks():
        stop = start + chunk.shape[0]
        lo, hi = np.searchsorted(keep, [start, stop])
        rows.append(chunk[keep[lo:hi] - start])
        start = stop
        if hi == keep.size:
            break
    if start < keep[-1] + 1:
        raise ValueError(f"The data source yielded {start} rows in this pass, {n_obs} in the first.")
    return np.concatenate(rows)
