"""The kernel leaderboard: times the grader measures itself, results checked inside the timed call,
only students whose structural tests passed ranked, statuses people can read, a board that fits a
1280-px window, never a stale board after a failed run, and grades never touched.

No test asserts how fast anything runs: timings are synthetic, or only their kind is checked.
Benchmarks run in real check processes on small inputs (``small_checks``), without the sandbox
except in one test.
"""
from __future__ import annotations

import base64
import csv
import itertools
import textwrap
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from matplotlib.image import imread
from nbgrader.api import Gradebook

import autograder.report.leaderboard as lb
from autograder.check import runner
from autograder.course import REPO, STAGING
from autograder.run.sandbox import detect_protections

ASSIGNMENT = "acceleration"
SMALL = {"MATMUL_N, MATMUL_BLOCK = 256, 64": "MATMUL_N, MATMUL_BLOCK = 48, 16",
         "GELU_ELEMENTS = 2**22": "GELU_ELEMENTS = 2**13", "GELU_CHUNK = 2**16": "GELU_CHUNK = 2**10",
         "WARMUP, REPEATS = 2, 41": "WARMUP, REPEATS = 2, 12", "SLOW_S = 2.0": "SLOW_S = 0.5"}
SOLUTION = {"nbgrader": {"grade": False, "grade_id": None, "locked": False, "schema_version": 3, "solution": True}}
GIVEN = {"01_loops_and_blocking": "import numpy as np",
         "02_vectorization_and_fusion": "import math\nimport numpy as np\n\nSQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)\n"
                                        "GELU_CUBIC = 0.044715"}
STUB = "    # YOUR CODE HERE\n    raise NotImplementedError()"
SIGNATURES = {"matmul_blocked": "def matmul_blocked(a, b, block_size=64):\n",
              "gelu_chunked": "def gelu_chunked(x, chunk_elems=262144):\n"}
BLOCKED = """\
    c = np.zeros((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    for i in range(0, a.shape[0], block_size):
        for j in range(0, b.shape[1], block_size):
            for p in range(0, a.shape[1], block_size):
                tile = a[i:i + block_size, p:p + block_size] @ b[p:p + block_size, j:j + block_size]
                c[i:i + block_size, j:j + block_size] += tile
    return c"""
CHUNKED = """\
    out = np.empty_like(x)
    for start in range(0, x.size, chunk_elems):
        part = x[start:start + chunk_elems]
        inner = SQRT_2_OVER_PI * (part + GELU_CUBIC * part * part * part)
        out[start:start + chunk_elems] = 0.5 * part * (1.0 + np.tanh(inner))
    return out"""


# -- a small course -------------------------------------------------------------------------------
@pytest.fixture
def small_checks(tmp_path) -> Path:
    """A checks root whose leaderboard.py is the real one with small inputs and few repeats."""
    text = (REPO / "checks" / ASSIGNMENT / "leaderboard.py").read_text()
    for real, small in SMALL.items():
        assert real in text, f"the test's size overrides no longer match the checks file: {real}"
        text = text.replace(real, small)
    folder = tmp_path / "checks" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / "leaderboard.py").write_text(text)
    return tmp_path / "checks"


def notebook(name: str, kernel: str, body: str) -> nbformat.NotebookNode:
    """A notebook of the course: its given cell, then the kernel's answer cell with ``body``."""
    answer = nbformat.v4.new_code_cell(SIGNATURES[kernel] + body, metadata={
        "nbgrader": dict(SOLUTION["nbgrader"], grade_id=kernel)})
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(GIVEN[name]), answer])


def kernel_notebook(kernel: str, body: str) -> nbformat.NotebookNode:
    return notebook(lb.KERNELS[kernel].notebook, kernel, textwrap.indent(textwrap.dedent(body), "    "))


@pytest.fixture(scope="module")
def empty_gradebook(tmp_path_factory) -> bytes:
    """A gradebook with the assignment, its two notebooks and their structural test cells (made
    once: a new gradebook runs alembic, which takes seconds)."""
    path = tmp_path_factory.mktemp("gradebook") / "gradebook.db"
    with Gradebook(f"sqlite:///{path}") as gb:
        gb.add_assignment(ASSIGNMENT)
        for spec in lb.KERNELS.values():
            gb.add_notebook(spec.notebook, ASSIGNMENT)
            for test in spec.tests:
                gb.add_grade_cell(test, spec.notebook, ASSIGNMENT, max_score=2, cell_type="code")
    return path.read_bytes()


