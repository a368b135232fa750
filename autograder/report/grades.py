"""One row per student, and ``grades.csv``.

A row's ``status`` is ``graded`` (every notebook graded and every outside check ran to its end),
``partial`` (something was not graded or not checked: those cells scored 0, ``reason`` says
which and why) or ``failed`` (nothing could be graded). Scores are the ones that count: a test
cell's points need its in-kernel test and its outside check to pass.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path

from autograder.course import printable

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
    seconds: float = 0.0
    repairs: list[str] = field(default_factory=list)        # what staging restored from the release
    flags: list[str] = field(default_factory=list)          # for the instructor's review
    disagreements: list[str] = field(default_factory=list)  # cells where in-kernel and outside verdicts differ
    timings: dict[str, float] = field(default_factory=dict)  # seconds (wall and CPU) of nbgrader and of the check

    @property
    def total(self) -> float:
        return sum(score or 0.0 for score in self.scores.values())


def failed_row(student: str, notebooks: dict[str, float], reason: str, seconds: float = 0.0) -> GradeRow:
    """A row for a submission that could not be graded at all."""
    return GradeRow(printable(student, 120), {nb: None for nb in notebooks}, sum(notebooks.values()), "failed",
                    printable(reason, 2000), seconds=seconds)


def csv_columns(notebooks: list[str]) -> list[str]:
    """The columns of ``grades.csv``: one score column per notebook, then the totals."""
    return ["student_id", *notebooks, "total", "max_total", "status", "reason", "manual_pending",
            "autograded_score", "autograded_max", "disagreements", "integrity_flags"]


def write_grades_csv(rows: list[GradeRow], notebooks: list[str], path: Path) -> None:
    """Write ``rows`` into ``grades.csv``, keeping the rows of students not graded this time.

    The file is replaced atomically, so a reader never sees a half-written file; a file with
    other columns is kept beside it under a dated name.
    """
    columns = csv_columns(notebooks)
    merged: dict[str, dict[str, str]] = {}
    if path.exists():
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames == columns:
                merged = {line["student_id"]: line for line in reader}
        if not merged:
            path.replace(path.with_name(f"{path.stem}.{time.strftime('%Y%m%d-%H%M%S')}.csv"))
    for row in rows:
        scores = {nb: "" if row.scores.get(nb) is None else f"{row.scores[nb]:g}" for nb in notebooks}
        merged[row.student_id] = {
            "student_id": printable(row.student_id, 120), **scores, "total": f"{row.total:g}",
            "max_total": f"{row.max_total:g}", "status": row.status, "reason": printable(row.reason, 2000),
            "manual_pending": str(row.manual_pending),
            "autograded_score": f"{row.autograded_score:g}", "autograded_max": f"{row.autograded_max:g}",
            "disagreements": str(len(row.disagreements)), "integrity_flags": str(len(row.flags))}
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(merged[student] for student in sorted(merged))
    tmp.replace(path)
