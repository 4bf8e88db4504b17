"""Fit the Bayesian mixture by stochastic variational inference (SVI) into ArviZ InferenceData.

The pieces are chosen by name in one place: the guide from ``GUIDES``, any optax
optimizer, the same ``gmm_model`` as NUTS. Steps run in jitted chunks (``lax.scan``),
all restarts at once (``vmap``); a fit stops when the smoothed ELBO stops improving.
"""

from __future__ import annotations

import json
import warnings
from functools import partial

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import (
    AutoDelta,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from numpyro.infer.initialization import init_to_median, init_to_value
from numpyro.infer.util import constrain_fn
from numpyro.optim import optax_to_numpyro
from tqdm.auto import tqdm

from bayesgmm._validation import as_key, check_covariance_type, check_n_components, check_X, standardize
from bayesgmm.inference.idata import build_inference_data
from bayesgmm.inference.init import chain_init_params, em_start, sites_from_params
from bayesgmm.inference.minibatch import as_source, row_blocks, streaming_moments
from bayesgmm.inference.svi_draws import importance_stats
from bayesgmm.models import LATENT_SITES, WEIGHT_SITES, gmm_model, hyper_draws, params_from_sites
from bayesgmm.priors import Priors

#: Variational families by name. ``map`` is a point mass: a MAP estimate, not a posterior.
GUIDES = {
    "meanfield": AutoNormal,
    "fullrank": AutoMultivariateNormal,
    "lowrank": AutoLowRankMultivariateNormal,
    "map": AutoDelta,
}

#: Minibatch size used when the data are streamed (memmap or chunk callable) and none is given.
DEFAULT_BATCH_SIZE = 4096


def default_optimizer() -> optax.GradientTransformation:
    """Adam at 0.01: the model is on standardised data and starts at an EM fit, so
    parameters move by O(0.1) and a step of about 0.01 reaches them in a few hundred steps."""
    return optax.adam(1e-2)


def elbo_converged(previous: np.ndarray, current: np.ndarray, tol: float) -> np.ndarray:
    """Whether the smoothed loss of each restart stopped improving between two chunks.

    The smoothed loss is the mean of a chunk of steps. A restart has converged when
    its improvement is below ``tol`` relative to the loss, or below two standard
    errors of the difference of the two means (progress smaller than the noise of
    the stochastic ELBO cannot be told from none).

    Parameters
    ----------
    previous, current : ndarray, shape (n_restarts, chunk_size)
        Negative ELBO of every step of two consecutive chunks.

    Returns
    -------
    ndarray of bool, shape (n_restarts,)

    Examples
    --------
    >>> elbo_converged(np.full((1, 4), 10.0), np.full((1, 4), 10.0), 1e-4).tolist()
    [True]
    """
    m0, m1 = previous.mean(axis=1), current.mean(axis=1)
    se = np.sqrt((previous.var(axis=1) + current.var(axis=1)) / current.shape[1])
    return (m0 - m1) < np.maximum(tol * np.abs(m1), 2.0 * se)


def _chunk_runner(svi: SVI, chunk_size: int, minibatch: bool):
    """Jitted ``(states, data) -> (states, losses (n_restarts, chunk_size))``; ``data`` is the
    full data, or the chunk's minibatches stacked as (chunk_size, batch_size, n_features)."""

    def run_one(state, data):
        if minibatch:
            return jax.lax.scan(lambda s, batch: svi.update(s, Z=batch), state, data)
        return jax.lax.scan(lambda s, _: svi.update(s, Z=data), state, None, length=chunk_size)

    return jax.jit(jax.vmap(run_one, in_axes=(0, None)))


def _guides(model, fit_model, guide, Z_init, n_restarts, init, key, dtype, n_obs):
    """One guide per restart, each initialised at its own start.

    With ``init="em"`` every restart starts at the EM fit, moved by independent
    ``Normal(0, 0.1)`` noise in the unconstrained space (as NUTS chains do). The
    guide's initial scale is about a posterior sd, ``sqrt(n_components / n_obs)``:
    from numpyro's default 0.1 it takes thousands of steps to shrink on big data.
    """
    starts = [init_to_median] * n_restarts
    if init == "em":
        n_components, cov = model.keywords["n_components"], model.keywords["covariance_type"]
        seed = int(jax.random.randint(key, (), 0, 2**30))
        overfitted = model.keywords["weight_prior"] != "dirichlet"
        start = em_start(Z_init, n_components, cov, seed=seed, overfitted=overfitted)
        sites = sites_from_params(start, cov, model.keywords["weight_prior"], model.keywords["priors"])
        jittered = chain_init_params(model, {"Z": jnp.asarray(Z_init)}, sites, n_restarts, key)
        for r in range(n_restarts):
            values = constrain_fn(model, (), {"Z": Z_init}, {k: v[r] for k, v in jittered.items()})
            starts[r] = init_to_value(values={k: jnp.asarray(v, dtype) for k, v in values.items()})
    if guide == "map":
        return [GUIDES[guide](fit_model, init_loc_fn=s) for s in starts]
    init_scale = min(0.1, float(np.sqrt(model.keywords["n_components"] / n_obs)))
    return [GUIDES[guide](fit_model, init_loc_fn=s, init_scale=init_scale) for s in starts]


def fit_svi(
    X,
    n_components: int,
    covariance_type: str = "full",
    *,
    priors: Priors | None = None,
    weight_prior: str = "dirichlet",
    guide: str = "fullrank",
    optimizer: optax.GradientTransformation | None = None,
    num_samples: int = 1000,
    num_restarts: int = 1,
    keep: str = "best",
    max_steps: int = 20_000,
    tol: float = 1e-4,
    chunk_size: int = 200,
    batch_size: int | None = None,
    num_particles: int = 1,
    seed=None,
    dtype=np.float64,
    init: str = "em",
    init_rows: int = 20_000,
    max_observed: int = 20_000,
    prior_draws: int = 0,
    posterior_predictive: bool = False,
    progress_bar: bool = False,
    feature_names=None,
) -> az.InferenceData:
    """Approximate the posterior of a Gaussian mixture by SVI.

    Same model, standardisation and output layout as ``fit_nuts``: the guide's draws
    are stored with ``chain``/``draw`` dims, in the user's units.

    Parameters
    ----------
    X : array-like, numpy.memmap or callable
        Shape (n_obs, n_features). A callable must return a fresh iterable of row
        chunks (arrays of shape (n_rows, n_features)) on each call; with it, and with
        a memmap, the data are never loaded whole (minibatch SVI).
    n_components : int
    covariance_type : {"full", "tied", "diag", "spherical"}
    priors : Priors, optional
    guide : {"fullrank", "meanfield", "lowrank", "map"}
        Multivariate normal, independent normals, low-rank plus diagonal normal (all
        in the unconstrained space), or a point mass at the MAP estimate.
    weight_prior : {"dirichlet", "sparse", "dp"}
        As in ``fit_nuts``.
    optimizer : optax.GradientTransformation, optional
        Defaults to ``default_optimizer()``.
    num_samples : int
        Draws from the guide per kept restart (1 for ``guide="map"``).
    num_restarts : int
        Restarts run in parallel from jittered starts.
    keep : {"best", "chains"}
        Keep the restart with the highest final ELBO as one chain, or every restart
        as a chain (their agreement is a check on the optimisation).
    max_steps, tol, chunk_size : int, float, int
        Steps run ``chunk_size`` at a time; the fit stops after ``max_steps`` or when
        ``elbo_converged`` holds for two chunks in a row.
    batch_size : int, optional
        Minibatch size: the likelihood of ``batch_size`` random rows is scaled by
        ``n_obs / batch_size``. None fits the full data each step (arrays) or uses
        ``DEFAULT_BATCH_SIZE`` (memmaps and callables).
    num_particles : int
        Monte Carlo draws per ELBO gradient.
    seed : int, numpy Generator or JAX key, optional
    dtype : numpy dtype, default float64
    init : {"em", "prior"}
        Start at the best of a few EM fits (on ``init_rows`` random rows when
        streaming) or at the prior median.
    max_observed : int
        ``observed_data`` and ``log_likelihood`` hold at most this many rows; a larger
        data set is represented by a random subset (``attrs["observed_subset"]``), since
        the log-likelihood of every draw at every row would not fit in memory.
    prior_draws, posterior_predictive, progress_bar, feature_names
        As in ``fit_nuts``.

    Returns
    -------
    arviz.InferenceData
        The groups of ``fit_nuts`` (``posterior``, ``log_likelihood``, ``observed_data``,
        ``constant_data``), plus ``elbo_trace`` (``elbo`` with dims restart/step, for
        every restart) and, when the data are not subset, ``sample_stats`` with ``lp``
        and ``log_q`` per draw (see ``svi_draws.importance_stats``; ``attrs["pareto_k"]``
        says how far the guide is from the posterior: above 0.7, do not trust it).

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, guide="meanfield", seed=0)  # doctest: +SKIP
    >>> idata.posterior["means"].dims  # doctest: +SKIP
    ('chain', 'draw', 'component', 'feature')
    """
    n_components = check_n_components(n_components)
    covariance_type = check_covariance_type(covariance_type)
    if guide not in GUIDES:
        raise ValueError(f"guide must be one of {tuple(GUIDES)}, got {guide!r}.")
    if keep not in ("best", "chains"):
        raise ValueError(f"keep must be 'best' or 'chains', got {keep!r}.")
    if init not in ("em", "prior"):
        raise ValueError(f"init must be 'em' or 'prior', got {init!r}.")
    if hasattr(X, "columns") and feature_names is None:
        feature_names = [str(c) for c in X.columns]
    priors = Priors() if priors is None else priors
    key = as_key(seed)
    key_init, key_svi, key_draws, key_prior, key_idata, key_rng = jax.random.split(key, 6)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key_rng)).ravel())

    # Full batch: the data are in memory and every step sees all of them. Otherwise rows
    # are streamed and standardised with moments from one pass.
    streaming = callable(X) or isinstance(X, np.memmap) or batch_size is not None
    if streaming:
        source = as_source(X)
        n_obs, loc, scale = streaming_moments(source)
        batch_size = min(batch_size or DEFAULT_BATCH_SIZE, n_obs)
        blocks = row_blocks(source, batch_size * chunk_size, rng)
        Z_init = (next(row_blocks(source, min(init_rows, n_obs), rng)) - loc) / scale
        X_obs = _observed_rows(source, n_obs, max_observed, rng)
        if n_obs < n_components:
            raise ValueError(f"X has {n_obs} observations but n_components={n_components}.")
    else:
        X = check_X(X, n_components, dtype=np.float64)
        Z_full, loc, scale = standardize(X)
        n_obs, Z_init = X.shape[0], Z_full
        X_obs = X if n_obs <= max_observed else X[np.sort(rng.choice(n_obs, max_observed, replace=False))]
    n_features = loc.shape[0]

    model_kwargs = dict(
        n_components=n_components, n_features=n_features, covariance_type=covariance_type, priors=priors
    )
    if weight_prior not in WEIGHT_SITES:
        raise ValueError(f"weight_prior must be one of {tuple(WEIGHT_SITES)}, got {weight_prior!r}.")
    model_kwargs["weight_prior"] = weight_prior
    model = partial(gmm_model, **model_kwargs)
    fit_model = partial(model, n_obs=n_obs, subsample_size=batch_size) if streaming else model
    key_init, key_states = jax.random.split(key_init)
    guides = _guides(
        model, fit_model, guide, np.asarray(Z_init, dtype), num_restarts, init, key_init, dtype, n_obs
    )
    optim = optax_to_numpyro(optimizer or default_optimizer())
    svis = [SVI(fit_model, g, optim, Trace_ELBO(num_particles=num_particles)) for g in guides]
    keys = jax.random.split(key_states, num_restarts)
    first = jnp.asarray((next(blocks)[:batch_size] - loc) / scale, dtype) if streaming else None
    data = first if streaming else jnp.asarray(Z_full, dtype)
    states = [s.init(k, Z=data) for s, k in zip(svis, keys, strict=True)]
    states = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)
    runner = _chunk_runner(svis[0], chunk_size, streaming)

    losses, converged_chunks = [], 0
    with tqdm(total=max_steps, disable=not progress_bar, desc="SVI") as bar:
        while len(losses) * chunk_size < max_steps:
            if streaming:
                data = jnp.asarray(((next(blocks) - loc) / scale).reshape(chunk_size, batch_size, -1), dtype)
            states, chunk_losses = runner(states, data)
            losses.append(np.asarray(chunk_losses))
            bar.update(chunk_size)
            bar.set_postfix(elbo=f"{-losses[-1].mean():.4g}")
            if len(losses) > 1 and elbo_converged(losses[-2], losses[-1], tol).all():
                converged_chunks += 1
                if converged_chunks == 2:
                    break
            else:
                converged_chunks = 0
    trace = -np.concatenate(losses, axis=1)
    final = trace[:, -chunk_size:].mean(axis=1)
    kept = np.arange(num_restarts) if keep == "chains" else np.array([int(np.argmax(final))])
    params = [svis[0].get_params(jax.tree_util.tree_map(lambda a, r=r: a[r], states)) for r in kept]

    n_draws = 1 if guide == "map" else num_samples
    draw_keys = jax.random.split(key_draws, len(kept))
    names = ["means", "scale_tril", *LATENT_SITES[covariance_type], *WEIGHT_SITES[weight_prior]]
    names = [n for n in names if n != "corr_cholesky" or n_features > 1]
    names = ["weights", *(n for n in names if n not in ("weights", "sticks") or n_components > 1)]
    predictive = partial(Predictive, model, guide=guides[0], num_samples=n_draws, return_sites=names)
    sites = [predictive(params=p)(k, n_obs=1) for p, k in zip(params, draw_keys, strict=True)]
    sites = {name: jnp.stack([s[name] for s in sites]) for name in names}
    draws = params_from_sites(sites)

    sample_stats, attrs_extra = None, {}
    if not streaming and n_obs <= max_observed:
        sample_stats, attrs_extra = importance_stats(
            model, guides[0], guide, params, _latent(sites, weight_prior), jnp.asarray(Z_full, dtype)
        )
    prior_params = None
    if prior_draws:
        prior_sites = Predictive(model, num_samples=prior_draws)(key_prior, n_obs=1)
        prior_params = jax.tree_util.tree_map(lambda a: a[None], params_from_sites(prior_sites))

    attrs = {
        "inference": "svi",
        "guide": guide,
        "n_components": n_components,
        "covariance_type": covariance_type,
        "weight_prior": weight_prior,
        "priors": json.dumps(priors.to_dict()),
        "n_obs": n_obs,
        "n_steps": trace.shape[1],
        "converged": int(converged_chunks == 2),
        "batch_size": batch_size or n_obs,
        "kept_restarts": json.dumps(kept.tolist()),
        "observed_subset": int(X_obs.shape[0] < n_obs),
        **attrs_extra,
    }
    with warnings.catch_warnings():
        # A MAP fit has one draw per chain, which ArviZ flags as a likely shape mistake.
        warnings.filterwarnings("ignore", message="More chains")
        idata = build_inference_data(
            draws,
            X_obs,
            loc,
            scale,
            key=key_idata,
            sample_stats=sample_stats,
            prior_std_params=prior_params,
            posterior_predictive=posterior_predictive,
            feature_names=feature_names,
            attrs=attrs,
            hyper_draws=hyper_draws(sites, weight_prior),
        )
    elbo_ds = xr.Dataset({"elbo": (("restart", "step"), trace)}, attrs=attrs)
    idata.add_groups({"elbo_trace": elbo_ds})
    return idata


def _observed_rows(source, n_obs: int, max_observed: int, rng) -> np.ndarray:
    """All rows, or ``max_observed`` distinct random rows (the first ones for a callable)."""
    if source.random_access:
        if n_obs <= max_observed:
            return np.asarray(source.X, dtype=np.float64)
        return np.asarray(source.X[np.sort(rng.choice(n_obs, max_observed, replace=False))], dtype=np.float64)
    rows, n_rows = [], 0
    for chunk in source.chunks():
        rows.append(chunk[: max_observed - n_rows])
        n_rows += rows[-1].shape[0]
        if n_rows >= max_observed:
            break
    return np.concatenate(rows)


def _latent(sites: dict, weight_prior: str) -> dict:
    """The sampled sites among ``sites``: the dp prior's ``weights`` are deterministic."""
    return {k: v for k, v in sites.items() if k != "weights" or weight_prior != "dp"}