@pytest.fixture
def course(tmp_path, empty_gradebook):
    """A course root with source/ (the reference), release/ (stubs) and a gradebook, and a function
    that adds a graded student: ``add(student, {kernel: body or None (the stub)}, passed={kernel: bool})``."""
    root = tmp_path / "course"
    for kernel, spec in lb.KERNELS.items():
        reference = BLOCKED if kernel == "matmul_blocked" else CHUNKED
        for folder, body in (("source", reference), ("release", STUB)):
            path = root / folder / ASSIGNMENT / f"{spec.notebook}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook(spec.notebook, kernel, body), path)
    (root / "gradebook.db").write_bytes(empty_gradebook)

    def add(student: str, bodies: dict[str, str | None], passed: dict[str, bool] | None = None,
            nickname: str | None = None) -> None:
        staged = root / STAGING / "submitted" / student / ASSIGNMENT
        staged.mkdir(parents=True)
        for kernel, body in bodies.items():
            spec = lb.KERNELS[kernel]
            text = STUB if body is None else textwrap.indent(textwrap.dedent(body), "    ")
            nbformat.write(notebook(spec.notebook, kernel, text), staged / f"{spec.notebook}.ipynb")
        if nickname is not None:
            folder = root / "submitted" / student / ASSIGNMENT
            folder.mkdir(parents=True, exist_ok=True)
            (folder / lb.NICKNAME_FILE).write_text(nickname)
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            gb.add_student(student)
            gb.add_submission(ASSIGNMENT, student)
            for kernel, spec in lb.KERNELS.items():
                for test in spec.tests:
                    grade = gb.find_grade(test, spec.notebook, ASSIGNMENT, student)
                    grade.auto_score = 2.0 if (passed or {}).get(kernel, True) else 0.0
            gb.db.commit()

    return root, add


def run_kernel(kernel: str, body: str, checks_root: Path, sandbox: bool = False):
    """One benchmark run of ``body`` as the student's kernel: (outcome, entry), held against a
    calibration that any honest run passes."""
    benchmarks = lb.Benchmarks.load((checks_root / ASSIGNMENT / "leaderboard.py").read_text(), 7)
    outcome = runner.run_checks(kernel_notebook(kernel, body), benchmarks.source, benchmarks.seed, [], None,
                                sandbox=sandbox, only=[kernel], threads=1)
    calibration = lb.Calibration(baseline_s=1.0, between_s=1.0, entry=lb.Entry("r", "r", kernel, "reference"))
    return outcome, lb.entry_from_outcome("s1", "s1", kernel, outcome, benchmarks, calibration)


# -- synthetic timings -------------------------------------------------------------------------
CONSTANTS = lb.Benchmarks.load((REPO / "checks" / ASSIGNMENT / "leaderboard.py").read_text(), 0).constants


def values(kernel: str, value: float = 1.0) -> np.ndarray:
    return np.full(sum(int(CONSTANTS[part.length]) for part in lb.KERNELS[kernel].parts), value)


def sample(kernel: str, value: float = 1.0) -> str:
    return base64.b64encode(values(kernel, value).tobytes()).decode()


def marks(kernel_ms, baseline_ms, between_ms=2.0, kernel="matmul_blocked", other_ms=(0.0, 0.0, 0.0),
          verdicts=None) -> list[runner.ClockMark]:
    """Clock readings of calls with these CPU milliseconds; ``other_ms`` of other threads per
    (kernel, baseline, between) window; results ``verdicts`` (default: the sample ``values``)."""
    result, cpu, main, wall = [], 0.0, 0.0, 0.0
    for call, (k, b) in enumerate(zip(kernel_ms, baseline_ms, strict=True)):
        verdict = verdicts[call] if verdicts else "ok:" + sample(kernel)
        for label, ms, other, data in (("kernel", k, other_ms[0], ""), ("baseline", b, other_ms[1], verdict),
                                       ("between", between_ms, other_ms[2], "")):
            result.append(runner.ClockMark(label, int(wall * 1e6), int(cpu * 1e6), int(main * 1e6), data))
            cpu, main, wall = cpu + ms + other, main + ms, wall + 3 * ms
    return result


