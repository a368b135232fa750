"""``make release``: ``nbgrader generate_assignment`` from ``source/`` to ``release/``, then a leak
check that deletes a release showing any solution or model answer, and the self-check manifest.

``nbgrader generate_assignment`` also records the assignment, its notebooks and their points in
the course's ``gradebook.db``: grading reads the maximum scores from there.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from autograder.build.source import MARKERS, BuildError, display_path, marker
from autograder.course import nbgrader_meta, tool_environment

MIN_PROTECTED_CHARS = 25  # shorter lines (``return out``) are too common to call a leak


def _answer_lines(nb: nbformat.NotebookNode) -> tuple[set[str], set[str]]:
    """Stripped lines of solutions (code between the markers, whole markdown answer cells), and
    every other line of ``nb``."""
    inside, outside = set(), set()
    for cell in nb.cells:
        answer_cell = cell.cell_type == "markdown" and nbgrader_meta(cell).get("solution")
        in_solution = False
        for line in cell.source.splitlines():
            stripped, found = line.strip(), marker(line)
            if found:
                in_solution = found == "BEGIN SOLUTION"
            elif len(stripped) >= MIN_PROTECTED_CHARS and not stripped.startswith("#"):
                (inside if in_solution or answer_cell else outside).add(stripped.lstrip("# "))
    return inside, outside


def protected_lines(nb: nbformat.NotebookNode) -> set[str]:
    """Lines of solutions and model answers that appear nowhere else in ``nb``: these must never
    reach students."""
    inside, outside = _answer_lines(nb)
    return inside - outside


def find_leaks(source_dir: Path, release_dir: Path) -> list[str]:
    """Every place in ``release_dir`` that shows a marker or a protected line of ``source_dir``.

    A line is protected if it stands only inside solutions or model answers: a line that students
    are also given elsewhere (a visible cell, a helper file) is not a leak.
    """
    protected: set[str] = set()
    given: set[str] = set()
    for path in sorted(p for p in source_dir.rglob("*") if p.is_file()):
        if path.suffix == ".ipynb":
            inside, outside = _answer_lines(nbformat.read(path, as_version=4))
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
        for name in MARKERS:
            if name in text:
                leaks.append(f"{display_path(path)}: contains the marker '{name}'")
        lines = {line.strip().lstrip("# ") for line in text.splitlines()}
        for line in sorted(protected & lines):
            leaks.append(f"{display_path(path)}: shows solution or model-answer line {line!r}")
    return leaks


def build_release(root: Path, assignment: str) -> Path:
    """Run ``nbgrader generate_assignment`` in ``root`` and refuse a release that leaks."""
    source_dir = root / "source" / assignment
    if not source_dir.is_dir():
        raise BuildError(f"{display_path(source_dir)} does not exist: run 'make source' first")
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
