"""Build ``source/`` from ``modules/`` and ``release/`` from ``source/``.

``python -m autograder.build source``  converts every jupytext notebook under
``modules/<assignment>/`` to ``source/<assignment>/*.ipynb`` (refusing metadata that would break
grading) and copies the helper files beside them.

``python -m autograder.build release``  runs ``nbgrader generate_assignment`` and then checks that
no solution or hidden-test text reached ``release/``.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jupytext
from jupyter_client.manager import AsyncKernelManager
import nbformat

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.py$")
GRADE_ID = re.compile(r"^[A-Za-z0-9_\-]+$")
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "measurements")
# ipykernel logs a warning about its TCP transport at every start; it is not the notebook's output.
QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
STAGING = ".grading"  # under a course root: staged submissions, journal, answer key, worker logs


def gradebook_url(root: Path, timeout_s: float | None = None) -> str:
    """The course's nbgrader gradebook; ``timeout_s`` makes a writer wait that long for a lock."""
    return f"sqlite:///{root / 'gradebook.db'}" + (f"?timeout={timeout_s:g}" if timeout_s else "")


def tool_environment(**extra: str) -> dict[str, str]:
    """Environment for nbgrader and kernels: this venv's tools first on PATH, its kernel chosen.

    nbgrader runs ``alembic`` from PATH, imports this repo's preprocessors (``PYTHONPATH``) and
    reads this repo's ``nbgrader_config.py`` whatever the course root (``JUPYTER_CONFIG_PATH``);
    a kernel spec found in the user's folders must not win over the one installed in this venv.
    """
    env = dict(os.environ, JUPYTER_PREFER_ENV_PATH="1", PYDEVD_DISABLE_FILE_VALIDATION="1", **extra)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("JUPYTER_CONFIG_PATH", "")]))
    return env


def ipc_kernel_manager(folder: Path) -> AsyncKernelManager:
    """A kernel manager whose kernel talks over socket files in ``folder``, not TCP ports.

    With TCP, kernels started at the same moment can pick the same free port and one dies
    ("Address already in use"); socket files cannot collide. A client given this manager must
    set ``owns_km = True`` or nbclient leaves the kernel running.
    """
    return AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(folder / "kernel"))


def course_arguments(parser: argparse.ArgumentParser, student_help: str | None = None) -> argparse.ArgumentParser:
    """Add the options every course command takes: ``--root``, ``--assignment`` and, with
    ``student_help``, a repeatable ``--student``."""
    parser.add_argument("--root", type=Path, default=REPO, help="course root (default: this repo)")
    parser.add_argument("--assignment", default="acceleration")
    if student_help:
        parser.add_argument("--student", action="append", help=student_help)
    return parser


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
        where = f"{_display(self.path)}: cell {self.index}"
        if self.line is not None:
            where += f" (line {self.line})"
        if self.grade_id:
            where += f" [{self.grade_id}]"
        return where


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def nbgrader_meta(cell: nbformat.NotebookNode) -> dict:
    """The cell's nbgrader metadata, or an empty dict for a plain cell."""
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_autograded_test(cell: nbformat.NotebookNode) -> bool:
    """A code cell whose points nbgrader awards by running it (grade, not solution)."""
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


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


def _marker(line: str) -> str | None:
    """The nbgrader delimiter a line carries (nbgrader matches it anywhere in the line)."""
    return next((marker for marker in MARKERS if marker in line), None)


def _check_markers(source: str, kind: str, where: CellRef) -> int:
    """Count ``BEGIN kind``/``END kind`` pairs in ``source``; raise on unbalanced markers."""
    depth = pairs = 0
    for line in source.splitlines():
        marker = _marker(line)
        if marker == f"BEGIN {kind}":
            if depth:
                raise BuildError(f"{where}: 'BEGIN {kind}' inside another 'BEGIN {kind}'")
            depth = 1
        elif marker == f"END {kind}":
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
        marker = next(filter(None, map(_marker, source.splitlines())), None)
        if marker:
            raise BuildError(f"{where}: '{marker}' marker in a cell without nbgrader metadata")
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
    hidden = _check_markers(source, "HIDDEN TESTS", where)
    if cell.cell_type == "code" and meta.get("solution") and not solutions:
        raise BuildError(f"{where}: \"solution\": true code cell without '### BEGIN SOLUTION' / "
                         f"'### END SOLUTION' markers; nbgrader would blank the whole cell")
    if solutions and not meta.get("solution"):
        raise BuildError(f"{where}: solution markers in a cell that is not \"solution\": true")
    if hidden and not is_autograded_test(cell):
        raise BuildError(f"{where}: hidden-test markers outside a grade cell")
    if cell.cell_type == "markdown" and meta.get("grade") and not meta.get("solution"):
        raise BuildError(f"{where}: a graded markdown cell must be an answer cell (\"solution\": true)")
    if is_autograded_test(cell) and not _executes_something(source):
        raise BuildError(f"{where}: grade cell only defines functions or names and calls nothing; "
                         f"the untouched release would get its points")


