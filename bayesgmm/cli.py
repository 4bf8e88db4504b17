"""The ``bayesgmm`` command line: fit a mixture to a bundled data set or a CSV file."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

_DESCRIPTION = """Fit a Bayesian Gaussian mixture and print the posterior with its diagnostics.

examples:
  bayesgmm fit                                  # Old Faithful, 2 components, NUTS
  bayesgmm fit --data galaxies -k 4 --covariance-type spherical
  bayesgmm fit --data my.csv --columns a,b -k 3 --output fit.nc
"""


def _version() -> str:
    from bayesgmm import __version__

    return __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesgmm", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"bayesgmm {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a mixture and print a posterior summary")
    fit.add_argument(
        "--data", default="faithful", help="bundled data set name or a CSV path (default faithful)"
    )
    fit.add_argument("--columns", help="comma-separated CSV columns to use (default: all numeric)")
    fit.add_argument("-k", "--n-components", type=int, default=2)
    fit.add_argument("--covariance-type", default="full", choices=["full", "tied", "diag", "spherical"])
    fit.add_argument("--inference", default="nuts", choices=["nuts", "svi"])
    fit.add_argument("--chains", type=int, default=4)
    fit.add_argument("--warmup", type=int, default=1000)
    fit.add_argument("--samples", type=int, default=1000)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--output", help="write the InferenceData to this netCDF file")
    fit.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _load(data: str, columns: str | None):
    import pandas as pd

    from bayesgmm.datasets import dataset_names, load_dataset

    if data in dataset_names():
        frame = load_dataset(data, as_frame=True)
    elif os.path.exists(data):
        frame = pd.read_csv(data)
    else:
        raise SystemExit(
            f"bayesgmm: --data {data!r} is neither a bundled data set {dataset_names()} nor a file."
        )
    if columns:
        wanted = [c.strip() for c in columns.split(",")]
        missing = [c for c in wanted if c not in frame]
        if missing:
            raise SystemExit(f"bayesgmm: columns {missing} not in the data; it has {list(frame.columns)}.")
        frame = frame[wanted]
    return frame.select_dtypes("number")


def _report(idata) -> str:
    import arviz as az
    import numpy as np

    from bayesgmm import elpd
    from bayesgmm.posterior.summary import summary

    table = summary(idata, var_names=["weights", "means", "covariances"])
    stats = idata.sample_stats
    lines = [table.to_string(), ""]
    if "diverging" in stats:
        n_draws = stats.sizes["chain"] * stats.sizes["draw"]
        max_depth = int(idata.attrs.get("max_tree_depth", 10))
        bfmi = az.bfmi(idata)
        lines += [
            f"divergences: {int(stats['diverging'].sum())} of {n_draws} draws",
            f"draws at max tree depth ({max_depth}): {int((stats['tree_depth'] >= max_depth).sum())}",
            f"E-BFMI per chain: {np.array2string(np.asarray(bfmi), precision=2)}",
        ]
    if "r_hat" in table:  # MCMC only: SVI's guide draws are independent, not a chain
        lines.append(f"max R-hat: {table['r_hat'].max():.3f}   min bulk ESS: {table['ess_bulk'].min():.0f}")
    try:
        loo = elpd.loo(idata)
    except ValueError as exc:  # an SVI fit without importance weights
        lines.append(f"PSIS-LOO: not computed. {exc}")
        return "\n".join(lines)
    line = (
        f"PSIS-LOO elpd: {loo.elpd_loo:.2f} (SE {loo.se:.2f}), max Pareto k: {float(loo.pareto_k.max()):.2f}"
    )
    if loo["loo_method"] == "psis_importance":
        # SVI: the guide's draws are weighted towards the posterior; its own k says how well.
        line += f", importance-weighted SVI draws (guide Pareto k {loo['guide_pareto_k']:.2f})"
    lines.append(line)
    return "\n".join(lines)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"bayesgmm: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; ``argv`` defaults to ``sys.argv[1:]``. Returns the exit status."""
    args = _parser().parse_args(argv)
    # ArviZ 0.23 announces its 1.0 refactor on import; it is noise to a command-line user.
    warnings.filterwarnings("ignore", message=".*ArviZ is undergoing", category=FutureWarning)
    # A fit's diagnostics read as the command's own words, not as a source line.
    warnings.formatwarning = _format_warning
    # Chains run in parallel on the CPU devices importing bayesgmm asked JAX for (see
    # bayesgmm._devices); more chains than devices are vectorised.
    from bayesgmm.estimators.bayesian_gmm import BayesianGMM

    frame = _load(args.data, args.columns)
    columns = ", ".join(map(str, frame.columns))
    print(
        f"Fitting {args.n_components} {args.covariance_type} components to {args.data} "
        f"({frame.shape[0]} obs x {frame.shape[1]} features: {columns}) by {args.inference}",
        flush=True,
    )
    model = BayesianGMM(
        args.n_components,
        args.covariance_type,
        inference=args.inference,
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        random_state=args.seed,
        progress_bar=not args.no_progress,
    )
    try:
        model.fit(frame)
    except ValueError as exc:
        print(f"bayesgmm: {exc}", file=sys.stderr)
        return 2
    print(_report(model.idata_))
    if args.output:
        model.idata_.to_netcdf(args.output)
        print(f"posterior written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
