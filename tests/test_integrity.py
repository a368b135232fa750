"""The outside check scores honest work and nothing else, and fails closed.

Notebook 01's reference with one task answered wrongly (or rightly) plus a trick that fools the
in-kernel tests or the check process itself: each trick must leave the affected test cell
failing outside (so scoring 0, whatever the kernel said), the other cells untouched, and, where
the trick is visible, a flag. Evidence written by student code (counts in the given
instrumentation) must not count: the grader records what it served. Anything the check process
sends out of protocol ends the check, and every unfinished cell fails.
"""
from __future__ import annotations

import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from autograder.check.answer_key import notebook_key, autograded_cells
from autograder.check.judge import compare, decode, judge_cells, Unsupported
from autograder.check.runner import check_names, run_checks
from autograder.course import REPO, nbgrader_meta
from autograder.build.source import read_module
from autograder.run.sandbox import Limits

pytestmark = pytest.mark.xdist_group("integrity")
ASSIGNMENT = "acceleration"
NOTEBOOK = "01_loops_and_blocking"
MODULE = REPO / "modules" / ASSIGNMENT / f"{NOTEBOOK}.py"
CHECKS_PATH = REPO / "checks" / ASSIGNMENT / f"{NOTEBOOK}.py"
CHECKS = CHECKS_PATH.read_text()
HELPERS = [MODULE.parent / "benchmarking.py", MODULE.parent / "plotting.py"]
SEED = 20261121
LIMITS = Limits(cell_timeout_s=8)

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
FRAME = "import os, struct\ndef frame(body):\n    return struct.pack('>I', len(body)) + body\n"

