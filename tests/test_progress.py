"""Progress bars: a widget only where ipywidgets is there, and no warning in a notebook without it."""

import sys

import nbformat
import pytest
from nbclient import NotebookClient
from tqdm.std import tqdm as text_tqdm

from bayesgmm.inference.progress import progress_bar, widgets_available

# The kernel cannot import ipywidgets, as in a Jupyter install without it, before bayesgmm is
# imported; the fits' own DiagnosticsWarnings (tiny runs) are not what this test is about.
CELLS = [
    "import sys\nsys.modules['ipywidgets'] = None",
    "import warnings\nimport bayesgmm\nwarnings.simplefilter('ignore', bayesgmm.DiagnosticsWarning)\n"
    "X, _ = bayesgmm.load_dataset('faithful')",
    "_ = bayesgmm.fit_svi(X, 2, seed=0, num_samples=20, max_steps=400, progress_bar=True)",
    "_ = bayesgmm.fit_nuts(X, 2, seed=0, num_warmup=20, num_samples=20, num_chains=2, progress_bar=True)",
]


def _outputs_text(nb) -> str:
    return "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) + str(o.get("evalue", ""))
        for c in nb.cells
        for o in c.get("outputs", [])
    )


def test_notebook_without_ipywidgets_has_text_bars_and_no_warning(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=600, kernel_name="python3").execute()
    text = _outputs_text(nb)
    assert "Warning" not in text and "IProgress" not in text, text
    svi_bar = [o for o in nb.cells[2].outputs if o.output_type == "stream" and "SVI" in o.text]
    assert svi_bar and all(o.name == "stderr" for o in svi_bar)


def test_without_ipywidgets_the_bar_is_text(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    assert not widgets_available()
    with progress_bar(5, "steps") as bar:
        bar.update(5)
    assert type(bar) is text_tqdm
    assert bar.n == 5


def test_with_ipywidgets_the_bar_is_tqdm_auto():
    pytest.importorskip("ipywidgets")
    from tqdm.auto import tqdm as auto_tqdm

    with progress_bar(5, "steps", disable=True) as bar:
        pass
    assert widgets_available()
    assert type(bar) is text_tqdm  # a disabled bar need not look for widgets
    with progress_bar(5, "steps", disable=False) as bar:
        bar.update(5)
    assert isinstance(bar, auto_tqdm) and bar.n == 5
