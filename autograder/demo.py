"""The main job: grade three sample submissions end to end and print their scores.

Everything happens under ``demo/``, a course of its own, so a real class's ``submitted/``,
gradebook and ``grades.csv`` are never touched. The samples are the reference solution, the
untouched release, and the reference with one known mistake per notebook (its first mutant).
The reference's submission opts in to a nickname on the kernel leaderboard.
"""
from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time
from pathlib import Path

import nbformat

from autograder.build.release import build_release
from autograder.build.source import BuildError
from autograder.course import REPO, nbgrader_meta
from autograder.grade import grade_all
from autograder.mutation import apply_mutant
from autograder.report.feedback import generate_feedback
from autograder.report.leaderboard import KERNELS, NICKNAME_FILE, LeaderboardError, build_leaderboard
from autograder.selftest import load_mutants

MARKER = ".made-by-make-demo"
STUDENTS = ("demo-reference", "demo-untouched", "demo-partly-wrong")


def prepare_course(demo: Path, assignment: str, source_root: Path) -> None:
    """A fresh ``demo/`` course with its own gradebook and release, from ``source_root``."""
    if demo.exists() and not (demo / MARKER).exists():
        raise BuildError(f"{demo} exists but was not made by 'make demo'; move it away first")
    shutil.rmtree(demo, ignore_errors=True)
    source = source_root / assignment
    if not source.is_dir():
        raise BuildError(f"{source} does not exist: run 'make source' first")
    shutil.copytree(source, demo / "source" / assignment)
    (demo / MARKER).write_text("This folder is rebuilt by 'make demo'; anything in it is replaced.\n")
    build_release(demo, assignment)


def fill_solutions(released: nbformat.NotebookNode, reference: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The released notebook with every answer cell typed in from the reference."""
    answers = {nbgrader_meta(c)["grade_id"]: c.source for c in reference.cells
               if nbgrader_meta(c).get("solution")}
    for cell in released.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if nbgrader_meta(cell).get("solution") and grade_id in answers:
            cell.source = answers[grade_id]
    return released


def make_submissions(demo: Path, assignment: str) -> dict[str, list[str]]:
    """Write the three sample submissions; returns the mutant applied per notebook."""
    applied: dict[str, list[str]] = {}
    for path in sorted((demo / "release" / assignment).glob("*.ipynb")):
        released = nbformat.read(path, as_version=4)
        reference = nbformat.read(demo / "source" / assignment / path.name, as_version=4)
        solved = fill_solutions(copy.deepcopy(released), reference)
        mutants = load_mutants(path.stem)
        wrong = apply_mutant(solved, mutants[0]) if mutants else solved
        applied[path.stem] = [mutants[0].name] if mutants else []
        for student, nb in zip(STUDENTS, (solved, released, wrong), strict=True):
            folder = demo / "submitted" / student / assignment
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, folder / path.name)
    (demo / "submitted" / STUDENTS[0] / assignment / NICKNAME_FILE).write_text("Reference Rabbit\n")
    return applied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="acceleration")
    parser.add_argument("--dir", type=Path, default=REPO / "demo", help="demo course folder")
    parser.add_argument("--source", type=Path, default=REPO / "source", help="built source/ folder")
    args = parser.parse_args(argv)
    demo = args.dir.resolve()
    start = time.perf_counter()
    try:
        prepare_course(demo, args.assignment, args.source.resolve())
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    applied = make_submissions(demo, args.assignment)
    rows = grade_all(demo, args.assignment, list(STUDENTS))
    _, feedback_errors = generate_feedback(demo, args.assignment, list(STUDENTS))
    try:
        leaderboard, boards = build_leaderboard(demo, args.assignment, list(STUDENTS))
    except LeaderboardError as exc:
        leaderboard, boards = demo / "reports" / "leaderboard.html", {}
        print(f"leaderboard: not written: {exc}", file=sys.stderr)
    notebooks = sorted(applied)
    width = max(len(s) for s in STUDENTS) + 2
    print()
    print("student".ljust(width) + "".join(nb[:2].rjust(7) for nb in notebooks)
          + "  autograded     written  status")
    for row in rows:
        cells = "".join(("-" if row.scores[nb] is None else f"{row.scores[nb]:g}").rjust(7) for nb in notebooks)
        print(row.student_id.ljust(width) + cells
              + f"  {row.autograded_score:g}/{row.autograded_max:g}".rjust(12)
              + f"{row.manual_pending} to grade".rjust(12) + f"  {row.status}"
              + (f" ({row.reason})" if row.status != "graded" else ""))
    mistakes = ", ".join(f"{nb[:2]}: {m[0]}" for nb, m in applied.items() if m)
    print(f"\ndemo-partly-wrong carries one known mistake per notebook ({mistakes}).")
    for kernel, entries in boards.items():
        print(f"leaderboard {kernel}: " + ", ".join(
            f"{e.shown_as} " + (f"#{e.rank} {100 * e.score:.0f}% of {KERNELS[kernel][1]}" if e.rank else e.status)
            for e in entries))
    print(f"grades: {demo / 'grades.csv'}   feedback: {demo / 'feedback'}   leaderboard: {leaderboard}   "
          f"took {time.perf_counter() - start:.0f} s")
    for student, message in feedback_errors.items():
        print(f"error: no feedback for {student}: {message}", file=sys.stderr)
    return 1 if feedback_errors or any(row.status == "failed" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
