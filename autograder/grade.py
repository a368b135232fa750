"""Autograde every submission and write ``grades.csv``: one row per student, always.

Each student is graded by its own ``nbgrader autograde`` process, so one broken submission
cannot stop the batch; its row says what went wrong instead.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from tqdm import tqdm

from autograder.build import REPO, tool_environment

CONFIG = REPO / "nbgrader_config.py"
STATUSES = ("graded", "partial", "failed")


@dataclass
class GradeRow:
    """One student's result. Scores are points; ``None`` where a notebook was not graded."""

    student_id: str
    scores: dict[str, float | None]
    max_total: float
    status: str
    reason: str
    manual_pending: int = 0
    autograded_score: float = 0.0
    autograded_max: float = 0.0
    log_path: Path | None = field(default=None, compare=False)

    @property
    def total(self) -> float:
        return sum(score or 0.0 for score in self.scores.values())


def nbgrader_command(root: Path, *args: str) -> list[str]:
    """An nbgrader command line for the course at ``root``, using this repo's config."""
    return [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={root}",
            f"--config={CONFIG}"]


def gradebook_url(root: Path) -> str:
    return f"sqlite:///{root / 'gradebook.db'}"


def assignment_notebooks(root: Path, assignment: str) -> dict[str, float]:
    """Notebook name -> maximum points, as recorded by ``nbgrader generate_assignment``."""
    if not (root / "gradebook.db").exists():
        raise SystemExit(f"error: {root / 'gradebook.db'} not found: run 'make release' first")
    with Gradebook(gradebook_url(root)) as gb:
        try:
            found = gb.find_assignment(assignment)
        except MissingEntry:
            raise SystemExit(f"error: assignment {assignment!r} is not in the gradebook: "
                             f"run 'make release' first") from None
        return {nb.name: float(nb.max_score) for nb in sorted(found.notebooks, key=lambda n: n.name)}


def discover_students(root: Path, assignment: str) -> list[str]:
    """Student ids with a ``submitted/<student>/<assignment>/`` folder, sorted."""
    submitted = root / "submitted"
    if not submitted.is_dir():
        return []
    return sorted(d.name for d in submitted.iterdir() if (d / assignment).is_dir())


def _last_error(log: str) -> str:
    """The most useful line of an nbgrader log: its last error, else its last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if "[ERROR]" in line or "Error" in line]
    chosen = (errors or lines or ["no output"])[-1]
    return chosen.split("] ", 1)[-1][:300]


def grade_student(root: Path, assignment: str, student: str, notebooks: dict[str, float],
                  timeout_s: float) -> GradeRow:
    """Autograde one student's submission and read its scores back from the gradebook."""
    submitted = root / "submitted" / student / assignment
    autograded = root / "autograded" / student / assignment
    present = {nb for nb in notebooks if (submitted / f"{nb}.ipynb").is_file()}
    max_total = sum(notebooks.values())
    if not present:
        return GradeRow(student, {nb: None for nb in notebooks}, max_total, "failed",
                        f"no notebook of {assignment!r} found in {submitted.relative_to(root)}")
    try:
        result = subprocess.run(
            nbgrader_command(root, "autograde", assignment, f"--student={student}", "--force"),
            cwd=root, capture_output=True, text=True, timeout=timeout_s, env=tool_environment())
        log, crashed = result.stdout + result.stderr, result.returncode != 0
    except subprocess.TimeoutExpired as exc:
        log = f"{exc.stdout or ''}{exc.stderr or ''}\ngrading took longer than {timeout_s:.0f} s"
        crashed = True
    log_path = root / "autograded" / student / f"{assignment}.autograde.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(log if isinstance(log, str) else log.decode(errors="replace"))

    scores: dict[str, float | None] = {}
    problems, manual_pending = [], 0
    autograded_score = autograded_max = 0.0
    with Gradebook(gradebook_url(root)) as gb:
        for nb in notebooks:
            graded = nb in present and (autograded / f"{nb}.ipynb").is_file()
            if nb not in present:
                scores[nb] = 0.0
                problems.append(f"{nb}.ipynb missing (scored 0)")
                continue
            try:
                record = gb.find_submission_notebook(nb, assignment, student)
            except MissingEntry:
                graded = False
            if not graded:
                scores[nb] = None
                problems.append(f"{nb}.ipynb not graded: {_last_error(log)}")
                continue
            scores[nb] = float(record.score)
            autograded_score += float(record.code_score)
            autograded_max += float(record.max_code_score)
            manual_pending += sum(1 for g in record.grades if g.needs_manual_grade)
    if crashed and not problems:
        problems.append(f"nbgrader exited with an error: {_last_error(log)}")
    if not any(scores[nb] is not None for nb in present):
        status, reason = "failed", "; ".join(problems)
    elif problems:
        status, reason = "partial", "; ".join(problems)
    else:
        status = "graded"
        reason = f"{manual_pending} written answer(s) await manual grading" if manual_pending else ""
    return GradeRow(student, scores, max_total, status, reason, manual_pending,
                    autograded_score, autograded_max, log_path)


