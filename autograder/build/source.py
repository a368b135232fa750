"""``make source``: convert every jupytext notebook under ``modules/<assignment>/`` to
``source/<assignment>/*.ipynb``, refusing anything that would break grading, and copy the helper
files beside them.

A notebook holds prose, solutions and the visible tests students learn from. Hidden cases never
live in a notebook: they are the checks in ``checks/<assignment>/`` and run only in the outside
check, so a ``BEGIN HIDDEN TESTS`` marker is refused here.
"""
from __future__ import annotations

import ast
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat

from autograder.cells import experiment_dependencies
from autograder.course import REPO, is_autograded_test, nbgrader_meta

NOTEBOOK_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.py$")
GRADE_ID = re.compile(r"^[A-Za-z0-9_\-]+$")
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "measurements")
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
QUESTION_IN_ANSWER = re.compile(r"^\s*(\*\*|#+\s|Q\d)")


class BuildError(Exception):
    """A problem in a module or build that the instructor must fix; the message says where."""


@dataclass(frozen=True)
class CellRef:
    """Where a cell comes from, for error messages: file, cell number, line, grade id."""

    path: Path
    index: int
    line: int | None
    grade_id: str | None

    def __str__(self) -> str:
        where = f"{display_path(self.path)}: cell {self.index}"
        if self.line is not None:
            where += f" (line {self.line})"
        if self.grade_id:
            where += f" [{self.grade_id}]"
        return where


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _cell_lines(text: str) -> list[int]:
    """1-based line numbers of the ``# %%`` cell headers of a percent-format file."""
    return [i for i, line in enumerate(text.splitlines(), 1) if line.startswith("# %%")]


def _executes_something(source: str) -> bool:
    """True if the top level of ``source`` runs a call or an assert (not only definitions)."""
    tree = ast.parse(source)
    pending = [node for node in tree.body
               if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Call, ast.Assert, ast.Raise)):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        pending.extend(ast.iter_child_nodes(node))
    return False


def marker(line: str) -> str | None:
    """The nbgrader delimiter a line carries (nbgrader matches it anywhere in the line)."""
    return next((marker for marker in MARKERS if marker in line), None)


def _check_markers(source: str, kind: str, where: CellRef) -> int:
    """Count ``BEGIN kind``/``END kind`` pairs in ``source``; raise on unbalanced markers."""
    depth = pairs = 0
    for line in source.splitlines():
        found = marker(line)
        if found == f"BEGIN {kind}":
            if depth:
                raise BuildError(f"{where}: 'BEGIN {kind}' inside another 'BEGIN {kind}'")
            depth = 1
        elif found == f"END {kind}":
            if not depth:
                raise BuildError(f"{where}: 'END {kind}' without a matching 'BEGIN {kind}'")
            depth, pairs = 0, pairs + 1
    if depth:
        raise BuildError(f"{where}: 'BEGIN {kind}' without a matching 'END {kind}'")
    return pairs


def validate_notebook(nb: nbformat.NotebookNode, path: Path, text: str | None = None) -> None:
    """Raise ``BuildError`` naming the file and cell if nbgrader metadata would break grading."""
    lines = _cell_lines(text) if text is not None else []
    if len(lines) != len(nb.cells):
        lines = []
    seen: dict[str, CellRef] = {}
    problems = []
    for index, cell in enumerate(nb.cells, 1):
        meta = nbgrader_meta(cell)
        where = CellRef(path, index, lines[index - 1] if lines else None, meta.get("grade_id"))
        try:
            _validate_cell(cell, meta, where, seen)
        except BuildError as exc:
            problems.append(str(exc))
    for needing, defining, name in experiment_dependencies(nb):
        problems.append(f"{CellRef(path, needing + 1, lines[needing] if lines else None, nbgrader_meta(nb.cells[needing]).get('grade_id'))}: "
                        f"needs {name!r}, which only the experiment in cell {defining + 1} defines; grading skips "
                        f"experiments (cells that do more than import and define), so define it in a cell that only "
                        f"defines, or in a given cell")
    if problems:
        raise BuildError("\n".join(problems))


