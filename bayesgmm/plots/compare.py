"""Several panels: EM, SVI and NUTS side by side, and pair plots for many features."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from bayesgmm.plots._base import fit_params
from bayesgmm.plots.ellipses import plot_ellipses
from bayesgmm.plots.predictive import plot_density_1d
from bayesgmm.posterior.relabel import is_relabelled, relabel

if TYPE_CHECKING:
    from collections.abc import Sequence

    import arviz as az
    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike

    from bayesgmm._typing import Fit
    from bayesgmm.inference.em.result import EMResult


def plot_compare_fits(
    X: ArrayLike,
    em_result: EMResult,
    svi_idata: az.InferenceData,
    nuts_idata: az.InferenceData,
    n_draws: int = 50,
    features: tuple[int, int] = (0, 1),
    fig: Figure | None = None,
) -> Figure:
    """EM, SVI and NUTS fits of the same data in three panels with shared axes.

    Parameters
    ----------
    X : array, shape (n_obs, n_features)
        The data the three were fitted to (drawn in every panel).
    em_result : EMResult
    svi_idata, nuts_idata : arviz.InferenceData
    n_draws : int
        Posterior draws whose ellipses are drawn (SVI and NUTS).
    features : pair of int
        The features shown; with one feature the panels show densities instead.
    fig : matplotlib Figure, optional

    Returns
    -------
    matplotlib Figure
        Three Axes titled ``EM``, ``SVI``, ``NUTS``.

    Examples
    --------
    >>> from bayesgmm import fit_em, fit_nuts, fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> nuts = fit_nuts(X, 2, num_warmup=300, num_samples=400, num_chains=1, seed=0)
    >>> fig = plot_compare_fits(X, fit_em(X, 2, seed=0), fit_svi(X, 2, seed=0), nuts)
    >>> [ax.get_title() for ax in fig.axes]
    ['EM', 'SVI', 'NUTS']
    """
    X = np.asarray(X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    fig = plt.figure(figsize=(15, 4.5)) if fig is None else fig
    axes = fig.subplots(1, 3, sharex=True, sharey=X.shape[1] > 1)
    fits = (("EM", em_result), ("SVI", svi_idata), ("NUTS", nuts_idata))
    for ax, (title, fit) in zip(axes, fits, strict=True):
        if X.shape[1] == 1:
            plot_density_1d(fit, ax=ax)
        else:
            plot_ellipses(fit, X=X, n_draws=n_draws, features=features, ax=ax)
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_pairs(
    source: Fit,
    X: ArrayLike | None = None,
    n_draws: int = 20,
    features: Sequence[int] | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Pair plot for more than two features: ellipses off the diagonal, densities on it.

    Parameters
    ----------
    source : arviz.InferenceData or EMResult
    X : array, shape (n_obs, n_features), optional
        Defaults to the fit's data.
    n_draws : int
        Posterior draws whose ellipses are drawn in every panel.
    features : sequence of int, optional
        Features to show (all by default).
    fig : matplotlib Figure, optional

    Returns
    -------
    matplotlib Figure
        An ``n x n`` grid: panel ``(r, c)`` shows feature ``c`` against ``r`` with the
        marginal ellipses, the diagonal the marginal density over a histogram; axis
        labels on the outer panels are the feature names.

    Examples
    --------
    >>> from bayesgmm import fit_em, load_dataset
    >>> X_iris, _ = load_dataset("iris")
    >>> fig = plot_pairs(fit_em(X_iris, 3, seed=0))
    >>> len(fig.axes)
    16
    """
    _, X_fit, names = fit_params(source, relabel_draws=False)
    X = X_fit if X is None else np.asarray(X, dtype=float)
    features = list(range(X.shape[1])) if features is None else list(features)
    n = len(features)
    fig = plt.figure(figsize=(2.6 * n, 2.6 * n)) if fig is None else fig
    axes = fig.subplots(n, n, squeeze=False)
    # Relabel once, not in every panel.
    if hasattr(source, "groups") and source.posterior.sizes["component"] > 1:
        source = source if is_relabelled(source) else relabel(source)
    for r, fr in enumerate(features):
        for c, fc in enumerate(features):
            ax = axes[r, c]
            if r == c:
                plot_density_1d(source, feature=fr, ax=ax, bins=20)
                ax.get_legend().remove()
                ax.set_ylabel("")
            else:
                plot_ellipses(source, X=X, n_draws=n_draws, features=(fc, fr), legend=False, ax=ax)
            ax.set_xlabel(names[fc] if r == n - 1 else "")
            ax.set_ylabel(names[fr] if c == 0 else "")
            ax.tick_params(labelsize="small")
    fig.tight_layout()
    return fig
