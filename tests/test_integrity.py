"""Subversions of the in-kernel tests end with the score honest work deserves, and a flag.

Part 1 runs the outside check (``autograder.verify.run_checks``) on notebook 01 with one task
answered wrongly (or rightly) plus a trick that fools nbgrader's in-kernel tests. Part 2 grades
a small course end to end (nbgrader, gradebook, grades.csv, integrity report) to show nbgrader's
own verdict being fooled and overridden.
"""
from __future__ import annotations

import copy
import csv
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from autograder.build import REPO, build_release, build_source, nbgrader_meta, read_module
from autograder.feedback import generate_feedback
from autograder.grade import grade_all, gradebook_url
from autograder.verify import Timeouts, judge_cells, probe_names, reference_problems, run_checks
from conftest import TWO_TASK_COURSE as COURSE

pytestmark = pytest.mark.xdist_group("integrity")
ASSIGNMENT = "acceleration"
NOTEBOOK = "01_loops_and_blocking"
MODULE = REPO / "modules" / ASSIGNMENT / f"{NOTEBOOK}.py"
CHECKS = (REPO / "autograder" / "checks" / ASSIGNMENT / f"{NOTEBOOK}.py").read_text()
SEED = 20261121

WRONG_NAIVE = '''
def matmul_naive(a, b):
    a, b = np.asanyarray(a), np.asanyarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"got shapes {a.shape} and {b.shape}")
    return np.zeros((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
'''
BLAS_NAIVE = '''
def matmul_naive(a, b):
    a, b = np.asanyarray(a), np.asanyarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"got shapes {a.shape} and {b.shape}")
    return a @ b
'''
STRIP_ASSERTS = '''
import ast
class StripAsserts(ast.NodeTransformer):
    def visit_Assert(self, node):
        return ast.Pass()
get_ipython().ast_transformers.append(StripAsserts())
'''

LATER = "# -- appended to the next solution cell (after the given CountingArray) --\n"

