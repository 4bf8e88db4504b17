"""How many components: the posterior over K beside its prior, and criteria over K."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesgmm.plots._base import get_ax

#: Criteria read from a table (case-insensitive column names), lower is better for all but
#: ``elpd_loo``, which is drawn on the same deviance scale as ``LOOIC = -2 elpd_loo``.
CRITERIA = ("bic", "aic", "icl", "elpd_loo", "looic")


def _as_series(probs, ks=None) -> pd.Series:
    if isinstance(probs, pd.Series):
        return probs.astype(float)
    if isinstance(probs, dict):
        return pd.Series(probs, dtype=float).sort_index()
    values = np.asarray(probs, dtype=float).reshape(-1)
    index = np.arange(1, len(values) + 1) if ks is None else np.asarray(ks)
    return pd.Series(values, index=index)


def plot_n_components(posterior_probs, prior_probs=None, ks=None, ax=None):
    """Posterior probabilities of the number of components beside the prior they induce.

    Parameters
    ----------
    posterior_probs : pandas.Series, dict or array
        Probability of each K (a Series or dict indexed by K; an array is taken as
        K = 1, 2, ... unless ``ks`` is given), e.g. ``n_components_posterior(idata)``.
    prior_probs : same kinds, optional
        The prior over K that the model's priors induce, e.g.
        ``induced_prior_n_components(...)``.
    ks : array of int, optional
        The K of array inputs.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
        Side-by-side bars, legend entries ``posterior`` (and ``prior``), x label
        ``number of components K``.

    Examples
    --------
    >>> ax = plot_n_components([0.1, 0.6, 0.3], [0.3, 0.3, 0.4])
    >>> ax.get_xlabel()
    'number of components K'
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
    ax.set_xlabel("number of components K")
    ax.set_ylabel("probability")
    ax.legend()
    return ax


def plot_criteria(table, criteria=None, ax=None):
    """Information criteria over the number of components, best K marked.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per K: indexed by K, or with a column ``n_components`` (or ``k``);
        criteria columns such as ``bic``, ``aic``, ``icl`` (lower is better, as
        :func:`bayesgmm.bic`) and ``elpd_loo`` (higher is better; drawn as
        ``LOOIC = -2 elpd_loo`` so that every curve is on the deviance scale, with
        ``2 * elpd_loo_se`` error bars when a ``elpd_loo_se`` or ``se`` column exists),
        e.g. ``compare_n_components(X, ks)``.
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
    t = table.copy()
    lower = {str(c).lower(): c for c in t.columns}
    for name in ("n_components", "k"):
        if name in lower:
            t = t.set_index(lower[name])
            break
    ks = np.asarray(t.index, dtype=float)
    if criteria is None:
        criteria = [lower[c] for c in CRITERIA if c in lower]
    if not criteria:
        raise ValueError(f"No criteria columns; expected some of {CRITERIA}, got {list(table.columns)}.")
    for col in criteria:
        key = str(col).lower()
        y = t[col].to_numpy(dtype=float)
        label = key.upper()
        yerr = None
        if key == "elpd_loo":
            # -2 elpd_loo is on the scale of BIC/AIC: one axis, lower is better for all.
            y, label = -2 * y, "LOOIC (-2 elpd_loo)"
            se_col = lower.get("elpd_loo_se", lower.get("se"))
            yerr = None if se_col is None else 2 * t[se_col].to_numpy(dtype=float)
        line = ax.errorbar(ks, y, yerr=yerr, marker="o", ms=4, capsize=3, label=label)
        best = int(np.nanargmin(y))
        ax.plot(ks[best], y[best], marker="*", ms=14, color=line[0].get_color(), mec="k", zorder=5)
    ax.set_xticks(ks)
    ax.set_xlabel("number of components K")
    ax.set_ylabel("criterion (lower is better)")
    ax.legend()
    return ax
