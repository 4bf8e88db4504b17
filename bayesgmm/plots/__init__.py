"""matplotlib plots of mixture fits: every function takes ``ax=None`` and returns the Axes.

Multi-panel plots take ``axes=None`` or ``fig=None`` and return them. Plots never run
inference: they take an InferenceData, an ``EMResult`` or a table.

Examples
--------
>>> import bayesgmm.plots as bp
>>> from bayesgmm import fit_em, load_dataset
>>> X, _ = load_dataset("faithful")
>>> ax = bp.plot_ellipses(fit_em(X, 2, seed=0))
>>> ax.get_xlabel()
'x0'
"""

from bayesgmm.plots.assignments import plot_coclustering, plot_uncertainty
from bayesgmm.plots.compare import plot_compare_fits, plot_pairs
from bayesgmm.plots.ellipses import plot_ellipses
from bayesgmm.plots.model_choice import plot_criteria, plot_n_components
from bayesgmm.plots.predictive import plot_density_1d, plot_ppc_statistic
from bayesgmm.plots.traces import plot_relabel_traces, plot_trace_objective

__all__ = [
    "plot_coclustering",
    "plot_compare_fits",
    "plot_criteria",
    "plot_density_1d",
    "plot_ellipses",
    "plot_n_components",
    "plot_pairs",
    "plot_ppc_statistic",
    "plot_relabel_traces",
    "plot_trace_objective",
    "plot_uncertainty",
]