def calibration(baseline_ms=1.0, between_ms=2.0, kernel="matmul_blocked"):
    reference = lb.Entry(lb.REFERENCE, lb.REFERENCE, kernel, "reference")
    return lb.Calibration(baseline_ms / 1e3, between_ms / 1e3, reference)


def score(mark_list, kernel="matmul_blocked", calibrated=None, expected=1.0):
    timing = lb.read_timing(kernel, mark_list, CONSTANTS, itertools.repeat(values(kernel, expected)))
    return lb.score_timing("s1", "s1", kernel, timing, CONSTANTS, calibrated or calibration(kernel=kernel))


CALLS = int(CONSTANTS["WARMUP"] + CONSTANTS["REPEATS"])


def steady(kernel_ms, baseline_ms, calls=CALLS, jitter=0.02, seed=0):
    """Times with a small random jitter on top, as a quiet machine gives."""
    rng = np.random.default_rng(seed)
    return (list(kernel_ms * (1 + jitter * rng.random(calls))), list(baseline_ms * (1 + jitter * rng.random(calls))))


def test_the_score_is_best_baseline_over_best_kernel_time_whatever_the_machine_speed():
    entry = score(marks(*steady(2.0, 1.0)))
    assert entry.status == "ranked" and entry.score == pytest.approx(0.5, rel=0.03)
    assert entry.calls == CONSTANTS["REPEATS"] and entry.spread < lb.MAX_SPREAD
    assert entry.machine_rate == pytest.approx(2 * CONSTANTS["MATMUL_N"] ** 3 / 1e-3 / 1e9, rel=0.03)
    slow, fast = steady(4.0, 2.0, seed=1), steady(2.0, 1.0, seed=1)
    assert score(marks(*slow), calibrated=calibration(2.0)).score == pytest.approx(score(marks(*fast)).score)


def test_a_few_disturbed_calls_do_not_move_the_score():
    kernel_ms, baseline_ms = steady(2.0, 1.0)
    for call in range(3, CALLS, 4):  # every fourth call hit by other load, kernel or baseline
        kernel_ms[call] *= 3.0
        baseline_ms[call - 1] *= 2.5
    entry = score(marks(kernel_ms, baseline_ms))
    assert entry.status == "ranked" and entry.score == pytest.approx(0.5, rel=0.03)


def test_halves_that_disagree_make_the_run_inconclusive_and_it_says_why():
    kernel_ms, baseline_ms = steady(2.0, 1.0)
    kernel_ms[2::2] = [3.0] * len(kernel_ms[2::2])  # the even calls never reach the odd calls' best
    entry = score(marks(kernel_ms, baseline_ms))
    assert entry.status == "inconclusive" and entry.spread > lb.MAX_SPREAD
    assert "two halves of the calls gave" in entry.reason and lb.rank([entry])[0].rank is None


def test_a_baseline_slower_than_the_references_is_inconclusive_not_a_higher_score():
    kernel_ms, baseline_ms = steady(2.0, 1.6)  # work slipped into the baseline's time, or a busy machine
    entry = score(marks(kernel_ms, baseline_ms), calibrated=calibration(baseline_ms=1.0))
    assert entry.status == "inconclusive" and "slower than in the reference's run" in entry.reason
    within = score(marks(*steady(2.0, 1.1)), calibrated=calibration(baseline_ms=1.0))
    assert within.status == "ranked"


@pytest.mark.parametrize("other_ms, status", [((5.0, 0.0, 0.0), "ranked"), ((0.0, 0.5, 0.0), "flagged"),
                                              ((0.0, 0.0, 0.5), "flagged")])
def test_other_threads_may_work_inside_the_kernels_time_only(other_ms, status):
    entry = score(marks(*steady(2.0, 1.0), other_ms=other_ms))
    assert entry.status == status
    if status == "flagged":
        assert "other threads used" in entry.reason and "outside the timed kernel calls" in entry.reason