# name -> (code put in place of the matmul_naive answer, cells that must fail outside, flag words or None)
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
''', ["t01_naive_matches_matmul", "t01_naive_reads_every_element"], None),
    # the evidence of an algorithm is the grader's record, not the given instrumentation's log
    "writes_the_expected_counts": (BLAS_NAIVE.replace("    return a @ b", textwrap.indent(textwrap.dedent('''
        for x, times in ((a, b.shape[1]), (b, a.shape[0])):
            log = getattr(x, "log", None)
            if log is not None:
                log.element_reads[...] = times
                log.matmul_calls.clear()
        return np.asarray(a) @ np.asarray(b)'''), "    ")), ["t01_naive_reads_every_element"], None),
    "given_recorder_disabled": (BLAS_NAIVE + LATER + "_record_matmul = lambda *args: None\n",
                                ["t01_naive_reads_every_element"], "given name '_record_matmul' rebound"),
    "converts_the_inputs": (BLAS_NAIVE.replace("np.asanyarray(a), np.asanyarray(b)", "np.asarray(a), np.asarray(b)"),
                            ["t01_naive_reads_every_element"], None),
    "reads_outside_its_folder": (WRONG_NAIVE + "open('/proc/self/environ', 'rb').read()\n",
                                 ["t01_naive_matches_matmul"], "read /proc/self/environ"),
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

# Tricks against the check process itself: everything after them fails, and the check says why.
FORGERIES = {
    "a forged end frame": FRAME + (
        "for fd in range(1, 12):\n    try:\n        os.write(fd, frame(b'{\"kind\": \"end\", \"step\": "
        "\"check t01_naive_matches_matmul #0\", \"error\": null, \"observations\": {}}'))\n"
        "    except OSError:\n        pass\n"),
    "one absurdly nested frame": FRAME + (
        "body = b'[' * 200000 + b']' * 200000\nfor fd in range(1, 12):\n    try:\n"
        "        os.write(fd, frame(body))\n    except OSError:\n        pass\n"),
    "an oversized frame": FRAME + (
        "for fd in range(1, 12):\n    try:\n        os.write(fd, struct.pack('>I', 2**31 - 1) + b'{')\n"
        "    except OSError:\n        pass\n"),
    "bytes that are no frame": "import os\nfor fd in range(1, 12):\n    try:\n        os.write(fd, b'\\xff' * 64)\n"
                               "    except OSError:\n        pass\n",
}


def variant(answer: str) -> object:
    """Notebook 01's reference with ``answer`` as the matmul_naive cell (the part after ``LATER``
    appended to the matmul_blocked cell, which runs after the given cells)."""
    nb = read_module(MODULE)
    now, _, later = answer.partition(LATER)
    cells = {nbgrader_meta(c).get("grade_id"): c for c in nb.cells}
    cells["matmul_naive"].source = now
    cells["matmul_blocked"].source += "\n" + later
    return nb


def check(nb, limits: Limits = LIMITS):
    return run_checks(nb, CHECKS, SEED, HELPERS, None, limits=limits)


@pytest.fixture(scope="module")
def key():
    return notebook_key(NOTEBOOK, read_module(MODULE), CHECKS_PATH, SEED, HELPERS, limits=LIMITS)["cells"]


@pytest.fixture(scope="module")
def outcomes():
    """Every case's outside check, run two at a time."""
    cases = {**{name: answer for name, (answer, _, _) in CASES.items()},
             **{f"forgery: {name}": BLAS_NAIVE + LATER + code for name, code in FORGERIES.items()}}
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(lambda item: (item[0], check(variant(item[1]))), cases.items()))


GRADE_IDS = autograded_cells(read_module(MODULE))
LATER_TASKS = [g for g in GRADE_IDS if g.startswith(("t01_blocked", "t01_footprint", "t01_backend", "t01_matmul"))]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_subversion_fails_outside_and_is_flagged(key, outcomes, case):
    _, must_fail, flag = CASES[case]
    outcome = outcomes[case]
    verdicts = judge_cells(key, outcome, GRADE_IDS)
    for grade_id in must_fail:
        assert not verdicts[grade_id].passed, f"{case}: {grade_id} passed the outside check"
    assert all(verdicts[g].passed for g in LATER_TASKS), f"{case}: other tasks lost points: {verdicts}"
    assert outcome.failure is None, outcome.failure
    if flag:
        assert any(flag in line for line in outcome.flags), f"{case}: no flag with {flag!r}: {outcome.flags}"


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_a_forged_or_broken_frame_ends_the_check_and_fails_what_was_left(key, outcomes, case):
    outcome = outcomes[f"forgery: {case}"]
    assert outcome.failure and "protocol" in outcome.failure, outcome.failure
    verdicts = judge_cells(key, outcome, GRADE_IDS)
    assert not any(verdict.passed for verdict in verdicts.values()), "no cell may pass once the protocol broke"
    assert all("not run" in " ".join(v.cases) for v in verdicts.values())


def test_honest_work_keeps_its_points_whatever_else_it_does(key):
    nb = read_module(MODULE)
    cell = next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == "matmul_naive")
    cell.source += "\nnp.allclose = lambda *args, **kwargs: True\n" + STRIP_ASSERTS
    outcome = check(nb)
    verdicts = judge_cells(key, outcome, GRADE_IDS)
    assert all(v.passed for v in verdicts.values()), [v for v in verdicts.values() if not v.passed]
    assert any("numpy.allclose replaced" in line for line in outcome.flags)
    assert any("AST transformer" in line for line in outcome.flags)


def test_the_reference_raises_no_flag_under_another_seed():
    outcome = run_checks(read_module(MODULE), CHECKS, SEED + 1, HELPERS, None, limits=LIMITS)
    assert outcome.flags == [] and outcome.failure is None
    assert all(result.ok for result in outcome.steps.values() if not result.error), outcome.steps


def test_a_crash_or_hang_inside_a_check_costs_only_that_cell(key):
    crash = variant(BLAS_NAIVE.replace("return a @ b", "if a.shape == (1, 1):\n        import os\n"
                                       "        os._exit(3)\n    return a @ b"))
    hang = variant(BLAS_NAIVE.replace("return a @ b", "while a.shape == (1, 1):\n        pass\n    return a @ b"))
    for nb, word in ((crash, "died"), (hang, "longer than")):
        outcome = check(nb, Limits(cell_timeout_s=4))
        verdicts = judge_cells(key, outcome, GRADE_IDS)
        assert word in " ".join(verdicts["t01_naive_matches_matmul"].cases), verdicts["t01_naive_matches_matmul"]
        assert verdicts["t01_naive_rejects_bad_shapes"].passed and verdicts["t01_blocked_uses_tiles"].passed
        assert outcome.restarts >= 1 and outcome.failure is None


def test_a_check_that_cannot_start_fails_every_cell_after_one_retry(key, monkeypatch):
    import autograder.check.runner as runner
    starts = []

    def failing_start(self, request, deadline, cold=False):
        starts.append(cold)  # the grader's own failure: a process that exits before reading anything
        return runner._ColdProcess(["false"], self.env, self.area, request, deadline)

    monkeypatch.setattr(runner.CheckHost, "start", failing_start)
    outcome = check(read_module(MODULE))
    assert starts == [False, True], "a check that cannot start is tried once more, in a fresh process"
    assert outcome.failure and "could not start" in outcome.failure
    verdicts = judge_cells(key, outcome, GRADE_IDS)
    assert not any(v.passed for v in verdicts.values())


def test_only_plain_data_reaches_the_grader_and_the_reference_sets_the_rule():
    assert isinstance(decode({"dtype": "|O", "shape": [1], "b64": "AAAAAAAAAAA="}), Unsupported)
    assert isinstance(decode({"dtype": "<f8", "shape": [3], "b64": "AAAAAAAAAAA="}), Unsupported)
    expected = {"rule": "close", "value": 1.0, "rtol": 1e-9, "atol": 0.0}
    assert compare(expected, decode({"unsupported": "Anything"})).startswith("returned an object that is not plain")
    assert compare(expected, 1.0) is None
    assert compare(expected, 2.0) == "values outside the tolerance", "only the reference's tolerance counts"
    assert compare({"rule": "same", "value": None}, "ValueError") == "raised an exception where none was expected"


def test_every_test_cell_of_every_notebook_has_a_check():
    for module in sorted((REPO / "modules" / ASSIGNMENT).glob("0*.py")):
        checks = REPO / "checks" / ASSIGNMENT / module.name
        assert set(autograded_cells(read_module(module))) == set(check_names(checks.read_text())), module.name


def test_a_warm_host_scores_like_a_cold_one_and_survives_its_zygote_being_killed(key):
    from autograder.check.runner import CheckHost
    killer = variant(BLAS_NAIVE + LATER + "import os, signal\nif 'IPKernelApp' not in get_ipython().config:\n"
                     "    os.kill(os.getppid(), signal.SIGKILL)\n")
    with CheckHost(HELPERS, limits=LIMITS) as host:
        first = run_checks(killer, CHECKS, SEED, [], None, host=host)
        second = run_checks(read_module(MODULE), CHECKS, SEED, [], None, host=host)
    cold = check(read_module(MODULE))
    assert first.failure is None, first.failure
    assert all(verdict.passed for verdict in judge_cells(key, second, GRADE_IDS).values())
    assert [v.passed for v in judge_cells(key, cold, GRADE_IDS).values()] == \
        [v.passed for v in judge_cells(key, second, GRADE_IDS).values()]
