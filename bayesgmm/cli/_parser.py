"""The argument parser: subcommands, their options with defaults, and examples in the help."""

from __future__ import annotations

import argparse

from bayesgmm._validation import COVARIANCE_ALIASES
from bayesgmm._validation import COVARIANCE_TYPES as BAYES_TYPES
from bayesgmm.cli._errors import CliError
from bayesgmm.inference.em.mclust_models import EM_COVARIANCE_TYPES

#: What ``--covariance-type`` takes: scikit-learn's four names and mclust's fourteen models.
#: The Bayesian fits take fewer of them (``_commands._check_fit_args``).
COVARIANCE_TYPES = EM_COVARIANCE_TYPES
#: The ones ``--inference nuts`` and ``svi`` take (``bayesgmm._validation.check_covariance_type``).
BAYES_COVARIANCE_TYPES = (*BAYES_TYPES, *COVARIANCE_ALIASES)
#: The ones only ``--inference em`` takes.
EM_ONLY_TYPES = tuple(t for t in EM_COVARIANCE_TYPES if t not in BAYES_COVARIANCE_TYPES)

_DESCRIPTION = """Bayesian Gaussian mixtures from the command line: fit, summarise, predict, plot, choose K.

examples:
  bayesgmm fit                                   # Old Faithful, 2 components, NUTS
  bayesgmm fit --data my.csv --columns a,b -k 3 --inference em --output em.nc
  bayesgmm summary em.nc
  bayesgmm predict em.nc --data new.csv --output memberships.csv
  bayesgmm select-k --data my.csv --max-k 6
"""

_FIT_EXAMPLES = """examples:
  bayesgmm fit                                   # Old Faithful, 2 full components, NUTS
  bayesgmm fit --data galaxies -k 4 --covariance-type spherical --inference svi
  bayesgmm fit --data my.csv --columns a,b -k 3 --output fit.nc --memberships fit.csv
  bayesgmm fit --data my.parquet --inference em --n-init 10 --output em.nc
  bayesgmm fit --data iris -k 8 --weight-prior sparse --inference svi
"""

_SUMMARY_EXAMPLES = """examples:
  bayesgmm summary fit.nc      # posterior table and diagnostics (NUTS, SVI)
  bayesgmm summary em.nc       # parameters, log-likelihood, BIC, convergence (EM)
"""

_PREDICT_EXAMPLES = """examples:
  bayesgmm predict fit.nc --data new.csv                       # memberships to stdout
  bayesgmm predict fit.nc --data new.parquet --columns a,b --output memberships.csv
"""

_PLOT_EXAMPLES = """examples:
  bayesgmm plot fit.nc --output-dir figures
  bayesgmm plot em.nc --data my.csv --output-dir figures   # EM files hold no data
"""

_SELECT_EXAMPLES = """examples:
  bayesgmm select-k                                          # Old Faithful, K = 1..7
  bayesgmm select-k --data my.csv --max-k 5 --covariance-type full diag
"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help (where there is one to show) and descriptions laid out as written."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``bayesgmm: error:`` line (exit status 2)."""

    def error(self, message):
        raise CliError(f"{message}; see '{self.prog} --help'.")


class _Version(argparse.Action):
    """``--version``: reads the version only when asked, so that parsing stays cheap."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from bayesgmm import __version__

        print(f"bayesgmm {__version__}")
        parser.exit()


def positive_int(text: str) -> int:
    """Parse a count that must be at least one.

    Examples
    --------
    >>> positive_int("3")
    3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {value}")
    return value


def _subparser(sub, name: str, summary: str, examples: str) -> argparse.ArgumentParser:
    """Add a subcommand whose help starts with what it does and ends with examples."""
    return sub.add_parser(
        name, help=summary, description=summary[0].upper() + summary[1:] + ".", epilog=examples,
        formatter_class=_Formatter,
    )  # fmt: skip


_COLUMNS_HELP = (
    "comma-separated columns to use (.npy columns are x0, x1, ...); default: all numeric columns, "
    "naming any left out"
)
_ROW_HELP = "the first column, row, is the 0-based index of the data row in the input (header not counted)"
_MODEL_COLUMNS_HELP = (
    "comma-separated columns, in order, that are the model's features; default: the columns the "
    "model was fitted on, by name"
)