def test_cpu_time_between_calls_beyond_preparing_inputs_is_flagged():
    entry = score(marks(*steady(2.0, 1.0), between_ms=12.0), calibrated=calibration(between_ms=2.0))
    assert entry.status == "flagged" and "between timed calls" in entry.reason
    assert score(marks(*steady(2.0, 1.0), between_ms=2.5), calibrated=calibration(between_ms=2.0)).status == "ranked"


@pytest.mark.parametrize("change", ["swap", "extra", "missing", "no cpu", "backwards"])
def test_timing_requests_that_are_not_the_benchmarks_are_flagged(change):
    found = marks(*steady(2.0, 1.0))
    if change == "swap":
        found[4], found[5] = found[5], found[4]
    elif change == "extra":
        found.insert(7, runner.ClockMark("baseline", found[6].wall_ns, found[6].cpu_ns, found[6].main_ns))
    elif change == "missing":
        del found[-1]
    elif change == "no cpu":
        found[3] = runner.ClockMark("kernel", found[3].wall_ns, None, None)
    else:
        found[3] = runner.ClockMark("kernel", found[3].wall_ns, 0, 0)
    with pytest.raises(lb.Suspicious):
        lb.read_timing("matmul_blocked", found, CONSTANTS, itertools.repeat(values("matmul_blocked")))


@pytest.mark.parametrize("verdict, words", [
    ("type:ndarray subclass", "returned a subclass of numpy.ndarray, not a plain numpy.ndarray"),
    ("type:list", "returned a list, not a numpy.ndarray"),
    ("type:other", "returned an object that is not a numpy.ndarray"),
    ("shape:48x47", "returned an array of shape (48, 47) instead of (256, 256)"),
    ("shape:<b>", "returned an array of shape other instead of (256, 256)"),
    ("dtype:<f8", "returned <f8 values for float32 inputs, which must stay float32"),
    ("raised:ValueError", "matmul_blocked raised ValueError on the benchmark input"),
    ("raised:<script>alert(1)</script>", "matmul_blocked raised an exception on the benchmark input"),
    ("ok:!!!", "its result could not be checked"), ("ok:" + sample("gelu_chunked"), "its result could not be checked"),
    ("nonsense", "its result could not be checked")])
def test_results_that_cannot_be_checked_are_incorrect_in_the_graders_words(verdict, words):
    entry = score(marks(*steady(2.0, 1.0), verdicts=[verdict] * CALLS))
    assert entry.status == "incorrect" and entry.reason == words and entry.score is None


def test_wrong_values_or_a_changed_input_on_any_call_are_incorrect_even_when_fast():
    length = sum(int(CONSTANTS[part.length]) for part in lb.KERNELS["matmul_blocked"].parts)
    right = np.zeros(length)
    wrong_entry, changed_input = right.copy(), right.copy()
    wrong_entry[3] = 1.0
    changed_input[-1] = 1e-6
    for values, words in ((wrong_entry, "wrong values on the benchmark input (call 5)"),
                          (changed_input, "changed its input (call 5)")):
        verdicts = ["ok:" + sample("matmul_blocked", 0.0)] * CALLS
        verdicts[4] = "ok:" + base64.b64encode(values.tobytes()).decode()
        entry = score(marks(*steady(0.01, 1.0), verdicts=verdicts), expected=0.0)
        assert entry.status == "incorrect" and entry.reason == words
        assert lb.rank([entry, lb.Entry("b", "b", "matmul_blocked", "ranked", 0.1)])[0].student == "b"


def test_a_kernel_too_slow_to_repeat_says_how_long_its_first_call_took():
    found = marks([2500.0], [1.0])
    entry = score(found)
    assert entry.status == "too slow" and entry.reason.startswith("its first call took 7.5 s")


def test_ranking_orders_by_score_then_lists_the_rest_by_status():
    entries = [lb.Entry("a", "a", "k", "ranked", 0.2), lb.Entry("b", "b", "k", "not run"),
               lb.Entry("c", "c", "k", "ranked", 0.6), lb.Entry("d", "d", "k", "inconclusive", 0.9),
               lb.Entry("e", "e", "k", "incorrect", 5.0), lb.Entry("f", "f", "k", "not ranked")]
    assert [(e.student, e.rank) for e in lb.rank(entries)] == [
        ("c", 1), ("a", 2), ("d", None), ("e", None), ("f", None), ("b", None)]


