"""The kernel leaderboard: each graded student's ``matmul_blocked`` and ``gelu_chunked``, timed by the
grader in the grading sandbox against the machine's own ``np.matmul`` and memory copy.

Who is timed: every student with a staged submission (``.grading/submitted/``) whose structural tests
of that kernel scored full marks in the gradebook (read-only); the others are listed as not ranked,
saying which test failed. How: ``checks/<assignment>/leaderboard.py`` runs in the student's check
process (one BLAS thread) and calls the kernel and the baseline alternately on new inputs from this
run's secret seed. Before and after every call the process asks the grader to read the clock; the
grader records its own clock and the process's CPU time (``autograder/check/runner.py``), so student
code cannot write a time. With the request that ends a kernel's call come the result's values at
positions student code never sees; the grader makes the same inputs from the seed with the checks
file's own functions, computes what the values must be, and compares them here.

A score is best baseline CPU time / best kernel CPU time over the scored calls (CPU time of all the
process's threads: load from other processes does not count, threads do not help). A run is
``inconclusive`` when the two halves of its calls disagree by more than ``MAX_SPREAD`` or its
baseline ran more than ``BUSY_LIMIT`` slower than the reference solution's best (a busy machine, or
work slipped into the baseline's time); it is tried up to ``ATTEMPTS`` times. A wrong result is
never ranked; CPU time of other threads outside the kernel's calls, or much more CPU time between
calls than preparing inputs takes, is ``flagged``. Writes ``reports/leaderboard.html``, ``.png``
and ``.csv`` atomically; a run that fails as a whole replaces them with a page saying so. Grades and
the gradebook are never written.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import builtins
import csv
import datetime
import html
import os
import platform
import re
import secrets
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
from nbgrader.api import Gradebook, MissingEntry  # noqa: E402

from autograder.check import observe, runner  # noqa: E402
from autograder.check.answer_key import helper_files  # noqa: E402
from autograder.check.judge import BUILTIN_ERRORS  # noqa: E402
from autograder.check.runner import CHECKS_ROOT, Outcome, check_step_id, derive_seed, run_checks  # noqa: E402
from autograder.course import (STAGING, course_arguments, nbgrader_meta, printable, sandbox_limits,  # noqa: E402
                               scratch_root)


class Part(NamedTuple):
    """A stretch of the values a check sends per call: its length (a constant of the checks file)
    and how it is compared; exact parts are the kernel's inputs, which it must leave alone."""

    length: str
    rtol: float
    atol: float


class Kernel(NamedTuple):
    notebook: str
    baseline: str
    unit: str                 # of the machine's rate
    tests: tuple[str, ...]    # structural test cells that must have full marks
    work: Callable[[dict], float]   # FLOP or bytes moved per call, from the checks file's constants
    shape: Callable[[dict], tuple]  # the result's shape
    parts: tuple[Part, ...]   # sampled entries and a projection of every entry, then the inputs
    functions: str            # prefix of the checks file's <prefix>_inputs, _sample and _expected


KERNELS = {
    "matmul_blocked": Kernel("01_loops_and_blocking", "np.matmul", "GFLOP/s",
                             ("t01_blocked_matches_matmul", "t01_blocked_uses_tiles"),
                             lambda c: 2 * c["MATMUL_N"] ** 3, lambda c: (c["MATMUL_N"], c["MATMUL_N"]),
                             (Part("MATMUL_SAMPLES", 1e-3, 1e-2), Part("MATMUL_N", 1e-3, 1e-1),
                              Part("MATMUL_SAMPLES", 0, 0), Part("MATMUL_SAMPLES", 0, 0)), "matmul"),
    "gelu_chunked": Kernel("02_vectorization_and_fusion", "memory copy", "GB/s",
                           ("t02_gelu_values_dtype", "t02_gelu_chunked_memory"),
                           lambda c: 2 * 4 * c["GELU_ELEMENTS"], lambda c: (c["GELU_ELEMENTS"],),
                           (Part("GELU_SAMPLES", 1e-4, 1e-4), Part("GELU_SAMPLES", 0, 0)), "gelu"),
}
LABELS = ("kernel", "baseline", "between")  # the clock requests of one call, in order
MAX_SPREAD = 0.15          # halves of the calls may disagree this much (measured: see the page text)
BUSY_LIMIT = 0.25          # best baseline time at most this much above the reference run's best
ATTEMPTS = 3               # runs per student and kernel until one is conclusive
CALIBRATION_RUNS = 2       # runs of the reference solution before the students (one more after them)
MIN_CALLS = 10             # scored calls needed for a rank
OTHER_THREADS_S = 0.002    # other threads' CPU time allowed outside the kernel's calls, plus 1 %
BETWEEN_FACTOR = 2.0       # CPU time between calls at most this times the reference run's, plus 2 ms
REFERENCE = "reference solution"
# The sandbox maps each allocation over 128 KiB on its own so that the memory checks see peak RSS
# exactly; timed that way, every call of a kernel that allocates pays fresh page faults, which no
# ordinary process does: glibc's own limits (its largest dynamic ones) for the timed runs.
TIMING_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20)}
NICKNAME_FILE = "nickname.txt"
NICKNAME = re.compile(r"^[A-Za-z0-9 _.\-]{1,24}$")
STATUSES = ("ranked", "reference", "inconclusive", "too slow", "flagged", "incorrect", "not ranked", "not run",
            "error")


