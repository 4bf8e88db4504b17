"""Griffe extension: Sphinx roles in docstrings become Markdown for mkdocstrings.

The docstrings are numpydoc, which writes cross-references as Sphinx roles
(``:func:`relabel```, ``:class:`~bayesgmm.EMResult```); mkdocstrings renders Markdown and
would print them as they are. A role whose target is a bayesgmm name documented in the API
reference (``docs/api/*.md``) becomes a link to it, any other becomes inline code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

API_PAGES = Path(__file__).resolve().parent / "api"
DIRECTIVE = re.compile(r"^:::\s+(\S+)", re.MULTILINE)
ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|obj|exc|const):`~?\.?([^`]+)`")


def documented_identifiers() -> list[str]:
    """Return the targets of the ``:::`` directives of the API reference pages."""
    return [
        m.group(1) for page in sorted(API_PAGES.glob("*.md")) for m in DIRECTIVE.finditer(page.read_text())
    ]


def _by_leaf(identifiers: list[str]) -> dict[str, str]:
    """Documented identifiers by their last name, for the names that only one of them has."""
    leaves: dict[str, list[str]] = {}
    for identifier in identifiers:
        leaves.setdefault(identifier.rsplit(".", 1)[-1], []).append(identifier)
    return {leaf: ids[0] for leaf, ids in leaves.items() if len(ids) == 1}


class SphinxRoles(griffe.Extension):
    """Rewrite the Sphinx roles of every docstring as links or inline code."""

    def __init__(self) -> None:
        self._targets = _by_leaf(documented_identifiers())

    def _replace(self, match: re.Match) -> str:
        target = match.group(1)
        leaf = target.rsplit(".", 1)[-1].removesuffix("()")
        # A qualified name outside bayesgmm (arviz.summary) is not bayesgmm's namesake.
        ours = "." not in target or target.startswith("bayesgmm.")
        if ours and leaf in self._targets:
            return f"[`{leaf}`][{self._targets[leaf]}]"
        return f"`{leaf if match.group(0).count('~') else target}`"

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring when it has one."""
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(self._replace, obj.docstring.value)
