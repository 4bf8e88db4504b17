"""Imputations of missing values (NaN) from posterior draws: one completed data set per draw."""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from bayesgmm import densities, incomplete
from bayesgmm._validation import as_key
from bayesgmm.params import GMMParams
from bayesgmm.posterior.draws import params_from_idata


def _impute_one(draw: tuple, X: jnp.ndarray) -> jnp.ndarray:
    params, key = draw
    return incomplete.impute_draw(params, key, X)


def impute_from_params(
    params: GMMParams,
    X: ArrayLike,
    n_draws: int | None = None,
    seed: int | jax.Array = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """Draw the missing values of ``X`` (NaN) once per posterior draw of ``params``.

    For each draw, each row's component is drawn from its responsibilities given its
    observed values, then the missing values from that component's Gaussian conditional on
    the observed ones (multiple imputation that carries the parameters' uncertainty).

    Parameters
    ----------
    params : GMMParams
        Draws with leaves shaped (n_chains, n_draws, n_components, ...), in the units of ``X``.
    X : array-like, shape (n_obs, n_features)
        Not modified.
    n_draws : int, optional
        Use this many posterior draws, taken at random without replacement from all
        chains; all of them by default.
    seed : int or JAX key, default 0
    batch_size : int
        Draws evaluated at a time.

    Returns
    -------
    ndarray, shape (n_draws, n_obs, n_features)
        Copies of ``X`` with the missing cells filled; observed cells are exactly ``X``'s.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> eye = jnp.broadcast_to(jnp.eye(2), (1, 3, 1, 2, 2))
    >>> p = GMMParams(jnp.ones((1, 3, 1)), jnp.zeros((1, 3, 1, 2)), eye)
    >>> out = impute_from_params(p, np.array([[1.0, np.nan]]))
    >>> out.shape, out[:, 0, 0].tolist()
    ((3, 1, 2), [1.0, 1.0, 1.0])
    """
    X = np.asarray(X, np.float64)
    flat = jax.tree_util.tree_map(lambda a: np.asarray(a).reshape((-1, *a.shape[2:])), params)
    n_total = flat.weights.shape[0]
    key_pick, key_draw = jax.random.split(as_key(seed))
    if n_draws is not None:
        if not 1 <= n_draws <= n_total:
            raise ValueError(f"n_draws must be between 1 and the {n_total} posterior draws, got {n_draws}.")
        idx = np.sort(np.asarray(jax.random.choice(key_pick, n_total, (n_draws,), replace=False)))
        flat = jax.tree_util.tree_map(lambda a: a[idx], flat)
    draws = GMMParams(*(jnp.asarray(a, jnp.float64) for a in flat))
    keys = jax.random.split(key_draw, draws.weights.shape[0])
    out = densities.over_draws(_impute_one, (draws, keys), jnp.asarray(X), n_lead=1, batch_size=batch_size)
    # Observed cells from X itself, not from a round trip through the device.
    return np.where(np.isnan(X), np.asarray(out), X)


def impute(
    idata: az.InferenceData, X: ArrayLike | None = None, n_draws: int | None = None, seed: int | jax.Array = 0
) -> np.ndarray:
    """Draw the missing values (NaN) of ``X`` once per posterior draw of ``idata``.

    See :func:`impute_from_params`; the draws of ``idata.posterior`` (from ``fit_nuts`` or
    ``fit_svi``, any labelling) are used.

    Parameters
    ----------
    idata : arviz.InferenceData
    X : array-like, shape (n_obs, n_features), optional
        The fit's ``observed_data`` by default (with ``missing="marginalize"`` it keeps the NaN).
    n_draws : int, optional
    seed : int or JAX key, default 0

    Returns
    -------
    ndarray, shape (n_draws, n_obs, n_features)

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> X[::4, 0] = np.nan
    >>> idata = fit_svi(X, 2, guide="meanfield", num_samples=100, seed=0, missing="marginalize")
    >>> completed = impute(idata, n_draws=20)
    >>> completed.shape, bool(np.isnan(completed).any())
    ((20, 272, 2), False)
    """
    if X is None:
        X = idata.observed_data["X"].transpose("obs", "feature").values
    return impute_from_params(params_from_idata(idata), X, n_draws, seed)
