"""``bayesgmm plot``: a saved model's plots from :mod:`bayesgmm.plots`, written as PNG files."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from bayesgmm.cli._commands import load_model, model_columns
from bayesgmm.cli._data import prepare_dir
from bayesgmm.cli._errors import OK, CliError
from bayesgmm.cli._report import svi_convergence

if TYPE_CHECKING:
    from collections.abc import Callable

    import arviz as az


def _em_idata(model, args: argparse.Namespace) -> az.InferenceData:
    """Build an EM model's InferenceData at its parameters, ``--data`` as its observed data."""
    import numpy as np

    from bayesgmm.inference.idata import point_inference_data

    if args.data is None:
        raise CliError(
            f"{args.model} is an EM model, and EM model files hold no data: give the data with --data."
        )
    X = np.asarray(model_columns(model, args.data, args.columns), dtype=float)
    names = getattr(model, "feature_names_in_", None)
    names = None if names is None else [str(n) for n in names]
    return point_inference_data(model._params(), X, feature_names=names, attrs={"inference": "em"})


def _trace_figure(idata: az.InferenceData):
    """ArviZ's trace plot of the weights and of the means, one row per feature (all components)."""
    import arviz as az
    import xarray as xr

    post = idata.posterior
    rows = {"weights": post["weights"]}
    rows |= {f"means[{f}]": post["means"].sel(feature=f, drop=True) for f in post["feature"].values}
    axes = az.plot_trace(xr.Dataset(rows), compact=True, backend_kwargs={"layout": "constrained"})
    return axes.ravel()[0].figure


def _figures(idata: az.InferenceData) -> dict[str, Callable]:
    """File name to a function drawing that figure, for the plots that fit this kind of fit."""
    import bayesgmm.plots as bp

    n_features = idata.observed_data["X"].sizes["feature"]
    figures = {}
    if n_features >= 2:
        figures["ellipses.png"] = lambda: _titled(bp.plot_ellipses(idata), _ellipses_title(idata))
    else:
        figures["density.png"] = lambda: bp.plot_density_1d(idata).figure
    figures["uncertainty.png"] = lambda: bp.plot_uncertainty(idata).figure
    if "diverging" in idata.get("sample_stats", {}):
        figures["trace.png"] = lambda: _trace_figure(idata)
    if "elbo_trace" in idata.groups():
        title = svi_convergence(idata.attrs)[0] if "n_steps" in idata.attrs else "SVI"
        figures["elbo.png"] = lambda: _titled(bp.plot_trace_objective(idata), title)
    return figures


def _titled(ax, title: str):
    """Give the plot ``title`` and return its figure."""
    ax.set_title(title, fontsize="medium")
    return ax.figure


def _ellipses_title(idata: az.InferenceData) -> str:
    """Name the two features the ellipses are drawn for (the first two), and how many there are."""
    names = [str(f) for f in idata.observed_data["X"]["feature"].values]
    shown = f"{names[0]} (x), {names[1]} (y)"
    if len(names) == 2:
        return f"90% ellipse of each component: {shown}"
    return f"90% ellipse of each component\nthe first 2 of {len(names)} features: {shown}"


def run_plot(args: argparse.Namespace) -> int:
    """``bayesgmm plot``: draw the model's plots into ``--output-dir`` and say which files."""
    folder = prepare_dir(args.output_dir, "--output-dir")
    model = load_model(args.model)
    if type(model).__name__ == "GaussianMixture":
        idata = _em_idata(model, args)
    elif args.data is not None:
        raise CliError("--data is for EM models only: a Bayesian model file holds the data it was fitted to.")
    else:
        idata = model.idata_
    import matplotlib.pyplot as plt

    # Files only: no window, whatever backend the environment names.
    plt.switch_backend("Agg")
    written = []
    for name, draw in _figures(idata).items():
        fig = draw()
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
        written.append(str(folder / name))
    print("wrote " + ", ".join(written))
    return OK
