"""mkdocs hooks: the notebooks and the gallery's images join the site at build time.

Every ``notebooks/*.py`` (jupytext percent format) becomes a page under ``notebooks/``, listed
in the nav's "Notebooks" section, and mkdocs-jupyter executes it. The gallery
(``python -m bayesgmm.gallery``) writes its PNGs into ``build/docs-gallery/`` (git-ignored),
which become ``gallery/*.png`` in the site. The PNGs are drawn again only when bayesgmm's
sources or the gallery's size change, so that ``mkdocs serve`` does not refit on every edit.

``BAYESGMM_SMOKE=1`` runs the notebooks and the gallery in their small "smoke" size.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from nbconvert.preprocessors import ExecutePreprocessor

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
GALLERY_OUT = ROOT / "build" / "docs-gallery"
NAV_BEFORE = "API reference"
CELL_TIMEOUT_S = 900

log = logging.getLogger("mkdocs.hooks.bayesgmm")


def notebook_paths() -> list[Path]:
    """Every notebook the site shows: ``notebooks/*.py``, sorted by name."""
    return sorted(NOTEBOOKS.glob("*.py"))


def notebook_nav() -> list[str]:
    """List the nav's notebook entries; each page's title is the notebook's first heading."""
    return [f"notebooks/{p.name}" for p in notebook_paths()]


def smoke() -> bool:
    """Whether this build runs the notebooks and the gallery in their smoke size."""
    return os.environ.get("BAYESGMM_SMOKE", "0") not in ("", "0")


# mkdocs serve loads this module again on every rebuild: wrap nbconvert's own method once.
_preprocess = getattr(ExecutePreprocessor.preprocess, "__wrapped__", ExecutePreprocessor.preprocess)


def _preprocess_in_notebooks(self, nb, resources=None, km=None):
    """Execute a notebook in ``notebooks/``, as ``tests/test_notebooks.py`` does.

    mkdocs-jupyter gives nbconvert no path, so kernels would start wherever mkdocs runs and a
    notebook's relative paths would point elsewhere than in the tests and in Jupyter.
    """
    # A cell that never returns fails the build rather than holding it until CI's limit.
    if self.timeout is None:
        self.timeout = CELL_TIMEOUT_S
    resources = {} if resources is None else resources
    metadata = resources.setdefault("metadata", {})
    if not metadata.get("path"):
        metadata["path"] = str(NOTEBOOKS)
    return _preprocess(self, nb, resources, km)


_preprocess_in_notebooks.__wrapped__ = _preprocess
ExecutePreprocessor.preprocess = _preprocess_in_notebooks


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Insert the "Notebooks" section into the nav, before the API reference."""
    nav = [entry for entry in config.nav if not (isinstance(entry, dict) and "Notebooks" in entry)]
    titles = [next(iter(entry)) if isinstance(entry, dict) else None for entry in nav]
    at = titles.index(NAV_BEFORE) if NAV_BEFORE in titles else len(nav)
    nav.insert(at, {"Notebooks": notebook_nav()})
    config.nav = nav
    return config


def _gallery_stamp() -> str:
    """Hash bayesgmm's sources and the gallery's size: the PNGs are redrawn when it changes."""
    digest = hashlib.sha256(f"smoke={smoke()}".encode())
    for path in sorted((ROOT / "bayesgmm").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def gallery_files() -> list[str]:
    """Return the names of the PNGs the gallery writes."""
    from bayesgmm.gallery import FILES

    return list(FILES)


def draw_gallery() -> Path:
    """Run ``python -m bayesgmm.gallery`` into ``build/docs-gallery/`` unless it is up to date."""
    stamp_file = GALLERY_OUT / "stamp"
    stamp = _gallery_stamp()
    complete = all((GALLERY_OUT / name).exists() for name in gallery_files())
    if complete and stamp_file.exists() and stamp_file.read_text() == stamp:
        log.info("gallery: up to date in %s", GALLERY_OUT)
        return GALLERY_OUT
    command = [sys.executable, "-m", "bayesgmm.gallery", str(GALLERY_OUT)] + (["--smoke"] if smoke() else [])
    log.info("gallery: %s", " ".join(command))
    env = {**os.environ, "MPLBACKEND": "Agg"}
    subprocess.run(command, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    stamp_file.write_text(stamp)
    return GALLERY_OUT


# Before mkdocs-jupyter's on_files, which turns the notebook files into pages.
@event_priority(100)
def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the notebooks as pages and the gallery's PNGs as images."""
    for path in notebook_paths():
        # A File read from the repository root, not File.generated: mkdocs-jupyter's
        # wrapper of a page's File does not carry a generated file's source.
        files.append(File(f"notebooks/{path.name}", str(ROOT), config.site_dir, config.use_directory_urls))
    outdir = draw_gallery()
    for name in gallery_files():
        files.append(File.generated(config, f"gallery/{name}", abs_src_path=str(outdir / name)))
    return files
