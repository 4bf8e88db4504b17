"""The uniform noise component of a posterior: its responsibilities and predictive terms.

A fit with ``noise="uniform"`` has a ``noise_weight`` (dims chain, draw) in its posterior
and the noise's hypervolume in ``attrs["noise_volume"]`` (user's units); the ``weights``
of the Gaussians sum to ``1 - noise_weight``. The noise is not exchangeable with the
Gaussians, so relabelling never moves it: its column is always the last. A row with
missing values (NaN, ``missing="marginalize"``) has the noise density of the box
(``attrs["noise_lower"]``, ``attrs["noise_upper"]``) projected on its observed features.
"""

from __future__ import annotations

from collections.abc import Callable

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bayesgmm import densities, incomplete
from bayesgmm.noise_region import attrs_box, stored_box, unobserved_log_ranges
from bayesgmm.params import GMMParams


def has_noise(idata: az.InferenceData, group: str = "posterior") -> bool:
    """Return whether ``idata``'s ``group`` holds a uniform noise component."""
    return group in idata.groups() and "noise_weight" in idata[group]


def log_noise_draws(idata: az.InferenceData, group: str = "posterior") -> np.ndarray:
    """Return ``log noise_weight - log noise_volume`` of every draw, shape (n_chains, n_draws).

    Raises
    ------
    ValueError
        When ``idata`` has no noise component.
    """
    if not has_noise(idata, group):
        raise ValueError("idata has no noise component; fit with noise='uniform'.")
    weight = idata[group]["noise_weight"].transpose("chain", "draw").values
    return np.log(weight) - np.log(float(idata.attrs["noise_volume"]))


def _joint_fn(gaussian: Callable) -> Callable:
    def joint(draw: tuple, X: jnp.ndarray, unseen: jnp.ndarray) -> jnp.ndarray:
        """Joint log densities of one draw, shape (n_obs, n_components + 1), the noise last."""
        params, log_noise = draw
        gauss = gaussian(params, X)
        return jnp.concatenate([gauss, (log_noise + unseen)[:, None]], axis=1)

    return joint


def _reduced(joint: Callable, reduce: Callable) -> Callable:
    def fn(draw: tuple, X: jnp.ndarray, unseen: jnp.ndarray) -> jnp.ndarray:
        return reduce(joint(draw, X, unseen), axis=1)

    return fn


#: The draw functions, module-level so that over_draws's compiled programs are reused; by
#: (what they reduce to, whether the data hold NaN, which take the masked formula).
_JOINT = {False: _joint_fn(densities.joint_log_prob), True: _joint_fn(incomplete.joint_log_prob_nan)}
_FNS = {
    (name, nan): _reduced(_JOINT[nan], reduce)
    for name, reduce in (("resp", jax.nn.softmax), ("log_prob", jax.nn.logsumexp))
    for nan in (False, True)
}


def noise_row_terms(X: np.ndarray, noise_box: tuple | None) -> np.ndarray:
    """Return the noise's per-row log-density term beyond ``log noise_weight - log V``, (n_obs,).

    Zero for complete rows; for a row with missing values (NaN) the sum of the log sides of
    the box over its missing features, so that the noise's density is that of the box's
    projection on its observed ones (:func:`bayesgmm.noise_region.unobserved_log_ranges`).

    Raises
    ------
    ValueError
        When ``X`` holds NaN and ``noise_box`` is None.
    """
    X = np.asarray(X, np.float64)
    if not np.isnan(X).any():
        return np.zeros(len(X))
    if noise_box is None:
        raise ValueError(
            "X holds NaN: pass noise_box=(lower, upper), the fit's noise region "
            "(attrs['noise_lower'], attrs['noise_upper']), to score rows with missing values."
        )
    return unobserved_log_ranges(X, *stored_box(*noise_box))


def _lifted(name, params, log_noise, X, batch_size, noise_box) -> np.ndarray:
    unseen = noise_row_terms(X, noise_box)
    fn = _FNS[name, bool(np.isnan(np.asarray(X, np.float64)).any())]
    X = jnp.asarray(X, dtype=params.means.dtype)
    draws = (params, jnp.asarray(log_noise, params.means.dtype))
    n_lead = params.weights.ndim - 1
    unseen = jnp.asarray(unseen, params.means.dtype)
    return np.asarray(densities.over_draws(fn, draws, X, unseen, n_lead=n_lead, batch_size=batch_size))


