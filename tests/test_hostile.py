"""Hostile and odd submissions, graded end to end by the batch grader, each with its expected row.

A two-task course keeps this fast: `double` (2 points) and `triple` (2 points), each with a
visible test and a check, and one written answer. Every submission is built from its release
and graded in one batch; each case asserts the row it must end with. The classes: code that
crashes, hangs or floods; tests tampered with; the in-kernel verdict fooled; the check process
attacked; grader secrets looked for; files a student should not be able to slip in; sizes meant
to slow everyone down.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import textwrap
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from autograder.build.release import build_release
from autograder.build.source import build_source
from autograder.course import STAGING, gradebook_url, nbgrader_meta
from autograder.grade import grade_all
from autograder.report.feedback import generate_feedback
from autograder.run.sandbox import Limits, detect_protections
from toy_courses import TWO_TASK_CHECKS, TWO_TASK_COURSE, write_course

pytestmark = pytest.mark.xdist_group("hostile")
ASSIGNMENT = "acceleration"
SANDBOXED = detect_protections().missing() == []
SECRET = "lms-token-5f3a9c-do-not-leak"
LIMITS = Limits(cell_timeout_s=5, check_timeout_s=60)

RIGHT = {"double": "def double(x):\n    return 2 * x", "triple": "def triple(x):\n    return 3 * x"}
WRONG_DOUBLE = "def double(x):\n    return 0"
STRIP_ASSERTS = ("import ast\nclass StripAsserts(ast.NodeTransformer):\n    def visit_Assert(self, node):\n"
                 "        return ast.Pass()\nget_ipython().ast_transformers.append(StripAsserts())\n")
IN_CHECK_PROCESS = "'IPKernelApp' not in get_ipython().config"  # true only where no kernel runs the code
FRAME = "import os, struct\nframe = lambda body: struct.pack('>I', len(body)) + body\n"


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


def in_check_process(code: str) -> str:
    """``code`` run only in the check process (never in a kernel), when the cell loads."""
    return f"\nif {IN_CHECK_PROCESS}:\n" + textwrap.indent(code, "    ")


def make_submissions(root: Path, released: nbformat.NotebookNode) -> dict[str, object]:
    """Every hostile case: student -> the notebook it submits (or raw bytes, or (file name, content),
    or a callable that fills the submission folder)."""
    cases: dict[str, object] = {}
    cases["honest"] = with_answers(released, answers(q01_why="Doubling is linear, so the tests can check it."))
    cases["blank"] = released
    cases["warnings"] = with_answers(released, answers(double=(
        "import warnings\nimport numpy as np\n"
        "def double(x):\n    warnings.warn('careful')\n    np.float64(1.0) / 0.0\n    return 2 * x")))
    # code that crashes, hangs or floods costs its own cells only
    cases["crash"] = with_answers(released, answers(triple="import os\nos._exit(1)"))
    cases["hang"] = with_answers(released, answers(triple=(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass")))
    cases["memory_bomb"] = with_answers(released, answers(triple="hog = bytearray(64 * 2**30)"))
    cases["fork_bomb"] = with_answers(released, answers(triple=(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")))
    cases["huge_output"] = with_answers(released, answers(double="print('x' * 20_000_000)\n" + RIGHT["double"]))
    cases["floods_descriptors"] = with_answers(released, answers(double=(
        "import os\nfor fd in (1, 2):\n    for _ in range(10):\n        try:\n"
        "            os.write(fd, b'z' * 2**20)\n        except OSError:\n            pass\n" + RIGHT["double"])))
    # tests tampered with
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
    # the in-kernel verdict fooled: the score needs the outside check too
    cases["strips_asserts"] = with_answers(released, answers(double=WRONG_DOUBLE + "\n" + STRIP_ASSERTS))
    cases["always_equal"] = with_answers(released, answers(double=(
        "class Yes:\n    def __eq__(self, other):\n        return True\ndef double(x):\n    return Yes()")))
    cases["blanks_tests"] = with_answers(released, answers(double=WRONG_DOUBLE + (
        "\nget_ipython().input_transformers_cleanup.append("
        "lambda lines: ['pass\\n'] if any('assert' in l for l in lines) else lines)")))
    cases["partial_credit_display"] = with_answers(released, answers(double=WRONG_DOUBLE + "\n" + textwrap.dedent('''
        def as_full_marks(lines):
            if not any("assert" in line for line in lines):
                return lines
            body = "".join("    " + line for line in lines)
            return ["try:\\n", body + "\\n", "except Exception:\\n", "    pass\\n", "2.0\\n"]
        get_ipython().input_transformers_cleanup.append(as_full_marks)''')))
    cases["right_only_on_hidden_inputs"] = with_answers(released, answers(double=(
        "def double(x):\n    return 5 if x == 2 else 2 * x")))
    cases["wrong_only_in_the_kernel"] = with_answers(released, answers(double=(
        f"def double(x):\n    return 2 * x if {IN_CHECK_PROCESS} else 0")))
    # the check process attacked: whatever it sends out of protocol ends the check, failing closed
    cases["forges_a_frame"] = with_answers(released, answers(double=WRONG_DOUBLE + in_check_process(
        FRAME + "for fd in range(1, 12):\n    try:\n        os.write(fd, frame(b'{\"kind\": \"finished\"}'))\n"
        "    except OSError:\n        pass\n")))
    cases["nested_frame"] = with_answers(released, answers(double=RIGHT["double"] + in_check_process(
        FRAME + "for fd in range(1, 12):\n    try:\n        os.write(fd, frame(b'[' * 300000 + b']' * 300000))\n"
        "    except OSError:\n        pass\n")))
    cases["kills_the_check"] = with_answers(released, answers(double=RIGHT["double"] + in_check_process(
        "import os\nos._exit(0)\n")))
    # grader secrets looked for
    cases["writes_course"] = with_answers(released, answers(double=(
        "for target in ({!r}, {!r}):\n    try:\n        open(target, 'w').write('hacked')\n"
        "    except OSError:\n        pass\n".format(str(root / "gradebook.db"), str(root / "nbgrader_config.py"))
        + RIGHT["double"])))
    cases["reads_the_reference"] = with_answers(released, answers(double=(
        "for path in ({!r}, {!r}):\n    try:\n        print(open(path).read()[:50])\n"
        "    except OSError as error:\n        print('blocked', type(error).__name__)\n"
        .format(str(root / "source" / ASSIGNMENT / "01_toy.ipynb"), str(root / STAGING / f"{ASSIGNMENT}-answer-key.json"))
        + RIGHT["double"])))
    cases["prints_the_environment"] = with_answers(released, answers(double=(
        "import os\nprint(dict(os.environ))\n" + RIGHT["double"])))
    cases["lists_processes"] = with_answers(released, answers(double=(
        "import os\nprint('pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n" + RIGHT["double"])))
    # files a student should not slip in
    cases["shadows_modules"] = lambda folder: (
        nbformat.write(with_answers(released, RIGHT), folder / "01_toy.ipynb"),
        (folder / "numpy.py").write_text("raise SystemExit('a student file was imported')\n"),
        (folder / "json.py").write_text("raise SystemExit('a student file was imported')\n"),
        (folder / "benchmarking.py").write_text("raise SystemExit('a student file was imported')\n"))
    cases["symlinked_notebook"] = lambda folder: (
        nbformat.write(with_answers(released, RIGHT), root / "elsewhere.ipynb"),
        (folder / "01_toy.ipynb").symlink_to(root / "elsewhere.ipynb"))
    cases["odd_files"] = lambda folder: (
        nbformat.write(with_answers(released, RIGHT), folder / "01_toy.ipynb"),
        os.mkfifo(folder / "pipe"),
        (folder / os.fsdecode(b"caf\xe9.py")).write_text("x = 1\n"))
    cases["renamed"] = ("01_toy (1).ipynb", with_answers(released, RIGHT))
    cases["corrupt"] = b'{"cells": ['
    # sizes meant to slow everyone down
    long_answer = with_answers(released, RIGHT)
    long_answer.cells[cell_index(long_answer, "q01_why")].source = "word " * 400_000  # 2 MB
    cases["huge_answer"] = long_answer
    cases["huge_notebook"] = b'{"cells": [], "padding": "' + b"x" * (25 * 2**20) + b'"}'
    cases["late"] = with_answers(released, RIGHT)
    return cases


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    checks_root = write_course(root, TWO_TASK_COURSE, TWO_TASK_CHECKS)
    build_source(root / "modules", root / "source")
    build_release(root, ASSIGNMENT)
    (root / "nbgrader_config.py").write_text("# a course config student code must not change\n")
    released = nbformat.read(root / "release" / ASSIGNMENT / "01_toy.ipynb", as_version=4)
    for student, submission in make_submissions(root, released).items():
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        name, content = submission if isinstance(submission, tuple) else ("01_toy.ipynb", submission)
        if callable(content):
            content(folder)
        elif isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            nbformat.write(content, folder / name)
    odd = root / "submitted" / os.fsdecode(b"bad\xffname") / ASSIGNMENT
    odd.mkdir(parents=True)
    nbformat.write(with_answers(released, RIGHT), odd / "01_toy.ipynb")
    (root / "submitted" / "late" / ASSIGNMENT / "timestamp.txt").write_text("2031-01-01 12:00:00 UTC")
    with Gradebook(gradebook_url(root)) as gb:
        gb.update_or_create_assignment(ASSIGNMENT, duedate=datetime(2030, 1, 1))
    before = {"nbgrader_config.py": hashlib.sha256((root / "nbgrader_config.py").read_bytes()).hexdigest()}
    os.environ["CANVAS_API_TOKEN"] = SECRET  # an instructor's shell variable
    try:
        rows = grade_all(root, ASSIGNMENT, workers=2, progress=False, checks_root=checks_root, limits=LIMITS)
        feedback, feedback_errors = generate_feedback(root, ASSIGNMENT, FEEDBACK_FOR, progress=False)
    finally:
        del os.environ["CANVAS_API_TOKEN"]
    return root, {row.student_id: row for row in rows}, before, feedback, feedback_errors


FEEDBACK_FOR = ["honest", "huge_answer", "wrong_only_in_the_kernel", "strips_asserts", "prints_the_environment",
                "nested_frame"]
EXPECTED = {  # student -> (status, autograded points of 4, words the reason must contain)
    "honest": ("graded", 4, []),
    "blank": ("graded", 0, []),
    "warnings": ("graded", 4, []),
    "crash": ("graded", 2, ["KernelDied", "[triple]"]),
    "hang": ("graded", 2, ["CellTimeout", "[triple]"]),
    "memory_bomb": ("graded", 2, []),
    "fork_bomb": ("graded", 2, ["CellTimeout", "[triple]"]),
    "huge_output": ("graded", 4, ["output truncated"]),
    "floods_descriptors": ("graded", 4, []),
    "tampered_test": ("graded", 2, []),
    "deleted_test": ("graded", 2, []),
    "duplicated_test": ("graded", 4, []),
    "retyped_test": ("graded", 2, []),
    "strips_asserts": ("graded", 2, ["disagree on 1 test cell"]),
    "always_equal": ("graded", 2, ["disagree on 1 test cell"]),
    "blanks_tests": ("graded", 2, ["disagree on 1 test cell"]),
    "partial_credit_display": ("graded", 2, ["disagree on 1 test cell"]),
    "right_only_on_hidden_inputs": ("graded", 2, []),
    "wrong_only_in_the_kernel": ("graded", 2, ["disagree on 1 test cell"]),
    "forges_a_frame": ("partial", 0, ["outside check stopped early", "protocol"]),
    "nested_frame": ("partial", 0, ["outside check stopped early", "protocol"]),
    "kills_the_check": ("graded", 2, ["disagree on 1 test cell"]),
    "writes_course": ("graded", 4, []),
    "reads_the_reference": ("graded", 4, []),
    "prints_the_environment": ("graded", 4, []),
    "lists_processes": ("graded", 4, []),
    "shadows_modules": ("graded", 4, []),
    "symlinked_notebook": ("failed", 0, ["01_toy.ipynb: a symbolic link"]),
    "odd_files": ("graded", 4, ["refused pipe: not a regular file", "not valid UTF-8"]),
    "renamed": ("graded", 4, []),
    "corrupt": ("failed", 0, ["not a readable notebook"]),
    "huge_answer": ("graded", 4, []),
    "huge_notebook": ("failed", 0, ["over the"]),
    "late": ("graded", 4, ["late"]),
    "bad\\xffname": ("failed", 0, ["not valid UTF-8"]),
}


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_submission_ends_with_the_row_it_deserves(graded, student):
    _, rows, _, _, _ = graded
    status, points, words = EXPECTED[student]
    row = rows[student]
    assert (row.status, row.autograded_score) == (status, points), f"{student}: {row}"
    if status != "failed":
        assert row.autograded_max == 4, f"{student}: the maximum must not change ({row.autograded_max})"
    for word in words:
        assert word in row.reason, f"{student}: reason {row.reason!r} should mention {word!r}"


def test_one_row_per_submission_in_grades_csv(graded):
    root, rows, _, _, _ = graded
    with (root / "grades.csv").open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert sorted(r["student_id"] for r in table) == sorted(EXPECTED)
    assert all(r["status"] in ("graded", "partial", "failed") for r in table)


def test_fooled_kernels_are_named_in_the_integrity_report(graded):
    root, rows, _, _, _ = graded
    for student, flag in [("strips_asserts", "AST transformer"), ("blanks_tests", "input transformer"),
                          ("partial_credit_display", "input transformer")]:
        row = rows[student]
        assert any("t01_double: in-kernel 2/2, outside check failed" in line for line in row.disagreements), row
        assert any(flag in line for line in row.flags), row.flags
        report = (root / "reports" / "integrity" / f"{student}.txt").read_text()
        assert "t01_double: in-kernel 2/2, outside check failed" in report
    kernel_only = rows["wrong_only_in_the_kernel"].disagreements
    assert any("in-kernel 0/2, outside check passed" in line for line in kernel_only), kernel_only
    assert not (root / "reports" / "integrity" / "honest.txt").exists()


def test_repairs_and_refused_files_are_reported(graded):
    root, rows, _, _, _ = graded
    assert any("t01_double was edited" in note for note in rows["tampered_test"].repairs)
    assert any("deleted cell t01_double restored" in note for note in rows["deleted_test"].repairs)
    assert any("duplicate of locked cell t01_double" in note for note in rows["duplicated_test"].repairs)
    assert any("retyped" in note for note in rows["retyped_test"].repairs)
    assert any("01_toy (1).ipynb" in note for note in rows["renamed"].repairs)
    assert rows["honest"].repairs == []
    assert any("tests rewritten" in flag for flag in rows["tampered_test"].flags)
    shadowing = (root / "reports" / "integrity" / "shadows_modules.txt").read_text()
    assert "importable file in the submission (never imported): numpy.py" in shadowing


def test_outputs_are_bounded_and_the_graders_logs_untouched(graded):
    root, _, _, _, _ = graded
    notebook = root / "autograded" / "huge_output" / ASSIGNMENT / "01_toy.ipynb"
    assert notebook.stat().st_size < 500_000
    assert (root / "gradebook.db").stat().st_size < 5_000_000
    logs = sorted((root / STAGING).glob("worker-*.log"))
    assert logs and all(log.stat().st_size < 1_000_000 for log in logs), "student output reached the grader's log"
    assert not any("z" * 1000 in log.read_text(errors="replace") for log in logs)


@pytest.mark.skipif(not SANDBOXED, reason="; ".join(detect_protections().missing()))
def test_student_code_reached_nothing_of_the_graders(graded):
    root, _, before, feedback, _ = graded
    config = hashlib.sha256((root / "nbgrader_config.py").read_bytes()).hexdigest()
    assert config == before["nbgrader_config.py"], "student code changed the course config"
    assert (root / "gradebook.db").read_bytes()[:16] == b"SQLite format 3\x00", "student code overwrote the gradebook"

    def outputs(student):
        nb = nbformat.read(root / "autograded" / student / ASSIGNMENT / "01_toy.ipynb", 4)
        return json.dumps([c.get("outputs", []) for c in nb.cells if not nbgrader_meta(c).get("locked")])

    assert outputs("reads_the_reference").count("blocked") == 2
    assert SECRET not in outputs("prints_the_environment")
    assert "NBGRADER_EXECUTION" in outputs("prints_the_environment"), "the kernel's own environment is there"
    pids = json.loads(outputs("lists_processes"))
    assert "pids [1" in str(pids) and "pids [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12" not in str(pids)
    pages = " ".join(path.read_text() for paths in feedback.values() for path in paths)
    assert SECRET not in pages


def test_feedback_is_written_for_everyone_it_can_be_and_bounded(graded):
    root, _, _, feedback, errors = graded
    assert not errors, errors
    page = feedback["huge_answer"][0]
    assert page.stat().st_size < 1_000_000, "a 2 MB answer must be shortened in feedback"
    text = feedback["wrong_only_in_the_kernel"][0].read_text()
    assert "failed in your notebook, so this cell scored 0" in text
    fooled = feedback["strips_asserts"][0].read_text()
    assert "Checked apart from your notebook" in fooled and "a negative number" in fooled
    assert "rng.integers" not in fooled, "the check's code must never reach feedback"


def test_raw_submissions_are_never_changed(graded):
    root, _, _, _, _ = graded
    raw = nbformat.read(root / "submitted" / "tampered_test" / ASSIGNMENT / "01_toy.ipynb", 4)
    assert raw.cells[cell_index(raw, "t01_double")].source == "pass"
    assert (root / STAGING / "submitted" / "tampered_test").is_dir()


def test_a_restarted_batch_regrades_only_what_is_unfinished(graded):
    root, rows, _, _, _ = graded
    journal = root / STAGING / f"{ASSIGNMENT}-journal.jsonl"
    lines = journal.read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["student"] != "honest"]
    journal.write_text("\n".join(kept) + "\n" + kept[-1][: len(kept[-1]) // 2])  # killed mid-write
    log = root / "autograded" / "blank" / f"{ASSIGNMENT}.autograde.log"
    stamp = log.stat().st_mtime_ns
    again = {r.student_id: r for r in grade_all(root, ASSIGNMENT, ["blank", "honest"], workers=2, progress=False,
                                                   checks_root=root / "checks", limits=LIMITS)}
    assert log.stat().st_mtime_ns == stamp, "a finished student was graded again"
    assert again["honest"].autograded_score == 4


def test_a_submission_over_its_time_limit_is_stopped_and_the_next_one_graded(graded):
    root, _, _, _, _ = graded
    rows = {r.student_id: r for r in grade_all(root, ASSIGNMENT, ["hang", "honest"], workers=1, progress=False,
                                                  resume=False, timeout_s=15, checks_root=root / "checks",
                                                  limits=Limits(cell_timeout_s=60))}
    assert rows["hang"].status == "failed" and "took longer than 15 s" in rows["hang"].reason
    assert rows["hang"].autograded_score == 0, "nothing the kernel scored stands without the outside check"
    assert rows["honest"].status == "graded" and rows["honest"].autograded_score == 4, rows["honest"]


def test_hand_grades_reach_grades_csv_when_grading_runs_again(graded):
    """(Runs last: it regrades nobody but rewrites the reports for one student.)"""
    root, rows, _, _, _ = graded
    assert rows["honest"].manual_pending == 1 and rows["honest"].total == 4, rows["honest"]
    with Gradebook(gradebook_url(root)) as gb:
        grade = gb.find_grade("q01_why", "01_toy", ASSIGNMENT, "honest")
        grade.manual_score, grade.needs_manual_grade = 1.0, False
        gb.db.commit()
    log = root / "autograded" / "honest" / f"{ASSIGNMENT}.autograde.log"
    stamp = log.stat().st_mtime_ns
    again = grade_all(root, ASSIGNMENT, ["honest"], progress=False, checks_root=root / "checks", limits=LIMITS)[0]
    assert log.stat().st_mtime_ns == stamp, "the submission was graded again"
    assert (again.total, again.manual_pending) == (5, 0) and "manual grading" not in again.reason
    with (root / "grades.csv").open(newline="", encoding="utf-8") as handle:
        line = next(r for r in csv.DictReader(handle) if r["student_id"] == "honest")
    assert (line["total"], line["manual_pending"]) == ("5", "0")