# -- the check in a real check process ---------------------------------------------------------------
def test_a_correct_kernel_is_timed_by_the_grader_call_by_call(small_checks):
    outcome, entry = run_kernel("matmul_blocked", "return a @ b", small_checks)
    clock = outcome.steps[runner.check_step_id("matmul_blocked", 0)].clock
    calls = int(CONSTANTS["WARMUP"]) + 12
    assert [m.label for m in clock] == list(lb.LABELS) * calls
    assert all(m.cpu_ns is not None and m.main_ns is not None for m in clock)
    assert entry.status in ("ranked", "inconclusive") and entry.calls == 12 and entry.score > 0, entry


HOSTILE_MATMULS = {
    "wrong values": ("return a @ b + 1e-1", "incorrect", "wrong values on the benchmark input"),
    "a lazy ndarray subclass": ("""
        class Lazy(np.ndarray):
            pass
        return np.empty((a.shape[0], b.shape[1]), dtype=a.dtype).view(Lazy)""",
                                "incorrect", "returned a subclass of numpy.ndarray"),
    "finished by a thread after returning": ("""
        import threading
        c = np.zeros((a.shape[0], b.shape[1]), dtype=a.dtype)
        threading.Timer(0.05, lambda: np.matmul(a, b, out=c)).start()
        return c""", "incorrect", "wrong values on the benchmark input"),
    "patched numpy checks": ("""
        np.allclose = lambda *args, **kwargs: True
        np.testing.assert_allclose = lambda *args, **kwargs: None
        np.add.reduce  # ufuncs cannot be replaced
        return np.zeros((a.shape[0], b.shape[1]), dtype=a.dtype)""", "incorrect", "wrong values"),
    "zeroed inputs": ("""
        a[...] = 0
        b[...] = 0
        return a @ b""", "incorrect", "wrong values"),
    "a changed input": ("""
        c = a @ b
        a[:] = 0
        return c""", "incorrect", "changed its input"),
    "float64": ("return (a @ b).astype(np.float64)", "incorrect", "returned <f8 values for float32 inputs"),
    "a list": ("return (a @ b).tolist()", "incorrect", "returned a list"),
    "not implemented": ("raise NotImplementedError('<b>nothing</b>')", "not ranked",
                        "matmul_blocked is not implemented yet"),
    "a hostile exception": ("""
        class Gotcha(Exception):
            pass
        raise Gotcha('<script>')""", "incorrect", "matmul_blocked raised an exception on the benchmark input"),
    "a replayed earlier result": ("""
        import observe
        client, state = observe._client, globals().setdefault("replay", {})
        if "send" in state:
            return np.zeros((a.shape[0], b.shape[1]), dtype=a.dtype)
        state["send"] = client._send

        def send(message):
            if message.get("label") == "baseline":
                message = dict(message, data=state.setdefault("first", message["data"]))
            state["send"](message)

        client._send = send
        return a @ b""", "incorrect", "wrong values on the benchmark input (call 2)"),
    "forged clock requests": ("""
        import observe
        observe._client.request(kind="clock", label="baseline", data="ok:")
        return a @ b""", "flagged", "the timing requests were not the benchmark's"),
    "a thread working beside the baseline": ("""
        import threading
        def spin():
            x = 0
            while True:
                x += 1
        if not globals().setdefault("spinning", []):
            globals()["spinning"].append(threading.Thread(target=spin, daemon=True))
            globals()["spinning"][0].start()
        return a @ b""", "flagged", "other threads used"),
    "an exit": ("import os; os._exit(0)", "not run", "the benchmark stopped: the process died"),
    "too slow": ("import time; time.sleep(0.6); return a @ b", "too slow", "its first call took"),
}


