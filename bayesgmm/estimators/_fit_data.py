"""What ``GaussianMixture.fit`` does with its ``X`` before EM: check it in memory, or stream it."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import validate_data

from bayesgmm.inference.em.chunked import is_streamed


def fit_data(estimator: Any, X: Any) -> Any:
    """Return ``X`` checked as scikit-learn checks it, or as it is when ``fit_em`` streams it.

    A memmap, chunk callable or Parquet path (or any ``X`` with ``chunk_size``) is passed
    to the streamed EM, which checks each chunk; ``n_features_in_`` is then set after the fit
    (``streamed_features``).
    """
    if is_streamed(X, estimator.chunk_size):
        return X
    X = validate_data(estimator, X, ensure_min_samples=2, **estimator._accepted())
    if X.shape[0] < estimator.n_components:
        raise ValueError(
            f"Expected n_samples >= n_components but got n_components = {estimator.n_components}, "
            f"n_samples = {X.shape[0]}"
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
