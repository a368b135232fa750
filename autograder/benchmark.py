"""Seconds per submission: plain ``nbgrader autograde`` vs this grader, serial and parallel.

Builds a scratch course with N copies of the reference solution and grades it four ways:
nbgrader's own autograde (one process, nbgrader's default steps, no sandbox), ``grade_all`` with
one worker without and with the outside check, and with two workers. Prints one line per way and
the ratios.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograder.build.release import build_release
from autograder.build.source import build_source
from autograder.course import REPO, tool_environment
from autograder.demo import fill_solutions
from autograder.grade import grade_all

PLAIN_CONFIG = """c = get_config()
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
c.Execute.timeout = 60
"""


def make_course(root: Path, students: int, assignment: str) -> None:
    build_source(REPO / "modules", root / "source")
    build_release(root, assignment)
    for path in sorted((root / "release" / assignment).glob("*.ipynb")):
        solved = fill_solutions(nbformat.read(path, as_version=4),
                                nbformat.read(root / "source" / assignment / path.name, as_version=4))
        for number in range(students):
            folder = root / "submitted" / f"student{number:03d}" / assignment
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(solved, folder / path.name)


def time_plain_nbgrader(root: Path, assignment: str) -> float:
    """nbgrader autograde as it comes: its own config only, all students in one process."""
    (root / "nbgrader_config.py").write_text(PLAIN_CONFIG)
    env = tool_environment()
    env.pop("JUPYTER_CONFIG_PATH")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nbgrader", "autograde", assignment, "--force"],
                   cwd=root, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    (root / "nbgrader_config.py").unlink()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--assignment", default="acceleration")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="grading-benchmark-") as tmp:
        root = Path(tmp)
        make_course(root, args.students, args.assignment)
        plain = time_plain_nbgrader(root, args.assignment)
        results = {}
        for name, workers, verify in (("serial, no outside check", 1, False), ("serial", 1, True),
                                      ("2 workers", 2, True)):
            shutil.rmtree(root / ".grading", ignore_errors=True)
            start = time.perf_counter()
            rows = grade_all(root, args.assignment, workers=workers, progress=False, resume=False,
                             verify=verify)
            results[name] = time.perf_counter() - start
            if verify and any(r.overrides or r.flags for r in rows):
                print(f"error: the outside check disagreed on a reference submission: {rows[0].overrides}")
                return 1
            bad = [r.student_id for r in rows if r.status != "graded" or r.autograded_score != r.autograded_max]
            if bad:
                print(f"error: {len(bad)} reference submissions did not get full marks: {bad[:3]}")
                return 1
    n = args.students
    print(f"{n} submissions x 4 notebooks  plain nbgrader {plain / n:.1f} s/submission  "
          + "  ".join(f"{name} {seconds / n:.1f} s" for name, seconds in results.items()))
    print(f"outside check adds {results['serial'] / results['serial, no outside check'] - 1:.0%} per submission   "
          f"serial vs plain nbgrader {results['serial'] / plain:.2f}x time   "
          f"2 workers vs serial {results['serial'] / results['2 workers']:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
