"""Does the model reproduce the data: densities with credible bands, test statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING

import arviz as az
import numpy as np

from bayesgmm.plots._base import feature_names, fit_params, get_ax, observed_X, thin_draws
from bayesgmm.ppc import default_statistics, replicated_statistics

if TYPE_CHECKING:
    from collections.abc import Callable

    from matplotlib.axes import Axes
    from numpy.typing import ArrayLike

    from bayesgmm._typing import Fit
    from bayesgmm.params import GMMParams


def marginal_density(draws: GMMParams, grid: ArrayLike, feature: int = 0) -> np.ndarray:
    """Marginal mixture density of one feature for every draw.

    Parameters
    ----------
    draws : GMMParams
        Leaves shaped (n_draws, n_components, ...).
    grid : array, shape (n_grid,)
    feature : int

    Returns
    -------
    ndarray, shape (n_draws, n_grid)
    """
    mu = np.asarray(draws.means)[:, :, feature]
    L = np.asarray(draws.scale_tril)[:, :, feature, :]
    # The marginal variance of feature j is row j of L dotted with itself.
    sd = np.sqrt(np.sum(L * L, axis=-1))
    z = (np.asarray(grid)[None, :, None] - mu[:, None, :]) / sd[:, None, :]
    comp = np.exp(-0.5 * z**2) / (np.sqrt(2 * np.pi) * sd[:, None, :])
    return np.einsum("sgk,sk->sg", comp, np.asarray(draws.weights))


def plot_density_1d(
    source: Fit,
    feature: int = 0,
    hdi_prob: float = 0.94,
    n_draws: int = 200,
    grid_size: int = 256,
    bins: int | str = "auto",
    ax: Axes | None = None,
) -> Axes:
    """Histogram of one feature under the fitted mixture density and its credible band.

    Parameters
    ----------
    source : arviz.InferenceData or EMResult
        For an InferenceData the line is the posterior mean density and the band the
        pointwise highest-density interval over ``n_draws`` evenly spaced draws; for
        EM there is one density and no band.
    feature : int
        The feature (its marginal density for multivariate fits).
    hdi_prob : float
    n_draws, grid_size : int
    bins : int or str, default "auto"
        Passed to ``Axes.hist``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
        Legend entries ``data``, ``posterior mean density`` (``EM density``) and the
        band; x label the feature name, y label ``density``.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X = load_dataset("galaxies", as_frame=True)
    >>> ax = plot_density_1d(fit_svi(X, 3, seed=0), hdi_prob=0.9)
    >>> ax.get_xlabel()
    'velocity'
    """
    ax = get_ax(ax)
    draws, X, names = fit_params(source, relabel_draws=False)
    x = X[:, feature]
    draws = thin_draws(draws, n_draws)
    pad = 0.1 * (x.max() - x.min())
    grid = np.linspace(x.min() - pad, x.max() + pad, grid_size)
    dens = marginal_density(draws, grid, feature)
    ax.hist(x, bins=bins, density=True, color="0.8", edgecolor="0.55", label="data")
    if dens.shape[0] > 1:
        band = az.hdi(dens[None], hdi_prob=hdi_prob)
        ax.fill_between(
            grid, band[:, 0], band[:, 1], color="tab:blue", alpha=0.3, label=f"{hdi_prob:.0%} HDI"
        )
        ax.plot(grid, dens.mean(axis=0), color="tab:blue", lw=2, label="posterior mean density")
    else:
        ax.plot(grid, dens[0], color="tab:orange", lw=2, label="EM density")
    ax.plot(x, np.zeros_like(x), "|", color="k", ms=8, alpha=0.5)
    ax.set_xlabel(names[feature])
    ax.set_ylabel("density")
    # Densities of data in large units are tiny: a power of ten over the axis keeps the tick labels short.
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    ax.legend(fontsize="small")
    return ax


def plot_ppc_statistic(
    idata: az.InferenceData,
    statistic: str,
    statistics: dict[str, Callable] | None = None,
    group: str = "posterior_predictive",
    ax: Axes | None = None,
) -> Axes:
    """Replicated values of one test statistic against its observed value.

    Parameters
    ----------
    idata : arviz.InferenceData
        With a predictive group (see :func:`bayesgmm.add_predictive`).
    statistic : str
        A name in ``statistics`` (default: :func:`bayesgmm.ppc.default_statistics`,
        e.g. ``"n_modes[velocity]"``).
    statistics : dict of str to callable, optional
    group : {"posterior_predictive", "prior_predictive"}
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
        A histogram of ``T(y_rep)``, a vertical line at ``T(y)`` and the p-value
        ``P(T(y_rep) >= T(y))`` in the title.

    Examples
    --------
    >>> from bayesgmm import add_predictive, fit_svi, load_dataset
    >>> X = load_dataset("galaxies", as_frame=True)
    >>> idata = add_predictive(fit_svi(X, 3, seed=0), seed=1)
    >>> ax = plot_ppc_statistic(idata, "kurtosis[velocity]")
    >>> ax.get_xlabel()
    'kurtosis[velocity]'
    """
    ax = get_ax(ax)
    if statistics is None:
        X = observed_X(idata)
        statistics = default_statistics(X, feature_names(idata, X.shape[1]))
    if statistic not in statistics:
        raise ValueError(f"Unknown statistic {statistic!r}; choose one of {list(statistics)}.")
    # Only the statistic shown is computed.
    reps = replicated_statistics(idata, {statistic: statistics[statistic]}, group)
    t_rep, t_obs = reps[statistic].values.reshape(-1), reps[statistic].attrs["observed"]
    values = np.unique(t_rep)
    # Whole-number statistics (mode counts) get one bar per value.
    if np.allclose(values, np.round(values)) and len(values) <= 30:
        lo, hi = min(values.min(), t_obs), max(values.max(), t_obs)
        bins = np.arange(lo - 0.5, hi + 1.5)
    else:
        bins = "auto"
    ax.hist(t_rep, bins=bins, color="tab:blue", alpha=0.6, label="replicated T(y_rep)")
    ax.axvline(t_obs, color="k", lw=2, label="observed T(y)")
    ax.set_xlabel(statistic)
    ax.set_ylabel("replicates")
    ax.set_title(f"P(T(y_rep) >= T(y)) = {np.mean(t_rep >= t_obs):.3f}")
    ax.legend(fontsize="small")
    return ax
