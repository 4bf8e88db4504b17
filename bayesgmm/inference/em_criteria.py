"""Information criteria of an EM fit: BIC, AIC and ICL, with scikit-learn's signs and counts."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from bayesgmm._validation import check_covariance_type, check_X
from bayesgmm.inference import em_shapes


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Number of free parameters, as scikit-learn counts them."""
    cov = {
        "full": n_components * n_features * (n_features + 1) / 2,
        "diag": n_components * n_features,
        "tied": n_features * (n_features + 1) / 2,
        "spherical": n_components,
    }[check_covariance_type(covariance_type)]
    return int(cov + n_features * n_components + n_components - 1)


def _total_and_n(result, X, sample_weight):
    X = result.X if X is None else check_X(X, dtype=np.asarray(result.params.means).dtype)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
    ll = np.asarray(em_shapes.log_prob(result.params, jnp.asarray(X)))
    return X, w, float(w @ ll), float(w.sum())


def bic(result, X=None, sample_weight=None) -> float:
    """Bayesian information criterion, scikit-learn's sign (lower is better).

    ``-2 log L + n_parameters * log(n_obs)``; ``X`` defaults to the data fitted and
    ``n_obs`` is the total sample weight.
    """
    X, _, total, n = _total_and_n(result, X, sample_weight)
    p = n_parameters(result.params.n_components, X.shape[1], result.covariance_type)
    return -2 * total + p * math.log(n)


def aic(result, X=None, sample_weight=None) -> float:
    """Akaike information criterion, ``-2 log L + 2 n_parameters`` (lower is better)."""
    X, _, total, _ = _total_and_n(result, X, sample_weight)
    return -2 * total + 2 * n_parameters(result.params.n_components, X.shape[1], result.covariance_type)


def icl(result, X=None, sample_weight=None) -> float:
    """Integrated completed likelihood (Biernacki et al. 2000), BIC's sign (lower is better).

    ``ICL = BIC + 2 * E`` with ``E = -sum_i sum_k r_ik log r_ik >= 0`` the entropy of the
    responsibilities, so ICL >= BIC and it penalises overlapping components. (mclust
    reports ``-ICL``.)
    """
    X, w, _, _ = _total_and_n(result, X, sample_weight)
    resp = np.asarray(em_shapes.responsibilities(result.params, jnp.asarray(X)))
    entropy = -np.sum(w[:, None] * resp * np.log(np.where(resp > 0, resp, 1.0)))
    return bic(result, X, sample_weight) + 2 * entropy
