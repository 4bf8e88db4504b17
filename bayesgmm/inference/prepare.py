"""What every Bayesian fit does before and after its sampler or optimiser.

``prepare`` validates the arguments, splits the seed into named keys, loads and
standardises the data and binds the model; ``finish`` draws from the prior if asked,
builds the InferenceData (``idata.build_inference_data``) and warns about problems the
diagnostics see. ``fit_nuts`` and ``fit_svi`` run their own algorithm in between.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import arviz as az
import jax
import numpy as np
from numpy.typing import DTypeLike
from numpyro.infer import Predictive

from bayesgmm._validation import as_key, check_covariance_type, check_n_components, check_X, standardize
from bayesgmm.inference.em.missing import MISSING, check_incomplete
from bayesgmm.inference.idata import build_inference_data
from bayesgmm.inference.noise import check_bayes_noise, standardized_log_density
from bayesgmm.models import WEIGHT_SITES, gmm_model, params_from_sites
from bayesgmm.noise_region import noise_box
from bayesgmm.params import GMMParams
from bayesgmm.priors import Priors

if TYPE_CHECKING:
    from bayesgmm._typing import Seed


@dataclass(frozen=True)
class Loaded:
    """The data as a fit sees them.

    Parameters
    ----------
    X_obs : ndarray, shape (n_stored, n_features)
        Rows kept for ``observed_data`` and ``log_likelihood``, in the user's units.
    loc, scale : ndarray, shape (n_features,)
        The standardisation ``Z = (X - loc) / scale``.
    n_obs : int
        Number of rows of the data.
    extra : object
        What the fit's loader adds (the standardised rows, minibatch sources, ...).
    incomplete : bool
        Whether the data hold missing values (NaN, with ``missing="marginalize"``).
    """

    X_obs: np.ndarray
    loc: np.ndarray
    scale: np.ndarray
    n_obs: int
    extra: object = None
    incomplete: bool = False


@dataclass(frozen=True)
class FitSetup:
    """The validated settings, keys, data and model of one fit.

    ``keys`` maps the names given to ``prepare`` to independent keys, unpacked on the
    host (numpy arrays of shape (2,)). ``noise_volume`` is the uniform noise component's
    hypervolume in the user's units (None without noise), ``noise_box`` its region
    ``(lower, upper)`` (:func:`bayesgmm.noise_region.noise_box`); the model's
    ``noise_log_density`` is its log density in standardised units.
    """

    n_components: int
    covariance_type: str
    weight_prior: str
    priors: Priors
    feature_names: Sequence[str] | None
    keys: dict
    data: Loaded
    model_kwargs: dict = field(default_factory=dict)
    noise_volume: float | None = None
    noise_box: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def n_features(self) -> int:
        """Return the number of features."""
        return int(self.data.loc.shape[0])

    @property
    def model(self) -> Callable:
        """Return ``gmm_model`` bound to this fit's settings."""
        return partial(gmm_model, **self.model_kwargs)

    def base_attrs(self) -> dict:
        """Return the ``attrs`` every fit records: the model's settings and priors (and noise)."""
        attrs = {
            "n_components": self.n_components,
            "covariance_type": self.covariance_type,
            "weight_prior": self.weight_prior,
            "priors": json.dumps(self.priors.to_dict()),
        }
        if self.noise_volume is not None:
            attrs.update(noise="uniform", noise_volume=self.noise_volume)
            # Lists of floats: netCDF attributes, which save and load keep.
            attrs.update(noise_lower=self.noise_box[0].tolist(), noise_upper=self.noise_box[1].tolist())
        return attrs


