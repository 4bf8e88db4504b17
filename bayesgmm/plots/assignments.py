"""Which points are uncertain, and which points go together."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bayesgmm.plots._base import feature_names, get_ax, observed_X
from bayesgmm.posterior.assignments import coclustering_matrix, membership_probabilities
from bayesgmm.posterior.partition import best_partition

if TYPE_CHECKING:
    import arviz as az
    import xarray as xr
    from matplotlib.axes import Axes
    from numpy.typing import ArrayLike


def plot_uncertainty(
    idata: az.InferenceData,
    features: tuple[int, int] = (0, 1),
    probs: xr.Dataset | None = None,
    cmap: str = "viridis",
    ax: Axes | None = None,
) -> Axes:
    """Points shaded by the uncertainty of their assignment (mclust's ``1 - max_k p_ik``).

    Parameters
    ----------
    idata : arviz.InferenceData
        A mixture fit with ``observed_data``.
    features : pair of int
        Shown features; for 1-D data the value is plotted against its uncertainty.
    probs : xarray.Dataset, optional
        A precomputed :func:`bayesgmm.membership_probabilities` result.
    cmap : str
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
        With a colour bar labelled ``assignment uncertainty`` (``ax.figure`` has it as
        a second Axes).

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> ax = plot_uncertainty(idata)
    >>> len(ax.collections[0].get_offsets()) == len(X)
    True
    """
    ax = get_ax(ax)
    probs = membership_probabilities(idata) if probs is None else probs
    u = probs["uncertainty"].values
    X = observed_X(idata)
    names = feature_names(idata, X.shape[1])
    # The largest possible value is 1 - 1/K; a common scale makes fits comparable.
    vmax = 1.0 - 1.0 / probs.sizes["component"] if probs.sizes["component"] > 1 else 1.0
    order = np.argsort(u)  # uncertain points on top
    if X.shape[1] == 1:
        x, y = X[order, 0], u[order]
        ax.set_xlabel(names[0])
        ax.set_ylabel("assignment uncertainty")
    else:
        i, j = features
        x, y = X[order, i], X[order, j]
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
    sc = ax.scatter(x, y, c=u[order], cmap=cmap, vmin=0.0, vmax=vmax, s=14 + 40 * u[order] / vmax)
    ax.figure.colorbar(sc, ax=ax, label="assignment uncertainty")
    return ax


def plot_coclustering(
    idata: az.InferenceData | None = None,
    sim: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    cmap: str = "Greys",
    ax: Axes | None = None,
) -> Axes:
    """Plot the posterior co-clustering matrix, observations ordered by the best partition.

    Parameters
    ----------
    idata : arviz.InferenceData, optional
        Used to compute what is not given.
    sim : array, shape (n_obs, n_obs), optional
        ``coclustering_matrix(idata)``.
    labels : int array, shape (n_obs,), optional
        ``best_partition(idata).labels``.
    cmap : str
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
        The image, lines between the clusters of the best partition and a colour bar
        labelled ``P(same component)``.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> ax = plot_coclustering(idata)
    >>> ax.images[0].get_array().shape
    (272, 272)
    """
    if sim is None:
        if idata is None:
            raise ValueError("Give idata or sim.")
        sim = coclustering_matrix(idata).values
    sim = np.asarray(sim, dtype=float)
    if labels is None:
        if idata is None:
            raise ValueError("Give idata or labels.")
        labels = best_partition(idata, sim=sim).labels
    labels = np.asarray(labels)
    # Within a cluster, most typical members first (highest mean co-clustering with it).
    typical = np.array([sim[i, labels == labels[i]].mean() for i in range(len(labels))])
    order = np.lexsort((-typical, labels))
    ax = get_ax(ax)
    im = ax.imshow(sim[np.ix_(order, order)], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    bounds = np.flatnonzero(np.diff(labels[order])) + 0.5
    for b in bounds:
        ax.axhline(b, color="tab:red", lw=0.8)
        ax.axvline(b, color="tab:red", lw=0.8)
    ax.set_xlabel("observation (ordered by best partition)")
    ax.set_ylabel("observation (ordered by best partition)")
    ax.set_title(f"co-clustering, {len(np.unique(labels))} clusters in the best partition")
    ax.figure.colorbar(im, ax=ax, label="P(same component)")
    return ax
