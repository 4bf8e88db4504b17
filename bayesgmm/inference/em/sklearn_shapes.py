"""Conversions between GMMParams and scikit-learn's per-covariance-type array shapes.

scikit-learn stores covariances and precision Cholesky factors as
(n_components, D, D) for full, (D, D) for tied, (n_components, D) for diag and
(n_components,) for spherical; bayesgmm always keeps full Cholesky factors of the
covariances. The precision Cholesky factor of a full covariance follows scikit-learn:
``P = inv(L).T`` (upper triangular) with ``precision = P @ P.T``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike
from sklearn.utils import check_array

from bayesgmm import densities
from bayesgmm._jit import jit
from bayesgmm.inference.em.mclust_models import sklearn_layout
from bayesgmm.noise_region import stored_box
from bayesgmm.params import GMMParams

if TYPE_CHECKING:
    from bayesgmm.inference.em.result import EMResult

#: Jitted densities, so that predictions do not dispatch op by op.
log_prob = jit(densities.log_prob)
responsibilities = jit(densities.responsibilities)


def fitted_attributes(res: EMResult, covariance_type: str) -> dict:
    """Return the fitted attributes of a ``GaussianMixture`` (``weights_``, ...) from its EM result."""
    weights, means = np.asarray(res.params.weights), np.asarray(res.params.means)
    precisions_cholesky = sklearn_precisions_cholesky(res.params, covariance_type)
    return {
        "weights_": weights, "means_": means,
        "covariances_": sklearn_covariances(res.params, covariance_type),
        "precisions_cholesky_": precisions_cholesky,
        "precisions_": sklearn_precisions(precisions_cholesky, covariance_type),
        "converged_": res.converged, "n_iter_": res.n_iter, "lower_bound_": res.lower_bound,
        "lower_bounds_": [float(v) for v in res.lower_bounds],
        "noise_weight_": res.noise_weight, "noise_volume_": res.noise_volume,
        "noise_lower_": res.noise_lower, "noise_upper_": res.noise_upper,
    }  # fmt: skip


def sklearn_covariances(params: GMMParams, covariance_type: str) -> np.ndarray:
    """Return the covariances in scikit-learn's shape for ``covariance_type``.

    Parameters
    ----------
    params : GMMParams
    covariance_type : str

    Returns
    -------
    ndarray
        (n_components, D, D) full, (D, D) tied, (n_components, D) diag, (n_components,) spherical.
    """
    covariance_type = sklearn_layout(covariance_type)
    tril = np.asarray(params.scale_tril)  # on the host: a few small products
    cov = tril @ np.swapaxes(tril, -1, -2)
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return cov[0]
    diag = np.diagonal(cov, axis1=-2, axis2=-1)
    return diag.copy() if covariance_type == "diag" else diag[:, 0].copy()


def sklearn_precisions_cholesky(params: GMMParams, covariance_type: str) -> np.ndarray:
    """Return the precision Cholesky factors in scikit-learn's shape and convention.

    Parameters
    ----------
    params : GMMParams
    covariance_type : str

    Returns
    -------
    ndarray
        Shaped as ``sklearn_covariances``; upper triangular ``inv(L).T`` for full and tied.
    """
    covariance_type = sklearn_layout(covariance_type)
    L = np.asarray(params.scale_tril)
    if covariance_type in ("diag", "spherical"):
        inv_sd = 1.0 / np.diagonal(L, axis1=-2, axis2=-1)
        return inv_sd.copy() if covariance_type == "diag" else inv_sd[:, 0].copy()
    eye = np.eye(L.shape[-1], dtype=L.dtype)
    P = np.stack([scipy.linalg.solve_triangular(Lk, eye, lower=True).T for Lk in L])
    return P if covariance_type == "full" else P[0]


def sklearn_precisions(precisions_cholesky: np.ndarray, covariance_type: str) -> np.ndarray:
    """Compute the precisions from scikit-learn-shaped precision Cholesky factors.

    Parameters
    ----------
    precisions_cholesky : ndarray
        Shaped as ``sklearn_precisions_cholesky`` returns them.
    covariance_type : str

    Returns
    -------
    ndarray, the shape of ``precisions_cholesky``
    """
    covariance_type = sklearn_layout(covariance_type)
    P = precisions_cholesky
    if covariance_type in ("diag", "spherical"):
        return P**2
    return P @ np.swapaxes(P, -1, -2)


def scale_tril_from_precisions(
    precisions: ArrayLike | None, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """Compute covariance Cholesky factors from scikit-learn-shaped precisions.

    Parameters
    ----------
    precisions : array-like
        Shaped as scikit-learn's ``precisions_init`` for ``covariance_type``.
    covariance_type : str
    n_components, n_features : int

    Returns
    -------
    ndarray, shape (n_components, n_features, n_features)
    """
    covariance_type = sklearn_layout(covariance_type)
    prec = np.asarray(precisions, dtype=np.float64)
    if covariance_type in ("diag", "spherical"):
        if covariance_type == "spherical":
            prec = prec[:, None] * np.ones((1, n_features))
        return np.stack([np.diag(1.0 / np.sqrt(p)) for p in prec])
    mats = prec if covariance_type == "full" else np.broadcast_to(prec, (n_components, *prec.shape))
    # Sigma = inv(precision) via the precision's own Cholesky factor, then refactor.
    return np.stack(
        [np.linalg.cholesky(scipy.linalg.cho_solve(scipy.linalg.cho_factor(m), np.eye(len(m)))) for m in mats]
    )


def check_init(
    weights: ArrayLike | None,
    means: ArrayLike | None,
    precisions: ArrayLike | None,
    n_components: int,
    n_features: int,
    covariance_type: str,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Validate user-given starting values in scikit-learn's shapes, with its checks and messages.

    Parameters
    ----------
    weights : array-like, shape (n_components,), optional
    means : array-like, shape (n_components, n_features), optional
    precisions : array-like, optional
        Shaped as scikit-learn's ``precisions_init`` for ``covariance_type``.
    n_components, n_features : int
    covariance_type : str

    Returns
    -------
    weights, means, precisions : arrays or None
        As given (float64, or float32 if given so), None where not given.
    """
    covariance_type = sklearn_layout(covariance_type)
    if weights is not None:
        weights = _check_weights(weights, n_components)
    if means is not None:
        means = check_array(means, dtype=_DTYPES, ensure_2d=False)
        _check_shape(means, (n_components, n_features), "means")
    if precisions is not None:
        precisions = _check_precisions(precisions, covariance_type, n_components, n_features)
    return weights, means, precisions


