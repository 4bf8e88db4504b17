"""Fit the bundled data sets with modest settings and write one PNG per plot.

Run ``python -m bayesgmm.gallery gallery/`` (a few minutes on a laptop CPU); add
``--smoke`` (or set ``BAYESGMM_SMOKE=1``) for a quick run with tiny fits that only
checks that every plot is drawn. See ``docs/gallery.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the gallery only writes files

import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bayesgmm  # noqa: E402
from bayesgmm import plots as bp  # noqa: E402
from bayesgmm.ppc import add_predictive, ppc_pvalues  # noqa: E402

#: Fit sizes of the full gallery and of the smoke run.
SETTINGS = {
    "full": dict(num_warmup=500, num_samples=500, num_chains=2, svi_steps=5000, svi_samples=500, n_draws=50),
    "smoke": dict(num_warmup=20, num_samples=20, num_chains=1, svi_steps=200, svi_samples=20, n_draws=5),
}

#: Every file the gallery writes.
FILES = (
    "faithful_ellipses_nuts.png",
    "faithful_ellipses_em.png",
    "faithful_uncertainty.png",
    "faithful_coclustering.png",
    "faithful_compare_fits.png",
    "faithful_elbo_trace.png",
    "faithful_em_trace.png",
    "faithful_criteria.png",
    "galaxies_density.png",
    "galaxies_n_components.png",
    "galaxies_relabel_traces.png",
    "galaxies_ppc.png",
    "galaxies_loo_pit.png",
    "galaxies_ppc_modes.png",
    "galaxies_criteria.png",
    "iris_pairs.png",
)


def _save(fig, outdir: Path, name: str) -> None:
    fig.savefig(outdir / name, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"  wrote {outdir / name}")


def faithful(outdir: Path, s: dict, seed: int) -> None:
    """Write the Old Faithful figures: EM, SVI and NUTS fits, assignments, criteria."""
    X, _ = bayesgmm.load_dataset("faithful")
    names = ["eruptions", "waiting"]
    nuts = bayesgmm.fit_nuts(
        X, 2, num_warmup=s["num_warmup"], num_samples=s["num_samples"], num_chains=s["num_chains"],
        seed=seed, feature_names=names,
    )  # fmt: skip
    svi = bayesgmm.fit_svi(
        X, 2, max_steps=s["svi_steps"], num_samples=s["svi_samples"], seed=seed, feature_names=names
    )
    em = bayesgmm.fit_em(X, 2, n_init=4, seed=seed)

    ax = bp.plot_ellipses(nuts, n_draws=s["n_draws"])
    ax.set_title(f"Old Faithful, NUTS: ellipses of {s['n_draws']} posterior draws and the posterior mean")
    _save(ax.figure, outdir, "faithful_ellipses_nuts.png")
    ax = bp.plot_ellipses(em)
    ax.set(title="Old Faithful, EM", xlabel=names[0], ylabel=names[1])
    _save(ax.figure, outdir, "faithful_ellipses_em.png")
    ax = bp.plot_uncertainty(nuts)
    ax.set_title("Old Faithful: assignment uncertainty (NUTS)")
    _save(ax.figure, outdir, "faithful_uncertainty.png")
    ax = bp.plot_coclustering(nuts)
    _save(ax.figure, outdir, "faithful_coclustering.png")
    fig = bp.plot_compare_fits(X, em, svi, nuts, n_draws=s["n_draws"])
    for ax in fig.axes:
        ax.set(xlabel=names[0], ylabel=names[1])
    _save(fig, outdir, "faithful_compare_fits.png")
    ax = bp.plot_trace_objective(svi)
    ax.set_title("Old Faithful: SVI evidence lower bound")
    _save(ax.figure, outdir, "faithful_elbo_trace.png")
    ax = bp.plot_trace_objective(em)
    ax.set_title("Old Faithful: EM log-likelihood per observation")
    _save(ax.figure, outdir, "faithful_em_trace.png")
    ax = bp.plot_criteria(bayesgmm.compare_n_components(X, range(1, 6), seed=seed))
    ax.set_title("Old Faithful: information criteria of EM fits")
    _save(ax.figure, outdir, "faithful_criteria.png")


def galaxies(outdir: Path, s: dict, seed: int) -> None:
    """Write the galaxies figures: densities, the number of components, predictive checks."""
    X, _ = bayesgmm.load_dataset("galaxies")
    X = X / 1000.0  # km/s -> 1000 km/s, for readable axes
    kw = dict(num_warmup=s["num_warmup"], num_samples=s["num_samples"], num_chains=s["num_chains"], seed=seed)
    sparse = bayesgmm.fit_nuts(X, 6, weight_prior="sparse", feature_names=["velocity"], **kw)
    one = bayesgmm.fit_nuts(X, 1, feature_names=["velocity"], **kw)
    sparse = add_predictive(sparse, seed=seed)
    one = add_predictive(one, seed=seed)

    ax = bp.plot_density_1d(sparse)
    ax.set(title="Galaxies: sparse mixture (K <= 6), posterior density", xlabel="velocity (1000 km/s)")
    _save(ax.figure, outdir, "galaxies_density.png")
    prior = bayesgmm.induced_prior_n_components(len(X), 6, "sparse")
    ax = bp.plot_n_components(bayesgmm.n_components_posterior(sparse, seed=seed), prior)
    ax.set_title("Galaxies: number of occupied components of a sparse mixture (K <= 6)")
    _save(ax.figure, outdir, "galaxies_n_components.png")
    axes = bp.plot_relabel_traces(sparse, bayesgmm.relabel(sparse), var="means")
    _save(axes[0].figure, outdir, "galaxies_relabel_traces.png")
    ax = az.plot_ppc(sparse, var_names=["X"], num_pp_samples=min(100, s["num_samples"]))
    ax = np.ravel(ax)[0]
    ax.set_title("Galaxies: posterior predictive check (sparse mixture)")
    _save(ax.figure, outdir, "galaxies_ppc.png")
    ax = az.plot_loo_pit(sparse, y="X_0")
    ax.set_title("Galaxies: LOO-PIT (sparse mixture)")
    _save(ax.figure, outdir, "galaxies_loo_pit.png")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, fit, title in zip(axes, (one, sparse), ("one component", "sparse mixture"), strict=True):
        bp.plot_ppc_statistic(fit, "n_modes[velocity]", ax=ax)
        p = ppc_pvalues(fit).loc["n_modes[velocity]", "p_two_sided"]
        ax.set_title(f"{title}: two-sided p = {p:.3f}")
    fig.suptitle("Galaxies: number of modes of a KDE, observed vs replicated")
    fig.tight_layout()
    _save(fig, outdir, "galaxies_ppc_modes.png")
    # LOO needs a Bayesian fit per K: NUTS in the full gallery, EM criteria only when smoking.
    inference = None if s["num_samples"] < 100 else "nuts"
    fit_kwargs = {k: s[k] for k in ("num_warmup", "num_samples", "num_chains")}
    table = bayesgmm.compare_n_components(
        X, range(1, 5), inference=inference, seed=seed, fit_kwargs=fit_kwargs
    )
    ax = bp.plot_criteria(table)
    ax.set_title("Galaxies: criteria over K" + (" (LOO from NUTS fits)" if inference else " (EM)"))
    _save(ax.figure, outdir, "galaxies_criteria.png")


def iris(outdir: Path, s: dict, seed: int) -> None:
    """Write the iris pairs plot of an SVI fit."""
    frame = bayesgmm.load_dataset("iris", as_frame=True)
    X = frame.drop(columns="species")
    svi = bayesgmm.fit_svi(X, 3, max_steps=s["svi_steps"], num_samples=s["svi_samples"], seed=seed)
    fig = bp.plot_pairs(svi, n_draws=max(5, s["n_draws"] // 3))
    fig.suptitle("Iris: SVI fit with 3 components", y=1.01)
    _save(fig, outdir, "iris_pairs.png")


def main(argv: list[str] | None = None) -> int:
    """Write the gallery; ``argv`` as on the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bayesgmm.gallery", description=__doc__.splitlines()[0])
    parser.add_argument("outdir", nargs="?", default="gallery", help="folder for the PNGs (default gallery/)")
    parser.add_argument("--smoke", action="store_true", help="tiny fits: check that every plot is drawn")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    smoke = args.smoke or os.environ.get("BAYESGMM_SMOKE", "0") not in ("", "0")
    settings = SETTINGS["smoke" if smoke else "full"]
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Tiny smoke fits make ArviZ warn about few draws and high Pareto k; that is expected there.
        if smoke:
            warnings.simplefilter("ignore")
        warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*")
        for make in (faithful, galaxies, iris):
            start = time.perf_counter()
            print(f"{make.__name__}:")
            make(outdir, settings, args.seed)
            print(f"  ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
