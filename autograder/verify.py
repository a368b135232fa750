"""Outside verification: each autograded cell's score decided where student code cannot reach.

nbgrader's tests run in the student's kernel, after the student's code, so that code can make
them pass (a no-op ``assert_allclose``, an AST transformer that strips asserts, an object whose
``__eq__`` is always true, a cell that displays ``1.0``). Here, for each test cell with a probe
in ``autograder/checks/<assignment>/<notebook>.py``:

1. a fresh process in the grading sandbox (``autograder/verify_driver.py``) runs the notebook's
   given cells and the student's cells, never the test cells, and calls the probe, which calls
   the student's functions on inputs drawn from a seed the grader picks per batch;
2. the probe's observations come back as plain data (numbers, strings, numeric arrays as bytes;
   never pickles) on a signed channel;
3. this process compares them with the reference solution's observations for the same seed, by
   the rule and tolerance of the reference's observation.

A cell scores its points when every observation matches, else zero; that score replaces the
in-kernel one in the gradebook. What the student's code did on the way (monkeypatching, IPython
hooks, files outside the scratch folder, ...) comes back as flags for the integrity report.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np

from autograder.build import REPO, is_autograded_test, nbgrader_meta
from autograder.execute import prepare_scratch, sandbox_env
from autograder.sandbox import (Limits, Protections, claim_sandbox_uid, detect_protections, hidden_paths,
                                kill_user_processes, launcher_prefix)

CHECKS_ROOT = REPO / "autograder" / "checks"
DRIVER = Path(__file__).with_name("verify_driver.py")
PROBEKIT = Path(__file__).with_name("probekit.py")
BOOTSTRAP = ("import json,sys;r=json.loads(sys.stdin.readline());"
             "exec(compile(r['driver'],'<verify_driver>','exec'),{'__name__':'verify_driver','REQUEST':r})")
NUMERIC_KINDS = "biufc"
NOT_PLAIN = "not plain data"
MAX_LINE_BYTES = 256 * 2**20
_AST_LOCK = threading.Lock()
NO_SANDBOX = Protections(False, False, False, ("outside check run without the sandbox",))


@dataclass(frozen=True)
class Step:
    """One thing the check process does: run a cell (``given`` or ``student``) or a probe."""

    id: str
    kind: str
    source: str = ""


@dataclass
class Outcome:
    """What one run of the check process produced."""

    observations: dict[str, dict] = field(default_factory=dict)   # probe id -> observations
    errors: dict[str, str] = field(default_factory=dict)          # step id -> what went wrong
    flags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed: to start, per cell, per probe, for the whole check of one notebook."""

    start_s: float = 60.0
    cell_s: float = 60.0
    probe_s: float = 60.0
    total_s: float = 240.0

    def for_step(self, kind: str | None) -> float:
        """Seconds for one step of ``kind`` (``probe``, ``given`` or ``student``)."""
        return self.probe_s if kind == "probe" else self.cell_s


# -- what to run ------------------------------------------------------------------------------
def checks_file(notebook: str, assignment: str, checks_root: Path = CHECKS_ROOT) -> Path:
    return checks_root / assignment / f"{notebook}.py"


def _parse(source: str) -> ast.Module:
    """``ast.parse`` one thread at a time: in Python 3.11 two threads parsing at once can fail with
    "SystemError: AST constructor recursion depth mismatch" (CPython issue gh-106905)."""
    with _AST_LOCK:
        return ast.parse(source)


def probe_names(source: str) -> list[str]:
    """Top-level function names of a checks file: each is the probe of the test cell so named."""
    return [node.name for node in _parse(source).body
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]


def _constants_only(node: ast.Assign | ast.AnnAssign) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return all(isinstance(t, ast.Name) and t.id.isupper() for t in targets)


def definitions_only(source: str) -> bool:
    """Whether a cell only defines: imports, functions, classes, UPPER_CASE constants (whatever
    they call) and other assignments that call nothing. Such cells are cheap to rerun; the
    others are the notebook's experiments."""
    try:
        body = _parse(source).body
    except SyntaxError:
        return False
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and (
                _constants_only(node) or not any(isinstance(sub, ast.Call) for sub in ast.walk(node.value))):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        return False
    return bool(body)