# name -> (code put in place of the matmul_naive answer, cells that must score 0, flag words)
CASES = {
    "assert_allclose_noop": (WRONG_NAIVE + "np.testing.assert_allclose = lambda *args, **kwargs: None\n",
                             ["t01_naive_matches_matmul"], "numpy.testing.assert_allclose replaced"),
    "allclose_always_true": (WRONG_NAIVE + "np.allclose = lambda *args, **kwargs: True\n",
                             ["t01_naive_matches_matmul"], "numpy.allclose replaced"),
    "ast_transformer_strips_asserts": (WRONG_NAIVE + STRIP_ASSERTS, ["t01_naive_matches_matmul"],
                                       "AST transformer"),
    "input_transformer_blanks_tests": (WRONG_NAIVE + (
        "get_ipython().input_transformers_cleanup.append("
        "lambda lines: [] if any('assert' in line for line in lines) else lines)\n"),
        ["t01_naive_matches_matmul"], "input transformer"),
    "custom_exception_handler": (WRONG_NAIVE + (
        "get_ipython().set_custom_exc((AssertionError,), lambda *args, **kwargs: None)\n"),
        ["t01_naive_matches_matmul"], "custom exception handler"),
    "display_formatter": (WRONG_NAIVE + (
        "get_ipython().display_formatter.formatters['text/plain'].for_type(type(None), lambda *a: '1.0')\n"),
        ["t01_naive_matches_matmul"], "display formatter"),
    "always_equal_result": ('''
class Anything:
    shape = property(lambda self: self._shape)
    dtype = np.dtype(np.float64)
    def __init__(self, shape): self._shape = shape
    def __eq__(self, other): return True
    def __array__(self, dtype=None, copy=None): raise TypeError("no")
def matmul_naive(a, b):
    a, b = np.asanyarray(a), np.asanyarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"got shapes {a.shape} and {b.shape}")
    return Anything((a.shape[0], b.shape[1]))
''', ["t01_naive_matches_matmul", "t01_naive_reads_every_element"], "not plain data"),
    "given_recorder_disabled": (BLAS_NAIVE + LATER + "_record_matmul = lambda *args: None\n",
                                ["t01_naive_reads_every_element"], "given name '_record_matmul' rebound"),
    "given_class_patched": (BLAS_NAIVE + LATER + (
        "CountingArray.__array_ufunc__ = lambda self, ufunc, method, *inputs, **kwargs: "
        "getattr(ufunc, method)(*(x.view(np.ndarray) if isinstance(x, np.ndarray) else x for x in inputs), "
        "**kwargs)\n"), ["t01_naive_reads_every_element"], "CountingArray.__array_ufunc__"),
    "forged_channel_message": (WRONG_NAIVE + textwrap.dedent('''
        import os
        for fd in range(3, 12):
            try:
                os.write(fd, b'{"m": "{\\\\"end\\\\": \\\\"t01_naive_matches_matmul\\\\"}", "mac": "00"}\\n')
            except OSError:
                pass
        '''), ["t01_naive_matches_matmul"], "failed its signature"),
    "reads_outside_scratch": (WRONG_NAIVE + "open('/proc/self/environ', 'rb').read()\n",
                              ["t01_naive_matches_matmul"], "read /proc/self/environ"),
    "writes_outside_scratch": (WRONG_NAIVE + "open('/tmp/acceleration-lab-was-here', 'w').write('x')\n",
                               ["t01_naive_matches_matmul"], "wrote /tmp/acceleration-lab-was-here"),
    "starts_a_process": (WRONG_NAIVE + "import subprocess\nsubprocess.run(['true'])\n",
                         ["t01_naive_matches_matmul"], "started or signalled a process"),
    "installs_import_hook": (WRONG_NAIVE + (
        "import sys\nclass Finder:\n    def find_spec(self, *args):\n        return None\n"
        "sys.meta_path.insert(0, Finder())\n"), ["t01_naive_matches_matmul"], "sys.meta_path changed"),
    "searches_memory": (WRONG_NAIVE + "import gc\nfound = len(gc.get_objects())\n",
                        ["t01_naive_matches_matmul"], "searched the garbage collector"),
    "patches_while_called": ('''
def matmul_naive(a, b):
    np.testing.assert_allclose = lambda *args, **kwargs: None
    return np.zeros((np.shape(a)[0], np.shape(b)[1]))
''', ["t01_naive_matches_matmul"], "numpy.testing.assert_allclose replaced"),
}


def variant(answer: str) -> nbformat.NotebookNode:
    """Notebook 01's reference with ``answer`` as the matmul_naive cell (the part after ``LATER``
    appended to the matmul_blocked cell, which runs after the given cells)."""
    nb = read_module(MODULE)
    now, _, later = answer.partition(LATER)
    cells = {nbgrader_meta(c).get("grade_id"): c for c in nb.cells}
    cells["matmul_naive"].source = now
    cells["matmul_blocked"].source += "\n" + later
    return nb


@pytest.fixture(scope="module")
def reference():
    outcome = run_checks(read_module(MODULE), CHECKS, SEED, MODULE.parent)
    assert reference_problems(outcome, probe_names(CHECKS)) == []
    return outcome.observations


