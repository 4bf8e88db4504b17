"""Progress bars that suit a terminal and a notebook, with or without ipywidgets.

``tqdm.auto`` draws a widget in a Jupyter kernel, and without ipywidgets it warns
("IProgress not found") when it is first imported and falls back to a text bar. numpyro
imports ``tqdm.auto`` for its MCMC bars, so ``import_tqdm_auto_quietly`` imports it first,
with exactly that warning silenced; ``bayesgmm.inference`` calls it before numpyro is
imported. ``progress_bar`` picks the widget only where ipywidgets can be imported.
"""

from __future__ import annotations

import importlib
import warnings

from tqdm.std import TqdmWarning
from tqdm.std import tqdm as text_tqdm


def widgets_available() -> bool:
    """Return whether ipywidgets can be imported, which ``tqdm.auto``'s widget bar needs.

    Examples
    --------
    >>> isinstance(widgets_available(), bool)
    True
    """
    try:
        importlib.import_module("ipywidgets")
    except ImportError:
        return False
    return True


def import_tqdm_auto_quietly() -> None:
    """Import ``tqdm.auto`` without its "IProgress not found" warning.

    Without ipywidgets, ``tqdm.auto`` then stands for the text bar, in numpyro too. Only
    that warning is silenced, and only while the module is imported (once per process).

    Examples
    --------
    >>> import_tqdm_auto_quietly()
    >>> import sys
    >>> "tqdm.auto" in sys.modules
    True
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
        importlib.import_module("tqdm.auto")


def progress_bar(total: int, desc: str, disable: bool = False) -> text_tqdm:
    """Return a tqdm bar: ``tqdm.auto``'s (a widget in a notebook) when ipywidgets is there.

    Without ipywidgets it is the text bar (in a notebook it prints to stderr), and nothing
    warns.

    Parameters
    ----------
    total : int
        Number of steps the bar counts to.
    desc : str
        Label in front of the bar.
    disable : bool
        Return a bar that draws and counts nothing.

    Returns
    -------
    tqdm.std.tqdm
        Use it as a context manager so that it is closed.

    Examples
    --------
    >>> with progress_bar(10, "steps", disable=True) as bar:
    ...     bar.update(10)
    >>> bar.total, bar.disable
    (10, True)
    """
    if not disable and widgets_available():
        import_tqdm_auto_quietly()
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=disable)
    return text_tqdm(total=total, desc=desc, disable=disable)