def verification_steps(nb: nbformat.NotebookNode, probes: list[str],
                       released: nbformat.NotebookNode | None, run: list[str] | None = None) -> list[Step]:
    """The cells the check process runs, then one probe per test cell that has one.

    Test cells never run. nbgrader's locked cells (repaired from the release while staging) are
    given; solution cells are the student's. A plain cell counts as given only if the release
    has it word for word (``released=None``: every plain cell is the instructor's, as in a
    source notebook), and then runs only if it just imports and defines: the experiments are
    left out. Any other plain cell is the student's own and runs. ``run`` names the probes to
    call instead (the leaderboard's benchmarks).
    """
    instructor = None if released is None else {
        c.source for c in released.cells if c.cell_type == "code" and not nbgrader_meta(c)}
    steps, tests = [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta = nbgrader_meta(cell)
        if is_autograded_test(cell):
            tests.append(meta["grade_id"])
        elif meta.get("solution"):
            steps.append(Step(f"cell {index} [{meta['grade_id']}]", "student", cell.source))
        elif meta:
            steps.append(Step(f"cell {index} [{meta.get('grade_id')}]", "given", cell.source))
        elif instructor is None or cell.source in instructor:
            if definitions_only(cell.source):
                steps.append(Step(f"cell {index}", "given", cell.source))
        else:
            steps.append(Step(f"cell {index}", "student", cell.source))
    chosen = run if run is not None else [grade_id for grade_id in tests if grade_id in probes]
    return steps + [Step(name, "probe") for name in chosen]


# -- running the check process --------------------------------------------------------------
class _Process:
    """One start of the check process, read message by message."""

    def __init__(self, command: list[str], env: dict, scratch: Path, request: dict):
        self.key = bytes.fromhex(request["key"])
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=scratch, env=env, start_new_session=True)
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.close()
        self.buffer = b""

    def read(self, deadline: float) -> dict | str | None:
        """The next verified message; ``"garbled"`` for a line that fails its signature; None at
        end of output or deadline."""
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or len(self.buffer) > MAX_LINE_BYTES:
                return None
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            envelope = json.loads(line)
            body = envelope["m"]
            expected = hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, str(envelope["mac"])):
                return "garbled"
            return json.loads(body)
        except (ValueError, KeyError, TypeError, AttributeError):
            return "garbled"

    def stop(self, uid: int | None) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if uid is not None:
            kill_user_processes(uid)
        self.proc.wait()
        self.proc.stdout.close()


def run_checks(nb: nbformat.NotebookNode, checks_source: str, seed: int, files_dir: Path,
               released: nbformat.NotebookNode | None = None, *, sandbox: bool = True,
               course_root: Path | None = None, limits: Limits = Limits(),
               timeouts: Timeouts = Timeouts(), helpers: list[str] = (), run: list[str] | None = None,
               env: dict[str, str] | None = None) -> Outcome:
    """Run the probes of ``checks_source`` against the code in ``nb``; see the module docstring.

    ``files_dir`` holds the files the notebook needs beside it (helper modules). A cell or probe
    that hangs or kills the process costs that step only: the process is started again, the
    cells before it replayed, and the remaining steps run. ``run`` calls these probes instead of
    the test cells' ones; ``env`` adds environment variables for the process.
    """
    steps = verification_steps(nb, probe_names(checks_source), released, run)
    protections = detect_protections() if sandbox else NO_SANDBOX
    outcome = Outcome()
    with claim_sandbox_uid() if protections.separate_user else nullcontext() as uid:
        _run(steps, checks_source, seed, files_dir, uid, protections, course_root, limits, timeouts,
             helpers, env or {}, outcome)
    return outcome


def answer_key(nb: nbformat.NotebookNode, checks_source: str, seed: int, files_dir: Path, **options) -> dict:
    """The reference solution's observations for ``seed``: what every submission is compared with.

    Raises ``ReferenceFailure`` listing why when the reference fails its own probes (a key made
    from it would take points from correct work).
    """
    outcome = run_checks(nb, checks_source, seed, files_dir, None, **options)
    problems = reference_problems(outcome, probe_names(checks_source))
    if problems:
        raise ReferenceFailure("; ".join(problems[:5]))
    return outcome.observations


class ReferenceFailure(ValueError):
    """The reference solution fails its own outside checks."""


