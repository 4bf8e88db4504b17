"""The region of a uniform noise component, an axis-aligned box, and draws from a mixture with it.

mclust's noise has the density ``1 / V`` over a region of hypervolume ``V``. Here that region
is the box ``[lower_j, upper_j]`` of every feature ``j``, in the user's units: the data's
bounding box (per-feature minimum and maximum), or, when ``noise_volume`` is given, that box
scaled about its centre by the same factor ``(noise_volume / prod_j (max_j - min_j)) ** (1 /
n_features)`` in every feature, so that its volume is ``noise_volume``. A flat data box (a
constant feature) has no such factor; the region is then the cube of volume ``noise_volume``
about its centre. The densities need only ``V``; the fits keep the box
(``EMResult.noise_lower`` / ``noise_upper``, ``GaussianMixture.noise_lower_`` /
``noise_upper_``, a Bayesian fit's ``attrs["noise_lower"]`` / ``attrs["noise_upper"]``) so
that ``sample`` and the predictive groups draw the noise's rows uniformly from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from bayesgmm import densities
from bayesgmm.params import GMMParams


def noise_box(X: ArrayLike, noise_volume: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return the noise's region, the box ``[lower, upper]``, for data ``X``.

    Parameters
    ----------
    X : array, shape (n_obs, n_features)
        The data (user's units) whose bounding box the region is, or is scaled from. NaN
        (missing values) are skipped: each feature's range is that of its observed values.
    noise_volume : float, optional
        The region's volume; by default that of the data's bounding box.

    Returns
    -------
    lower, upper : ndarray, shape (n_features,)
        The data's per-feature minimum and maximum, or, with ``noise_volume``, that box
        scaled about its centre by one factor in every feature so that
        ``prod(upper - lower) == noise_volume`` (the cube of that volume about the centre
        when a feature is constant).

    Examples
    --------
    >>> X = np.array([[0.0, 0.0], [2.0, 1.0]])
    >>> [a.tolist() for a in noise_box(X)]
    [[0.0, 0.0], [2.0, 1.0]]
    >>> [a.tolist() for a in noise_box(X, noise_volume=8.0)]  # each side twice as long
    [[-1.0, -0.5], [3.0, 1.5]]
    """
    X = np.asarray(X, dtype=np.float64)
    lower, upper = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    if noise_volume is None:
        return lower, upper
    centre, ranges = (lower + upper) / 2, upper - lower
    if np.all(ranges > 0):
        # In logs: the product of many ranges can overflow where the factor does not.
        factor = np.exp((np.log(float(noise_volume)) - np.sum(np.log(ranges))) / ranges.size)
        half = ranges * factor / 2
    else:
        half = np.full(ranges.size, float(noise_volume) ** (1 / ranges.size) / 2)
    return centre - half, centre + half