@pytest.mark.parametrize("case", HOSTILE_MATMULS)
def test_broken_or_gaming_kernels_are_never_ranked_and_say_why(small_checks, case):
    body, status, words = HOSTILE_MATMULS[case]
    _, entry = run_kernel("matmul_blocked", body, small_checks)
    assert entry.status == status and words in entry.reason, entry
    assert entry.rank is None and (entry.score is None or status in ("flagged",))


@pytest.mark.parametrize("body, status, words", [
    ("return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)))", "ranked", ""),
    ("x *= 0.5\nreturn x", "incorrect", "wrong values"),
    ("out = 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)))\nx[:] = out\nreturn out",
     "incorrect", "changed its input"),
    ("return (0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x))))[:-1]", "incorrect",
     "returned an array of shape (8191,) instead of (8192,)")])
def test_gelu_results_are_checked_in_the_timed_call(small_checks, body, status, words):
    _, entry = run_kernel("gelu_chunked", body, small_checks)
    if status == "ranked":
        assert entry.status in ("ranked", "inconclusive") and entry.score > 0, entry
    else:
        assert entry.status == status and words in entry.reason, entry


@pytest.mark.skipif(detect_protections().missing() != [], reason="; ".join(detect_protections().missing()))
def test_in_the_full_sandbox_the_grader_reads_the_sandboxed_processs_cpu_time(small_checks):
    outcome, entry = run_kernel("matmul_blocked", BLOCKED, small_checks, sandbox=True)
    assert entry.status in ("ranked", "inconclusive") and entry.score > 0, entry
    clock = outcome.steps[runner.check_step_id("matmul_blocked", 0)].clock
    assert all(later.cpu_ns >= earlier.cpu_ns for earlier, later in zip(clock, clock[1:]))
    _, broken = run_kernel("matmul_blocked", "return np.empty((a.shape[0], b.shape[1]), a.dtype)", small_checks,
                           sandbox=True)
    assert broken.status == "incorrect"


# -- the board -----------------------------------------------------------------------------------
def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_class_board_ranks_only_correct_work_and_never_touches_grades(course, small_checks, monkeypatch):
    monkeypatch.setattr(lb, "CALIBRATION_RUNS", 1)
    monkeypatch.setattr(lb, "ATTEMPTS", 1)
    root, add = course
    add("alice", {"matmul_blocked": BLOCKED, "gelu_chunked": None}, nickname="Fast Fourier\n")
    add("bob", {"matmul_blocked": "return np.zeros((a.shape[0], b.shape[1]), a.dtype)", "gelu_chunked": None})
    add("carol", {"matmul_blocked": BLOCKED, "gelu_chunked": CHUNKED}, passed={"matmul_blocked": False,
                                                                           "gelu_chunked": False})
    add("dave", {"gelu_chunked": CHUNKED}, passed={"gelu_chunked": False})
    (root / "grades.csv").write_text("student_id,total\nalice,1\n")
    before = {name: (root / name).read_bytes() for name in ("grades.csv", "gradebook.db")}
    page, boards = lb.build_leaderboard(root, ASSIGNMENT, checks_root=small_checks, sandbox=False)
    assert {name: (root / name).read_bytes() for name in before} == before
    matmul = {e.student: e for e in boards["matmul_blocked"]}
    assert matmul["alice"].status in ("ranked", "inconclusive") and matmul["alice"].shown_as == "Fast Fourier"
    assert matmul["bob"].status == "incorrect" and matmul["bob"].rank is None
    assert matmul["carol"].label == ("not ranked: its tests t01_blocked_matches_matmul scored 0 of 2 points and "
                                     "t01_blocked_uses_tiles scored 0 of 2 points")
    assert matmul["dave"].label == "not ranked: 01_loops_and_blocking.ipynb was not submitted or could not be read"
    gelu = {e.student: e for e in boards["gelu_chunked"]}
    assert gelu["alice"].label == "not ranked: gelu_chunked is not implemented yet"
    assert gelu["dave"].label == "not ranked: its tests t02_gelu_values_dtype scored 0 of 2 points and " \
                                 "t02_gelu_chunked_memory scored 0 of 2 points"
    text = page.read_text()
    assert "Fast Fourier" in text and ">alice<" not in text and "extra credit" in text
    assert "not ranked: gelu_chunked is not implemented yet" in text and "NotImplementedError: <" not in text
    rows = list(csv.DictReader((root / "reports" / "leaderboard.csv").open()))
    assert {"kernel", "rank", "student_id", "shown_as", "status", "score_percent", "spread_percent",
            "kernel_seconds", "detail", "reason"} <= set(rows[0])
    assert {row["student_id"] for row in rows} == {"alice", "bob", "carol", "dave", lb.REFERENCE}
    assert not [p for p in (root / "reports").iterdir() if p.name.startswith(".")], "temporary files left"