def starting_values(
    weights_init: ArrayLike | None,
    means_init: ArrayLike | None,
    precisions_init: ArrayLike | None,
    covariance_type: str,
    n_components: int,
    shift: np.ndarray,
    dtype: np.dtype,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Check user-given starting values and put them in the fit's coordinates and dtype.

    Parameters
    ----------
    weights_init, means_init, precisions_init : array-like or None
        In scikit-learn's shapes (see :func:`check_init`).
    covariance_type : str
    n_components : int
    shift : ndarray, shape (n_features,)
        The centre the fit runs about; the means are given relative to it.
    dtype : numpy dtype

    Returns
    -------
    weights : ndarray, shape (n_components,), or None
    means : ndarray, shape (n_components, n_features), or None
        Centred on ``shift``.
    scale_tril : ndarray, shape (n_components, n_features, n_features), or None
        Cholesky factors of the covariances.
    """
    covariance_type = sklearn_layout(covariance_type)
    n_features = len(shift)
    weights0, means0, precisions0 = check_init(
        weights_init, means_init, precisions_init, n_components, n_features, covariance_type
    )
    return (
        None if weights0 is None else weights0.astype(dtype),
        None if means0 is None else (np.asarray(means0, np.float64) - shift).astype(dtype),
        None
        if precisions0 is None
        else scale_tril_from_precisions(precisions0, covariance_type, n_components, n_features).astype(dtype),
    )


_DTYPES = [np.float64, np.float32]


def _check_weights(weights, n_components):
    weights = check_array(weights, dtype=_DTYPES, ensure_2d=False)
    _check_shape(weights, (n_components,), "weights")
    if np.any(weights < 0.0) or np.any(weights > 1.0):
        # scikit-learn's message, kept for code that matches on it, prints the smallest weight
        # after "max value"; the parenthesis says so.
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got "
            f"max value {np.min(weights):.5f}, min value {np.max(weights):.5f} "
            "(as scikit-learn words it: the first number is the smallest weight, the second the largest)"
        )
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if not np.allclose(float(np.abs(1.0 - np.sum(weights))), 0.0, atol=atol):
        raise ValueError(
            f"The parameter 'weights' should be normalized, but got sum(weights) = {np.sum(weights):.5f}"
        )
    return weights


def _check_precisions(precisions, covariance_type, n_components, n_features):
    precisions = check_array(precisions, dtype=_DTYPES, ensure_2d=False, allow_nd=covariance_type == "full")
    shape = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]
    _check_shape(precisions, shape, f"{covariance_type} precision")
    if covariance_type in ("diag", "spherical"):
        if np.any(precisions <= 0.0):
            raise ValueError(f"'{covariance_type} precision' should be positive")
        return precisions
    for m in precisions.reshape(-1, n_features, n_features):
        if not (np.all(np.isclose(m, m.T)) and np.all(np.linalg.eigvalsh(m) > 0.0)):
            raise ValueError(f"'{covariance_type} precision' should be symmetric, positive-definite")
    return precisions


def _check_shape(value, shape, name):
    if value.shape != shape:
        raise ValueError(f"The parameter '{name}' should have the shape of {shape}, but got {value.shape}")


def params_from_sklearn(
    weights: ArrayLike, means: ArrayLike, precisions_cholesky: ArrayLike, covariance_type: str
) -> GMMParams:
    """Build GMMParams from scikit-learn's ``weights_``, ``means_`` and ``precisions_cholesky_``.

    The inverse of :func:`sklearn_precisions_cholesky`; shapes as in scikit-learn.
    """
    covariance_type = sklearn_layout(covariance_type)
    P = np.asarray(precisions_cholesky)
    means = np.asarray(means)
    n_components, n_features = means.shape
    if covariance_type in ("diag", "spherical"):
        sd = 1.0 / (P if covariance_type == "diag" else P[:, None] * np.ones((1, n_features)))
        tril = np.stack([np.diag(s) for s in sd])
    else:
        mats = P if covariance_type == "full" else np.broadcast_to(P, (n_components, n_features, n_features))
        # Sigma = P^-T P^-1, so inv(P).T is its lower Cholesky factor.
        tril = np.stack([np.linalg.inv(m).T for m in mats])
    return GMMParams(jnp.asarray(weights), jnp.asarray(means), jnp.asarray(tril))


def noise_terms(estimator: object) -> tuple | None:
    """Return a fitted estimator's ``(noise_weight_, noise_lower_, noise_upper_)``; None without noise."""
    if getattr(estimator, "noise_weight_", None) is None:
        return None
    return tuple(getattr(estimator, f"noise_{name}_", None) for name in ("weight", "lower", "upper"))


def sample_grouped(
    params: GMMParams, n_samples: int, rng: np.random.RandomState, noise: tuple | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_samples`` points grouped by component, as scikit-learn's ``sample`` does.

    ``noise`` is ``(noise_weight, lower, upper)`` of a fit with uniform noise (weights
    summing to ``1 - noise_weight``): the count of noise rows is then one more cell of the
    multinomial, and they come last, uniform in the box ``[lower, upper]``, labelled -1
    (a ValueError asks to refit when the box is None, a fit saved without it).

    Returns
    -------
    X : ndarray, shape (n_samples, n_features)
    labels : ndarray of int, shape (n_samples,)
    """
    weights = np.asarray(params.weights, dtype=np.float64)
    if noise is not None:
        noise = (noise[0], *stored_box(noise[1], noise[2]))
        weights = np.append(weights, noise[0])
        weights = weights / weights.sum()
    counts = rng.multinomial(n_samples, weights)
    L, means = np.asarray(params.scale_tril), np.asarray(params.means)
    parts = [m + rng.standard_normal((c, len(m))) @ Lk.T for m, Lk, c in zip(means, L, counts, strict=False)]
    labels = np.repeat(np.arange(len(means)), counts[: len(means)])
    if noise is not None:
        parts.append(rng.uniform(noise[1], noise[2], size=(counts[-1], means.shape[1])))
        labels = np.concatenate([labels, np.full(counts[-1], -1)])
    return np.vstack(parts).astype(np.float64), labels