def unobserved_log_ranges(X: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> np.ndarray:
    """Return, for each row, the sum of ``log(upper_j - lower_j)`` over its missing features.

    The noise's density on a row's observed features ``O`` is the uniform density of the
    box's projection on ``O``, ``1 / prod_{j in O} (upper_j - lower_j)`` (the marginal of
    ``1 / V`` over the missing features), so its log is ``-log V`` plus this term, which is
    zero for a complete row.

    Parameters
    ----------
    X : array, shape (n_obs, n_features)
        NaN marks a missing value.
    lower, upper : array, shape (n_features,)
        The noise's box, in the units of ``X``.

    Returns
    -------
    ndarray, shape (n_obs,)

    Examples
    --------
    >>> X = np.array([[0.5, np.nan], [0.5, 1.0]])
    >>> unobserved_log_ranges(X, [0.0, 0.0], [2.0, 4.0]).round(6).tolist()  # log 4, 0
    [1.386294, 0.0]
    """
    log_ranges = np.log(np.asarray(upper, np.float64) - np.asarray(lower, np.float64))
    return np.isnan(np.asarray(X, np.float64)) @ log_ranges


def stored_box(lower: Any, upper: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return a fit's stored noise region as float arrays.

    Raises
    ------
    ValueError
        When ``lower`` or ``upper`` is None: a fit made or saved before the region was kept.
    """
    if lower is None or upper is None:
        raise ValueError(
            "This fit has a noise component but no stored noise region (noise_lower, noise_upper): "
            "it was made or saved by an older bayesgmm. Refit it to draw from the noise."
        )
    return np.asarray(lower, np.float64).reshape(-1), np.asarray(upper, np.float64).reshape(-1)


def attrs_box(attrs: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Return the noise region kept in a Bayesian fit's ``attrs`` (see :func:`stored_box`)."""
    return stored_box(attrs.get("noise_lower"), attrs.get("noise_upper"))


def sample_with_noise(
    params: GMMParams, noise_weight: Any, lower: Any, upper: Any, key: jax.Array, n_obs: int
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Draw ``n_obs`` rows from a mixture with uniform noise, and their labels.

    Each row is noise with probability ``noise_weight``, uniform in the box, and otherwise
    drawn from the Gaussians with weights ``pi_k / (1 - noise_weight)``.

    Parameters
    ----------
    params : GMMParams
        One parameter set; its weights ``pi_k`` sum to ``1 - noise_weight`` (any positive
        weights do: they are normalised).
    noise_weight : float
    lower, upper : array, shape (n_features,)
        The noise's box.
    key : jax PRNG key
    n_obs : int

    Returns
    -------
    X : array, shape (n_obs, n_features)
    labels : int array, shape (n_obs,)
        The Gaussian each row came from; -1 for noise.

    Examples
    --------
    >>> p = GMMParams(jnp.array([0.5]), jnp.zeros((1, 1)), jnp.ones((1, 1, 1)))
    >>> X, labels = sample_with_noise(p, 0.5, jnp.array([10.0]), jnp.array([11.0]), jax.random.PRNGKey(0), 6)
    >>> bool(jnp.all((labels == -1) == (X[:, 0] >= 10.0)))
    True
    """
    key_gauss, key_noise, key_box = jax.random.split(key, 3)
    X, labels = densities.sample(params, key_gauss, n_obs)
    is_noise = jax.random.uniform(key_noise, (n_obs,), X.dtype) < noise_weight
    lower, upper = jnp.asarray(lower, X.dtype), jnp.asarray(upper, X.dtype)
    U = jax.random.uniform(key_box, X.shape, X.dtype, minval=lower, maxval=upper)
    return jnp.where(is_noise[:, None], U, X), jnp.where(is_noise, -1, labels)


def predictive_draws_noise(
    params: GMMParams, noise_weight: ArrayLike, lower: ArrayLike, upper: ArrayLike, key: jax.Array, n_obs: int
) -> tuple[np.ndarray, np.ndarray]:
    """One simulated data set of ``n_obs`` rows per draw of a mixture with uniform noise.

    Parameters
    ----------
    params : GMMParams
        Draws with leaves shaped (*batch, n_components, ...), weights summing to
        ``1 - noise_weight``.
    noise_weight : array, shape (*batch,)
    lower, upper : array, shape (n_features,)
        The noise's box.
    key : jax PRNG key
    n_obs : int

    Returns
    -------
    X : ndarray, shape (*batch, n_obs, n_features)
    noise : ndarray of bool, shape (*batch, n_obs)
        Whether each row was drawn from the noise.
    """
    lead = params.weights.shape[:-1]
    keys = jax.random.split(key, math.prod(lead))
    keys = keys.reshape((*lead, *keys.shape[1:]))
    dtype = params.means.dtype
    draws = (params, jnp.asarray(noise_weight, dtype), keys)
    box = (jnp.asarray(lower, dtype), jnp.asarray(upper, dtype))
    # n_obs travels as the shape of an empty array: over_draws traces its arguments.
    rows = jnp.zeros((n_obs, 0))
    X, labels = densities.over_draws(_draw, draws, box, rows, n_lead=len(lead), batch_size=None)
    return np.asarray(X), np.asarray(labels) == -1


def _draw(draw: tuple, box: tuple, rows: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    params, noise_weight, key = draw
    return sample_with_noise(params, noise_weight, *box, key, rows.shape[0])