def noise_responsibilities(
    params: GMMParams,
    log_noise: np.ndarray,
    X: np.ndarray,
    batch_size: int = 64,
    noise_box: tuple | None = None,
) -> np.ndarray:
    """Responsibilities of every draw with the noise as a last column.

    Parameters
    ----------
    params : GMMParams
        Draws with leaves shaped (*lead, n_components, ...), weights summing to
        ``1 - noise_weight``.
    log_noise : array, shape (*lead,)
        ``log noise_weight - log noise_volume`` of each draw (``log_noise_draws``).
    X : array, shape (n_obs, n_features)
        NaN marks a missing value: the Gaussians' densities are the marginals of the row's
        observed features and the noise's that of the box's projection on them.
    batch_size : int
        Draws evaluated at a time.
    noise_box : (lower, upper), optional
        The noise's box (arrays shaped (n_features,)); needed when ``X`` holds NaN.

    Returns
    -------
    ndarray, shape (*lead, n_obs, n_components + 1)
        Each row sums to one.

    Examples
    --------
    >>> p = GMMParams(jnp.full((1, 1), 0.5), jnp.zeros((1, 1, 1)), jnp.ones((1, 1, 1, 1)))
    >>> noise_responsibilities(p, np.log([0.5 / 10.0]), np.array([[0.0], [8.0]])).round(3).tolist()
    [[[0.8, 0.2], [0.0, 1.0]]]
    """
    return _lifted("resp", params, log_noise, X, batch_size, noise_box)


def noise_log_prob(
    params: GMMParams,
    log_noise: np.ndarray,
    X: np.ndarray,
    batch_size: int = 64,
    noise_box: tuple | None = None,
) -> np.ndarray:
    """Log density of every row under every draw, the noise term included.

    Parameters as :func:`noise_responsibilities`.

    Returns
    -------
    ndarray, shape (*lead, n_obs)

    Examples
    --------
    >>> p = GMMParams(jnp.full((1, 1), 0.5), jnp.zeros((1, 1, 1)), jnp.ones((1, 1, 1, 1)))
    >>> float(np.exp(noise_log_prob(p, np.log([0.5 / 10.0]), np.array([[8.0]])))[0, 0])  # 0.5 / 10
    0.05
    """
    return _lifted("log_prob", params, log_noise, X, batch_size, noise_box)


def noise_probability(idata: az.InferenceData) -> xr.DataArray:
    """Return the posterior probability that each observation is noise.

    The mean over draws of the noise's responsibility ``p(z_i = noise | x_i, draw)``;
    :func:`bayesgmm.membership_probabilities` reports it as its ``noise`` variable.

    Parameters
    ----------
    idata : arviz.InferenceData
        From a fit with ``noise="uniform"``.

    Returns
    -------
    xarray.DataArray, dims (obs,)

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> X_out = np.vstack([X, [[0.0, 150.0]]])
    >>> idata = fit_svi(X_out, 2, num_samples=100, seed=0, noise="uniform")
    >>> float(noise_probability(idata)[-1]) > 0.99
    True
    """
    resp = draw_noise_responsibilities(idata)
    mean = resp[..., -1].reshape(-1, resp.shape[-2]).mean(axis=0)
    return xr.DataArray(mean, dims=("obs",), coords={"obs": idata.observed_data["obs"].values}, name="noise")


def draw_noise_responsibilities(idata: az.InferenceData, group: str = "posterior") -> np.ndarray:
    """Return the responsibilities of every draw at the observed data, noise last.

    Returns
    -------
    ndarray, shape (n_chains, n_draws, n_obs, n_components + 1)
    """
    from bayesgmm.posterior.draws import params_from_idata

    X = idata.observed_data["X"].transpose("obs", "feature").values
    box = attrs_box(idata.attrs) if np.isnan(X).any() else None
    return noise_responsibilities(
        params_from_idata(idata, group), log_noise_draws(idata, group), X, noise_box=box
    )


def mean_noise_responsibilities(
    params: GMMParams,
    log_noise: np.ndarray,
    X: np.ndarray,
    batch_size: int = 64,
    noise_box: tuple | None = None,
) -> np.ndarray:
    """Return :func:`noise_responsibilities` averaged over draws, shape (n_obs, n_components + 1)."""
    resp = noise_responsibilities(params, log_noise, X, batch_size, noise_box)
    return resp.reshape(-1, *resp.shape[-2:]).mean(axis=0)


def log_predictive_density_noise(
    params: GMMParams,
    log_noise: np.ndarray,
    X: np.ndarray,
    batch_size: int = 64,
    noise_box: tuple | None = None,
) -> np.ndarray:
    """Return the log posterior predictive density of each row, noise included, shape (n_obs,)."""
    ll = noise_log_prob(params, log_noise, X, batch_size, noise_box).reshape(-1, np.shape(X)[0])
    return np.asarray(jax.nn.logsumexp(ll, axis=0) - np.log(ll.shape[0]))
