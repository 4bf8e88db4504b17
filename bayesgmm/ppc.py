"""Prior and posterior predictive checks for Gaussian mixtures.

``add_predictive`` puts replicate data sets into an InferenceData so that ArviZ's
``plot_ppc`` and ``plot_loo_pit`` work; ``ppc_pvalues`` compares test statistics of
the data with their replicates (posterior predictive p-values).

Layout of the predictive groups (``posterior_predictive`` or ``prior_predictive``):

``X``
    (chain, draw, obs, feature): one replicate data set per draw, like ``observed_data["X"]``.
``X_0``, ``X_1``, ...
    (chain, draw, obs): feature ``j`` of ``X`` on its own, with a matching
    ``observed_data["X_j"]`` (obs). ``log_likelihood["X"]`` is one joint density per
    observation (obs), so ArviZ's LOO-PIT, which needs the log-likelihood and the
    replicates to have the same shape, works on these per-feature variables:
    ``az.plot_loo_pit(idata, y="X_0")``. The PSIS weights of observation ``i`` come
    from its joint log-likelihood, which is right for any function of ``x_i``,
    including one feature. (ArviZ picks the log-likelihood ``X`` because there is no
    ``log_likelihood["X_0"]``; adding copies would make ``az.loo(idata)`` ask which
    variable to use.)

``noise``
    (chain, draw, obs), for a fit with a noise component only: whether each replicate row
    was drawn from the noise (uniform in the noise's box) rather than from a Gaussian.

For an SVI fit, whose draws come from the guide, ArviZ's LOO-PIT weights would treat
them as posterior draws: pass the importance-weighted ones,
``az.plot_loo_pit(idata, y="X_0", log_weights=bayesgmm.elpd.loo_log_weights(idata))``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import arviz as az
import jax
import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike
from scipy.signal import find_peaks

from bayesgmm._validation import as_key
from bayesgmm.inference.idata import predictive_draws
from bayesgmm.noise_region import attrs_box, predictive_draws_noise
from bayesgmm.posterior.draws import params_from_idata
from bayesgmm.posterior.noise import has_noise

KINDS = {"posterior": ("posterior", "posterior_predictive"), "prior": ("prior", "prior_predictive")}


def feature_var_names(n_features: int) -> list[str]:
    """Name the per-feature predictive variables.

    Parameters
    ----------
    n_features : int

    Returns
    -------
    list of str

    Examples
    --------
    >>> feature_var_names(2)
    ['X_0', 'X_1']
    """
    return [f"X_{j}" for j in range(n_features)]


def add_predictive(
    idata: az.InferenceData, kind: str = "posterior", seed: int | jax.Array = 0, per_feature: bool = True
) -> az.InferenceData:
    """Add replicate data sets drawn from the posterior (or prior) predictive.

    Parameters
    ----------
    idata : arviz.InferenceData
        Needs ``observed_data["X"]`` and the ``posterior`` group (``kind="posterior"``)
        or the ``prior`` group (``kind="prior"``; fit with ``prior_draws=N``).
    kind : {"posterior", "prior"}
    seed : int or JAX key, default 0
    per_feature : bool, default True
        Also add ``X_0, X_1, ...`` (one per feature) to the predictive group and to
        ``observed_data``, for ``az.plot_loo_pit`` (see the module docstring).

    Returns
    -------
    arviz.InferenceData
        A new object with ``posterior_predictive`` (or ``prior_predictive``) holding
        ``X`` (chain, draw, obs, feature), replacing any earlier one; the input's
        other groups and ``attrs`` are kept. With a noise component, each replicate row
        is the noise's with the draw's ``noise_weight``, uniform in the noise's box
        (``attrs["noise_lower"]``, ``attrs["noise_upper"]``), and ``noise`` (chain, draw,
        obs) says which rows are.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> idata = add_predictive(idata, seed=1)
    >>> list(idata.posterior_predictive.data_vars)  # for az.plot_ppc and az.plot_loo_pit
    ['X', 'X_0', 'X_1']
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be 'posterior' or 'prior', got {kind!r}.")
    source, target = KINDS[kind]
    if source not in idata.groups():
        hint = " Fit with prior_draws=N to get prior draws." if kind == "prior" else ""
        raise ValueError(f"idata has no {source!r} group.{hint}")
    observed = idata.observed_data["X"].transpose("obs", "feature")
    data, reps = _replicates(idata, source, as_key(seed), observed.sizes["obs"])
    draws = idata[source]
    coords = {"chain": draws["chain"].values, "draw": draws["draw"].values}
    coords.update({d: observed[d].values for d in ("obs", "feature")})
    # Shallow copies: the new object shares the arrays but not the groups with the input.
    groups = {g: idata[g].copy() for g in idata.groups()}
    if per_feature:
        names = feature_var_names(observed.sizes["feature"])
        data.update({name: (("chain", "draw", "obs"), reps[..., j]) for j, name in enumerate(names)})
        for j, name in enumerate(names):
            groups["observed_data"][name] = observed.isel(feature=j, drop=True)
    groups[target] = xr.Dataset(data, coords=coords, attrs={"kind": kind})
    return az.InferenceData(attrs=dict(idata.attrs), **groups)