def test_one_students_trouble_never_stops_the_board(course, small_checks, monkeypatch):
    root, add = course
    add("alice", {"matmul_blocked": BLOCKED, "gelu_chunked": None})
    add("zed", {"matmul_blocked": BLOCKED, "gelu_chunked": None})
    reference = lb.Calibration(1e-3, 1e-3, lb.Entry(lb.REFERENCE, lb.REFERENCE, "matmul_blocked", "reference", 0.3))
    monkeypatch.setattr(lb, "calibrate", lambda *args: reference)
    monkeypatch.setattr(lb, "run_benchmark", lambda *args: runner.Outcome())

    def time_kernel(student, *args):
        if student == "alice":
            raise KeyError("the grader's own bug")
        return lb.Entry(student, student, "matmul_blocked", "ranked", 0.4)

    monkeypatch.setattr(lb, "time_kernel", time_kernel)
    _, boards = lb.build_leaderboard(root, ASSIGNMENT, checks_root=small_checks, sandbox=False)
    found = {e.student: e for e in boards["matmul_blocked"]}
    assert found["zed"].rank == 1
    assert found["alice"].status == "error" and "failed on this entry (KeyError)" in found["alice"].reason
    assert "the grader's own bug" in found["alice"].detail


def test_a_failed_run_replaces_the_old_board_with_a_page_saying_so(course, small_checks):
    root, add = course
    add("alice", {"matmul_blocked": BLOCKED, "gelu_chunked": None})
    reports = root / "reports"
    reports.mkdir()
    for name in ("leaderboard.html", "leaderboard.png", "leaderboard.csv"):
        (reports / name).write_text("the board of last week")
    (root / "source" / ASSIGNMENT / "01_loops_and_blocking.ipynb").unlink()  # no reference: no calibration
    with pytest.raises(lb.LeaderboardError, match="reference solution calibrates the board"):
        lb.build_leaderboard(root, ASSIGNMENT, checks_root=small_checks, sandbox=False)
    assert sorted(p.name for p in reports.iterdir()) == ["leaderboard.html"]
    text = (reports / "leaderboard.html").read_text()
    assert "The last leaderboard run failed" in text and time.strftime("%Y-%m-%d") in text
    assert "reference solution calibrates the board" in text and "last week" not in text
    assert lb.main(["--root", str(root)]) == 1


def test_the_gradebook_gate_reads_without_writing(course):
    root, add = course
    add("alice", {}, passed={"matmul_blocked": True, "gelu_chunked": False})
    before = (root / "gradebook.db").read_bytes()
    with lb.readonly_gradebook(root) as gradebook:
        failures = lb.structural_failures(gradebook, ASSIGNMENT, "alice")
        missing = lb.structural_failures(gradebook, ASSIGNMENT, "nobody")
        with pytest.raises(Exception, match="readonly"):
            gradebook.add_student("mallory")
    assert failures == {"matmul_blocked": [], "gelu_chunked": ["t02_gelu_values_dtype scored 0 of 2 points",
                                                               "t02_gelu_chunked_memory scored 0 of 2 points"]}
    released = nbformat.read(root / "release" / ASSIGNMENT / "01_loops_and_blocking.ipynb", as_version=4)
    assert lb.gate("matmul_blocked", missing["matmul_blocked"], released, released) == \
        "matmul_blocked is not implemented yet"
    solved = kernel_notebook("matmul_blocked", "return a @ b")
    assert lb.gate("matmul_blocked", missing["matmul_blocked"], solved, released) == \
        "01_loops_and_blocking has not been graded yet (run make autograde)"
    assert lb.gate("matmul_blocked", [], solved, released) is None
    assert (root / "gradebook.db").read_bytes() == before


