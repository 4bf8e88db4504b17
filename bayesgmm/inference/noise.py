"""The uniform noise component of the Bayesian fits: settings, volume and starts.

mclust's noise (Banfield & Raftery 1993), as ``fit_em(noise="uniform")`` fits it: a density
``1 / V`` over a region of hypervolume ``V`` (the data's bounding box unless given) takes
the rows no Gaussian explains. The region is a box (:func:`bayesgmm.noise_region.noise_box`:
the data's bounding box, or that box scaled about its centre to the volume given), which the
fit keeps in ``attrs["noise_lower"]`` and ``attrs["noise_upper"]`` for the predictive draws.
The model runs on standardised data ``Z = (X - loc) / scale``, where the same region has
hypervolume ``V / prod_j scale_j``; the posterior's ``noise_weight`` is unit-free.
"""

from __future__ import annotations

import numpy as np

from bayesgmm.inference.em.noise import bounding_box_volume, check_noise
from bayesgmm.inference.start import em_start_type, sites_from_params
from bayesgmm.params import GMMParams
from bayesgmm.priors import Priors

# Noise weights handed to a sampler must lie strictly inside (0, 1).
_MIN_NOISE = 1e-3


def check_bayes_noise(noise: str | None, noise_volume: float | None) -> None:
    """Check ``noise`` and ``noise_volume`` of ``fit_nuts`` / ``fit_svi``.

    Raises
    ------
    ValueError
        As ``fit_em``'s check says (a ``noise`` other than None or ``"uniform"``, a
        ``noise_volume`` that is not a positive finite number or given without ``noise``).

    Examples
    --------
    >>> check_bayes_noise("uniform", None)
    >>> check_bayes_noise("bogus", None)
    Traceback (most recent call last):
    ...
    ValueError: noise must be one of (None, 'uniform'), got 'bogus'.
    """
    check_noise(noise, noise_volume)


def standardized_log_density(
    X: np.ndarray, scale: np.ndarray, noise_volume: float | None
) -> tuple[float, float]:
    """Return the noise's volume in the user's units and its log density in standardised ones.

    Parameters
    ----------
    X : ndarray, shape (n_obs, n_features)
        The data in the user's units (their bounding box is the default region).
    scale : ndarray, shape (n_features,)
        The standardisation's scales.
    noise_volume : float, optional
        ``V`` in the user's units.

    Returns
    -------
    volume : float
        ``V``, user's units.
    log_density : float
        ``-log(V / prod_j scale_j)``, the noise's log density on standardised data.

    Examples
    --------
    >>> v, ld = standardized_log_density(np.array([[0.0, 0.0], [2.0, 4.0]]), np.array([1.0, 2.0]), None)
    >>> v, round(float(np.exp(-ld)), 6)
    (8.0, 4.0)
    """
    volume = bounding_box_volume(X) if noise_volume is None else float(noise_volume)
    return volume, float(-(np.log(volume) - np.sum(np.log(scale))))


def noise_em_start(
    Z: np.ndarray, n_components: int, covariance_type: str, seed: int, log_density: float, n_init: int = 4
) -> tuple[GMMParams, float]:
    """Best of ``n_init`` EM fits with uniform noise on standardised data ``Z`` (NaN: missing).

    Returns
    -------
    params : GMMParams
        Weights (the Gaussians' ``pi_k``, summing to ``1 - noise_weight``) kept away from zero.
    noise_weight : float
        In ``(0, 1)``, away from both ends, so that a sampler can start there.
    """
    from bayesgmm.inference.em.fit import fit_em

    fit = fit_em(
        Z,
        n_components,
        em_start_type(covariance_type),
        n_init=n_init,
        seed=seed,
        noise="uniform",
        noise_volume=float(np.exp(-log_density)),
        missing="marginalize" if np.isnan(Z).any() else "error",
    )
    noise_weight = float(np.clip(fit.noise_weight, _MIN_NOISE, 1 - _MIN_NOISE))
    weights = np.maximum(np.asarray(fit.params.weights, np.float64), _MIN_NOISE)
    weights = weights / weights.sum() * (1 - noise_weight)
    return GMMParams(weights, np.asarray(fit.params.means), np.asarray(fit.params.scale_tril)), noise_weight


def noise_sites(
    params: GMMParams,
    noise_weight: float,
    covariance_type: str,
    weight_prior: str = "dirichlet",
    priors: Priors | None = None,
) -> dict:
    """Return the model's latent sites under noise: those of the Gaussians' shares and ``noise_weight``.

    ``params.weights`` are the Gaussians' ``pi_k``, summing to ``1 - noise_weight``; the
    weight prior's sites (``start.sites_from_params``) are those of their shares.

    Examples
    --------
    >>> p = GMMParams(np.array([0.45, 0.45]), np.zeros((2, 1)), np.ones((2, 1, 1)))
    >>> sites = noise_sites(p, 0.1, "diag")
    >>> sites["weights"].tolist(), float(sites["noise_weight"])
    ([0.5, 0.5], 0.1)
    """
    weights = np.asarray(params.weights, np.float64)
    shares = GMMParams(weights / weights.sum(), params.means, params.scale_tril)
    sites = sites_from_params(shares, covariance_type, weight_prior, priors)
    return {**sites, "noise_weight": np.asarray(noise_weight, np.float64)}