def read_module(path: Path) -> nbformat.NotebookNode:
    """Read and validate one jupytext percent-format notebook source."""
    text = path.read_text(encoding="utf-8")
    if "format_name: percent" not in text.split("# %%", 1)[0]:
        raise BuildError(f"{_display(path)}: not a jupytext percent-format notebook "
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
        raise BuildError(f"no assignment folders under {_display(modules_dir)}")
    built: dict[Path, list[tuple[Path, nbformat.NotebookNode]]] = {}
    problems = []
    for assignment in assignments:
        paths = module_notebooks(assignment)
        if not paths:
            raise BuildError(f"{_display(assignment)}: no notebooks named NN_name.py")
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


def _region_lines(nb: nbformat.NotebookNode, kinds: tuple[str, ...], min_length: int) -> tuple[set[str], set[str]]:
    """Stripped lines inside ``BEGIN kind``/``END kind`` regions, and those outside them."""
    inside, outside = set(), set()
    for cell in nb.cells:
        region = None
        for line in cell.source.splitlines():
            stripped, marker = line.strip(), _marker(line)
            if marker:
                region = marker.removeprefix("BEGIN ") if marker.startswith("BEGIN") else None
            elif len(stripped) >= min_length and not stripped.startswith("#"):
                (inside if region in kinds else outside).add(stripped)
    return inside, outside


def protected_lines(nb: nbformat.NotebookNode, kinds: tuple[str, ...] = ("SOLUTION", "HIDDEN TESTS"),
                    min_length: int = 25) -> set[str]:
    """Lines inside ``BEGIN kind``/``END kind`` regions that appear nowhere else in the notebook.

    These must never reach students; short or shared lines (``return out``) are left out.
    """
    inside, outside = _region_lines(nb, kinds, min_length)
    return inside - outside


def find_leaks(source_dir: Path, release_dir: Path) -> list[str]:
    """Every place in ``release_dir`` that shows a marker or a protected line of ``source_dir``.

    A line is protected if it stands only inside solutions or hidden tests: a line that students
    are also given elsewhere (a visible cell, a helper file) is not a leak.
    """
    protected: set[str] = set()
    given: set[str] = set()
    for path in sorted(p for p in source_dir.rglob("*") if p.is_file()):
        if path.suffix == ".ipynb":
            inside, outside = _region_lines(nbformat.read(path, as_version=4), ("SOLUTION", "HIDDEN TESTS"), 25)
            protected |= inside
            given |= outside
        else:
            try:
                given |= {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}
            except UnicodeDecodeError:
                continue
    protected -= given
    leaks = []
    for path in sorted(p for p in release_dir.rglob("*") if p.is_file()):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if path.suffix == ".ipynb":
            nb = nbformat.reads(text, as_version=4)
            text = "\n".join(cell.source for cell in nb.cells) + "\n" + str(nb.metadata)
        for marker in MARKERS:
            if marker in text:
                leaks.append(f"{_display(path)}: contains the marker '{marker}'")
        lines = {line.strip() for line in text.splitlines()}
        for line in sorted(protected & lines):
            leaks.append(f"{_display(path)}: shows solution or hidden-test line {line!r}")
    return leaks


def build_release(root: Path, assignment: str) -> Path:
    """Run ``nbgrader generate_assignment`` in ``root`` and refuse a release that leaks."""
    source_dir = root / "source" / assignment
    if not source_dir.is_dir():
        raise BuildError(f"{_display(source_dir)} does not exist: run 'make source' first")
    release_dir = root / "release" / assignment
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force",
         f"--CourseDirectory.root={root}"],
        cwd=root, capture_output=True, text=True, env=tool_environment())
    if result.returncode != 0:
        raise BuildError(f"nbgrader generate_assignment failed:\n{result.stdout}{result.stderr}")
    leaks = find_leaks(source_dir, release_dir)
    if leaks:
        shutil.rmtree(release_dir)
        raise BuildError("release removed, it leaked instructor content:\n" + "\n".join(leaks))
    write_selfcheck_manifest(release_dir)
    return release_dir


def write_selfcheck_manifest(release_dir: Path) -> Path | None:
    """Write ``selfcheck_manifest.json``: each released notebook's graded and locked cells, in order.

    ``selfcheck.py`` compares a student's notebook with it to find deleted, duplicated, retyped
    and edited cells. Per cell: grade_id, cell type, solution/grade/locked flags, points, and
    nbgrader's checksum for locked cells; never any cell text. Skipped when the release ships no
    ``selfcheck.py``. Returns the manifest written, or None.
    """
    if not (release_dir / "selfcheck.py").is_file():
        return None
    notebooks = {}
    for path in sorted(release_dir.glob("*.ipynb")):
        cells = []
        for cell in nbformat.read(path, as_version=4).cells:
            meta = nbgrader_meta(cell)
            if not meta.get("grade_id"):
                continue
            locked = not meta.get("solution") and bool(meta.get("grade") or meta.get("locked"))  # nbgrader's rule
            cells.append({"grade_id": meta["grade_id"], "cell_type": cell.cell_type,
                          "solution": bool(meta.get("solution")), "grade": bool(meta.get("grade")),
                          "locked": locked, "points": meta.get("points", 0),
                          "checksum": meta.get("checksum") if locked else None})
        notebooks[path.name] = cells
    manifest = release_dir / "selfcheck_manifest.json"
    manifest.write_text(json.dumps({"about": "the graded and locked cells of each released notebook, "
                                             "for selfcheck.py; do not edit",
                                    "notebooks": notebooks}, indent=1) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["source", "release"])
    course_arguments(parser)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        if args.step == "source":
            written = build_source(root / "modules", root / "source")
            print(f"source: {len(written)} notebooks written under {_display(root / 'source')}")
        else:
            release_dir = build_release(root, args.assignment)
            count = len(list(release_dir.glob("*.ipynb")))
            print(f"release: {count} notebooks in {_display(release_dir)}, no solutions or hidden tests")
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
