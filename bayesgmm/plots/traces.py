"""Optimisation traces (ELBO, EM log-likelihood) and draws before and after relabelling."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from bayesgmm.inference.em.result import EMResult
from bayesgmm.plots._base import component_colors, feature_names, get_ax

if TYPE_CHECKING:
    from collections.abc import Sequence

    import arviz as az
    from matplotlib.axes import Axes
    from numpy.typing import ArrayLike


def plot_trace_objective(
    trace: az.InferenceData | EMResult | ArrayLike, ax: Axes | None = None, label: str | None = None
) -> Axes:
    """Plot the objective of an optimiser over its iterations.

    Parameters
    ----------
    trace : EMResult, arviz.InferenceData or array
        An ``EMResult`` (its ``lower_bounds``: mean log-likelihood per observation at
        each EM iteration), an SVI InferenceData (its ``elbo_trace`` group, one line
        per restart), or an array shaped (n_steps,) or (n_lines, n_steps).
    ax : matplotlib Axes, optional
    label : str, optional
        The y label; defaults to the objective's name.

    Returns
    -------
    matplotlib Axes
        One line per restart (long traces: faint, under a moving average over 2% of
        the steps), restart 0 drawn on top of the others, x label
        ``EM iteration``/``SVI step``/``step``.

    Examples
    --------
    >>> ax = plot_trace_objective(np.log(np.arange(1, 50)))
    >>> ax.get_xlabel()
    'step'
    """
    ax = get_ax(ax)
    xlabel, ylabel = "step", "objective"
    if isinstance(trace, EMResult):
        values, xlabel, ylabel = np.asarray(trace.lower_bounds)[None], "EM iteration", "mean log-likelihood"
    elif hasattr(trace, "groups"):
        if "elbo_trace" not in trace.groups():
            raise ValueError("This InferenceData has no elbo_trace group (only fit_svi writes one).")
        values, xlabel, ylabel = (
            trace.elbo_trace["elbo"].transpose("restart", "step").values,
            "SVI step",
            "ELBO",
        )
    else:
        values = np.atleast_2d(np.asarray(trace, dtype=float))
    steps = np.arange(1, values.shape[1] + 1)
    # Stochastic objectives (ELBO) are noisy: draw them faint under a moving average.
    window = values.shape[1] // 50
    for r, line in enumerate(values):
        name = f"restart {r}" if len(values) > 1 else None
        # Restart 0 on top: drawn first, it would sit hidden under the restarts that agree with it.
        z = 2.5 if r == 0 else 2.0
        if window > 1:
            drawn = ax.plot(steps, line, lw=0.6, alpha=0.35, zorder=z)
            smooth = np.convolve(line, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, lw=1.8, color=drawn[0].get_color(), label=name, zorder=z)
        else:
            ax.plot(steps, line, lw=1, label=name, zorder=z)
    # The first steps are often far below the rest; zoom on the part that tells convergence.
    tail = values[:, values.shape[1] // 10 :]
    if tail.size and np.all(np.isfinite(tail)):
        lo, hi = np.min(tail), np.max(tail)
        pad = 0.05 * (hi - lo) if hi > lo else 1.0
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(label or ylabel)
    if len(values) > 1:
        ax.legend(fontsize="small")
    return ax


def _traces(idata, var: str, feature: int) -> np.ndarray:
    da = idata.posterior[var]
    if "feature" in da.dims:
        da = da.isel(feature=feature)
    extra = [d for d in da.dims if d not in ("chain", "draw", "component")]
    if extra:
        da = da.isel({d: feature for d in extra})
    return da.transpose("chain", "draw", "component").values


def plot_relabel_traces(
    raw_idata: az.InferenceData,
    relabelled_idata: az.InferenceData,
    var: str = "means",
    feature: int = 0,
    axes: Sequence[Axes] | None = None,
) -> np.ndarray:
    """Traces of one parameter per component before and after relabelling, side by side.

    Parameters
    ----------
    raw_idata, relabelled_idata : arviz.InferenceData
        The fit and ``relabel(fit)``.
    var : str
        A posterior variable with a ``component`` dim (``means``, ``weights``, ...).
    feature : int
        The feature shown for variables with a ``feature`` dim (and the diagonal entry
        for covariances).
    axes : pair of matplotlib Axes, optional

    Returns
    -------
    ndarray of two matplotlib Axes
        Titled ``before relabelling`` and ``after relabelling``; chains are drawn one
        after another, separated by dotted lines; one colour per component.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset, relabel
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> axes = plot_relabel_traces(idata, relabel(idata))
    >>> [ax.get_title() for ax in axes]
    ['before relabelling', 'after relabelling']
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    axes = np.asarray(axes).reshape(-1)
    names = feature_names(raw_idata)
    ylabel = var if "feature" not in raw_idata.posterior[var].dims else f"{var}[{names[feature]}]"
    for ax, idata, title in zip(axes, (raw_idata, relabelled_idata), ("before", "after"), strict=True):
        values = _traces(idata, var, feature)
        n_chains, n_draws, n_components = values.shape
        colors = component_colors(n_components)
        for k in range(n_components):
            ax.plot(values[:, :, k].reshape(-1), lw=0.6, color=colors[k], label=f"component {k}")
        for c in range(1, n_chains):
            ax.axvline(c * n_draws, color="0.5", ls=":", lw=0.8)
        ax.set_title(f"{title} relabelling")
        ax.set_xlabel("draw (chains one after another)")
    axes[0].set_ylabel(ylabel)
    axes[1].legend(fontsize="small", loc="best")
    axes[0].figure.tight_layout()
    return axes
