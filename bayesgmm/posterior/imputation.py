"""Imputations of missing values (NaN) from posterior draws: one completed data set per draw."""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from bayesgmm import densities, incomplete
from bayesgmm._validation import as_key
from bayesgmm.noise_region import attrs_box, stored_box, unobserved_log_ranges
from bayesgmm.params import GMMParams
from bayesgmm.posterior.draws import params_from_idata
from bayesgmm.posterior.noise import has_noise, log_noise_draws


def _impute_one(draw: tuple, X: jnp.ndarray) -> jnp.ndarray:
    params, key = draw
    return incomplete.impute_draw(params, key, X)


def _impute_one_noise(draw: tuple, X: jnp.ndarray, unseen: jnp.ndarray, box: tuple) -> jnp.ndarray:
    params, key, log_noise = draw
    key_z, key_x, key_u = jax.random.split(key, 3)
    observed = ~jnp.isnan(X)
    gauss = incomplete.joint_observed(params, jnp.where(observed, X, 0.0), observed)
    z = jax.random.categorical(key_z, jnp.concatenate([gauss, (log_noise + unseen)[:, None]], axis=1), axis=1)
    # Given a Gaussian, impute_draw's own component draw is the right one: it is
    # proportional to w_k N(x_obs | k), the responsibilities without the noise's column.
    gaussian = incomplete.impute_draw(params, key_x, X)
    # Under the noise the missing features are uniform on the box's sides, whatever was observed.
    uniform = jax.random.uniform(key_u, X.shape, X.dtype, minval=box[0], maxval=box[1])
    return jnp.where((z == gauss.shape[1])[:, None], jnp.where(observed, X, uniform), gaussian)


def impute_from_params(
    params: GMMParams,
    X: ArrayLike,
    n_draws: int | None = None,
    seed: int | jax.Array = 0,
    batch_size: int = 64,
    noise: tuple | None = None,
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
    noise : (log_noise, lower, upper), optional
        A uniform noise component: ``log noise_weight - log noise_volume`` of each draw,
        shape (n_chains, n_draws), and its box. A row is then the noise's with its
        probability given the observed values (the box projected on them), and its missing
        values are then uniform on the box's sides.

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
    tree = params if noise is None else (params, np.asarray(noise[0]))
    flat = jax.tree_util.tree_map(lambda a: np.asarray(a).reshape((-1, *a.shape[2:])), tree)
    flat, log_noise = (flat, None) if noise is None else flat
    n_total = flat.weights.shape[0]
    key_pick, key_draw = jax.random.split(as_key(seed))
    if n_draws is not None:
        if not 1 <= n_draws <= n_total:
            raise ValueError(f"n_draws must be between 1 and the {n_total} posterior draws, got {n_draws}.")
        idx = np.sort(np.asarray(jax.random.choice(key_pick, n_total, (n_draws,), replace=False)))
        flat = jax.tree_util.tree_map(lambda a: a[idx], flat)
        log_noise = None if noise is None else log_noise[idx]
    draws = GMMParams(*(jnp.asarray(a, jnp.float64) for a in flat))
    keys = jax.random.split(key_draw, draws.weights.shape[0])
    if noise is None:
        out = densities.over_draws(
            _impute_one, (draws, keys), jnp.asarray(X), n_lead=1, batch_size=batch_size
        )
    else:
        box = tuple(jnp.asarray(b, jnp.float64) for b in stored_box(*noise[1:]))
        unseen = jnp.asarray(unobserved_log_ranges(X, *box))
        lifted = (draws, keys, jnp.asarray(log_noise, jnp.float64))
        out = densities.over_draws(
            _impute_one_noise, lifted, jnp.asarray(X), unseen, box, n_lead=1, batch_size=batch_size
        )
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
    noise = (log_noise_draws(idata), *attrs_box(idata.attrs)) if has_noise(idata) else None
    return impute_from_params(params_from_idata(idata), X, n_draws, seed, noise=noise)
