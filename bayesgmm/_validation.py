"""Input checks shared by every entry point: bad input fails loudly and says what to do."""

from __future__ import annotations

import numbers

import jax
import numpy as np

#: The Bayesian fits' covariance types: scikit-learn's four and mclust's EII and EEI.
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical", "EII", "EEI")
#: mclust's names of scikit-learn's four types, accepted by the Bayesian fits as aliases.
COVARIANCE_ALIASES = {"VVV": "full", "EEE": "tied", "VVI": "diag", "VII": "spherical"}


def column_names(X) -> tuple[str, ...] | None:
    """Return the column names of a data frame ``X`` as strings, or None for an unnamed array."""
    return tuple(str(c) for c in X.columns) if hasattr(X, "columns") else None


#: What every refusal of NaN says to do.
NAN_ADVICE = (
    "with missing='marginalize' each row counts by its observed features (values missing at random), "
    "or remove or impute them."
)


def check_X(X, n_components: int | None = None, dtype=np.float64, name: str = "X") -> np.ndarray:
    """Validate data and return it as a 2-D float array of shape (n_obs, n_features).

    A 1-D array is read as ``n_obs`` observations of one feature. A ``jax.Array`` sharded
    over this process's devices is gathered (``bayesgmm.sharding``).

    Raises
    ------
    ValueError
        If ``X`` is empty, has more than two dimensions, is not numeric, holds
        NaN or infinity, or has fewer observations than ``n_components``.
    """
    if hasattr(X, "to_numpy"):  # pandas
        X = X.to_numpy()
    if isinstance(X, jax.Array) and not X.is_fully_addressable:
        raise ValueError(
            f"{name} has rows on other processes (jax.distributed), which only fit_em streams; gather "
            "them first (jax.experimental.multihost_utils.process_allgather)."
        )
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as an array: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(
            f"{name} must be numeric, got dtype {arr.dtype}; drop or encode non-numeric columns first."
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real-valued, got complex dtype {arr.dtype}.")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D with shape (n_obs, n_features), got shape {arr.shape}; "
            "reshape it, e.g. X.reshape(len(X), -1)."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"{name} is empty (shape {arr.shape}); it needs at least one observation and feature."
        )
    arr = np.asarray(arr, dtype=dtype)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        nan_only = not np.isinf(arr).any()
        raise ValueError(
            f"{name} contains {'NaN' if nan_only else 'NaN or infinity'} in {rows.size} row(s) (first: "
            f"{rows[:5].tolist()}); " + (NAN_ADVICE if nan_only else "remove or impute them before fitting.")
        )
    if n_components is not None and arr.shape[0] < n_components:
        raise ValueError(
            f"{name} has {arr.shape[0]} observations but n_components={n_components}; "
            "a mixture needs at least as many observations as components."
        )
    return arr


def check_n_components(n_components) -> int:
    if not isinstance(n_components, numbers.Integral) or isinstance(n_components, bool) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}.")
    return int(n_components)


def check_covariance_type(covariance_type) -> str:
    """Return the canonical name of a Bayesian fit's ``covariance_type``.

    mclust's ``VVV``, ``EEE``, ``VVI`` and ``VII`` give scikit-learn's ``full``, ``tied``,
    ``diag`` and ``spherical``; the other names of ``COVARIANCE_TYPES`` are returned as
    they are. mclust's other models raise a ``ValueError`` that points to EM.
    """
    from bayesgmm.inference.em.mclust_models import MCLUST_MODELS

    if isinstance(covariance_type, str):
        canonical = COVARIANCE_ALIASES.get(covariance_type, covariance_type)
        if canonical in COVARIANCE_TYPES:
            return canonical
    choices = f"{COVARIANCE_TYPES} (or the aliases {tuple(COVARIANCE_ALIASES)})"
    if covariance_type in MCLUST_MODELS:
        raise ValueError(
            f"covariance_type={covariance_type!r} is available by EM only (fit_em or GaussianMixture); "
            f"the Bayesian fits take {choices}."
        )
    raise ValueError(f"covariance_type must be one of {choices}, got {covariance_type!r}.")


def as_key(seed) -> jax.Array:
    """Turn a seed, a ``numpy`` Generator/RandomState, ``None`` or a JAX key into a JAX key."""
    if seed is None:
        seed = np.random.default_rng().integers(2**31 - 1)
    elif isinstance(seed, np.random.RandomState):
        seed = seed.randint(2**31 - 1)
    elif isinstance(seed, np.random.Generator):
        seed = seed.integers(2**31 - 1)
    elif isinstance(seed, jax.Array) and seed.shape != ():
        return seed
    return jax.random.PRNGKey(int(seed))


def standardize(X: np.ndarray):
    """Return ``(Z, loc, scale)`` with ``Z = (X - loc) / scale`` per feature.

    A constant feature gets scale 1 so nothing is divided by zero. NaN (missing values)
    stay NaN; ``loc`` and ``scale`` are then the moments of the observed values.
    """
    nan = np.isnan(X).any()
    loc = np.nanmean(X, axis=0) if nan else X.mean(axis=0)
    scale = np.nanstd(X, axis=0) if nan else X.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return (X - loc) / scale, loc, scale
