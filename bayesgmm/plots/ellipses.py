"""Data with the components' covariance ellipses, from many posterior draws or from EM."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse
from scipy.stats import chi2

from bayesgmm.plots._base import component_colors, fit_params, get_ax, thin_draws

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from numpy.typing import ArrayLike

    from bayesgmm._typing import Fit


def ellipse_patch(mean: ArrayLike, cov: ArrayLike, level: float = 0.9, **kwargs: Any) -> Ellipse:
    """Return the ellipse holding probability ``level`` of a 2-D normal.

    Parameters
    ----------
    mean : array, shape (2,)
    cov : array, shape (2, 2)
    level : float
        Probability mass inside the ellipse.
    **kwargs
        Passed to ``matplotlib.patches.Ellipse``.

    Examples
    --------
    >>> e = ellipse_patch(np.zeros(2), np.eye(2), level=0.9)
    >>> float(round(e.width, 3))
    4.292
    """
    vals, vecs = np.linalg.eigh(np.asarray(cov, dtype=float))
    radius = np.sqrt(chi2.ppf(level, df=2))
    angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
    width, height = 2 * radius * np.sqrt(np.clip(vals[::-1], 0, None))
    return Ellipse(tuple(np.asarray(mean, dtype=float)), width, height, angle=angle, **kwargs)


def plot_ellipses(
    source: Fit,
    X: ArrayLike | None = None,
    n_draws: int = 50,
    features: tuple[int, int] = (0, 1),
    level: float = 0.9,
    show_data: bool = True,
    legend: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Plot the data with covariance ellipses of the mixture components.

    From an InferenceData: one faint ellipse per component for each of ``n_draws``
    evenly spaced posterior draws (their spread shows the posterior uncertainty)
    plus a bold one at the posterior mean of each component. The draws are
    relabelled first so that a colour is one component. From an ``EMResult``: one
    bold ellipse per component.

    Parameters
    ----------
    source : arviz.InferenceData or EMResult
        Components are numbered and coloured heaviest first: an InferenceData is relabelled
        (see :func:`bayesgmm.relabel`), an EMResult's components sorted by weight.
    X : array, shape (n_obs, n_features), optional
        Points to show; defaults to the fit's data.
    n_draws : int
        Posterior draws whose ellipses are drawn (ignored for EM).
    features : pair of int
        The two features shown (the ellipses are the marginal ones).
    level : float
        Probability mass inside each ellipse.
    show_data : bool
    legend : bool
        One legend entry per component, with its (posterior mean) weight.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
        ``n_draws * n_components`` faint plus ``n_components`` bold ellipse patches
        (only the bold ones for EM); labels are the feature names.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> ax = plot_ellipses(idata, n_draws=30)
    >>> len(ax.patches)  # 30 draws of each component, then each component's mean
    62
    """
    draws, X_fit, names = fit_params(source)
    X = X_fit if X is None else np.asarray(X, dtype=float)
    if X.ndim == 1 or X.shape[1] < 2:
        raise ValueError("plot_ellipses needs two or more features; use plot_density_1d for 1-D data.")
    i, j = features
    ax = get_ax(ax)
    n_components = draws.weights.shape[-1]
    colors = component_colors(n_components)
    if show_data:
        ax.scatter(X[:, i], X[:, j], s=8, color="0.35", alpha=0.6, linewidths=0, zorder=1)
    covs = np.einsum("skab,skcb->skac", draws.scale_tril, draws.scale_tril)
    sub = np.ix_([i, j], [i, j])
    is_posterior = draws.weights.shape[0] > 1
    if is_posterior:
        few = thin_draws(draws, n_draws)
        few_covs = np.einsum("skab,skcb->skac", few.scale_tril, few.scale_tril)
        for s in range(few.weights.shape[0]):
            for k in range(n_components):
                ax.add_patch(
                    ellipse_patch(
                        few.means[s, k, [i, j]], few_covs[s, k][sub], level,
                        fill=False, color=colors[k], alpha=0.12, lw=0.8, zorder=2,
                    )
                )  # fmt: skip
    # The bold ellipse: the mean over draws of each component (one draw for EM).
    means, cov_mean, weights = draws.means.mean(axis=0), covs.mean(axis=0), draws.weights.mean(axis=0)
    for k in range(n_components):
        ax.add_patch(
            ellipse_patch(
                means[k, [i, j]], cov_mean[k][sub], level, fill=False, color=colors[k], lw=2, zorder=3
            )
        )
        ax.plot(*means[k, [i, j]], marker="x", color=colors[k], ms=7, mew=2, zorder=4)
    ax.set_xlabel(names[i])
    ax.set_ylabel(names[j])
    ax.autoscale_view()
    if legend:
        what = "posterior mean, " if is_posterior else ""
        handles = [
            Line2D([], [], color=colors[k], lw=2, label=f"component {k} ({what}w={weights[k]:.2f})")
            for k in range(n_components)
        ]
        ax.legend(handles=handles, loc="best", fontsize="small", framealpha=0.8)
    return ax
