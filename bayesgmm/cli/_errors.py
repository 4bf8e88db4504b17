"""How the command line reports: one ``bayesgmm: error: ...`` line and an exit status."""

from __future__ import annotations

import sys

#: Exit statuses: success, a fit that failed, bad input or usage.
OK, FIT_FAILED, BAD_INPUT = 0, 1, 2


class CliError(Exception):
    """A problem the user can fix; its message says what is wrong and what to do.

    Parameters
    ----------
    message : str
    status : int
        The exit status, :data:`BAD_INPUT` unless said otherwise.
    """

    def __init__(self, message: str, status: int = BAD_INPUT):
        super().__init__(message)
        self.status = status


def one_line(text: str) -> str:
    r"""Return ``text`` with its line breaks and runs of spaces folded into single spaces.

    Examples
    --------
    >>> one_line("a\n  b")
    'a b'
    """
    return " ".join(str(text).split())


def print_error(message: str) -> None:
    """Write ``bayesgmm: error: message`` as one line on stderr."""
    print(f"bayesgmm: error: {one_line(message)}", file=sys.stderr)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Write a warning as the command's own words (``bayesgmm: warning: ...``), not a source line.

    Has the signature of :func:`warnings.showwarning`.
    """
    print(f"bayesgmm: warning: {one_line(message)}", file=sys.stderr if file is None else file)