def _replicates(idata: az.InferenceData, source: str, key: jax.Array, n_obs: int) -> tuple[dict, np.ndarray]:
    """Return the predictive variables drawn from ``source``'s draws, and the replicates ``X``."""
    params = params_from_idata(idata, source)
    if not has_noise(idata, source):
        reps = predictive_draws(params, key, n_obs)
        return {"X": (("chain", "draw", "obs", "feature"), reps)}, reps
    noise_weight = idata[source]["noise_weight"].transpose("chain", "draw").values
    reps, noise = predictive_draws_noise(params, noise_weight, *attrs_box(idata.attrs), key, n_obs)
    data = {"X": (("chain", "draw", "obs", "feature"), reps), "noise": (("chain", "draw", "obs"), noise)}
    return data, reps


def count_modes(
    x: ArrayLike, bandwidth: ArrayLike | None = None, grid_size: int = 512, min_prominence: float = 0.05
) -> np.ndarray:
    """Count the clear local maxima of a Gaussian kernel density estimate.

    Parameters
    ----------
    x : array, shape (..., n_obs)
        One or many 1-D samples; the count is vectorised over the leading axes.
    bandwidth : float or array broadcastable to the leading shape, optional
        Kernel standard deviation. Defaults to the normal reference rule of each
        sample (:func:`kde_bandwidth`, as ``scipy.stats.gaussian_kde``). For a
        predictive check pass one fixed value (see :func:`default_statistics`): the
        number of modes depends on it, so observed and replicated data must share it.
    grid_size : int
        Points of the evaluation grid, which spans each sample's range plus three
        bandwidths on either side.
    min_prominence : float
        A maximum counts only if it rises this fraction of the highest density above
        the valley that separates it from any higher maximum (its topographic
        prominence), so that wiggles of the estimate and bumps of lone points in the
        tails are not modes.

    Returns
    -------
    int ndarray, shape (...)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(-4, 1, 200), rng.normal(4, 1, 200)])
    >>> int(count_modes(x))
    2
    """
    x = np.asarray(x, dtype=float)
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    if bandwidth is None:
        bw = kde_bandwidth(flat)
    else:
        bw = np.broadcast_to(np.asarray(bandwidth, dtype=float), lead).reshape(-1)
    t = np.linspace(0.0, 1.0, grid_size)
    out = np.empty(flat.shape[0], dtype=int)
    # Chunks keep the (chunk, grid, n_obs) kernel matrix to a few tens of MB.
    chunk = max(1, 4_000_000 // (grid_size * flat.shape[1]))
    for start in range(0, flat.shape[0], chunk):
        xs, h = flat[start : start + chunk], bw[start : start + chunk, None]
        lo, hi = xs.min(axis=1, keepdims=True) - 3 * h, xs.max(axis=1, keepdims=True) + 3 * h
        grid = lo + (hi - lo) * t
        dens = np.exp(-0.5 * ((grid[:, :, None] - xs[:, None, :]) / h[:, :, None]) ** 2).sum(axis=2)
        for i, d in enumerate(dens):
            out[start + i] = len(find_peaks(d, prominence=min_prominence * d.max())[0])
    return out.reshape(lead)


def kde_bandwidth(x: ArrayLike) -> np.ndarray:
    """Compute the normal reference bandwidth ``sd * n^(-1/5)`` along the last axis.

    The rule of ``scipy.stats.gaussian_kde``. It oversmooths multimodal data a little,
    which is what a mode count used as a test statistic wants: modes it still finds
    are real.

    Parameters
    ----------
    x : array-like, shape (..., n)

    Returns
    -------
    ndarray, shape (...)
    """
    x = np.asarray(x, dtype=float)
    return x.std(axis=-1, ddof=1) * x.shape[-1] ** -0.2


def _standardised_moment(x, order: int):
    d = x - x.mean(axis=-1, keepdims=True)
    return (d**order).mean(axis=-1) / (d**2).mean(axis=-1) ** (order / 2)


def default_statistics(
    X_obs: ArrayLike,
    feature_names: Sequence[str] | None = None,
    quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
) -> dict:
    """Choose the default test statistics for data like ``X_obs``.

    Per feature: mean, sd, skewness, excess kurtosis, quantiles, min, max and the
    number of modes of a KDE whose bandwidth is fixed by the observed feature
    (:func:`kde_bandwidth`), so that observed and replicated data are measured alike. For
    two or more features, the correlation of every pair.

    Parameters
    ----------
    X_obs : array, shape (n_obs, n_features)
    feature_names : sequence of str, optional
    quantiles : sequence of float

    Returns
    -------
    dict of str to callable
        Each maps data of shape (..., n_obs, n_features) to values of shape (...).

    Examples
    --------
    >>> stats = default_statistics(np.random.default_rng(0).normal(size=(50, 2)))
    >>> "corr[x0,x1]" in stats
    True
    """
    X_obs = np.asarray(X_obs, dtype=float)
    n_features = X_obs.shape[1]
    names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(n_features)]
    stats = {}
    for j, name in enumerate(names):
        h = float(kde_bandwidth(X_obs[:, j]))
        # Default arguments bind the loop variables now, not at call time.
        stats[f"mean[{name}]"] = lambda X, j=j: X[..., j].mean(axis=-1)
        stats[f"sd[{name}]"] = lambda X, j=j: X[..., j].std(axis=-1, ddof=1)
        stats[f"skewness[{name}]"] = lambda X, j=j: _standardised_moment(X[..., j], 3)
        stats[f"kurtosis[{name}]"] = lambda X, j=j: _standardised_moment(X[..., j], 4) - 3.0
        for q in quantiles:
            stats[f"q{q:g}[{name}]"] = lambda X, j=j, q=q: np.quantile(X[..., j], q, axis=-1)
        stats[f"min[{name}]"] = lambda X, j=j: X[..., j].min(axis=-1)
        stats[f"max[{name}]"] = lambda X, j=j: X[..., j].max(axis=-1)
        stats[f"n_modes[{name}]"] = lambda X, j=j, h=h: count_modes(X[..., j], bandwidth=h)
    for a, b in itertools.combinations(range(n_features), 2):
        stats[f"corr[{names[a]},{names[b]}]"] = lambda X, a=a, b=b: _corr(X[..., a], X[..., b])
    return stats