def _run(steps: list[Step], checks_source: str, seed: int, files_dir: Path, uid: int | None,
         protections: Protections, course_root: Path | None, limits: Limits, timeouts: Timeouts,
         helpers: list[str], extra_env: dict[str, str], outcome: Outcome) -> None:
    scratch = prepare_scratch(files_dir, uid)
    try:
        hide = hidden_paths(*(p for p in (course_root, REPO) if p is not None))
        command = [*launcher_prefix(scratch, uid, hide, limits, protections), sys.executable, "-c", BOOTSTRAP]
        env = sandbox_env(scratch, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1", **extra_env)
        kinds = {step.id: step.kind for step in steps}
        skip: set[str] = set()
        deadline = time.monotonic() + timeouts.total_s
        driver, probekit = DRIVER.read_text(), PROBEKIT.read_text()
        for _attempt in range(len(steps) + 1):
            request = {"driver": driver, "probekit": probekit, "checks": checks_source,
                       "seed": seed, "key": secrets.token_hex(32), "scratch": str(scratch),
                       "helpers": list(helpers), "skip": sorted(skip),
                       "steps": [{"id": s.id, "kind": s.kind, "source": s.source} for s in steps]}
            stopped_at = _attempt_once(request, command, env, scratch, uid, kinds, timeouts, deadline, outcome)
            if stopped_at is None:
                return
            skip.add(stopped_at)
            skip.update(outcome.observations)
            skip.update(pid for pid, kind in kinds.items() if kind == "probe" and pid in outcome.errors)
            if time.monotonic() > deadline:
                break
        for step in steps:
            if step.kind == "probe" and step.id not in outcome.observations:
                outcome.errors.setdefault(step.id, "not run: the check ran out of time")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _attempt_once(request: dict, command: list[str], env: dict, scratch: Path, uid: int | None,
                  kinds: dict[str, str], timeouts: Timeouts, deadline: float, outcome: Outcome) -> str | None:
    """Start the process once; None when it finished, else the step at which it died or hung."""
    process = _Process(command, env, scratch, request)
    current, ended = None, set()
    try:
        step_deadline = min(deadline, time.monotonic() + timeouts.start_s)
        while True:
            message = process.read(step_deadline)
            if message is None:
                if current is None or current in ended:
                    what = "the check process stopped before its first step" if current is None else \
                        f"the check process stopped after {current}"
                    outcome.errors.setdefault(current or "start", what)
                    for sid, kind in kinds.items():
                        if kind == "probe" and sid not in outcome.observations and sid not in ended:
                            outcome.errors.setdefault(sid, what)
                    return None
                timed_out = time.monotonic() >= step_deadline
                limit = timeouts.for_step(kinds.get(current))
                outcome.errors[current] = (f"ran longer than {limit:.0f} s and was stopped" if timed_out
                                           else "the process died here (os._exit, a crash or the memory limit)")
                return current
            if message == "garbled":
                _flag(outcome, "a message on the check's channel failed its signature (forged or corrupted)")
                continue
            for text in message.get("flags") or []:
                _flag(outcome, str(text))
            if "start" in message:
                current = str(message["start"])
                step_deadline = min(deadline, time.monotonic() + timeouts.for_step(kinds.get(current)))
            elif "end" in message:
                sid = str(message["end"])
                if sid in ended:
                    _flag(outcome, f"two answers for {sid} on the check's channel (forged)")
                    outcome.observations.pop(sid, None)
                    outcome.errors[sid] = "two answers (forged)"
                    continue
                ended.add(sid)
                if message.get("error"):
                    outcome.errors[sid] = str(message["error"])
                elif kinds.get(sid) == "probe":
                    outcome.observations[sid] = message.get("observations") or {}
            elif message.get("finished"):
                return None
    finally:
        process.stop(uid)


def _flag(outcome: Outcome, text: str) -> None:
    if text not in outcome.flags:
        outcome.flags.append(text)


# -- comparing observations -----------------------------------------------------------------
class Unsupported:
    """A value the probe could not turn into plain data; it never matches."""

    def __init__(self, what: str):
        self.what = what

    def __repr__(self) -> str:
        return f"<{self.what}>"


def decode(value):
    """Plain data from ``probekit.encode`` back to Python and NumPy values, checked as it goes."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):  # never produced by encode; reject rather than guess
        return Unsupported("bare list")
    if not isinstance(value, dict) or len(value) not in (1, 3):
        return Unsupported("malformed value")
    if "b64" in value:
        dtype = np.dtype(str(value["dtype"]))
        if dtype.kind not in NUMERIC_KINDS or dtype.hasobject:
            return Unsupported(f"array of dtype {dtype}")
        shape = tuple(int(n) for n in value["shape"])
        data = base64.b64decode(value["b64"], validate=True)
        if any(n < 0 for n in shape) or len(data) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            return Unsupported("array whose bytes do not fit its shape")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if "list" in value:
        return [decode(item) for item in value["list"]]
    if "dict" in value:
        return {str(key): decode(item) for key, item in value["dict"].items()}
    if "bigint" in value:
        return int(value["bigint"])
    return Unsupported(str(value.get("unsupported", "unknown value")))


def _unsupported(value) -> Unsupported | None:
    """The first value inside ``value`` that could not be plain data, if any."""
    if isinstance(value, Unsupported):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return next((found for item in items if (found := _unsupported(item)) is not None), None)


def _same(expected, actual) -> bool:
    if isinstance(expected, np.ndarray) or isinstance(actual, np.ndarray):
        return (isinstance(expected, np.ndarray) and isinstance(actual, np.ndarray)
                and expected.dtype == actual.dtype and expected.shape == actual.shape
                and bool(np.array_equal(expected, actual, equal_nan=expected.dtype.kind in "fc")))
    if type(expected) is not type(actual):
        return False
    if isinstance(expected, list):
        return len(expected) == len(actual) and all(_same(e, a) for e, a in zip(expected, actual))
    if isinstance(expected, dict):
        return expected.keys() == actual.keys() and all(_same(expected[k], actual[k]) for k in expected)
    if isinstance(expected, float) and expected != expected:
        return actual != actual
    return expected == actual


def _numeric(value) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (bool, int, float)):
        return np.asarray(value)
    if isinstance(value, list) and all(isinstance(v, (bool, int, float)) for v in value):
        return np.asarray(value)
    return None


def _short(value) -> str:
    if isinstance(value, np.ndarray):
        return f"array {value.dtype} {value.shape}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def compare(name: str, expected: dict, actual: dict | None) -> str | None:
    """None if the student's observation ``actual`` passes the reference's ``expected``, else why."""
    if not isinstance(actual, dict) or "value" not in actual:
        return f"{name}: missing"
    rule = expected["rule"]
    want = decode(expected["value"])
    try:
        got = decode(actual["value"])
    except (ValueError, TypeError, KeyError) as exc:
        return f"{name}: unreadable value ({exc})"
    odd = _unsupported(got)
    if odd is not None:
        return f"{name}: {NOT_PLAIN} ({odd.what})"
    if rule == "same":
        return None if _same(want, got) else f"{name}: expected {_short(want)}, got {_short(got)}"
    if rule == "close":
        a, b = _numeric(got), _numeric(want)
        if a is None or b is None or a.shape != b.shape:
            return f"{name}: expected numbers of shape {None if b is None else b.shape}, got {_short(got)}"
        if isinstance(want, np.ndarray) and isinstance(got, np.ndarray) and want.dtype != got.dtype:
            return f"{name}: expected dtype {want.dtype}, got {got.dtype}"
        a, b = a.astype(np.complex128), b.astype(np.complex128)  # decode lets through numeric kinds only
        if np.allclose(a, b, rtol=expected["rtol"], atol=expected["atol"], equal_nan=True):
            return None
        with np.errstate(invalid="ignore"):
            diff = np.max(np.abs(a - b)) if a.size else 0.0
        return f"{name}: values differ (max abs difference {float(diff):.3g}, rtol {expected['rtol']:g})"
    if rule == "at_most":
        a = _numeric(got)
        if a is None or a.shape != () or a.dtype.kind == "c" or not np.isfinite(a):
            return f"{name}: expected one finite number, got {_short(got)}"
        return None if float(a) <= expected["limit"] else f"{name}: {float(a):.4g} exceeds {expected['limit']:.4g}"
    return f"{name}: unknown rule {rule!r} in the reference"


@dataclass(frozen=True)
class CellVerdict:
    """The outside verdict on one test cell."""

    grade_id: str
    passed: bool
    why: str


def judge_cells(reference: dict[str, dict], outcome: Outcome) -> dict[str, CellVerdict]:
    """One verdict per probe in ``reference`` (grade_id -> the reference's observations)."""
    verdicts = {}
    for grade_id, expected in reference.items():
        if grade_id in outcome.errors:
            verdicts[grade_id] = CellVerdict(grade_id, False, outcome.errors[grade_id])
            continue
        actual = outcome.observations.get(grade_id)
        if actual is None:
            verdicts[grade_id] = CellVerdict(grade_id, False, "not run")
            continue
        problems = [p for name in expected if (p := compare(name, expected[name], actual.get(name)))]
        verdicts[grade_id] = CellVerdict(grade_id, not problems, "; ".join(problems[:3]))
    return verdicts


def reference_problems(outcome: Outcome, probes: list[str]) -> list[str]:
    """Why a reference run cannot serve as the answer key (empty when it can)."""
    problems = [f"{step}: {error}" for step, error in outcome.errors.items()]
    problems += [f"{probe}: no observations" for probe in probes
                 if probe not in outcome.observations and probe not in outcome.errors]
    problems += [f"{probe}: returned no observations" for probe, obs in outcome.observations.items() if not obs]
    problems += [f"flag: {flag}" for flag in outcome.flags]
    return problems
