"""What each cell of a notebook is to the grader, and which cells grading runs.

- ``test``: an autograded test cell (nbgrader grade cell that is not an answer);
- ``given``: an nbgrader locked cell, or a plain cell the release has word for word that only
  imports and defines (functions, classes, ``UPPER_CASE`` constants, assignments that call
  nothing);
- ``experiment``: a plain cell the release has word for word that does more (benchmarks,
  plots): it grades nothing, so grading skips it;
- ``student``: an answer cell, or any cell the student wrote or changed.

The grading kernel and the outside check run the same cells (all but experiments);
``make source`` refuses a notebook whose graded cells need a name only an experiment defines.
"""
from __future__ import annotations

import ast
import builtins
import threading

import nbformat

from autograder.course import is_autograded_test, nbgrader_meta

_AST_LOCK = threading.Lock()


def parse_python(source: str) -> ast.Module:
    """``ast.parse`` one thread at a time: in Python 3.11 two threads parsing at once can fail with
    "SystemError: AST constructor recursion depth mismatch" (CPython issue gh-106905)."""
    with _AST_LOCK:
        return ast.parse(source)


def _constants_only(node: ast.Assign | ast.AnnAssign) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return all(isinstance(t, ast.Name) and t.id.isupper() for t in targets)


def definitions_only(source: str) -> bool:
    """Whether a cell only defines: imports, functions, classes, UPPER_CASE constants (whatever
    they call) and other assignments that call nothing."""
    try:
        body = parse_python(source).body
    except SyntaxError:
        return False
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and (
                _constants_only(node) or not any(isinstance(sub, ast.Call) for sub in ast.walk(node.value))):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        return False
    return bool(body)


def cell_roles(nb: nbformat.NotebookNode, released: nbformat.NotebookNode | None = None) -> list[str | None]:
    """The role of each cell of ``nb`` (None for markdown and raw cells); see the module docstring.

    ``released`` is the notebook students were given; None means ``nb`` is the instructor's own
    (the source), so every plain cell is the instructor's.
    """
    instructor = None if released is None else {
        c.source for c in released.cells if c.get("cell_type") == "code" and not nbgrader_meta(c)}
    roles: list[str | None] = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.get("cell_type") != "code":
            roles.append(None)
        elif is_autograded_test(cell):
            roles.append("test")
        elif meta.get("solution"):
            roles.append("student")
        elif meta:
            roles.append("given")
        elif instructor is None or cell.source in instructor:
            roles.append("given" if definitions_only(cell.source) else "experiment")
        else:
            roles.append("student")
    return roles


def _bound_and_used(source: str) -> tuple[set[str], set[str]]:
    """Names a cell binds at its top level, and names it reads that it has not bound first."""
    try:
        tree = parse_python(source)
    except SyntaxError:
        return set(), set()
    bound, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, (ast.Store, ast.Del)) else used).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound, used - bound - set(dir(builtins))


def experiment_dependencies(nb: nbformat.NotebookNode) -> list[tuple[int, int, str]]:
    """(cell needing it, experiment defining it, name) for every name a cell grading runs reads
    that only an experiment cell before it binds: grading could not skip that experiment."""
    problems = []
    available: set[str] = set()
    from_experiments: dict[str, int] = {}
    for index, (cell, role) in enumerate(zip(nb.cells, cell_roles(nb))):
        if role is None:
            continue
        bound, used = _bound_and_used(cell.source)
        if role == "experiment":
            for name in bound - available:
                from_experiments.setdefault(name, index)
            continue
        problems += [(index, from_experiments[name], name) for name in sorted(used - available)
                     if name in from_experiments]
        available |= bound
    return problems
