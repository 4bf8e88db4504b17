"""Notebooks are kept as text and must run, in a small size, as notebooks, and read cleanly.

Each ``notebooks/*.py`` (jupytext percent format) is executed with ``BAYESGMM_SMOKE=1``. Its
outputs must hold no error, no traceback and nothing on stderr: a warning there would show
on the docs page too (``docs/hooks.py`` renders every notebook into the site).
"""

import os
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


def _kernel_path() -> str:
    """PYTHONPATH for the kernel: this checkout first, whatever bayesgmm is installed.

    The kernel starts in ``notebooks/``, where a relative PYTHONPATH such as ``.`` means
    another folder than in the test process.
    """
    given = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    entries = [str(ROOT)] + given
    return os.pathsep.join(entries)


def _outputs(nb, kind: str) -> list:
    cells = [c for c in nb.cells if c.cell_type == "code"]
    return [o for c in cells for o in c.get("outputs", []) if o.output_type == kind]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_starts_with_a_title(path):
    first = jupytext.read(path).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), first.source[:80]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_cleanly(path, monkeypatch):
    monkeypatch.setenv("BAYESGMM_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", _kernel_path())
    nb = jupytext.read(path)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    assert not _outputs(nb, "error")
    streams = _outputs(nb, "stream")
    stderr = [o.text for o in streams if o.name == "stderr"]
    assert not stderr, "".join(stderr)
    stdout = "".join(o.text for o in streams if o.name == "stdout")
    assert "Traceback" not in stdout and "Warning" not in stdout, stdout


def test_kernel_imports_this_checkout(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ".")
    assert _kernel_path().split(os.pathsep) == [str(ROOT), os.path.abspath(".")]


def test_notebooks_exist():
    stems = {p.stem for p in NOTEBOOKS}
    assert {
        "quickstart",
        "em_svi_nuts",
        "label_switching",
        "n_components",
        "predictive_checks",
        "large_data",
    } <= stems
    assert os.path.exists(ROOT / "docs" / "index.md")
