"""JAX's persistent compilation cache, which bayesgmm turns on when asked.

A fit compiles a handful of XLA programs, which takes more CPU time than the fit itself on
moderate data, and it is paid again in every new Python process (``benchmarks/`` holds the
measurements). JAX can keep compiled programs on disk and load them in later processes,
keyed by the program text, the JAX and XLA versions and the compiler flags. So a stale
entry is never used: a changed program is a different key.

``enable_compilation_cache()`` turns it on; so does importing bayesgmm with the
environment variable ``BAYESGMM_COMPILATION_CACHE=1`` (in ``default_cache_dir()``),
unless JAX's own cache directory is already set (``JAX_COMPILATION_CACHE_DIR`` or
``jax.config``), which is left alone.

It is off by default. With jax/jaxlib 0.10.2 on CPU, pytest-xdist workers loading a cache of
about 7,000 entries that earlier runs had filled died with a segmentation fault inside JAX's
``backend.deserialize_executable`` (numpyro's own parallel sampling program over 4 devices,
which embedded the data as constants and was compiled anew for every fit), while one process
loading the same entries did not. That crash has not been seen since: four xdist runs of the
NUTS tests sharing a fresh cache (one directory per version, ``version_tag()``) passed, and
loaded it in 61 s against 144 s to fill it; ``benchmarks/README.md`` holds the record. It
stays opt-in until a whole test suite has run on it for longer. A large size-bounded cache is
also slow to write to: JAX reads every entry's access time under its file lock each time it
writes one, and ``min_compile_time_secs=0`` writes many.

The cache holds at most ``max_size_bytes``, evicting the least recently used entries
(with a file lock, so that parallel processes, such as pytest-xdist workers, do not
write over each other's files).
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from pathlib import Path

import jax
import jaxlib

#: Default upper bound on the cache's size on disk.
DEFAULT_MAX_SIZE_BYTES = 1 << 30


def default_cache_dir() -> Path:
    """Return ``$BAYESGMM_CACHE_DIR``, else ``$XDG_CACHE_HOME/bayesgmm/jax``, else ``~/.cache/bayesgmm/jax``.

    Examples
    --------
    >>> default_cache_dir().name
    'jax'
    """
    if os.environ.get("BAYESGMM_CACHE_DIR"):
        return Path(os.environ["BAYESGMM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bayesgmm" / "jax"


def version_tag() -> str:
    """Return the versions that cached programs depend on, as the name of their directory.

    A new jax, jaxlib or bayesgmm starts an empty directory instead of sharing one with
    programs of other versions, which JAX would never load again but would keep counting.

    Examples
    --------
    >>> version_tag().startswith("jax")
    True
    """
    try:
        ours = importlib.metadata.version("bayesgmm")
    except importlib.metadata.PackageNotFoundError:
        ours = "unknown"
    return f"jax{jax.__version__}-jaxlib{jaxlib.__version__}-bayesgmm{ours}"


def enable_compilation_cache(
    path: str | os.PathLike | None = None,
    *,
    max_size_bytes: int = DEFAULT_MAX_SIZE_BYTES,
    min_compile_time_secs: float = 0.0,
) -> Path | None:
    """Keep JAX's compiled programs on disk, so that later processes load them.

    This sets JAX's process-wide options ``jax_compilation_cache_dir``,
    ``jax_compilation_cache_max_size`` and ``jax_persistent_cache_min_compile_time_secs``:
    it caches every program of the process, not only bayesgmm's.

    Loading programs from a large cache shared by parallel processes has crashed one inside
    jaxlib (0.10.2, CPU; see the module docstring): keep one cache per project or per run.

    Parameters
    ----------
    path : path-like, optional
        Directory of the cache; ``default_cache_dir() / version_tag()`` when None. Created
        if missing.
    max_size_bytes : int
        Least recently used entries are evicted beyond this size.
    min_compile_time_secs : float
        Programs that compile faster are not cached. The default 0 caches the small
        eager operations too: a fit's few dozen of them take longer to compile in a fresh
        process than to load.

    Returns
    -------
    Path or None
        The directory in use, or None (with a warning) when it cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> enable_compilation_cache(tempfile.mkdtemp()).is_dir()  # doctest: +SKIP
    True
    """
    directory = Path(path) if path is not None else default_cache_dir() / version_tag()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK):
            raise PermissionError(f"{directory} is not writable")
    except OSError as err:
        warnings.warn(
            f"bayesgmm: JAX's compilation cache stays off ({err}); every new process will "
            "recompile. Set BAYESGMM_CACHE_DIR to a writable directory.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    # JAX's size-bounded cache locks with filelock (a dependency of bayesgmm).
    jax.config.update("jax_compilation_cache_max_size", int(max_size_bytes))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_compilation_cache_dir", str(directory))
    # JAX decides once per process, at its first compilation, whether a cache is used;
    # a reset makes it decide again with the directory set.
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()
    return directory


def enable_on_import() -> Path | None:
    """Call ``enable_compilation_cache()`` if ``BAYESGMM_COMPILATION_CACHE=1`` and JAX has no cache set."""
    if os.environ.get("BAYESGMM_COMPILATION_CACHE", "0").strip().lower() not in ("1", "true", "yes", "on"):
        return None
    if jax.config.jax_compilation_cache_dir:
        return None
    return enable_compilation_cache()