def _add_data(p: argparse.ArgumentParser, required: bool, columns_help: str = _COLUMNS_HELP) -> None:
    kwargs = {"required": True} if required else {"default": "faithful"}
    p.add_argument(
        "--data",
        metavar="NAME|PATH",
        help="a bundled data set (faithful, galaxies, iris) or a .csv, .parquet or .npy file",
        **kwargs,
    )
    p.add_argument(
        "--columns",
        metavar="A,B",
        help=columns_help,
    )


def _add_fit(sub) -> None:
    p = _subparser(sub, "fit", "fit a mixture and print its summary", _FIT_EXAMPLES)
    _add_data(p, required=False)
    p.add_argument("-k", "--n-components", type=positive_int, default=2, help="number of components")
    p.add_argument(
        "--covariance-type",
        default="full",
        choices=COVARIANCE_TYPES,
        metavar="TYPE",
        help=f"covariance model. --inference nuts and svi take {', '.join(BAYES_COVARIANCE_TYPES)}; "
        f"--inference em takes those and {', '.join(EM_ONLY_TYPES)}",
    )
    p.add_argument(
        "--inference", default="nuts", choices=("nuts", "svi", "em"), help="NUTS, variational or EM"
    )
    p.add_argument(
        "--weight-prior",
        default="dirichlet",
        choices=("dirichlet", "sparse", "dp"),
        help="prior on the weights (nuts, svi); with sparse and dp, -k is an upper bound",
    )
    p.add_argument("--chains", type=positive_int, default=4, help="NUTS chains, or SVI restarts")
    p.add_argument("--warmup", type=positive_int, default=1000, help="NUTS warm-up steps per chain")
    p.add_argument("--samples", type=positive_int, default=1000, help="posterior draws per chain")
    p.add_argument("--n-init", type=positive_int, default=5, help="EM restarts; the best is kept")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--output", metavar="MODEL", help="save the fitted model to this netCDF file")
    p.add_argument(
        "--memberships",
        metavar="CSV",
        help="write each row's membership probabilities, most probable component and uncertainty; "
        + _ROW_HELP,
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bar (drawn only when stderr is a terminal)",
    )


def _add_model_commands(sub) -> None:
    p = _subparser(sub, "summary", "print the summary of a saved model", _SUMMARY_EXAMPLES)
    p.add_argument("model", metavar="MODEL", help="a file written by 'bayesgmm fit --output'")
    p = _subparser(sub, "predict", "write the membership probabilities of new data", _PREDICT_EXAMPLES)
    p.add_argument("model", metavar="MODEL", help="a file written by 'bayesgmm fit --output'")
    _add_data(p, required=True, columns_help=_MODEL_COLUMNS_HELP)
    p.add_argument(
        "--output", metavar="CSV", help=f"write the memberships here instead of to stdout; {_ROW_HELP}"
    )
    p = _subparser(sub, "plot", "draw a saved model's plots as PNG files", _PLOT_EXAMPLES)
    p.add_argument("model", metavar="MODEL", help="a file written by 'bayesgmm fit --output'")
    p.add_argument("--output-dir", metavar="DIR", default=".", help="folder for the PNG files")
    p.add_argument("--data", metavar="NAME|PATH", help="the data to draw (needed for EM models only)")
    p.add_argument("--columns", metavar="A,B", help=_MODEL_COLUMNS_HELP)


def _add_select_k(sub) -> None:
    p = _subparser(sub, "select-k", "compare numbers of components by BIC, AIC and ICL", _SELECT_EXAMPLES)
    _add_data(p, required=False)
    p.add_argument("--max-k", type=positive_int, default=7, help="compare K = 1, ..., max-k")
    p.add_argument(
        "--covariance-type",
        nargs="+",
        default=["full"],
        choices=COVARIANCE_TYPES,
        metavar="TYPE",
        help="covariance models: full, tied, diag, spherical or mclust's EII ... VVV",
    )
    p.add_argument("--n-init", type=positive_int, default=5, help="EM restarts per model")
    p.add_argument("--seed", type=int, default=0, help="random seed")


def build_parser() -> argparse.ArgumentParser:
    """Build the ``bayesgmm`` parser with its subcommands.

    Examples
    --------
    >>> build_parser().parse_args(["fit", "-k", "3"]).n_components
    3
    """
    parser = _Parser(prog="bayesgmm", description=_DESCRIPTION, formatter_class=_Formatter)
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_fit(sub)
    _add_model_commands(sub)
    _add_select_k(sub)
    return parser