class LeaderboardError(RuntimeError):
    """The run as a whole failed (the page says so); one student's trouble never raises this."""


@dataclass
class Entry:
    """One student's result for one kernel."""

    student: str
    shown_as: str
    kernel: str
    status: str                        # one of STATUSES
    score: float | None = None         # best baseline time / best kernel time, e.g. 0.4 = 40 % of BLAS speed
    spread: float | None = None        # how far the two halves of the calls disagree, over the score
    kernel_s: float | None = None      # best CPU seconds per kernel call
    machine_rate: float | None = None  # the baseline's rate in this run (GFLOP/s or GB/s)
    detail: str = ""                   # for the instructor (CSV): flags, error texts
    rank: int | None = None
    reason: str = ""                   # a sentence after the status, shown to everyone
    baseline_s: float | None = None    # best CPU seconds per baseline call
    kernel_wall_s: float | None = None  # median wall seconds per kernel call (for the eye only)
    calls: int = 0                     # scored calls
    attempts: int = 0

    @property
    def label(self) -> str:
        return self.status + (f": {self.reason}" if self.reason else "")


@dataclass
class Timing:
    """What the grader measured in one run: CPU and wall seconds per window, per call."""

    kernel_s: np.ndarray
    baseline_s: np.ndarray
    between_s: np.ndarray             # one fewer: the last call has none after it
    kernel_wall_s: np.ndarray
    other_threads_s: float            # CPU time of threads other than the check's, outside the kernel's calls
    wrong: str | None = None          # why a result was wrong (the grader's words), else None
    first_error: str | None = None    # the exception class the first call raised, if it did


@dataclass
class Calibration:
    """The reference solution's run of one kernel: what a student's run is held against."""

    baseline_s: float                 # best baseline CPU seconds
    between_s: float                  # median CPU seconds between calls
    entry: Entry


@dataclass
class Board:
    entries: dict[str, list[Entry]] = field(default_factory=dict)
    references: dict[str, list[Entry]] = field(default_factory=dict)  # start and end runs
    started: str = ""
    finished: str = ""
    load: tuple[float, float] = (0.0, 0.0)                             # 1-min load average at start, end


# -- the benchmarks ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Benchmarks:
    """The leaderboard's checks file, loaded here as the check process loads it (``observe`` is
    the grader's copy, without a channel), and this run's secret seed."""

    source: str
    namespace: dict
    seed: int

    @classmethod
    def load(cls, source: str, seed: int) -> "Benchmarks":
        def load_observe(name, *args, **kwargs):
            return observe if name == "observe" else builtins.__import__(name, *args, **kwargs)

        namespace = {"__name__": "leaderboard_checks", "__builtins__": dict(vars(builtins), __import__=load_observe)}
        exec(compile(source, "<leaderboard checks>", "exec"), namespace)  # the instructor's file, run as in the process
        return cls(source, namespace, seed)

    @property
    def constants(self) -> dict[str, float]:
        """Its UPPER_CASE number constants: sizes, samples, repeats."""
        return {name: value for name, value in self.namespace.items()
                if name.isupper() and type(value) in (int, float)}

    def expected(self, kernel: str) -> Iterator[np.ndarray]:
        """Per call of ``kernel``'s benchmark, in order, the values its sample must have: from the
        same inputs as the check process draws, made here from the run's seed."""
        prefix = KERNELS[kernel].functions
        make, expected = self.namespace[f"{prefix}_inputs"], self.namespace[f"{prefix}_expected"]
        for generator in self.namespace["call_generators"](np.random.default_rng(derive_seed(self.seed, kernel, 0))):
            yield expected(*make(generator))


# -- names --------------------------------------------------------------------------------
def nickname(root: Path, assignment: str, student: str) -> str | None:
    """The valid first line of ``nickname.txt`` in the student's submission, else None."""
    path = root / "submitted" / student / assignment / NICKNAME_FILE
    try:
        lines = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    except OSError:
        return None
    name = lines[0].strip() if lines else ""
    return name if NICKNAME.match(name) else None


def shown_names(root: Path, assignment: str, students: list[str]) -> dict[str, str]:
    """Names on the board: a nickname unless another student chose it too or it is another
    student's id or the reference's label (no one can pass for someone else); else the id."""
    chosen = {student: nickname(root, assignment, student) for student in students}
    counts: dict[str, int] = {}
    for name in chosen.values():
        if name:
            counts[name.casefold()] = counts.get(name.casefold(), 0) + 1
    taken = {s.casefold() for s in students} | {REFERENCE.casefold()}
    names = {}
    for student, name in chosen.items():
        unique = name and counts[name.casefold()] == 1 and (name.casefold() not in taken
                                                               or name.casefold() == student.casefold())
        names[student] = name if unique else student
    return names


