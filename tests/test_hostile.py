"""Hostile and odd submissions, graded end to end by the batch grader, each with its expected row.

A two-task course keeps this fast: `double` (2 points) and `triple` (2 points), each with a
visible and a hidden test, and one written answer. Every submission is built from its release.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import json
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from autograder.build import build_release, build_source, nbgrader_meta
from autograder.grade import STAGING, grade_all, gradebook_url
from autograder.sandbox import detect_protections
from conftest import TWO_TASK_COURSE as COURSE

pytestmark = pytest.mark.xdist_group("hostile")
ASSIGNMENT = "acceleration"
SANDBOXED = detect_protections().missing() == []


RIGHT = {"double": "def double(x):\n    return 2 * x", "triple": "def triple(x):\n    return 3 * x"}
WRONG_DOUBLE = "def double(x):\n    return 0"


def answers(**changes: str) -> dict[str, str]:
    return dict(RIGHT, **changes)


def with_answers(released: nbformat.NotebookNode, solutions: dict[str, str]) -> nbformat.NotebookNode:
    nb = copy.deepcopy(released)
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in solutions:
            cell.source = solutions[grade_id]
    return nb


def cell_index(nb, grade_id):
    return next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == grade_id)


def make_submissions(root: Path, released: nbformat.NotebookNode) -> dict[str, object]:
    """Every hostile case: student id -> the notebook (or raw bytes) it submits."""
    cases: dict[str, object] = {}
    cases["honest"] = with_answers(released, RIGHT)
    cases["blank"] = released
    cases["warnings"] = with_answers(released, answers(double=(
        "import warnings\nimport numpy as np\n"
        "def double(x):\n    warnings.warn('careful')\n    np.float64(1.0) / 0.0\n    return 2 * x")))
    cases["crash"] = with_answers(released, answers(triple="import os\nos._exit(1)"))
    cases["hang"] = with_answers(released, answers(triple=(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass")))
    cases["memory_bomb"] = with_answers(released, answers(triple="hog = bytearray(64 * 2**30)"))
    cases["fork_bomb"] = with_answers(released, answers(triple=(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")))
    cases["huge_output"] = with_answers(released, answers(double="print('x' * 20_000_000)\n" + RIGHT["double"]))
    tampered = with_answers(released, answers(double=WRONG_DOUBLE))
    tampered.cells[cell_index(tampered, "t01_double")].source = "pass"
    cases["tampered_test"] = tampered
    deleted = with_answers(released, answers(double=WRONG_DOUBLE))
    del deleted.cells[cell_index(deleted, "t01_double")]
    cases["deleted_test"] = deleted
    duplicated = with_answers(released, RIGHT)
    duplicated.cells.insert(cell_index(duplicated, "t01_double"),
                            copy.deepcopy(duplicated.cells[cell_index(duplicated, "t01_double")]))
    cases["duplicated_test"] = duplicated
    retyped = with_answers(released, answers(double=WRONG_DOUBLE))
    index = cell_index(retyped, "t01_double")
    retyped.cells[index] = nbformat.v4.new_markdown_cell(retyped.cells[index].source,
                                                         metadata=retyped.cells[index].metadata)
    cases["retyped_test"] = retyped
    cases["writes_course"] = with_answers(released, answers(double=(
        "for target in ({!r}, {!r}):\n    try:\n        open(target, 'w').write('hacked')\n"
        "    except OSError:\n        pass\n".format(str(root / "gradebook.db"), str(root / "nbgrader_config.py"))
        + RIGHT["double"])))
    cases["reads_hidden_tests"] = with_answers(released, answers(double=(
        "try:\n    print(open({!r}).read())\nexcept OSError as error:\n    print('blocked', type(error).__name__)\n"
        .format(str(root / "source" / ASSIGNMENT / "01_toy.ipynb")) + RIGHT["double"])))
    cases["renamed"] = ("01_toy (1).ipynb", with_answers(released, RIGHT))
    cases["corrupt"] = b'{"cells": ['
    cases["late"] = with_answers(released, RIGHT)
    return cases


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    (root / "modules" / ASSIGNMENT).mkdir(parents=True)
    (root / "modules" / ASSIGNMENT / "01_toy.py").write_text(COURSE)
    build_source(root / "modules", root / "source")
    build_release(root, ASSIGNMENT)
    (root / "nbgrader_config.py").write_text("# a course config student code must not change\n")
    released = nbformat.read(root / "release" / ASSIGNMENT / "01_toy.ipynb", as_version=4)
    for student, submission in make_submissions(root, released).items():
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        name, content = submission if isinstance(submission, tuple) else ("01_toy.ipynb", submission)
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            nbformat.write(content, folder / name)
    (root / "submitted" / "late" / ASSIGNMENT / "timestamp.txt").write_text("2031-01-01 12:00:00 UTC")
    with Gradebook(gradebook_url(root)) as gb:
        gb.update_or_create_assignment(ASSIGNMENT, duedate=datetime(2030, 1, 1))
    before = {"nbgrader_config.py": hashlib.sha256((root / "nbgrader_config.py").read_bytes()).hexdigest()}
    rows = grade_all(root, ASSIGNMENT, workers=2, progress=False, cell_timeout_s=5)
    return root, {row.student_id: row for row in rows}, before


EXPECTED = {  # student -> (status, autograded points of 4, words the reason must contain)
    "honest": ("graded", 4, []),
    "blank": ("graded", 0, []),
    "warnings": ("graded", 4, []),
    "crash": ("graded", 2, ["KernelDied", "[triple]"]),
    "hang": ("graded", 2, ["CellTimeout", "[triple]"]),
    "memory_bomb": ("graded", 2, []),
    "fork_bomb": ("graded", 2, ["CellTimeout", "[triple]"]),
    "huge_output": ("graded", 4, ["output truncated"]),
    "tampered_test": ("graded", 2, []),
    "deleted_test": ("graded", 2, []),
    "duplicated_test": ("graded", 4, []),
    "retyped_test": ("graded", 2, []),
    "writes_course": ("graded", 4, []),
    "reads_hidden_tests": ("graded", 4, []),
    "renamed": ("graded", 4, []),
    "corrupt": ("failed", 0, ["not a readable notebook"]),
    "late": ("graded", 4, ["late"]),
}


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_submission_ends_with_the_row_it_deserves(graded, student):
    _, rows, _ = graded
    status, points, words = EXPECTED[student]
    row = rows[student]
    assert (row.status, row.autograded_score) == (status, points), f"{student}: {row}"
    if status != "failed":
        assert row.autograded_max == 4, f"{student}: the maximum must not change ({row.autograded_max})"
    for word in words:
        assert word in row.reason, f"{student}: reason {row.reason!r} should mention {word!r}"


def test_one_row_per_submission_in_grades_csv(graded):
    root, rows, _ = graded
    with (root / "grades.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert sorted(r["student_id"] for r in table) == sorted(EXPECTED)
    assert all(r["status"] in ("graded", "partial", "failed") for r in table)


def test_repairs_are_reported(graded):
    _, rows, _ = graded
    assert any("t01_double was edited" in note for note in rows["tampered_test"].repairs)
    assert any("deleted cell t01_double restored" in note for note in rows["deleted_test"].repairs)
    assert any("duplicate of locked cell t01_double" in note for note in rows["duplicated_test"].repairs)
    assert any("retyped" in note for note in rows["retyped_test"].repairs)
    assert any("01_toy (1).ipynb" in note for note in rows["renamed"].repairs)
    assert rows["honest"].repairs == []


def test_huge_output_reaches_neither_gradebook_nor_autograded_notebook(graded):
    root, _, _ = graded
    notebook = root / "autograded" / "huge_output" / ASSIGNMENT / "01_toy.ipynb"
    assert notebook.stat().st_size < 500_000
    assert (root / "gradebook.db").stat().st_size < 5_000_000


@pytest.mark.skipif(not SANDBOXED, reason="; ".join(detect_protections().missing()))
def test_student_code_could_not_touch_the_course(graded):
    root, _, before = graded
    config = hashlib.sha256((root / "nbgrader_config.py").read_bytes()).hexdigest()
    assert config == before["nbgrader_config.py"], "student code changed the course config"
    assert (root / "gradebook.db").read_bytes()[:16] == b"SQLite format 3\x00", "student code overwrote the gradebook"
    with Gradebook(gradebook_url(root)) as gb:
        assert len(gb.students) == len(EXPECTED) - 1  # the corrupt notebook never reached nbgrader
    notebook = nbformat.read(root / "autograded" / "reads_hidden_tests" / ASSIGNMENT / "01_toy.ipynb", 4)
    outputs = json.dumps([c.get("outputs", []) for c in notebook.cells if not nbgrader_meta(c).get("locked")])
    assert "blocked" in outputs and "double(-3)" not in outputs


def test_raw_submissions_are_never_changed(graded):
    root, _, _ = graded
    raw = nbformat.read(root / "submitted" / "tampered_test" / ASSIGNMENT / "01_toy.ipynb", 4)
    assert raw.cells[cell_index(raw, "t01_double")].source == "pass"
    assert (root / STAGING / "submitted" / "tampered_test").is_dir()


def test_a_restarted_batch_regrades_only_what_is_unfinished(graded):
    root, rows, _ = graded
    journal = root / STAGING / f"{ASSIGNMENT}-journal.jsonl"
    lines = journal.read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["student"] != "honest"]
    journal.write_text("\n".join(kept) + "\n" + kept[-1][: len(kept[-1]) // 2])  # killed mid-write
    log = root / "autograded" / "blank" / f"{ASSIGNMENT}.autograde.log"
    stamp = log.stat().st_mtime_ns
    again = {r.student_id: r for r in grade_all(root, ASSIGNMENT, workers=2, progress=False, cell_timeout_s=5)}
    assert log.stat().st_mtime_ns == stamp, "a finished student was graded again"
    assert again["honest"].autograded_score == 4
    assert set(again) == set(rows)


def test_a_submission_over_its_time_limit_is_stopped_and_the_next_one_graded(graded):
    root, _, _ = graded
    rows = {r.student_id: r for r in grade_all(root, ASSIGNMENT, ["hang", "honest"], workers=1, progress=False,
                                                  resume=False, timeout_s=10, cell_timeout_s=60)}
    assert rows["hang"].status == "failed" and "took longer than 10 s" in rows["hang"].reason
    assert rows["honest"].status == "graded" and rows["honest"].autograded_score == 4