def _corr(u, v):
    u = u - u.mean(axis=-1, keepdims=True)
    v = v - v.mean(axis=-1, keepdims=True)
    return (u * v).sum(axis=-1) / np.sqrt((u * u).sum(axis=-1) * (v * v).sum(axis=-1))


def replicated_statistics(
    idata: az.InferenceData, statistics: dict | None = None, group: str = "posterior_predictive"
) -> xr.Dataset:
    """Test statistics of every replicate data set and of the observed data.

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``observed_data["X"]`` and ``group["X"]`` (see :func:`add_predictive`).
    statistics : dict of str to callable, optional
        Each maps data of shape (..., n_obs, n_features) to shape (...); defaults to
        :func:`default_statistics` of the observed data.
    group : {"posterior_predictive", "prior_predictive"}

    Returns
    -------
    xarray.Dataset
        One variable per statistic with dims (chain, draw); the observed value is in
        each variable's ``attrs["observed"]``.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> reps = replicated_statistics(add_predictive(idata, seed=1))
    >>> reps["n_modes[x1]"].attrs["observed"]
    2.0
    """
    if group not in idata.groups():
        raise ValueError(f"idata has no {group!r} group; call add_predictive(idata, ...) first.")
    observed = idata.observed_data["X"].transpose("obs", "feature")
    X_obs = observed.values
    if statistics is None:
        statistics = default_statistics(X_obs, [str(f) for f in observed["feature"].values])
    reps = idata[group]["X"].transpose("chain", "draw", "obs", "feature")
    values = reps.values
    out = {}
    for name, fn in statistics.items():
        # Every statistic sees the whole stack of replicates at once: vectorised over draws.
        t_rep = np.asarray(fn(values), dtype=float)
        t_obs = float(np.asarray(fn(X_obs[None]), dtype=float).reshape(-1)[0])
        out[name] = xr.DataArray(t_rep, dims=("chain", "draw"), attrs={"observed": t_obs})
    return xr.Dataset(out, coords={"chain": reps["chain"].values, "draw": reps["draw"].values})


def ppc_pvalues(
    idata: az.InferenceData, statistics: dict | None = None, group: str = "posterior_predictive"
) -> pd.DataFrame:
    """Posterior (or prior) predictive p-values of test statistics.

    ``p_value = P(T(y_rep) >= T(y))`` over the replicate data sets; values near 0 or 1
    say the model does not reproduce that feature of the data. ``p_two_sided =
    min(1, 2 min(P(T(y_rep) >= T(y)), P(T(y_rep) <= T(y))))`` is small in either case
    and handles ties of discrete statistics such as the number of modes.

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``observed_data["X"]`` and ``group["X"]`` (see :func:`add_predictive`).
    statistics : dict of str to callable, optional
        Each maps data of shape (..., n_obs, n_features) to shape (...). Defaults to
        :func:`default_statistics`.
    group : {"posterior_predictive", "prior_predictive"}

    Returns
    -------
    pandas.DataFrame
        Indexed by statistic, columns ``observed``, ``replicated_mean``,
        ``replicated_sd``, ``p_value``, ``p_two_sided``.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> idata = add_predictive(idata, seed=1)
    >>> float(ppc_pvalues(idata).loc["n_modes[x1]", "p_two_sided"])
    1.0
    """
    reps = replicated_statistics(idata, statistics, group)
    rows = {}
    for name, da in reps.items():
        t_rep, t_obs = da.values.reshape(-1), da.attrs["observed"]
        upper, lower = np.mean(t_rep >= t_obs), np.mean(t_rep <= t_obs)
        rows[name] = {
            "observed": t_obs,
            "replicated_mean": t_rep.mean(),
            "replicated_sd": t_rep.std(),
            "p_value": upper,
            "p_two_sided": min(1.0, 2 * min(upper, lower)),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
