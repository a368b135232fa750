"""``make bench-grading``: seconds per submission, plain ``nbgrader autograde`` against this grader,
side by side in one run on the same submissions.

Builds a scratch course with N copies of the reference solution and grades it three ways:
nbgrader's own autograde (one process, nbgrader's default steps and configuration, no sandbox,
every cell executed), and ``grade_all`` with one and with two workers (the sandbox, staging,
nbgrader with experiments skipped, and the outside check of every notebook; the batch's answer
key included). Prints one line per way, the ratios, and where one submission's seconds go.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograder.build.release import build_release
from autograder.build.source import build_source
from autograder.course import REPO, STAGING, tool_environment
from autograder.demo import fill_solutions
from autograder.grade import grade_all

PLAIN_CONFIG = """c = get_config()
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
c.Execute.timeout = 60
"""


def make_course(root: Path, students: int, assignment: str) -> int:
    """N copies of the reference under ``root/submitted``; returns the number of notebooks each has."""
    build_source(REPO / "modules", root / "source")
    build_release(root, assignment)
    notebooks = sorted((root / "release" / assignment).glob("*.ipynb"))
    for path in notebooks:
        solved = fill_solutions(nbformat.read(path, as_version=4),
                                nbformat.read(root / "source" / assignment / path.name, as_version=4))
        for number in range(students):
            folder = root / "submitted" / f"student{number:03d}" / assignment
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(solved, folder / path.name)
    return len(notebooks)


def time_plain_nbgrader(root: Path, assignment: str) -> float:
    """nbgrader autograde as it comes: its own configuration only, all students in one process."""
    (root / "nbgrader_config.py").write_text(PLAIN_CONFIG)
    env = tool_environment()
    env.pop("JUPYTER_CONFIG_PATH")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nbgrader", "autograde", assignment, "--force"],
                   cwd=root, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    (root / "nbgrader_config.py").unlink()
    return seconds


def time_this_grader(root: Path, assignment: str, workers: int) -> tuple[float, list]:
    """One batch with ``workers`` workers from a clean state (answer key included); its rows."""
    shutil.rmtree(root / STAGING, ignore_errors=True)
    shutil.rmtree(root / "autograded", ignore_errors=True)
    start = time.perf_counter()
    rows = grade_all(root, assignment, workers=workers, progress=False, resume=False)
    seconds = time.perf_counter() - start
    wrong = [r.student_id for r in rows if r.status != "graded" or r.autograded_score != r.autograded_max]
    if wrong:
        raise SystemExit(f"error: {len(wrong)} reference submissions did not get full marks: "
                         f"{[(r.student_id, r.reason) for r in rows if r.student_id in wrong][:2]}")
    return seconds, rows


def profile_line(rows: list, seconds_per_submission: float) -> str:
    """Where one submission's seconds go, from the workers' own timings (means over the batch)."""
    mean = {key: statistics.mean(r.timings.get(key, 0.0) for r in rows)
            for key in ("autograde_s", "autograde_cpu_s", "check_s", "check_cpu_s")}
    rest = statistics.mean(r.seconds for r in rows) - mean["autograde_s"] - mean["check_s"]
    return (f"one submission, 1 worker: nbgrader with the sandboxed kernel {mean['autograde_s']:.2f} s "
            f"({mean['autograde_cpu_s']:.2f} s CPU), outside check {mean['check_s']:.2f} s "
            f"({mean['check_cpu_s']:.2f} s CPU), staging and bookkeeping {rest:.2f} s; "
            f"answer key and worker start-up spread over the batch "
            f"{seconds_per_submission - statistics.mean(r.seconds for r in rows):.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--assignment", default="acceleration")
    args = parser.parse_args(argv)
    n = args.students
    with tempfile.TemporaryDirectory(prefix="grading-benchmark-") as tmp:
        root = Path(tmp)
        notebooks = make_course(root, n, args.assignment)
        plain = time_plain_nbgrader(root, args.assignment) / n
        one, rows = time_this_grader(root, args.assignment, 1)
        two, _ = time_this_grader(root, args.assignment, 2)
    one, two = one / n, two / n
    print(f"{n} submissions x {notebooks} notebooks: plain nbgrader {plain:.1f} s/submission, this grader "
          f"1 worker {one:.1f} s, 2 workers {two:.1f} s")
    print(f"1 worker takes {one / plain:.2f}x plain nbgrader's time; 2 workers are {one / two:.2f}x faster "
          f"than 1")
    print(profile_line(rows, one))
    return 0


if __name__ == "__main__":
    sys.exit(main())
