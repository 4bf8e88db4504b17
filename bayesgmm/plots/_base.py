"""Small pieces shared by the plots: axes, colours, where the parameters and data come from."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from bayesgmm.inference.em.result import EMResult
from bayesgmm.params import GMMParams
from bayesgmm.posterior.draws import params_from_idata
from bayesgmm.posterior.relabel import is_relabelled, relabel


def get_ax(ax=None):
    """``ax``, or the Axes of a new figure."""
    if ax is None:
        # Constrained layout keeps axis labels inside the figure when it is saved as drawn.
        _, ax = plt.subplots(layout="constrained")
    return ax


def component_colors(n_components: int) -> list:
    """One colour per component, from matplotlib's default cycle (tab20 beyond ten)."""
    cmap = plt.get_cmap("tab10" if n_components <= 10 else "tab20")
    return [cmap(k % cmap.N) for k in range(n_components)]


def observed_X(idata) -> np.ndarray:
    """``observed_data["X"]`` as an array, shape (n_obs, n_features)."""
    return idata.observed_data["X"].transpose("obs", "feature").values


def feature_names(idata, n_features: int | None = None) -> list[str]:
    """Feature names of an InferenceData (its ``feature`` coordinate), else ``x0, x1, ...``."""
    if idata is not None and "posterior" in idata.groups() and "feature" in idata.posterior.coords:
        names = [str(f) for f in idata.posterior["feature"].values]
        # Integer names (columns of a frame without names) read as the fits name unnamed features.
        return [f"x{n}" if n.isdigit() else n for n in names]
    return [f"x{j}" for j in range(n_features or 0)]


def thin_draws(params: GMMParams, n_draws: int) -> GMMParams:
    """``n_draws`` evenly spaced draws over all chains, leaves shaped (n_draws, ...)."""
    lead = params.weights.ndim - 1
    flat = GMMParams(*(np.asarray(a).reshape(-1, *np.shape(a)[lead:]) for a in params))
    idx = np.unique(np.linspace(0, flat.weights.shape[0] - 1, n_draws).round().astype(int))
    return GMMParams(*(a[idx] for a in flat))


def fit_params(source, relabel_draws: bool = True):
    """Draws of a fit as GMMParams (leaves shaped (n_draws, ...)), its data and feature names.

    ``source`` is an InferenceData (relabelled first when ``relabel_draws``, so that
    colours follow components) or an EMResult (one draw). EM's components are put in the
    order relabelling gives posterior draws, by decreasing weight, so that a colour means
    the same component in a panel of EM and one of SVI or NUTS.
    """
    if isinstance(source, EMResult):
        p = source.params
        order = np.argsort(-np.asarray(p.weights), kind="stable")
        draws = GMMParams(*(np.asarray(a)[order][None] for a in p))
        X = np.asarray(source.X)
        names = source.feature_names or [f"x{j}" for j in range(X.shape[1])]
        return draws, X, list(names)
    idata = source
    if relabel_draws and not is_relabelled(idata) and idata.posterior.sizes["component"] > 1:
        idata = relabel(idata)
    params = params_from_idata(idata)
    lead = params.weights.ndim - 1
    draws = GMMParams(*(np.asarray(a).reshape(-1, *np.shape(a)[lead:]) for a in params))
    X = observed_X(idata)
    return draws, X, feature_names(idata, X.shape[1])