def _validate_cell(cell: nbformat.NotebookNode, meta: dict, where: CellRef,
                   seen: dict[str, CellRef]) -> None:
    source = cell.source
    if cell.cell_type == "code":
        try:
            ast.parse(source)
        except SyntaxError as exc:
            raise BuildError(f"{where}: Python syntax error on cell line {exc.lineno}: {exc.msg}") from None
    if not meta:
        found = next(filter(None, map(marker, source.splitlines())), None)
        if found:
            raise BuildError(f"{where}: '{found}' marker in a cell without nbgrader metadata")
        return
    if "schema_version" not in meta:
        raise BuildError(f"{where}: nbgrader metadata has no schema_version (add \"schema_version\": 3)")
    grade_id = meta.get("grade_id")
    special = meta.get("grade") or meta.get("solution") or meta.get("locked") or meta.get("task")
    if special:
        if not grade_id:
            raise BuildError(f"{where}: nbgrader cell has no grade_id")
        if not GRADE_ID.match(str(grade_id)):
            raise BuildError(f"{where}: grade_id {grade_id!r} may contain only letters, digits, _ and -")
        if grade_id in seen:
            raise BuildError(f"{where}: duplicate grade_id {grade_id!r}, first used in {seen[grade_id]}")
        seen[grade_id] = where
    if meta.get("grade"):
        points = meta.get("points")
        if not isinstance(points, (int, float)) or isinstance(points, bool) or points < 0:
            raise BuildError(f"{where}: grade cell needs \"points\" >= 0, got {points!r}")
    solutions = _check_markers(source, "SOLUTION", where)
    if cell.cell_type == "code" and meta.get("solution") and not solutions:
        raise BuildError(f"{where}: \"solution\": true code cell without '### BEGIN SOLUTION' / "
                         f"'### END SOLUTION' markers; nbgrader would blank the whole cell")
    if solutions and not meta.get("solution"):
        raise BuildError(f"{where}: solution markers in a cell that is not \"solution\": true")
    if any(marker(line) in ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS") for line in source.splitlines()):
        raise BuildError(f"{where}: hidden tests do not belong in a notebook (the student's kernel would run "
                         f"them where student code can read them): write them as cases of this cell's check "
                         f"in checks/<assignment>/<notebook>.py")
    if cell.cell_type == "markdown" and meta.get("solution") and QUESTION_IN_ANSWER.match(source):
        raise BuildError(f"{where}: this answer cell starts with what looks like the question ("
                         f"{source.strip().splitlines()[0][:40]!r}); the release replaces an answer cell "
                         f"with 'YOUR ANSWER HERE', so put the question in the markdown cell above it")
    if cell.cell_type == "markdown" and meta.get("grade") and not meta.get("solution"):
        raise BuildError(f"{where}: a graded markdown cell must be an answer cell (\"solution\": true)")
    if is_autograded_test(cell) and not _executes_something(source):
        raise BuildError(f"{where}: grade cell only defines functions or names and calls nothing; "
                         f"the untouched release would get its points")


def read_module(path: Path) -> nbformat.NotebookNode:
    """Read and validate one jupytext percent-format notebook source."""
    text = path.read_text(encoding="utf-8")
    if "format_name: percent" not in text.split("# %%", 1)[0]:
        raise BuildError(f"{display_path(path)}: not a jupytext percent-format notebook "
                         f"(its header must say 'format_name: percent')")
    nb = jupytext.reads(text, fmt="py:percent")
    nb.metadata.pop("jupytext", None)
    nb.metadata.setdefault("language_info", {"name": "python"})
    validate_notebook(nb, path, text)
    return nb


def module_notebooks(assignment_dir: Path) -> list[Path]:
    """The notebook sources of an assignment, by their ``NN_name.py`` file names."""
    return sorted(p for p in assignment_dir.glob("*.py") if NOTEBOOK_NAME.match(p.name))


def copy_helper_files(assignment_dir: Path, dest: Path) -> None:
    """Copy everything in ``assignment_dir`` except notebook sources and caches to ``dest``."""
    notebooks = {p.name for p in module_notebooks(assignment_dir)}

    def ignored(folder: str, names: list[str]) -> set[str]:
        skip = set(SKIPPED(folder, names))
        return skip | (notebooks & set(names) if Path(folder) == assignment_dir else set())

    shutil.copytree(assignment_dir, dest, ignore=ignored, dirs_exist_ok=True)


def build_source(modules_dir: Path, source_dir: Path) -> list[Path]:
    """Convert and validate every assignment under ``modules_dir`` into ``source_dir``.

    All notebooks are validated before anything is written, so a refused build leaves the
    previous ``source/`` as it was. Returns the notebooks written.
    """
    assignments = sorted(d for d in modules_dir.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
    if not assignments:
        raise BuildError(f"no assignment folders under {display_path(modules_dir)}")
    built: dict[Path, list[tuple[Path, nbformat.NotebookNode]]] = {}
    problems = []
    for assignment in assignments:
        paths = module_notebooks(assignment)
        if not paths:
            raise BuildError(f"{display_path(assignment)}: no notebooks named NN_name.py")
        built[assignment] = []
        for path in paths:
            try:
                built[assignment].append((path, read_module(path)))
            except BuildError as exc:
                problems.append(str(exc))
    if problems:
        raise BuildError("\n".join(problems))
    written = []
    source_dir.mkdir(exist_ok=True)
    for assignment, notebooks in built.items():
        with tempfile.TemporaryDirectory(dir=source_dir) as tmp:
            staging = Path(tmp) / assignment.name
            copy_helper_files(assignment, staging)
            for path, nb in notebooks:
                nbformat.write(nb, staging / f"{path.stem}.ipynb")
            target = source_dir / assignment.name
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        written += [target / f"{path.stem}.ipynb" for path, _ in notebooks]
    return written