@pytest.fixture(scope="module")
def outcomes():
    """Every case's outside check, run two at a time."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = pool.map(lambda item: (item[0], run_checks(variant(item[1][0]), CHECKS, SEED, MODULE.parent)),
                        CASES.items())
        return dict(runs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_subversion_scores_zero_and_is_flagged(reference, outcomes, case):
    _, must_fail, flag = CASES[case]
    outcome = outcomes[case]
    verdicts = judge_cells(reference, outcome)
    for grade_id in must_fail:
        assert not verdicts[grade_id].passed, f"{case}: {grade_id} passed the outside check"
    untouched = [g for g in verdicts if g.startswith(("t01_blocked", "t01_footprint", "t01_backend", "t01_matmul"))]
    assert all(verdicts[g].passed for g in untouched), f"{case}: other tasks lost points: {verdicts}"
    found = outcome.flags + [verdict.why for verdict in verdicts.values()]  # the grader flags both
    assert any(flag in line for line in found), f"{case}: no flag with {flag!r}: {found}"


def test_honest_work_keeps_its_points_whatever_else_it_does(reference):
    nb = read_module(MODULE)
    cell = next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == "matmul_naive")
    cell.source += "\nnp.allclose = lambda *args, **kwargs: True\n" + STRIP_ASSERTS
    outcome = run_checks(nb, CHECKS, SEED, MODULE.parent)
    verdicts = judge_cells(reference, outcome)
    assert all(v.passed for v in verdicts.values()), [v for v in verdicts.values() if not v.passed]
    assert any("numpy.allclose replaced" in line for line in outcome.flags)
    assert any("AST transformer" in line for line in outcome.flags)


def test_the_reference_raises_no_flag():
    outcome = run_checks(read_module(MODULE), CHECKS, SEED + 1, MODULE.parent)
    assert outcome.flags == [] and outcome.errors == {}


def test_a_crash_or_hang_inside_a_probe_costs_only_that_cell(reference):
    crash = variant(BLAS_NAIVE.replace("return a @ b", "if a.shape == (1, 1):\n        import os\n"
                                       "        os._exit(3)\n    return a @ b"))
    hang = variant(BLAS_NAIVE.replace("return a @ b", "while a.shape == (1, 1):\n        pass\n    return a @ b"))
    for nb, word in ((crash, "died"), (hang, "longer than")):
        outcome = run_checks(nb, CHECKS, SEED, MODULE.parent, timeouts=Timeouts(probe_s=5))
        verdicts = judge_cells(reference, outcome)
        assert word in verdicts["t01_naive_matches_matmul"].why
        assert verdicts["t01_naive_rejects_bad_shapes"].passed and verdicts["t01_blocked_uses_tiles"].passed


def test_plain_data_only_reaches_the_grader():
    from autograder.verify import Unsupported, compare, decode
    assert isinstance(decode({"dtype": "|O", "shape": [1], "b64": "AAAAAAAAAAA="}), Unsupported)
    assert isinstance(decode({"dtype": "<f8", "shape": [3], "b64": "AAAAAAAAAAA="}), Unsupported)
    expected = {"rule": "close", "value": 1.0, "rtol": 1e-9, "atol": 0.0}
    assert compare("x", expected, {"value": {"unsupported": "Anything"}}) == "x: not plain data (Anything)"
    assert compare("x", expected, {"value": 1.0, "rtol": 1e9}) is None
    assert compare("x", expected, {"value": 2.0, "rtol": 1e9}) is not None, "the student's tolerance must not count"


# -- end to end: nbgrader fooled, the outside check not --------------------------------------
TOY_CHECKS = '''
from probekit import same


def t01_double(ns, rng):
    return {"values": same([ns["double"](int(x)) for x in rng.integers(-1000, 1000, size=8)])}


def t01_triple(ns, rng):
    return {"values": same([ns["triple"](int(x)) for x in rng.integers(-1000, 1000, size=8)])}
'''
RIGHT_TRIPLE = "def triple(x):\n    return 3 * x\n"
TOY_CASES = {  # student -> (double's answer, flag words or None)
    "honest": ("def double(x):\n    return 2 * x\n", None),
    "strips_asserts": ("def double(x):\n    return 0\n" + STRIP_ASSERTS, "AST transformer"),
    "always_equal": ("class Yes:\n    def __eq__(self, other):\n        return True\n"
                     "def double(x):\n    return Yes()\n", "not plain data"),
    "blanks_tests": ("def double(x):\n    return 0\nget_ipython().input_transformers_cleanup.append("
                     "lambda lines: ['pass\\n'] if any('assert' in l for l in lines) else lines)\n",
                     "input transformer"),
    "partial_credit_display": ("def double(x):\n    return 0\n" + textwrap.dedent('''
        def as_full_marks(lines):
            if not any("assert" in line for line in lines):
                return lines
            body = "".join("    " + line for line in lines)
            return ["try:\\n", body + "\\n", "except Exception:\\n", "    pass\\n", "2.0\\n"]
        get_ipython().input_transformers_cleanup.append(as_full_marks)
        '''), "input transformer"),
}


@pytest.fixture(scope="module")
def toy_graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("integrity")
    (root / "modules" / ASSIGNMENT).mkdir(parents=True)
    (root / "modules" / ASSIGNMENT / "01_toy.py").write_text(COURSE)
    checks = root / "checks"
    (checks / ASSIGNMENT).mkdir(parents=True)
    (checks / ASSIGNMENT / "01_toy.py").write_text(TOY_CHECKS)
    build_source(root / "modules", root / "source")
    build_release(root, ASSIGNMENT)
    released = nbformat.read(root / "release" / ASSIGNMENT / "01_toy.ipynb", as_version=4)
    for student, (double, _) in TOY_CASES.items():
        nb = copy.deepcopy(released)
        for cell in nb.cells:
            grade_id = nbgrader_meta(cell).get("grade_id")
            if grade_id in ("double", "triple"):
                cell.source = double if grade_id == "double" else RIGHT_TRIPLE
            elif grade_id == "q01_why":
                cell.source = "A written answer, for a person to grade."
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "01_toy.ipynb")
    rows = grade_all(root, ASSIGNMENT, workers=2, progress=False, checks_root=checks)
    return root, {row.student_id: row for row in rows}


@pytest.mark.parametrize("student", sorted(TOY_CASES))
def test_end_to_end_the_outside_verdict_counts(toy_graded, student):
    root, rows = toy_graded
    row = rows[student]
    honest = student == "honest"
    assert row.autograded_score == (4 if honest else 2), f"{student}: {row}"
    if honest:
        assert row.overrides == [] and row.flags == []
        assert not (root / "reports" / "integrity" / f"{student}.txt").exists()
        return
    assert any("t01_double in-kernel 2/2, outside 0/2" in line for line in row.overrides), row.overrides
    assert "outside check overrode 1 test cell(s)" in row.reason
    flag = TOY_CASES[student][1]
    assert any(flag in line for line in row.flags), row.flags
    report = (root / "reports" / "integrity" / f"{student}.txt").read_text()
    written, errors = generate_feedback(root, ASSIGNMENT, [student], progress=False)
    assert not errors and "that check decides the score" in written[student][0].read_text()
    assert "t01_double in-kernel 2/2, outside 0/2" in report
    with (root / "grades.csv").open(newline="") as handle:
        line = next(r for r in csv.DictReader(handle) if r["student_id"] == student)
    assert (line["autograded_score"], line["outside_overrides"]) == ("2", "1")


def test_end_to_end_summary_lists_every_submission_to_review(toy_graded):
    root, rows = toy_graded
    summary = (root / "reports" / f"{ASSIGNMENT}-integrity.txt").read_text()
    assert f"{len(TOY_CASES) - 1} of {len(TOY_CASES)} submissions to review" in summary
    assert "honest" not in summary
    assert Path(root / ".grading" / f"{ASSIGNMENT}-reference.json").is_file()


def test_hand_grades_reach_grades_csv_without_grading_again(toy_graded):
    """(Runs last: it regrades nobody but rewrites the reports for one student.)"""
    root, rows = toy_graded
    assert rows["honest"].manual_pending == 1 and rows["honest"].total == 4
    with Gradebook(gradebook_url(root)) as gb:
        grade = gb.find_grade("q01_why", "01_toy", ASSIGNMENT, "honest")
        grade.manual_score, grade.needs_manual_grade = 1.0, False
        gb.db.commit()
    log = root / "autograded" / "honest" / f"{ASSIGNMENT}.autograde.log"
    stamp = log.stat().st_mtime_ns
    again = grade_all(root, ASSIGNMENT, ["honest"], progress=False, checks_root=root / "checks")[0]
    assert log.stat().st_mtime_ns == stamp, "the submission was graded again"
    assert (again.total, again.manual_pending) == (5, 0) and "manual grading" not in again.reason
    with (root / "grades.csv").open(newline="") as handle:
        line = next(r for r in csv.DictReader(handle) if r["student_id"] == "honest")
    assert (line["total"], line["manual_pending"]) == ("5", "0")