@pytest.mark.parametrize("text, shown", [("Fast Fourier\n", "Fast Fourier"), ("<script>x</script>", "s1"),
                                         ("", "s1"), ("a" * 40, "s1"), ("s2", "s1"), ("Reference Solution", "s1")])
def test_nicknames_are_opt_in_checked_and_cannot_pass_for_someone_else(tmp_path, text, shown):
    folder = tmp_path / "submitted" / "s1" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / lb.NICKNAME_FILE).write_text(text)
    assert lb.shown_names(tmp_path, ASSIGNMENT, ["s1", "s2"]) == {"s1": shown, "s2": "s2"}


def test_two_students_with_the_same_nickname_are_shown_by_id(tmp_path):
    for student in ("s1", "s2"):
        folder = tmp_path / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / lb.NICKNAME_FILE).write_text("Speedy")
    assert lb.shown_names(tmp_path, ASSIGNMENT, ["s1", "s2"]) == {"s1": "s1", "s2": "s2"}


def test_the_page_and_chart_fit_a_1280_px_window_and_escape_names(tmp_path):
    many = [lb.Entry(f"s{i}", f"student <{i}> with a long name", "matmul_blocked", "ranked", 0.01 * i, 0.05, 1e-3,
                     50.0) for i in range(40)]
    boards = {"matmul_blocked": lb.rank(many),
              "gelu_chunked": [lb.Entry("s<1>", "s<1>", "gelu_chunked", "not ranked",
                                        reason="gelu_chunked is not implemented yet")]}
    page = lb.write_leaderboard(boards, tmp_path, ASSIGNMENT)
    text = page.read_text()
    assert "student &lt;3&gt; with a long name" in text and "<td>s<1>" not in text
    assert "not ranked: gelu_chunked is not implemented yet" in text
    assert "img{max-width:100%;height:auto}" in text and "max-width:1100px" in text
    height, width, _ = imread(tmp_path / "leaderboard.png").shape
    assert width <= 1100 and height > width / 2, "the chart must fit the page's column, growing downwards"
    assert "39.0 %" in text and "extra credit" in text
    rows = list(csv.reader((tmp_path / "leaderboard.csv").open()))
    assert rows[0][:9] == ["kernel", "rank", "student_id", "shown_as", "status", "score_percent", "spread_percent",
                           "kernel_seconds", "detail"]
    assert ["matmul_blocked", "1", "s39"] == rows[1][:3]


def test_the_grader_makes_the_same_inputs_as_the_check_process_and_its_own_expected_values():
    benchmarks = lb.Benchmarks.load((REPO / "checks" / ASSIGNMENT / "leaderboard.py").read_text(), 12345)
    assert CONSTANTS["MATMUL_N"] == 256 and CONSTANTS["GELU_ELEMENTS"] == 2**22
    assert CONSTANTS["WARMUP"] >= 1 and CONSTANTS["REPEATS"] >= 2 * lb.MIN_CALLS
    functions = benchmarks.namespace
    assert functions["_request"] is None, "the grader's copy of the checks has no channel"
    rng = np.random.default_rng(runner.derive_seed(12345, "matmul_blocked", 0))
    for call, (generator, expected) in enumerate(zip(functions["call_generators"](rng),
                                                     benchmarks.expected("matmul_blocked"))):
        (a, b), where = functions["matmul_inputs"](generator)
        assert a.dtype == np.float32 and a.shape == (256, 256)
        np.testing.assert_allclose(functions["matmul_sample"](a @ b, (a, b), where), expected, rtol=1e-4, atol=1e-2)
        assert lb.compare_values("matmul_blocked", functions["matmul_sample"](a @ b, (a, b), where), expected,
                                 CONSTANTS) is None
        assert lb.compare_values("matmul_blocked", functions["matmul_sample"](a @ b.T, (a, b), where), expected,
                                 CONSTANTS) == "wrong values on the benchmark input"
        if call == 2:
            break
    for spec in lb.KERNELS.values():
        assert all(part.length in CONSTANTS for part in spec.parts)
        assert all(f"{spec.functions}_{what}" in functions for what in ("inputs", "sample", "expected"))
