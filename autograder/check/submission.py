"""The outside check of one staged, autograded submission, and the score that counts.

For each notebook nbgrader graded, the outside check runs (``runner.py``) and is judged against
the batch's answer key (``judge.py``). A test cell keeps its points only when its in-kernel test
passed (nbgrader's full score) **and** the outside check ran to the end for it and passed; any
other cell scores 0 in the gradebook. Where the two verdicts differ, either way, the result says
so; a check that could not run to its end is a failure of the check, never a pass.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from autograder.check.answer_key import helper_files, autograded_cells
from autograder.check.judge import judge_cells
from autograder.check.runner import CheckHost, run_checks
from autograder.course import STAGING, gradebook_url, scratch_root
from autograder.run.execute import METADATA_KEY
from autograder.run.sandbox import Limits


@dataclass
class CellResult:
    """One test cell: nbgrader's in-kernel score, the outside verdict, and the score that counts."""

    in_kernel: float | None
    outside: bool
    score: float
    max: float
    cases: list[str] = field(default_factory=list)    # feedback-safe: what failed outside
    detail: list[str] = field(default_factory=list)   # for the instructor: the check process's own texts

    @property
    def disagree(self) -> bool:
        return (self.in_kernel is not None and self.in_kernel >= self.max) != self.outside


@dataclass
class NotebookCheck:
    """The outside check of one notebook: per test cell, flags, and why it stopped early if it did."""

    cells: dict[str, CellResult] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    failure: str | None = None
    restarts: int = 0


def counted_score(in_kernel: float | None, outside: bool, maximum: float) -> float:
    """Full points when the in-kernel test passed and the outside check passed; else 0."""
    return maximum if outside and in_kernel is not None and in_kernel >= maximum else 0.0


def check_submission(root: Path, assignment: str, student: str, key: dict, limits: Limits, *,
                     sandbox: bool = True, threads: int = 1) -> dict[str, NotebookCheck]:
    """Outside-check ``student``'s staged submission and write the scores that count to the gradebook."""
    staged = root / STAGING / "submitted" / student / assignment
    release = root / "release" / assignment
    in_kernel: dict[str, dict[str, tuple[float | None, float]]] = {}
    with Gradebook(gradebook_url(root, timeout_s=120)) as gb:
        for name in key["notebooks"]:
            if not (staged / f"{name}.ipynb").is_file():
                continue
            try:
                record = gb.find_submission_notebook(name, assignment, student)
            except MissingEntry:
                continue  # nbgrader did not grade this notebook; the batch grader reports why
            in_kernel[name] = {g.name: (g.auto_score, float(g.max_score)) for g in record.grades
                               if g.auto_score is not None or g.max_score}
    results: dict[str, NotebookCheck] = {}
    with CheckHost(helper_files(release), sandbox=sandbox, course_root=root, scratch_root=scratch_root(root),
                   limits=limits, threads=threads) as host:  # one warm host for this submission's notebooks
        outcomes = {name: run_checks(nbformat.read(staged / f"{name}.ipynb", as_version=4),
                                     key["notebooks"][name]["checks"], key["seed"], [],
                                     nbformat.read(release / f"{name}.ipynb", as_version=4),
                                     runs=key.get("runs", 1), host=host)
                    for name in in_kernel}
    for name, graded in in_kernel.items():
        entry, outcome = key["notebooks"][name], outcomes[name]
        released = nbformat.read(release / f"{name}.ipynb", as_version=4)
        grade_ids = autograded_cells(released)
        verdicts = judge_cells(entry["cells"], outcome, grade_ids, key.get("runs", 1))
        result = NotebookCheck(flags=list(outcome.flags), failure=outcome.failure, restarts=outcome.restarts)
        for grade_id in grade_ids:
            score, maximum = graded.get(grade_id, (None, 0.0))
            verdict = verdicts[grade_id]
            result.cells[grade_id] = CellResult(None if score is None else float(score), verdict.passed,
                                                counted_score(score, verdict.passed, maximum), maximum,
                                                verdict.cases, verdict.detail)
        results[name] = result
    with Gradebook(gradebook_url(root, timeout_s=120)) as gb:
        for name, result in results.items():
            for grade_id, cell in result.cells.items():
                try:
                    grade = gb.find_grade(grade_id, name, assignment, student)
                except MissingEntry:
                    continue
                grade.auto_score = cell.score
        gb.db.commit()
    for name, result in results.items():
        record_in_autograded(root / "autograded" / student / assignment / f"{name}.ipynb", result)
    return results


def record_in_autograded(path: Path, result: NotebookCheck) -> None:
    """Keep the outside verdicts in the autograded notebook, for the feedback to explain them."""
    if not path.is_file():
        return
    nb = nbformat.read(path, as_version=4)
    nb.metadata.setdefault(METADATA_KEY, {})["outside"] = {
        grade_id: {"in_kernel": cell.in_kernel, "outside": cell.outside, "score": cell.score, "max": cell.max,
                   "cases": cell.cases} for grade_id, cell in result.cells.items()}
    nb.metadata[METADATA_KEY]["outside_failure"] = result.failure
    nbformat.write(nb, path)


def to_plain(results: dict[str, NotebookCheck]) -> dict:
    """``results`` as JSON-ready dicts (what the grading worker sends back)."""
    return {name: asdict(result) for name, result in results.items()}


def from_plain(data: dict) -> dict[str, NotebookCheck]:
    return {name: NotebookCheck(cells={gid: CellResult(**cell) for gid, cell in result["cells"].items()},
                                flags=result["flags"], failure=result["failure"], restarts=result["restarts"])
            for name, result in data.items()}
