"""The documentation site covers the public API, and its nav lists every page.

The API reference is the ``:::`` directives of ``docs/api/*.md`` (mkdocstrings renders one
object per directive); the public API is every ``__all__`` of bayesgmm's public modules plus
the functions of ``bayesgmm.datasets``. ``mkdocs build --strict`` itself fails on a page left
out of the nav (``validation.nav.omitted_files: warn`` in mkdocs.yml) and on a directive whose
object does not exist; these tests say the same without building.
"""

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "bayesgmm"
DIRECTIVE = re.compile(r"^:::\s+(\S+)", re.MULTILINE)


def _defines_all(path: Path) -> bool:
    targets = (
        t.id
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    )
    return "__all__" in targets


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _public_modules() -> list[str]:
    """Modules whose path has no private part and that define ``__all__``."""
    return sorted(
        _module_name(p)
        for p in PACKAGE.rglob("*.py")
        if not any(part.startswith("_") and part != "__init__.py" for part in p.relative_to(ROOT).parts)
        and _defines_all(p)
    )


def _public_names() -> list[tuple[str, str]]:
    names = [(m, n) for m in _public_modules() for n in importlib.import_module(m).__all__]
    # bayesgmm.datasets has no __all__: its public functions are those defined in it.
    datasets = importlib.import_module("bayesgmm.datasets")
    names += [
        ("bayesgmm.datasets", n)
        for n, obj in vars(datasets).items()
        if not n.startswith("_") and inspect.isfunction(obj) and obj.__module__ == datasets.__name__
    ]
    return names


def _directives() -> dict[str, Path]:
    return {
        m.group(1): page
        for page in sorted((DOCS / "api").glob("*.md"))
        for m in DIRECTIVE.finditer(page.read_text())
    }


def _resolve(identifier: str):
    """The object a mkdocstrings identifier names: the longest importable module, then attributes."""
    parts = identifier.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(identifier)


def test_the_public_modules_are_found():
    modules = _public_modules()
    assert {"bayesgmm", "bayesgmm.plots", "bayesgmm.posterior", "bayesgmm.estimators"} <= set(modules)
    assert not [m for m in modules if any(part.startswith("_") for part in m.split("."))]


def test_every_directive_names_an_object():
    directives = _directives()
    assert len(directives) > 40
    unresolved = []
    for identifier in directives:
        try:
            _resolve(identifier)
        except (AttributeError, ModuleNotFoundError):
            unresolved.append(identifier)
    assert not unresolved


def test_every_public_name_is_in_the_api_reference():
    documented = {id(_resolve(identifier)) for identifier in _directives()}
    names = _public_names()
    assert ("bayesgmm", "fit_nuts") in names and ("bayesgmm.datasets", "describe_dataset") in names
    missing = [f"{m}.{n}" for m, n in names if id(getattr(importlib.import_module(m), n)) not in documented]
    assert not missing, f"not in docs/api/*.md: {missing}"


def _nav_files(entries) -> list[str]:
    files = []
    for entry in entries:
        if isinstance(entry, str):
            files.append(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                files += [value] if isinstance(value, str) else _nav_files(value)
    return files


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = _nav_files(config["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert len(nav) == len(set(nav))
    assert sorted(nav) == pages


def test_the_nav_lists_every_notebook():
    pytest.importorskip("mkdocs_jupyter")
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    notebooks = sorted(f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.py"))
    assert "notebooks/quickstart.py" in notebooks
    assert sorted(hooks.notebook_nav()) == notebooks
