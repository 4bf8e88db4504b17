"""How many components: the posterior over K beside its prior, and criteria over K."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayesgmm.plots._base import get_ax

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.axes import Axes
    from numpy.typing import ArrayLike

#: Criteria read from a table (case-insensitive column names), lower is better for all but
#: ``elpd_loo``, which is drawn on the same deviance scale as ``LOOIC = -2 elpd_loo``.
CRITERIA = ("bic", "aic", "icl", "elpd_loo", "looic")


def _as_series(probs, ks=None) -> pd.Series:
    if isinstance(probs, pd.DataFrame):
        # n_components_posterior / induced_prior_n_components: a "probability" column.
        return probs["probability"].astype(float)
    if isinstance(probs, pd.Series):
        return probs.astype(float)
    if isinstance(probs, dict):
        return pd.Series(probs, dtype=float).sort_index()
    values = np.asarray(probs, dtype=float).reshape(-1)
    index = np.arange(1, len(values) + 1) if ks is None else np.asarray(ks)
    return pd.Series(values, index=index)


def plot_n_components(
    posterior_probs: pd.Series | pd.DataFrame | ArrayLike,
    prior_probs: pd.Series | pd.DataFrame | ArrayLike | None = None,
    ks: ArrayLike | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Posterior probabilities of the number of components beside the prior they induce.

    Parameters
    ----------
    posterior_probs : pandas.DataFrame, Series, dict or array
        Probability of each K: a table indexed by K with a ``probability`` column
        (``n_components_posterior(idata)``), a Series or dict indexed by K, or an array
        taken as K = 1, 2, ... unless ``ks`` is given.
    prior_probs : same kinds, optional
        The prior over K that the model's priors induce
        (``induced_prior_n_components(n_obs, n_components, weight_prior)``).
    ks : array of int, optional
        The K of array inputs.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
        Side-by-side bars, legend entries ``posterior`` (and ``prior``), x label
        ``number of occupied components K``.

    Examples
    --------
    >>> ax = plot_n_components([0.1, 0.6, 0.3], [0.3, 0.3, 0.4])
    >>> ax.get_xlabel()
    'number of occupied components K'
    """
    ax = get_ax(ax)
    post = _as_series(posterior_probs, ks)
    series = [("posterior", post, "tab:blue")]
    if prior_probs is not None:
        series.append(("prior", _as_series(prior_probs, ks), "0.6"))
    width = 0.8 / len(series)
    for n, (label, s, color) in enumerate(series):
        offset = (n - (len(series) - 1) / 2) * width
        ax.bar(np.asarray(s.index, dtype=float) + offset, s.values, width=width, color=color, label=label)
    all_k = sorted(set().union(*(s.index for _, s, _ in series)))
    ax.set_xticks(all_k)
    ax.set_xlabel("number of occupied components K")
    ax.set_ylabel("probability")
    ax.legend()
    return ax


#: One marker per line of plot_criteria, so lines that coincide stay visible.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def plot_criteria(table: pd.DataFrame, criteria: Sequence[str] | None = None, ax: Axes | None = None) -> Axes:
    """Information criteria over the number of components, best K marked.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per K, e.g. ``compare_n_components(X, ks)``: indexed by K (or by
        (``n_components``, ``covariance_type``), one set of lines per covariance type),
        or with a column ``n_components``. Criteria columns such as ``bic``, ``aic``,
        ``icl`` (lower is better, as :func:`bayesgmm.bic`) and ``elpd_loo`` (higher is
        better; drawn as ``LOOIC = -2 elpd_loo`` so that every curve is on the deviance
        scale, with ``2 * se_loo`` error bars when a ``se_loo`` column exists).
    criteria : sequence of str, optional
        Columns to draw; defaults to those of ``CRITERIA`` present.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
        One line per criterion (legend entry = its name) with the best K starred.

    Examples
    --------
    >>> t = pd.DataFrame({"bic": [10.0, 4.0, 6.0], "icl": [10.0, 5.0, 9.0]}, index=[1, 2, 3])
    >>> [t.get_text() for t in plot_criteria(t).get_legend().get_texts()]
    ['BIC', 'ICL']
    """
    ax = get_ax(ax)
    t = table.reset_index() if table.index.name or isinstance(table.index, pd.MultiIndex) else table.copy()
    lower = {str(c).lower(): c for c in t.columns}
    k_col = lower.get("n_components", lower.get("k"))
    if k_col is None:
        t, k_col = t.reset_index(names="n_components"), "n_components"
    if criteria is None:
        criteria = [lower[c] for c in CRITERIA if c in lower]
    if not criteria:
        raise ValueError(f"No criteria columns; expected some of {CRITERIA}, got {list(table.columns)}.")
    cov_col = lower.get("covariance_type")
    groups = (
        [(None, t)] if cov_col is None or t[cov_col].nunique() == 1 else list(t.groupby(cov_col, sort=False))
    )
    ks = np.unique(t[k_col].to_numpy(dtype=float))
    lines = [(cov, g.sort_values(k_col), col) for cov, g in groups for col in criteria]
    # Criteria often agree (BIC and ICL of well-separated fits): each line gets its own marker
    # and a small sideways shift so that none hides another.
    step = 0.5 * np.min(np.diff(ks), initial=1.0) / max(len(lines), 1)
    for i, (cov, g, col) in enumerate(lines):
        x = g[k_col].to_numpy(dtype=float) + (i - (len(lines) - 1) / 2) * step
        key = str(col).lower()
        y, label, yerr = g[col].to_numpy(dtype=float), key.upper(), None
        if key == "elpd_loo":
            # -2 elpd_loo is on the scale of BIC/AIC: one axis, lower is better for all.
            y, label = -2 * y, "LOOIC (-2 elpd_loo)"
            se_col = next((lower[c] for c in ("se_loo", "elpd_loo_se", "se") if c in lower), None)
            yerr = None if se_col is None else 2 * g[se_col].to_numpy(dtype=float)
        label = label if cov is None else f"{label} ({cov})"
        marker = _MARKERS[i % len(_MARKERS)]
        line = ax.errorbar(x, y, yerr=yerr, marker=marker, ms=5, mfc="none", capsize=3, label=label)
        if np.isfinite(y).any():
            best = int(np.nanargmin(y))
            ax.plot(x[best], y[best], marker="*", ms=14, color=line[0].get_color(), mec="k", zorder=5)
    ax.set_xticks(ks)
    ax.set_xlabel("number of components K")
    ax.set_ylabel("criterion (lower is better)")
    ax.legend()
    return ax