def csv_columns(notebooks: list[str]) -> list[str]:
    """The columns of ``grades.csv``: one score column per notebook, then the totals."""
    return ["student_id", *notebooks, "total", "max_total", "status", "reason", "manual_pending",
            "autograded_score", "autograded_max"]


def write_grades_csv(rows: list[GradeRow], notebooks: list[str], path: Path) -> None:
    """Write ``rows`` into ``grades.csv``, keeping the rows of students not graded this time.

    The file is replaced atomically, so a reader never sees a half-written file.
    """
    columns = csv_columns(notebooks)
    merged: dict[str, dict[str, str]] = {}
    if path.exists():
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames == columns:
                merged = {line["student_id"]: line for line in reader}
        if not merged:  # other columns (an older layout, other notebooks): keep it, start anew
            path.replace(path.with_name(f"{path.stem}.{time.strftime('%Y%m%d-%H%M%S')}.csv"))
    for row in rows:
        scores = {nb: "" if row.scores[nb] is None else f"{row.scores[nb]:g}" for nb in notebooks}
        merged[row.student_id] = {
            "student_id": row.student_id, **scores, "total": f"{row.total:g}",
            "max_total": f"{row.max_total:g}", "status": row.status, "reason": row.reason,
            "manual_pending": str(row.manual_pending),
            "autograded_score": f"{row.autograded_score:g}", "autograded_max": f"{row.autograded_max:g}"}
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(merged[student] for student in sorted(merged))
    tmp.replace(path)


def grade_all(root: Path, assignment: str, students: list[str] | None = None,
              timeout_s: float = 600.0, progress: bool = True) -> list[GradeRow]:
    """Grade ``students`` (default: every submission) and write ``root/grades.csv``."""
    notebooks = assignment_notebooks(root, assignment)
    students = students if students is not None else discover_students(root, assignment)
    rows = []
    for student in tqdm(students, desc="autograde", unit="student", disable=not progress):
        try:
            rows.append(grade_student(root, assignment, student, notebooks, timeout_s))
        except Exception as exc:  # one student's failure must never stop the batch
            rows.append(GradeRow(student, {nb: None for nb in notebooks}, sum(notebooks.values()),
                                 "failed", f"grader error: {type(exc).__name__}: {exc}"))
    write_grades_csv(rows, list(notebooks), root / "grades.csv")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO, help="course root (default: this repo)")
    parser.add_argument("--assignment", default="acceleration")
    parser.add_argument("--student", action="append", help="grade only this student (repeatable)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per submission")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    rows = grade_all(root, args.assignment, args.student, args.timeout)
    if not rows:
        print(f"no submissions under {root / 'submitted'}/<student>/{args.assignment}/")
        return 0
    counts = {status: sum(row.status == status for row in rows) for status in STATUSES}
    print(f"{len(rows)} submissions: " + ", ".join(f"{n} {s}" for s, n in counts.items())
          + f"; wrote {root / 'grades.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
