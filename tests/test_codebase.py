"""The package's shape: module and function sizes, type hints, no history in comments."""

import ast
import importlib
import io
import re
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bayesgmm"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 400
MAX_FUNCTION_CODE_LINES = 60


def _functions(tree):
    return [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def _code_lines(source: str) -> set[int]:
    """Lines holding a token that is neither a comment nor layout."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip and tok.type != tokenize.ENDMARKER:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return lines


def _docstring_lines(node) -> set[int]:
    if ast.get_docstring(node, clean=False) is None:
        return set()
    doc = node.body[0]
    return set(range(doc.lineno, doc.end_lineno + 1))


def _is_public(path: Path) -> bool:
    parts = path.relative_to(PACKAGE).parts
    return not any(p.startswith("_") and p != "__init__.py" for p in parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_small(path):
    n_lines = len(path.read_text().splitlines())
    assert n_lines <= MAX_MODULE_LINES, f"{path.name} has {n_lines} lines"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_functions_are_small(path):
    source = path.read_text()
    code = _code_lines(source)
    long = {}
    for fn in _functions(ast.parse(source)):
        body = set(range(fn.lineno, fn.end_lineno + 1)) - _docstring_lines(fn)
        n_code = len(body & code)
        if n_code > MAX_FUNCTION_CODE_LINES:
            long[fn.name] = n_code
    assert not long, f"functions over {MAX_FUNCTION_CODE_LINES} lines of code: {long}"


def _public_defs(body, prefix=""):
    for node in body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield from _public_defs(node.body, f"{node.name}.")
        elif isinstance(node, ast.FunctionDef) and (not node.name.startswith("_") or node.name == "__init__"):
            yield prefix + node.name, node


PUBLIC_MODULES = [p for p in MODULES if _is_public(p)]


@pytest.mark.parametrize("path", PUBLIC_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_public_signatures_have_type_hints(path):
    missing = []
    for name, fn in _public_defs(ast.parse(path.read_text()).body):
        a = fn.args
        params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg))]
        bare = [p.arg for p in params if p.annotation is None and p.arg not in ("self", "cls")]
        if bare or (fn.returns is None and fn.name != "__init__"):
            missing.append(f"{name}({', '.join(bare)})" + (" -> ?" if fn.returns is None else ""))
    assert not missing, f"public signatures without type hints: {missing}"


#: What a comment or docstring should not hold: issue numbers, dates, sessions.
HISTORY = re.compile(r"\(issue \d+\)|\bissue #?\d+\b|\b20\d\d-\d\d-\d\d\b|\bsession\b|\bsuperseded\b", re.I)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_history_in_comments(path):
    lines = enumerate(path.read_text().splitlines(), 1)
    hits = [f"{n}: {line.strip()}" for n, line in lines if HISTORY.search(line)]
    assert not hits, "comments say why, not when: " + "; ".join(hits)


def test_the_package_is_typed():
    assert (PACKAGE / "py.typed").is_file()


# Dotted names that are not Python objects: the format marker of saved models.
NOT_OBJECTS = {"bayesgmm.model"}


def _resolve(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_names_the_package_tells_users_about_exist(path):
    """Every ``bayesgmm.x.y`` in a message or docstring names something a user can import."""
    names = set(re.findall(r"\bbayesgmm(?:\.[A-Za-z_]\w*)+", path.read_text())) - NOT_OBJECTS
    assert not sorted(n for n in names if not _resolve(n))
