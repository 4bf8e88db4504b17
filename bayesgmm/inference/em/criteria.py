"""Information criteria of an EM fit: BIC, AIC and ICL, with scikit-learn's signs and counts."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from bayesgmm._validation import check_X
from bayesgmm.inference.em.mclust_models import check_em_covariance_type, n_covariance_parameters
from bayesgmm.inference.em.result import EMResult

#: Free parameters a uniform noise component adds, as mclust counts them (``nMclustParams``
#: with ``noise = TRUE``): its weight, and its volume, estimated from the data.
NOISE_PARAMETERS = 2


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Count the free parameters as scikit-learn and mclust (``nMclustParams``) count them.

    Parameters
    ----------
    n_components, n_features : int
    covariance_type : str
        scikit-learn's or mclust's name.

    Returns
    -------
    int

    Examples
    --------
    >>> n_parameters(2, 2, "full"), n_parameters(2, 2, "VVV"), n_parameters(3, 4, "EVE")
    (11, 11, 30)
    """
    check_em_covariance_type(covariance_type)
    cov = n_covariance_parameters(covariance_type, n_components, n_features)
    return int(cov + n_features * n_components + n_components - 1)


def bic_from_log_lik(log_lik: float, n_params: int, n: float) -> float:
    """``-2 log L + n_params * log(n)``: BIC from a total log-likelihood, scikit-learn's sign.

    Parameters
    ----------
    log_lik : float
        Total (sample-weighted) log-likelihood ``log L``.
    n_params : int
        Number of free parameters (:func:`n_parameters`).
    n : float
        Number of observations (total sample weight).

    Returns
    -------
    float

    Examples
    --------
    >>> round(bic_from_log_lik(-10.0, 2, math.e), 6)
    22.0
    """
    return -2 * log_lik + n_params * math.log(n)


def aic_from_log_lik(log_lik: float, n_params: int) -> float:
    """``-2 log L + 2 n_params``: AIC from a total log-likelihood (lower is better).

    Parameters
    ----------
    log_lik : float
        Total (sample-weighted) log-likelihood ``log L``.
    n_params : int
        Number of free parameters (:func:`n_parameters`).

    Returns
    -------
    float

    Examples
    --------
    >>> aic_from_log_lik(-10.0, 3)
    26.0
    """
    return -2 * log_lik + 2 * n_params


def classification_penalty(resp: np.ndarray, w: np.ndarray) -> float:
    """ICL's term on top of BIC: ``-2 sum_i w_i log r_{i, c(i)}``, ``c(i) = argmax_k r_ik``.

    Parameters
    ----------
    resp : ndarray, shape (n_obs, n_components)
        Responsibilities.
    w : ndarray, shape (n_obs,)
        Observation weights.

    Returns
    -------
    float
        Non-negative; zero for a hard partition.

    Examples
    --------
    >>> round(classification_penalty(np.array([[0.5, 0.5], [0.0, 1.0]]), np.ones(2)), 4)
    1.3863
    """
    # The MAP component's responsibility is the largest, at least 1 / n_components.
    hard = np.log(np.max(resp, axis=1))
    return -2 * float(w @ hard)


def _total_and_n(result, X, sample_weight):
    """Return the data, weights, weighted log-likelihood and total weight the criteria use.

    With neither ``X`` nor ``sample_weight`` given, these are the data and weights of the
    fit itself, so a weighted fit's criteria use its weighted log-likelihood and total weight.
    """
    if X is None:
        X = result.X
        if sample_weight is None:
            sample_weight = result.sample_weight
    else:
        X = check_X(X)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
    if w.shape != (len(X),):
        raise ValueError(f"sample_weight must have shape ({len(X)},), got {w.shape}.")
    return X, w, float(w @ result.log_prob(X)), float(w.sum())


def _n_params(result, X) -> int:
    extra = NOISE_PARAMETERS if result.noise_weight is not None else 0
    return n_parameters(result.params.n_components, X.shape[1], result.covariance_type) + extra


def bic(result: EMResult, X: ArrayLike | None = None, sample_weight: ArrayLike | None = None) -> float:
    """Bayesian information criterion, scikit-learn's sign (lower is better).

    ``-2 log L + n_parameters * log(n)``, with ``log L`` the sample-weighted
    log-likelihood and ``n`` the total sample weight (``n_obs`` without weights). mclust
    reports ``-bic``.

    Parameters
    ----------
    result : EMResult
    X : array-like, shape (n_obs, n_features), optional
        Data to score; those of the fit by default.
    sample_weight : array-like, shape (n_obs,), optional
        Weights of the rows of ``X``; those of the fit when ``X`` is not given either.

    Returns
    -------
    float

    Examples
    --------
    >>> from bayesgmm import fit_em, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> res = fit_em(X, 3, "tied", n_init=10, seed=0, tol=1e-9, max_iter=1000, reg_covar=0.0)
    >>> round(-bic(res), 1)  # mclust's BIC for EEE, G=3 is -2314.32
    -2314.3
    """
    X, _, total, n = _total_and_n(result, X, sample_weight)
    return bic_from_log_lik(total, _n_params(result, X), n)


def aic(result: EMResult, X: ArrayLike | None = None, sample_weight: ArrayLike | None = None) -> float:
    """Akaike information criterion, ``-2 log L + 2 n_parameters`` (lower is better).

    ``log L`` is the sample-weighted log-likelihood.

    Parameters
    ----------
    result : EMResult
    X : array-like, shape (n_obs, n_features), optional
        Data to score; those of the fit by default.
    sample_weight : array-like, shape (n_obs,), optional
        Weights of the rows of ``X``; those of the fit when ``X`` is not given either.

    Returns
    -------
    float

    Examples
    --------
    >>> from bayesgmm import fit_em, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> res = fit_em(X, 2, seed=0)
    >>> round(aic(res), 2)
    2282.53
    """
    X, _, total, _ = _total_and_n(result, X, sample_weight)
    return aic_from_log_lik(total, _n_params(result, X))


def icl(result: EMResult, X: ArrayLike | None = None, sample_weight: ArrayLike | None = None) -> float:
    """Integrated completed likelihood as mclust computes it, in BIC's sign (lower is better).

    ``ICL = BIC - 2 sum_i w_i log r_{i, c(i)}``, with ``c(i) = argmax_k r_ik`` the MAP
    classification of observation ``i`` (Biernacki, Celeux & Govaert 2000, as implemented
    by mclust's ``icl``): the completed log-likelihood of the hard partition, so ICL >= BIC
    and it penalises components that overlap. mclust reports ``-icl``.

    Parameters
    ----------
    result : EMResult
    X : array-like, shape (n_obs, n_features), optional
        Data to score; those of the fit by default.
    sample_weight : array-like, shape (n_obs,), optional
        Weights of the rows of ``X``; those of the fit when ``X`` is not given either.

    Returns
    -------
    float

    Examples
    --------
    >>> from bayesgmm import fit_em, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> res = fit_em(X, 3, "tied", n_init=10, seed=0, tol=1e-9, max_iter=1000, reg_covar=0.0)
    >>> round(-icl(res), 1)  # mclust's ICL for EEE, G=3 is -2357.8
    -2358.4
    """
    X, w, _, _ = _total_and_n(result, X, sample_weight)
    return bic(result, X, w) + classification_penalty(result.responsibilities(X), w)