# -- who may be ranked ------------------------------------------------------------------------
def readonly_gradebook(root: Path) -> Gradebook:
    """nbgrader's gradebook opened read-only: reading it can never change it."""
    path = root / "gradebook.db"
    if not path.is_file():
        raise LeaderboardError(f"{path} not found: run 'make release' and 'make autograde' first")
    return Gradebook(f"sqlite:///file:{path}?mode=ro&uri=true")


NOT_GRADED = "not graded"


def structural_failures(gradebook: Gradebook, assignment: str, student: str) -> dict[str, list[str]]:
    """Per kernel, the structural tests without full marks in the gradebook (empty: all passed),
    each as 'name scored s of m points', or ``NOT_GRADED`` if the notebook has no grades."""
    failures = {}
    for kernel, spec in KERNELS.items():
        failed = []
        for test in spec.tests:
            try:
                grade = gradebook.find_grade(test, spec.notebook, assignment, student)
            except MissingEntry:
                failed = [NOT_GRADED]
                break
            score, top = float(grade.score or 0.0), float(grade.max_score or 0.0)
            if top <= 0 or score < top:
                failed.append(f"{test} scored {score:g} of {top:g} points")
        failures[kernel] = failed
    return failures


def not_implemented(submitted: nbformat.NotebookNode, released: nbformat.NotebookNode, kernel: str) -> bool:
    """Whether the kernel's answer cell is still the release's (the stub that raises NotImplementedError)."""
    def answer(nb):
        return next((c.source for c in nb.cells if nbgrader_meta(c).get("grade_id") == kernel), None)

    return answer(submitted) is not None and answer(submitted) == answer(released)


def gate(kernel: str, failed: list[str], submitted: nbformat.NotebookNode | None,
         released: nbformat.NotebookNode | None) -> str | None:
    """Why a student's kernel is not timed (a sentence), or None."""
    spec = KERNELS[kernel]
    if submitted is None:
        return f"{spec.notebook}.ipynb was not submitted or could not be read"
    if released is not None and not_implemented(submitted, released, kernel):
        return f"{kernel} is not implemented yet"
    if failed == [NOT_GRADED]:
        return f"{spec.notebook} has not been graded yet (run make autograde)"
    if failed:
        return f"{'its test' if len(failed) == 1 else 'its tests'} {' and '.join(failed)}"
    return None


# -- one run -----------------------------------------------------------------------------------
class Suspicious(Exception):
    """The clock requests cannot be the benchmark's own (out of order, missing readings)."""


def _decode(data: str) -> np.ndarray | None:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    return np.frombuffer(raw, dtype=np.float64) if len(raw) % 8 == 0 else None


def describe_verdict(kernel: str, verdict: str, constants: dict[str, float]) -> str:
    """A check's word on a result that is not a checkable array, in the grader's words."""
    kind, _, what = verdict.partition(":")
    if kind == "type":
        return {"list": "returned a list, not a numpy.ndarray", "tuple": "returned a tuple, not a numpy.ndarray",
                "None": "returned None, not a numpy.ndarray",
                "ndarray subclass": "returned a subclass of numpy.ndarray, not a plain numpy.ndarray",
                "numpy scalar": "returned a number, not an array", "float": "returned a number, not an array",
                "int": "returned a number, not an array"}.get(what, "returned an object that is not a numpy.ndarray")
    if kind == "shape":
        want = KERNELS[kernel].shape(constants)
        got = tuple(int(n) for n in what.split("x")) if re.fullmatch(r"[0-9]{1,9}(x[0-9]{1,9}){0,7}", what) else None
        return f"returned an array of shape {got if got is not None else 'other'} instead of {want}"
    if kind == "dtype":
        got = f" {what}" if re.fullmatch(r"[<>|=]?[a-z][0-9]{1,2}", what) else ""
        return f"returned{got} values for float32 inputs, which must stay float32"
    if kind == "raised":
        if what == "NotImplementedError":
            return f"{kernel} raised NotImplementedError: it is not implemented yet"
        name = what if what in BUILTIN_ERRORS else "an exception"
        return f"{kernel} raised {name} on the benchmark input"
    return "its result could not be checked"


def compare_values(kernel: str, actual: np.ndarray | None, expected: np.ndarray | None,
                   constants: dict[str, float]) -> str | None:
    """None if the sampled values match, else how they differ (the grader's words)."""
    parts = KERNELS[kernel].parts
    lengths = [int(constants[part.length]) for part in parts]
    if actual is None or expected is None or actual.size != sum(lengths) or expected.size != sum(lengths):
        return "its result could not be checked"
    start = 0
    for part, length in zip(parts, lengths, strict=True):
        got, want = actual[start:start + length], expected[start:start + length]
        start += length
        with np.errstate(all="ignore"):
            ok = bool(np.all(np.abs(got - want) <= part.atol + part.rtol * np.abs(want)))
        if not ok:
            return "changed its input" if part.rtol == 0 else "wrong values on the benchmark input"
    return None