def load_in_memory(X: Any, n_components: int, keys: dict, missing: str = "error") -> Loaded:
    """Check ``X`` (held in memory) and standardise it; ``extra`` is the standardised data.

    Standardised in float64: data far from the origin keep their spread in float32 too.

    Parameters
    ----------
    X : array-like, shape (n_obs, n_features)
    n_components : int
    keys : dict
        Unused; the signature of every loader.
    missing : {"error", "marginalize"}
        With ``"marginalize"``, NaN are missing values (kept as NaN in the standardised
        data, which are standardised with the observed values).

    Returns
    -------
    Loaded

    Examples
    --------
    >>> load_in_memory(np.array([[1.0], [3.0]]), 1, {}).extra.ravel().tolist()
    [-1.0, 1.0]
    """
    X = check_data(X, n_components, missing)
    Z, loc, scale = standardize(X)
    return Loaded(X, loc, scale, X.shape[0], Z, incomplete=bool(np.isnan(X).any()))


def check_data(X: Any, n_components: int, missing: str) -> np.ndarray:
    """Return ``X`` checked as a float64 array, NaN kept where values are missing.

    Raises
    ------
    ValueError
        For a bad ``missing``; as ``check_X`` does (NaN included) with ``missing="error"``;
        with ``"marginalize"``, for a row or column with every value missing.
    """
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}, got {missing!r}.")
    if missing == "error":
        return check_X(X, n_components, dtype=np.float64)
    return check_incomplete(X, n_components)[0]


def prepare(
    X: Any,
    n_components: int,
    covariance_type: str,
    *,
    priors: Priors | None,
    weight_prior: str,
    feature_names: Sequence[str] | None,
    seed: Seed,
    key_names: Sequence[str],
    load: Callable[..., Loaded] = load_in_memory,
    missing: str = "error",
    noise: str | None = None,
    noise_volume: float | None = None,
) -> FitSetup:
    """Validate a fit's arguments, split its seed and load its data.

    Parameters
    ----------
    X : array-like, memmap or callable
        The data, as ``load`` takes them.
    n_components : int
    covariance_type : str
    priors : Priors, optional
    weight_prior : str
    feature_names : sequence of str, optional
        Taken from ``X.columns`` when None and ``X`` has them.
    seed : int, numpy Generator or JAX key, optional
    key_names : sequence of str
        Names of the keys the seed is split into, in order.
    load : callable
        ``load(X, n_components, keys, missing) -> Loaded``; ``load_in_memory`` by default.
    missing : {"error", "marginalize"}
        What NaN in ``X`` mean (see ``check_data``). The model marginalises missing values
        only when the data hold some: complete data run the complete-data programs.
    noise : {None, "uniform"}
        Add a uniform noise component (``models.gmm_model``'s ``noise_log_density``).
    noise_volume : float, optional
        Its hypervolume in the user's units; the bounding box of the stored rows by default.

    Returns
    -------
    FitSetup
    """
    n_components = check_n_components(n_components)
    covariance_type = check_covariance_type(covariance_type)
    if weight_prior not in WEIGHT_SITES:
        raise ValueError(f"weight_prior must be one of {tuple(WEIGHT_SITES)}, got {weight_prior!r}.")
    check_bayes_noise(noise, noise_volume)
    if hasattr(X, "columns") and feature_names is None:
        feature_names = [str(c) for c in X.columns]
    priors = Priors() if priors is None else priors
    # Unpacked on the host: op by op on the device, each slice would compile a program.
    split = np.asarray(jax.random.split(as_key(seed), len(key_names)))
    keys = dict(zip(key_names, split, strict=True))
    data = load(X, n_components, keys, missing)
    model_kwargs = dict(
        n_components=n_components,
        n_features=int(data.loc.shape[0]),
        covariance_type=covariance_type,
        priors=priors,
        weight_prior=weight_prior,
    )
    if data.incomplete:
        model_kwargs["missing"] = "marginalize"
    volume = box = None
    if noise is not None:
        volume, log_density = standardized_log_density(data.X_obs, data.scale, noise_volume)
        model_kwargs["noise_log_density"] = log_density
        box = noise_box(data.X_obs, noise_volume)
        if data.incomplete:
            # A tuple of floats: the model's keywords key its compiled programs, so they hash.
            model_kwargs["noise_log_ranges"] = tuple(float(v) for v in np.log((box[1] - box[0]) / data.scale))
    return FitSetup(
        n_components,
        covariance_type,
        weight_prior,
        priors,
        feature_names,
        keys,
        data,
        model_kwargs,
        volume,
        box,
    )


