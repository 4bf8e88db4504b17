"""What ``GaussianMixture.fit`` does with its ``X`` before EM: check it in memory, or stream it."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import validate_data

from bayesgmm._validation import NAN_ADVICE
from bayesgmm.inference.em.chunked import is_streamed


def fit_data(estimator: Any, X: Any) -> Any:
    """Return ``X`` checked as scikit-learn checks it, or as it is when ``fit_em`` streams it.

    A memmap, chunk callable or Parquet path (or any ``X`` with ``chunk_size``) is passed
    to the streamed EM, which checks each chunk; ``n_features_in_`` is then set after the fit
    (``streamed_features``).
    """
    if is_streamed(X, estimator.chunk_size):
        return X
    X = checked_data(estimator, X, reset=True, ensure_min_samples=2)
    if X.shape[0] < estimator.n_components:
        raise ValueError(
            f"Expected n_samples >= n_components but got n_components = {estimator.n_components}, "
            f"n_samples = {X.shape[0]}"
        )
    return X


def checked_data(estimator: Any, X: Any, reset: bool, **checks: Any) -> np.ndarray:
    """Return ``X`` checked by scikit-learn's ``validate_data``; NaN only with ``missing="marginalize"``.

    Rows with NaN otherwise raise a ``ValueError`` that names them and the option, instead of
    scikit-learn's generic advice (infinity still gets scikit-learn's message).
    """
    marginalize = estimator.missing == "marginalize"
    # EM for incomplete data runs in float64.
    dtype = np.float64 if marginalize else [np.float64, np.float32]
    X = validate_data(estimator, X, reset=reset, dtype=dtype, ensure_all_finite="allow-nan", **checks)
    rows = np.flatnonzero(np.isnan(X).any(axis=1))
    if rows.size and not marginalize:
        raise ValueError(
            f"Input X contains NaN in {rows.size} row(s) (first: {rows[:5].tolist()}); {NAN_ADVICE}"
        )
    return X


def fit_dtype(X: Any, noise: str | None) -> np.dtype:
    """Return the dtype EM runs in: ``X``'s (float32 or float64), float64 for a noise fit or a stream."""
    dtype = np.dtype(getattr(X, "dtype", np.float64))
    return dtype if noise is None and dtype in (np.float32, np.float64) else np.dtype(np.float64)


def streamed_features(estimator: Any, X: Any, result: Any) -> None:
    """Set ``n_features_in_`` (and the Parquet columns as ``feature_names_in_``) after a streamed fit."""
    if is_streamed(X, estimator.chunk_size):
        estimator.n_features_in_ = int(result.params.means.shape[1])
        if result.feature_names is not None:
            estimator.feature_names_in_ = np.asarray(result.feature_names, dtype=object)
