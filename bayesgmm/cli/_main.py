"""``main``: parse the arguments, run the subcommand, turn problems into one line and a status."""

from __future__ import annotations

import os
import sys
import warnings

from bayesgmm.cli._errors import CliError, print_error, show_warning
from bayesgmm.cli._parser import build_parser


def _commands() -> dict:
    from bayesgmm.cli._commands import run_fit, run_predict, run_select_k, run_summary
    from bayesgmm.cli._plot import run_plot

    return {
        "fit": run_fit,
        "summary": run_summary,
        "predict": run_predict,
        "plot": run_plot,
        "select-k": run_select_k,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the ``bayesgmm`` command line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments; defaults to ``sys.argv[1:]``. None at all prints the help (status 0).

    Returns
    -------
    int
        The exit status: 0 on success, 2 for bad input or usage, 1 when a fit failed.
        Problems are reported as one ``bayesgmm: error: ...`` line on stderr, warnings as
        ``bayesgmm: warning: ...`` lines.

    Examples
    --------
    >>> main(["fit", "--chains", "0"])
    2
    """
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # a bare ``bayesgmm`` asks what the command can do
        build_parser().print_help()
        return 0
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help and --version
        return int(done.code or 0)
    except CliError as err:
        print_error(str(err))
        return err.status
    with warnings.catch_warnings():
        # ArviZ announces its 1.0 refactor; it is noise to a command-line user.
        warnings.filterwarnings("ignore", message=".*ArviZ is undergoing", category=FutureWarning)
        # A fit's diagnostics read as the command's own words, not as a source line.
        warnings.showwarning = show_warning
        try:
            return _commands()[args.command](args)
        except CliError as err:
            print_error(str(err))
            return err.status
        except BrokenPipeError:
            # The reader of stdout (``| head``) has gone: stop quietly, as Unix tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