def traced_in(dtype: DTypeLike) -> contextlib.AbstractContextManager:
    """Return the context in which a fit in ``dtype`` traces and runs its programs.

    float32 needs x64 off while tracing: with it on, numpyro's momenta and noise and the
    model's constants are float64 and silently upcast the whole fit.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> with traced_in(np.float32):
    ...     jnp.zeros(1).dtype
    dtype('float32')
    """
    return jax.enable_x64(False) if np.dtype(dtype) == np.float32 else contextlib.nullcontext()


def prior_params(setup: FitSetup, prior_draws: int) -> tuple[GMMParams, dict] | None:
    """Return ``prior_draws`` draws of the prior (leaves shaped (1, prior_draws, ...)), or None.

    Parameters
    ----------
    setup : FitSetup
    prior_draws : int

    Returns
    -------
    params : GMMParams
    hyper : dict
        With noise, the draws' ``noise_weight`` (shape (1, prior_draws)); else empty.
    """
    if not prior_draws:
        return None
    sites = Predictive(setup.model, num_samples=prior_draws)(setup.keys["prior"], n_obs=1)
    hyper = {"noise_weight": np.asarray(sites["noise_weight"])[None]} if "noise_weight" in sites else {}
    return jax.tree_util.tree_map(lambda a: a[None], params_from_sites(sites)), hyper


def finish(
    setup: FitSetup,
    draws: GMMParams,
    *,
    attrs: dict,
    hyper: dict,
    prior_draws: int,
    posterior_predictive: bool,
    sample_stats: dict | None = None,
    log_likelihood: bool = True,
    dtype: DTypeLike = np.float64,
    short_chains: bool = False,
    extend: Callable[[az.InferenceData], None] | None = None,
    stacklevel: int = 2,
) -> az.InferenceData:
    """Build a fit's InferenceData and warn about what its diagnostics see.

    Parameters
    ----------
    setup : FitSetup
    draws : GMMParams
        Posterior draws in standardised units, leaves shaped (n_chains, n_draws, ...).
    attrs : dict
        The InferenceData's ``attrs``.
    hyper : dict
        The weight prior's hyperparameters (``models.hyper_draws``).
    prior_draws : int
        Draws for the ``prior`` and ``prior_predictive`` groups (0: none).
    posterior_predictive : bool
    sample_stats : dict of arrays shaped (n_chains, n_draws), optional
    log_likelihood : bool
    dtype : numpy dtype
        Of the stored data and standardisation.
    short_chains : bool
        Chains may have fewer draws than there are chains (a MAP fit's single draws), which
        ArviZ would otherwise warn about as a likely shape mistake.
    extend : callable, optional
        Called with the InferenceData before the diagnostics, to add groups or attrs.
    stacklevel : int
        Of the diagnostics' warnings, counted from the caller of ``finish``: 2 points them
        at its caller's caller (the user's call of the fit function).

    Returns
    -------
    arviz.InferenceData
    """
    data = setup.data
    prior = prior_params(setup, prior_draws) or (None, None)
    with warnings.catch_warnings():
        if short_chains:
            warnings.filterwarnings("ignore", message="More chains")
        idata = build_inference_data(
            draws,
            data.X_obs.astype(dtype, copy=False),
            data.loc.astype(dtype, copy=False),
            data.scale.astype(dtype, copy=False),
            key=setup.keys["idata"],
            sample_stats=sample_stats,
            prior_std_params=prior[0],
            prior_hyper_draws=prior[1],
            posterior_predictive=posterior_predictive,
            feature_names=setup.feature_names,
            attrs=attrs,
            hyper_draws=hyper,
            log_likelihood=log_likelihood,
            noise_volume=setup.noise_volume,
            noise_box=setup.noise_box,
        )
    if extend is not None:
        extend(idata)
    # Lazily: the diagnostics relabel, which lives downstream in bayesgmm.posterior.
    from bayesgmm.posterior.diagnostics import warn_problems

    warn_problems(idata, stacklevel=stacklevel + 1)
    return idata