def read_timing(kernel: str, marks: list, constants: dict[str, float], expected: Iterable[np.ndarray]) -> Timing:
    """The windows between the grader's clock readings, and the first wrong result (its sample
    against ``expected``, one array per call); ``Suspicious`` if the requests are not the
    benchmark's (wrong order or labels, a reading missing)."""
    if not marks or len(marks) % len(LABELS):
        raise Suspicious(f"{len(marks)} timing requests, not whole calls")
    for index, mark in enumerate(marks):
        if mark.label != LABELS[index % len(LABELS)]:
            raise Suspicious(f"timing request {index + 1} was {printable(mark.label, 32)!r}, "
                             f"not {LABELS[index % len(LABELS)]!r}")
        if mark.cpu_ns is None or mark.main_ns is None:
            raise Suspicious("the grader could not read the process's CPU time")
    cpu = np.array([m.cpu_ns for m in marks], dtype=np.float64) / 1e9
    main = np.array([m.main_ns for m in marks], dtype=np.float64) / 1e9
    wall = np.array([m.wall_ns for m in marks], dtype=np.float64) / 1e9
    if np.any(np.diff(cpu) < 0) or np.any(np.diff(main) < 0) or np.any(np.diff(wall) < 0):
        raise Suspicious("clock readings went backwards")
    kernel_s, baseline_s, between_s = np.diff(cpu)[0::3], np.diff(cpu)[1::3], np.diff(cpu)[2::3]
    others = np.diff(cpu) - np.diff(main)
    outside = float(others[1::3].sum() + others[2::3].sum())
    timing = Timing(kernel_s, baseline_s, between_s, np.diff(wall)[0::3], outside)
    for call, want in zip(range(len(marks) // len(LABELS)), expected):
        verdict = marks[3 * call + 1].data
        if not verdict.startswith("ok:"):
            timing.wrong = describe_verdict(kernel, verdict, constants)
            if call == 0 and verdict.startswith("raised:"):
                timing.first_error = verdict.partition(":")[2]
        else:
            timing.wrong = compare_values(kernel, _decode(verdict[3:]), want, constants)
        if timing.wrong:
            timing.wrong += f" (call {call + 1})" if call else ""
            break
    return timing


def _best_ratio(baseline_s: np.ndarray, kernel_s: np.ndarray) -> float:
    return float(baseline_s.min() / kernel_s.min()) if kernel_s.min() > 0 else float("inf")


def score_timing(student: str, shown_as: str, kernel: str, timing: Timing, constants: dict[str, float],
                 calibration: Calibration | None) -> Entry:
    """An ``Entry`` from one run's timing; ``calibration`` is the reference's run (None: this is it)."""
    entry = Entry(student, shown_as, kernel, "ranked")
    warmup = int(constants["WARMUP"])
    kernel_s, baseline_s = timing.kernel_s[warmup:], timing.baseline_s[warmup:]
    entry.calls = int(kernel_s.size)
    if timing.wrong:
        entry.status, entry.reason = "incorrect", timing.wrong
        return entry
    if entry.calls < MIN_CALLS:
        entry.status, entry.kernel_s = "too slow", float(timing.kernel_s.min())
        entry.kernel_wall_s = float(timing.kernel_wall_s[0])
        entry.reason = (f"its first call took {entry.kernel_wall_s:.2g} s; the board repeats only kernels faster "
                        f"than {constants['SLOW_S']:g} s" if timing.kernel_s.size == 1 else
                        f"only {entry.calls} scored calls fit in the time budget; a rank needs {MIN_CALLS}")
        return entry
    entry.score = _best_ratio(baseline_s, kernel_s)
    halves = [_best_ratio(baseline_s[side::2], kernel_s[side::2]) for side in (0, 1)]
    entry.spread = abs(halves[0] - halves[1]) / entry.score if entry.score else float("inf")
    entry.kernel_s, entry.baseline_s = float(kernel_s.min()), float(baseline_s.min())
    entry.kernel_wall_s = float(np.median(timing.kernel_wall_s[warmup:]))
    entry.machine_rate = KERNELS[kernel].work(constants) / entry.baseline_s / 1e9
    outside_limit = OTHER_THREADS_S + 0.01 * float(timing.baseline_s.sum() + timing.between_s.sum())
    if timing.other_threads_s > outside_limit:
        entry.status = "flagged"
        entry.reason = (f"other threads used {1e3 * timing.other_threads_s:.1f} ms of CPU time outside the "
                        f"timed kernel calls (allowed: {1e3 * outside_limit:.1f} ms)")
        return entry
    if calibration is None:
        entry.status = "reference"
    elif timing.between_s.size and np.median(timing.between_s) > BETWEEN_FACTOR * calibration.between_s + 0.002:
        entry.status = "flagged"
        entry.reason = (f"{1e3 * np.median(timing.between_s):.1f} ms of CPU time between timed calls, where "
                        f"preparing the inputs takes about {1e3 * calibration.between_s:.1f} ms")
        return entry
    busy = None if calibration is None else entry.baseline_s / calibration.baseline_s - 1
    if entry.spread > MAX_SPREAD:
        entry.status = "inconclusive" if calibration is not None else entry.status
        entry.reason = (f"the two halves of the calls gave {100 * halves[0]:.0f} % and {100 * halves[1]:.0f} % "
                        f"(they may differ by {MAX_SPREAD:.0%})")
    elif busy is not None and busy > BUSY_LIMIT:
        entry.status = "inconclusive"
        entry.reason = (f"the baseline ran {busy:.0%} slower than in the reference's run (at most "
                        f"{BUSY_LIMIT:.0%}): the machine was busy, or something ran beside it")
    return entry


def run_benchmark(nb: nbformat.NotebookNode, released: nbformat.NotebookNode | None, kernel: str,
                  benchmarks: Benchmarks, root: Path, release: Path, sandbox: bool) -> Outcome:
    """One start of the check process running one benchmark, with glibc's usual reuse of freed
    memory (``TIMING_MALLOC``)."""
    return run_checks(nb, benchmarks.source, benchmarks.seed, helper_files(release), released, sandbox=sandbox,
                      course_root=root, scratch_root=scratch_root(root), limits=sandbox_limits(), only=[kernel],
                      threads=1, env=TIMING_MALLOC)


def entry_from_outcome(student: str, shown_as: str, kernel: str, outcome: Outcome, benchmarks: Benchmarks,
                       calibration: Calibration | None) -> Entry:
    """An ``Entry`` from one run's outcome: not run, flagged, incorrect, too slow, or scored."""
    result = outcome.steps.get(check_step_id(kernel, 0))
    constants = benchmarks.constants
    entry = Entry(student, shown_as, kernel, "not run")
    if result is None or not result.ok:
        entry.reason = _why_not_run(kernel, result, outcome)
        entry.detail = printable("; ".join(filter(None, [result and result.error, outcome.failure])), 300)
        return entry
    try:
        timing = read_timing(kernel, list(getattr(result, "clock", None) or []), constants,
                             benchmarks.expected(kernel))
    except Suspicious as exc:
        entry.status, entry.reason = "flagged", f"the timing requests were not the benchmark's: {exc}"
        return entry
    if timing.first_error == "NotImplementedError":
        entry.status, entry.reason = "not ranked", f"{kernel} is not implemented yet"
        return entry
    if outcome.flags and not timing.wrong:
        entry.status = "flagged"
        entry.reason = "the check process reported something student code did there (see the integrity report)"
        entry.detail = printable("; ".join(outcome.flags[:3]), 300)
        return entry
    return score_timing(student, shown_as, kernel, timing, constants, calibration)


def _why_not_run(kernel: str, result, outcome: Outcome) -> str:
    if result is None:
        return "the benchmark did not run"
    if result.failure and not result.error:
        text = result.failure.removeprefix("not run: ")
        return f"the benchmark stopped: {text}"
    name = (result.error or "").split(":", 1)[0].strip()
    return f"the benchmark stopped with {name if name in BUILTIN_ERRORS else 'an exception'}"


def time_kernel(student: str, shown_as: str, kernel: str, nb: nbformat.NotebookNode,
                released: nbformat.NotebookNode | None, benchmarks: Benchmarks, root: Path, release: Path,
                calibration: Calibration | None, sandbox: bool) -> Entry:
    """Up to ``ATTEMPTS`` runs until one is conclusive; the first conclusive one counts, else the last."""
    entry = None
    for attempt in range(1, ATTEMPTS + 1):
        outcome = run_benchmark(nb, released, kernel, benchmarks, root, release, sandbox)
        entry = entry_from_outcome(student, shown_as, kernel, outcome, benchmarks, calibration)
        entry.attempts = attempt
        if entry.status != "inconclusive":
            break
    if entry.status == "inconclusive":
        entry.reason += f" in each of {ATTEMPTS} runs"
    return entry


# -- the board ----------------------------------------------------------------------------------
def rank(entries: list[Entry]) -> list[Entry]:
    """Entries of one kernel: ranked ones by score (highest first), then the rest by status and name."""
    ranked = sorted((e for e in entries if e.status == "ranked"), key=lambda e: (-e.score, e.shown_as))
    for number, entry in enumerate(ranked, 1):
        entry.rank = number
    for entry in entries:
        if entry.status != "ranked":
            entry.rank = None
    rest = sorted((e for e in entries if e.status != "ranked"),
                  key=lambda e: (STATUSES.index(e.status) if e.status in STATUSES else len(STATUSES), e.shown_as))
    return ranked + rest


def calibrate(kernel: str, root: Path, assignment: str, benchmarks: Benchmarks, sandbox: bool) -> Calibration:
    """The reference solution's run of ``kernel`` (``source/``): the yardstick of this board. Of
    ``CALIBRATION_RUNS`` runs the one with the fastest baseline counts; ``LeaderboardError`` if
    none can be timed."""
    path = root / "source" / assignment / f"{KERNELS[kernel].notebook}.ipynb"
    if not path.is_file():
        raise LeaderboardError(f"{path} not found: the reference solution calibrates the board")
    nb = nbformat.read(path, as_version=4)
    best = None
    for _ in range(CALIBRATION_RUNS):
        outcome = run_benchmark(nb, None, kernel, benchmarks, root, root / "release" / assignment, sandbox)
        entry = entry_from_outcome(REFERENCE, REFERENCE, kernel, outcome, benchmarks, None)
        if entry.status != "reference":
            continue
        clock = outcome.steps[check_step_id(kernel, 0)].clock
        between = float(np.median(np.diff([m.cpu_ns for m in clock])[2::3])) / 1e9 if len(clock) > 3 else 0.0
        if best is None or entry.baseline_s < best.baseline_s:
            best = Calibration(entry.baseline_s, between, entry)
    if best is None:
        raise LeaderboardError(f"the reference solution's {kernel} could not be timed: {entry.label}")
    return best


def plan_student(root: Path, assignment: str, student: str, shown_as: str,
                 failures: dict[str, list[str]]) -> dict[str, Entry | nbformat.NotebookNode]:
    """Per kernel, the submitted notebook to time, or the entry saying why it is not timed."""
    plan: dict[str, Entry | nbformat.NotebookNode] = {}
    staged = root / STAGING / "submitted" / student / assignment
    for kernel, spec in KERNELS.items():
        try:
            submitted = _read(staged / f"{spec.notebook}.ipynb")
            why = gate(kernel, failures.get(kernel, []), submitted,
                       _read(root / "release" / assignment / f"{spec.notebook}.ipynb"))
            plan[kernel] = submitted if why is None else Entry(student, shown_as, kernel, "not ranked", reason=why)
        except Exception as exc:  # the grader's own failure on one entry: the board goes on
            plan[kernel] = _error_entry(student, shown_as, kernel, exc)
    return plan


def _error_entry(student: str, shown_as: str, kernel: str, exc: Exception) -> Entry:
    traceback.print_exc(file=sys.stderr)
    return Entry(student, shown_as, kernel, "error", detail=printable(f"{type(exc).__name__}: {exc}"),
                 reason=f"the leaderboard failed on this entry ({type(exc).__name__}); the instructor has the details")


def _read(path: Path) -> nbformat.NotebookNode | None:
    try:
        return nbformat.read(path, as_version=4)
    except Exception:  # missing or unreadable: the gate says so
        return None


def _now() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def build_leaderboard(root: Path, assignment: str, students: list[str] | None = None,
                      checks_root: Path = CHECKS_ROOT, sandbox: bool = True) -> tuple[Path, dict[str, list[Entry]]]:
    """Benchmark ``students`` (default: every staged submission) and write the board; on a failure of
    the run as a whole, write a page saying so and raise ``LeaderboardError``."""
    out_dir = root / "reports"
    board = Board(started=_now(), load=(os.getloadavg()[0], 0.0))
    try:
        board = _build(root, assignment, students, checks_root, sandbox, board)
        page = write_leaderboard(board.entries, out_dir, assignment, board)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, LeaderboardError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, LeaderboardError):
            traceback.print_exc(file=sys.stderr)
        write_failure_page(out_dir, assignment, board.started, printable(reason, 500))
        raise LeaderboardError(reason) from exc
    return page, board.entries


def _build(root: Path, assignment: str, students: list[str] | None, checks_root: Path, sandbox: bool,
           board: Board) -> Board:
    staged = root / STAGING / "submitted"
    if not (root / "release" / assignment).is_dir():
        raise LeaderboardError(f"{root / 'release' / assignment} not found: run 'make release' first")
    if students is None:
        if not staged.is_dir():
            raise LeaderboardError(f"nothing graded under {staged}: run 'make autograde' first")
        students = sorted(d.name for d in staged.iterdir() if (d / assignment).is_dir())
    # one run, one set of inputs for everyone, unknown before the run
    benchmarks = Benchmarks.load((checks_root / assignment / "leaderboard.py").read_text(), secrets.randbits(63))
    names = shown_names(root, assignment, students)
    with readonly_gradebook(root) as gradebook:
        failures = {student: structural_failures(gradebook, assignment, student) for student in students}
    plans = {student: plan_student(root, assignment, student, names[student], failures[student])
             for student in students}
    timed = [kernel for kernel in KERNELS if any(not isinstance(plan[kernel], Entry) for plan in plans.values())]
    calibrations = {kernel: calibrate(kernel, root, assignment, benchmarks, sandbox) for kernel in timed}
    release = root / "release" / assignment
    entries: dict[str, list[Entry]] = {kernel: [] for kernel in KERNELS}
    for student, plan in plans.items():
        for kernel, item in plan.items():
            if not isinstance(item, Entry):
                try:
                    released = nbformat.read(release / f"{KERNELS[kernel].notebook}.ipynb", as_version=4)
                    item = time_kernel(student, names[student], kernel, item, released, benchmarks, root, release,
                                       calibrations[kernel], sandbox)
                except Exception as exc:  # the grader's own failure on one entry: the board goes on
                    item = _error_entry(student, names[student], kernel, exc)
            entries[kernel].append(item)
    board.references = {kernel: [calibration.entry] for kernel, calibration in calibrations.items()}
    for kernel in timed:  # the yardstick again, at the end
        path = root / "source" / assignment / f"{KERNELS[kernel].notebook}.ipynb"
        outcome = run_benchmark(nbformat.read(path, as_version=4), None, kernel, benchmarks, root, release, sandbox)
        board.references[kernel].append(entry_from_outcome(REFERENCE, REFERENCE, kernel, outcome, benchmarks, None))
    board.entries = {kernel: rank(found) for kernel, found in entries.items()}
    board.finished, board.load = _now(), (board.load[0], os.getloadavg()[0])
    return board


# -- writing ----------------------------------------------------------------------------------
def plot_leaderboard(boards: dict[str, list[Entry]], references: dict[str, list[Entry]] | None = None):
    """One horizontal bar chart per kernel, stacked, 800 px wide: scores as % of the machine's
    baseline, ranked entries blue, inconclusive grey, the reference a dashed line; ``(fig, axes)``."""
    references = references or {}
    heights = [max(2, sum(e.score is not None and e.status in ("ranked", "inconclusive") for e in entries))
               for entries in boards.values()]
    fig, axes = plt.subplots(len(boards), 1, figsize=(8.0, 1.2 * len(boards) + 0.28 * sum(heights)),
                             squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, (kernel, entries) in zip(axes[:, 0], boards.items(), strict=True):
        shown = [e for e in entries if e.score is not None and e.status in ("ranked", "inconclusive")][::-1]
        names = [(f"#{e.rank} " if e.rank else "") + e.shown_as for e in shown]
        ax.barh(range(len(shown)), [100 * e.score for e in shown],
                color=["tab:blue" if e.status == "ranked" else "lightgray" for e in shown])
        ax.set_yticks(range(len(shown)), names)
        reference = [e.score for e in references.get(kernel, []) if e.score is not None]
        if reference:
            ax.axvline(100 * reference[0], color="black", linestyle="--", linewidth=1)
            ax.text(100 * reference[0], 1.0, f" {REFERENCE}", transform=ax.get_xaxis_transform(), va="bottom",
                    fontsize="small")
        ax.set_xlim(0, 1.15 * max([100 * e.score for e in shown] + [100 * r for r in reference] + [1.0]))
        ax.set_xlabel(f"speed, % of this machine's {KERNELS[kernel].baseline} (best CPU time per call)")
        ax.set_title(f"{kernel} (grey: inconclusive, not ranked)", fontsize="medium", loc="left")
        if not shown:
            ax.text(0.5, 0.5, "no timed entries", transform=ax.transAxes, ha="center", va="center")
    fig.tight_layout()
    return fig, axes


def _atomic_write(path: Path, write) -> None:
    """Write ``path`` through a temporary file beside it, so no reader ever sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


CSV_COLUMNS = ["kernel", "rank", "student_id", "shown_as", "status", "score_percent", "spread_percent",
               "kernel_seconds", "detail", "reason", "baseline_seconds", "kernel_wall_seconds", "calls", "attempts"]
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;line-height:1.4}"
         "img{max-width:100%;height:auto}.table{overflow-x:auto}table{border-collapse:collapse;width:100%}"
         "td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left;overflow-wrap:anywhere}"
         ".failed{border:2px solid #b00;padding:1em}")


def _csv_rows(boards: dict[str, list[Entry]]):
    for kernel, entries in boards.items():
        for e in entries:
            yield [kernel, e.rank or "", printable(e.student, 120), e.shown_as, e.status,
                   "" if e.score is None else f"{100 * e.score:.2f}",
                   "" if e.spread is None else f"{100 * e.spread:.1f}",
                   "" if e.kernel_s is None else f"{e.kernel_s:.6f}", e.detail, e.reason,
                   "" if e.baseline_s is None else f"{e.baseline_s:.6f}",
                   "" if e.kernel_wall_s is None else f"{e.kernel_wall_s:.6f}", e.calls, e.attempts]


def write_leaderboard(boards: dict[str, list[Entry]], out_dir: Path, assignment: str,
                      board: Board | None = None) -> Path:
    """Write ``leaderboard.png``, ``leaderboard.csv`` and then ``leaderboard.html``, each atomically;
    returns the page."""
    board = board or Board(entries=boards, started=_now(), finished=_now())
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, _ = plot_leaderboard(boards, board.references)

    def save_png(tmp):
        fig.savefig(tmp, dpi=100, format="png")

    try:
        _atomic_write(out_dir / "leaderboard.png", save_png)
    finally:
        plt.close(fig)

    def save_csv(tmp):
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            writer.writerows(_csv_rows({k: board.references.get(k, []) + v for k, v in boards.items()}))

    _atomic_write(out_dir / "leaderboard.csv", save_csv)
    page = out_dir / "leaderboard.html"
    _atomic_write(page, lambda tmp: tmp.write_text(render_page(boards, assignment, board), encoding="utf-8"))
    return page


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, NumPy {np.__version__}"


def render_page(boards: dict[str, list[Entry]], assignment: str, board: Board) -> str:
    """The board as one HTML page that fits a 1280-px window: method, limits, chart, tables."""
    e = html.escape
    stamp = int(time.time())
    parts = [f"<!doctype html><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
             f"<title>{e(assignment)} leaderboard</title><style>{STYLE}</style>",
             f"<h1>{e(assignment)}: kernel leaderboard</h1>",
             f"<p>Run from {e(board.started)} to {e(board.finished)} on {e(_machine())}; load average "
             f"{board.load[0]:.1f} at the start, {board.load[1]:.1f} at the end. The ranking is extra credit at "
             f"most; it never changes an autograded score.</p>",
             "<p><b>How it is timed.</b> Each student's kernel and the machine's own baseline run one after the "
             "other in the student's sandboxed process with one BLAS thread, each call on new inputs drawn from "
             "this run's secret seed (the same for everyone). The grader, outside that process, reads its clock "
             "and the process's CPU time before and after every call; nothing the student's code writes is taken "
             "as a time. A score is the best baseline CPU time over the best kernel CPU time, across the scored "
             "calls after a warm-up: 40 % means the kernel reaches 40 % of the baseline's speed on this machine. "
             "CPU time counts all the process's threads, so threads do not make a kernel faster here, and other "
             "programs on the machine do not count against it. Each result is checked inside its timed call: it "
             "must be a plain numpy.ndarray of the right shape and dtype, and its values at positions the student's "
             "code never sees are sent to the grader before the kernel's time stops and compared there; a wrong "
             "result is never ranked.</p>",
             f"<p><b>When a result is not ranked.</b> <i>inconclusive</i>: the best times of the odd and even "
             f"calls disagree by more than {MAX_SPREAD:.0%}, or the baseline ran more than {BUSY_LIMIT:.0%} slower "
             f"than in the reference solution's run; each is tried {ATTEMPTS} times. <i>flagged</i>: other threads "
             f"used CPU time outside the timed kernel calls, much more CPU time went by between calls than "
             f"preparing the inputs takes, the timing requests were not the benchmark's, or the check process "
             f"reported an integrity flag. <i>not ranked</i>: the kernel's structural tests did not score full "
             f"marks, or it is not implemented. <i>too slow</i>: fewer than {MIN_CALLS} scored calls fit in the "
             f"time budget.</p>",
             "<p><b>Limits.</b> Measured on this project's 2-core machine while other jobs kept it busy (load "
             "average 8 to 11), the reference solution's score moved between runs by 5 to 14 % (interquartile range "
             "over the median; single runs up to a third apart): treat scores closer than about 15 % as ties, and "
             "compare them with the reference's scores below, taken at the start and the end of this run. Code "
             "that runs inside the student's process "
             "can still slip work into the baseline's time (by signal handlers or by replacing parts of that "
             "process's channel to the grader); that raises the score only until the baseline runs "
             f"{BUSY_LIMIT:.0%} slower than the reference's, when the run turns inconclusive. Code that finds the "
             "check's private inputs or sample positions (which needs frame, garbage-collector or ctypes access "
             "inside the process) could fake a result; the grading sandbox flags most such access. Read the top "
             "entries' code before rewarding them.</p>",
             f"<img src='leaderboard.png?{stamp}' alt='bar chart of the scores per kernel'>"]
    for kernel, entries in boards.items():
        spec = KERNELS[kernel]
        references = board.references.get(kernel, [])
        rates = [r.machine_rate for r in references if r.machine_rate]
        machine = (f"; this machine's {spec.baseline}: {max(rates):.3g} {spec.unit} at best" if rates else "")
        yardstick = ", ".join(f"{100 * r.score:.1f} %" if r.score is not None else e(r.label) for r in references)
        parts.append(f"<h2>{e(kernel)}</h2><p>score = % of {e(spec.baseline)} speed{e(machine)}. The reference "
                     f"solution scored {yardstick or 'nothing'} (start and end of this run).</p>")
        parts.append("<div class='table'><table><tr><th>rank</th><th>student</th><th>score</th><th>halves differ</th>"
                     "<th>ms per call (CPU, best)</th><th>status</th></tr>")
        for entry in entries:
            cells = [str(entry.rank or ""), e(entry.shown_as),
                     "" if entry.score is None else f"{100 * entry.score:.1f} %",
                     "" if entry.spread is None else f"{100 * entry.spread:.0f} %",
                     "" if entry.kernel_s is None else f"{1e3 * entry.kernel_s:.3g}", e(entry.label)]
            parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append("</table></div>")
    return "\n".join(parts) + "\n"


def write_failure_page(out_dir: Path, assignment: str, started: str, reason: str) -> Path:
    """Replace the board with a page saying the last run failed, when and why; the previous chart
    and CSV are removed so that nothing stale looks current."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("leaderboard.png", "leaderboard.csv"):
        (out_dir / name).unlink(missing_ok=True)
    e = html.escape
    text = (f"<!doctype html><meta charset='utf-8'><title>{e(assignment)} leaderboard: last run failed</title>"
            f"<style>{STYLE}</style><h1>{e(assignment)}: kernel leaderboard</h1>"
            f"<div class='failed'><p><b>The last leaderboard run failed.</b> It started {e(started)} and "
            f"failed {e(_now())}: {e(reason)}</p><p>No board is shown: the previous one was removed so that it "
            f"cannot be taken for the current one. Fix the cause and run <code>make leaderboard</code> "
            f"again.</p></div>\n")
    page = out_dir / "leaderboard.html"
    _atomic_write(page, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    course_arguments(parser, "only this student (repeatable)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    start = time.perf_counter()
    try:
        page, boards = build_leaderboard(root, args.assignment, args.student)
    except LeaderboardError as exc:
        print(f"error: leaderboard not made: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{kernel}: {sum(e.status == 'ranked' for e in entries)} ranked of {len(entries)}"
                       for kernel, entries in boards.items())
    print(f"leaderboard: {counts}; wrote {page} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
