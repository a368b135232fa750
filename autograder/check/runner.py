"""The outside check, grader side: run a notebook's visible tests and checks in a sandboxed check
process, serve it the values of served arrays while recording what it asks for, and fail closed.

nbgrader's tests run in the student's kernel, after the student's code, which can make them pass
(a no-op ``assert_allclose``, an AST transformer stripping asserts, an object equal to
everything, a cell that displays a score). The outside check runs in a fresh process in the
grading sandbox (``process.py``): the notebook's given and student cells, then for every test
cell its visible test and its check (``checks/<assignment>/<notebook>.py``) once per seed. Seeds
are derived from the batch's secret seed per test cell and run; the batch seed never enters the
process. Everything the process sends is the student's to write, so:

- frames are bounded and validated (``protocol.py``); anything else ends the check and every
  step that had not finished fails (``Outcome.failure`` says why), with no second chance;
- a step that hangs or kills the process fails alone: the process starts again, replays the
  cells and goes on with the next step;
- a process that cannot start (before it says ``ready``, so before any student code ran) is the
  grader's own failure and is tried once more in a fresh process;
- the evidence of how values were computed (served arrays, peak memory, rendezvous) is recorded
  here, never taken from the process; so are the times of ``clock`` requests and the process's
  CPU time at each, which the leaderboard times kernels with.

Nothing is scored here: ``judge.py`` compares outcomes with the answer key.
"""
from __future__ import annotations

import ast
import base64
import fcntl
import hashlib
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder.check.evidence import MAX_SERVED_ARRAYS, EvidenceError, ServedRecord, register
from autograder.check.protocol import Ended, FrameReader, ProtocolError, TimedOut, encode_frame
from autograder.cells import cell_roles, parse_python
from autograder.course import REPO, is_autograded_test, nbgrader_meta, printable
from autograder.run.sandbox import (Limits, Protections, RunArea, allowed_environment, claim_sandbox_uid,
                                    detect_protections, hidden_paths, kill_user_processes, launcher_prefix,
                                    make_run_area, remove_run_area)

HERE = Path(__file__).resolve().parent
PROCESS, OBSERVE, PROTOCOL = HERE / "process.py", HERE / "observe.py", HERE / "protocol.py"
CHECKS_ROOT = REPO / "checks"
READ_FRAME = """
import os, struct, json, sys, types
def _read(fd, n):
    data = b''
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise SystemExit(3)
        data += chunk
    return data
def read_frame(fd):
    return json.loads(_read(fd, struct.unpack('>I', _read(fd, 4))[0]))
def start_check_process():
    request = read_frame(0)
    protocol = types.ModuleType('acclab_protocol')
    exec(compile(request['protocol'], '<protocol>', 'exec'), vars(protocol))
    sys.modules['acclab_protocol'] = protocol
    exec(compile(request['process'], '<check-process>', 'exec'),
         {'__name__': 'check_process', 'REQUEST': request, 'READER': protocol.FrameReader(0)})
"""
# A check process of its own: read the request on stdin, run it.
BOOTSTRAP = READ_FRAME + "start_check_process()\n"
# A warm host: import what every check process needs, then fork one per start, each talking over the
# socket the grader passed with the request to fork (SCM_RIGHTS on the control socket, stdin).
ZYGOTE_BOOTSTRAP = READ_FRAME + """
import signal, socket
import numpy, numpy.testing
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
control = socket.socket(fileno=0)
control.sendall(b'ready')
while True:
    message, fds, _, _ = socket.recv_fds(control, 16, 1)
    if not message or not fds:
        os._exit(0)
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        os.dup2(fds[0], 0)
        os.dup2(fds[0], 1)
        os.close(fds[0])
        start_check_process()
        os._exit(0)
    os.close(fds[0])
    control.sendall(struct.pack('>I', child))
"""
CELL_KINDS, TEST_KINDS = ("given", "student"), ("visible", "check")
START_TIMEOUT_S = 60.0
RENDEZVOUS_TIMEOUT_S = 2.0
MAX_FLAGS, FLAG_CHARS, ERROR_CHARS = 40, 200, 300
MAX_CLOCK_MARKS, MAX_CLOCK_LABEL, MAX_CLOCK_DATA = 1024, 32, 16384  # per check run: at most 16 MiB
CPUCLOCK_SCHED = 2          # Linux: a process's CPU-time clock id is (~pid << 3) | CPUCLOCK_SCHED
MAIN_THREAD_WAIT_S = 0.002  # how long a clock reading waits for the main thread to stop running
NO_SANDBOX = Protections(False, False, False, False, ("outside check run without the sandbox",))


@dataclass(frozen=True)
class Step:
    """One thing the check process does: run a cell, a visible test, or a check with a seed."""

    id: str
    kind: str            # given | student | visible | check
    source: str = ""     # the cell's or the visible test's code
    check: str = ""      # the check's name (a test cell's grade_id)
    seed: int = 0


@dataclass(frozen=True)
class ClockMark:
    """What the grader read when a ``clock`` request arrived: its own clock and the process's CPU time."""

    label: str               # the check's name for the moment (the process's to write)
    wall_ns: int             # the grader's time.monotonic_ns()
    cpu_ns: int | None       # CPU time of the whole process: every thread, live or exited
    main_ns: int | None      # CPU time of its main thread, the one that runs the checks
    data: str = ""           # what the check sent with it (the process's to write)


@dataclass
class StepResult:
    """How one step ended, and (for a check) what the grader recorded while it ran."""

    ok: bool
    error: str | None = None                 # the process's own text: for the instructor, never for feedback
    failure: str | None = None               # the grader's words: why the step did not finish
    observations: dict | None = None
    served: list[ServedRecord] = field(default_factory=list)
    memory: dict[int, float | None] = field(default_factory=dict)   # window -> peak bytes over its start
    rendezvous: dict[int, int] = field(default_factory=dict)        # group -> most calls waiting at once
    clock: list[ClockMark] = field(default_factory=list)            # clock requests, in order


@dataclass
class Outcome:
    """What one outside check of one notebook produced."""

    steps: dict[str, StepResult] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    failure: str | None = None   # why the check stopped before its end (then unfinished steps failed)
    restarts: int = 0

    def flag(self, text: str) -> None:
        text = printable(str(text), FLAG_CHARS)
        if text not in self.flags and len(self.flags) < MAX_FLAGS:
            self.flags.append(text)


# -- what to run ------------------------------------------------------------------------------
def check_names(source: str) -> list[str]:
    """Top-level function names of a checks file: each is the check of the test cell so named."""
    return [node.name for node in parse_python(source).body
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]


def checks_file(notebook: str, assignment: str, checks_root: Path = CHECKS_ROOT) -> Path:
    return checks_root / assignment / f"{notebook}.py"


def derive_seed(batch_seed: int, check: str, run: int) -> int:
    """The seed of one run of one check: a hash of the batch's secret seed, so the process that
    gets it learns nothing about the batch seed or the other checks' inputs."""
    digest = hashlib.sha256(f"{batch_seed}/{check}/{run}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def check_step_id(check: str, run: int) -> str:
    return f"check {check} #{run}"


def check_steps(nb: nbformat.NotebookNode, checks: list[str], batch_seed: int, runs: int = 1,
                released: nbformat.NotebookNode | None = None, only: list[str] | None = None) -> list[Step]:
    """The cells the check process runs, then per test cell its visible test and ``runs`` checks.

    Test cells never run as the submission has them: the visible test is the release's (the
    source's when ``released`` is None). nbgrader's locked cells are given; solution cells are
    the student's. A plain cell counts as given only if the release has it word for word
    (``released=None``: every plain cell is the instructor's, as in a source notebook), and then
    runs only if it just imports and defines: the experiments are left out. Any other plain cell
    is the student's own and runs. ``only`` runs these checks instead, without visible tests
    (the leaderboard's benchmarks).
    """
    given_cells = released if released is not None else nb
    visible = {nbgrader_meta(c)["grade_id"]: c.source for c in given_cells.cells if is_autograded_test(c)}
    steps, tests = [], []
    for index, (cell, role) in enumerate(zip(nb.cells, cell_roles(nb, released))):
        grade_id = nbgrader_meta(cell).get("grade_id")
        where = f"cell {index}" + (f" [{grade_id}]" if grade_id else "")
        if role == "test":
            tests.append(grade_id)
        elif role in ("given", "student"):
            steps.append(Step(where, role, cell.source))
    if only is not None:
        return steps + [Step(check_step_id(name, 0), "check", check=name, seed=derive_seed(batch_seed, name, 0))
                        for name in only]
    for grade_id in tests:
        if grade_id in visible:
            steps.append(Step(f"visible {grade_id}", "visible", visible[grade_id], check=grade_id))
        if grade_id in checks:
            steps += [Step(check_step_id(grade_id, run), "check", check=grade_id,
                           seed=derive_seed(batch_seed, grade_id, run)) for run in range(runs)]
    return steps


# -- the process ---------------------------------------------------------------------------
class _CheckProcess:
    """One start of the check process: frames in, replies out, both with deadlines."""

    def __init__(self, channel_in: int, channel_out: int, request: dict, deadline: float):
        self.stdin = channel_in
        fcntl.fcntl(self.stdin, fcntl.F_SETFL, fcntl.fcntl(self.stdin, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.reader = FrameReader(channel_out)
        self.send(request, deadline)

    def send(self, message: dict, deadline: float) -> None:
        """Write one frame; ``Ended`` if the process is gone, ``TimedOut`` if it stops reading."""
        data = memoryview(encode_frame(message))
        while data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimedOut()
            _, ready, _ = select.select([], [self.stdin], [], left)
            if not ready:
                raise TimedOut()
            try:
                data = data[os.write(self.stdin, data):]
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise Ended() from None


class _ColdProcess(_CheckProcess):
    """A check process started for itself: the launcher, Python, its imports."""

    def __init__(self, command: list[str], env: dict, area: RunArea, request: dict, deadline: float):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=area.work, env=env, start_new_session=True)
        super().__init__(self.proc.stdin.fileno(), self.proc.stdout.fileno(), request, deadline)

    def python_pid(self) -> int:
        """The process id (in the grader's namespace) of the Python running in the sandbox: the
        launcher's child when the sandbox gives it its own process ids, else the launcher."""
        children = _children(self.proc.pid)
        return children[0] if children else self.proc.pid

    def stop(self, uid: int | None) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if uid is not None:
            kill_user_processes(uid)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class _WarmProcess(_CheckProcess):
    """A check process forked by a ``_Zygote``: the imports were paid once."""

    def __init__(self, zygote: "_Zygote", request: dict, deadline: float):
        self.zygote = zygote
        self.socket, self.pid = zygote.fork(deadline)
        super().__init__(self.socket.fileno(), self.socket.fileno(), request, deadline)

    def python_pid(self) -> int:
        return self.pid

    def stop(self, uid: int | None) -> None:
        self.zygote.kill_all_but_itself(self.pid)
        self.socket.close()


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


class _Zygote:
    """A check process host in the sandbox that imported NumPy and IPython once and forks a check
    process for each start. It serves one submission (or one selftest worker): its children are
    all that submission's, so none can reach another student's."""

    def __init__(self, command: list[str], env: dict, area: RunArea, uid: int | None, deadline: float):
        self.uid = uid
        self.control, theirs = socket.socketpair()
        self.proc = subprocess.Popen(command, stdin=theirs, stdout=theirs, stderr=subprocess.DEVNULL, cwd=area.work,
                                     env=env, start_new_session=True)
        theirs.close()
        self.control.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            ready = self.control.recv(5)
        except OSError:
            ready = b""
        if ready != b"ready":
            self.close()
            raise Ended()
        children = _children(self.proc.pid)
        self.host_pid = children[0] if children else self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None and Path(f"/proc/{self.host_pid}").exists()

    def fork(self, deadline: float) -> tuple[socket.socket, int]:
        """A new check process and the socket to talk to it; ``Ended`` if the zygote is gone."""
        ours, theirs = socket.socketpair()
        try:
            before = set(_children(self.host_pid))
            self.control.settimeout(max(0.1, deadline - time.monotonic()))
            socket.send_fds(self.control, [b"f"], [theirs.fileno()])
            answer = self.control.recv(4)
        except OSError:
            ours.close()
            raise Ended() from None
        finally:
            theirs.close()
        if len(answer) != 4:
            ours.close()
            raise Ended()
        new = [pid for pid in _children(self.host_pid) if pid not in before]
        return ours, (new[0] if new else struct.unpack(">I", answer)[0])

    def kill_all_but_itself(self, pid: int) -> None:
        """Kill a finished check process and anything else of the sandbox user, sparing the zygote."""
        spare = {self.proc.pid, self.host_pid}
        targets = {pid}
        if self.uid is not None:
            for entry in Path("/proc").iterdir():
                try:
                    if entry.name.isdigit() and entry.stat().st_uid == self.uid and int(entry.name) not in spare:
                        targets.add(int(entry.name))
                except OSError:
                    continue
        for target in targets - spare:
            try:
                os.kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        try:
            self.control.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.uid is not None:
            kill_user_processes(self.uid)
        self.proc.wait()


def _read_kib(pid: int, field_name: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_cpu_ns(pid: int) -> int | None:
    """CPU time of process ``pid`` in ns, all its threads, live or exited (``clock_getcpuclockid``)."""
    try:
        return time.clock_gettime_ns((~pid << 3) | CPUCLOCK_SCHED)
    except OSError:
        return None


def main_thread_cpu_ns(pid: int) -> int | None:
    """CPU time of process ``pid``'s main thread in ns, read once it has stopped running (it waits
    for the grader's reply), so the kernel's count is up to date; None if it cannot be read."""
    task = Path(f"/proc/{pid}/task/{pid}")
    deadline = time.monotonic() + MAIN_THREAD_WAIT_S
    try:
        while (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R" and time.monotonic() < deadline:
            os.sched_yield()
        return int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class _Attempt:
    """One start of the check process, message by message, until it finishes, dies, hangs or
    breaks the protocol."""

    def __init__(self, steps: dict[str, Step], outcome: Outcome, limits: Limits, deadline: float):
        self.steps, self.outcome, self.limits, self.deadline = steps, outcome, limits, deadline
        self.ready = False
        self.current: str | None = None
        self.step_deadline = 0.0
        self.pending: dict[int, list[int]] = {}          # rendezvous group -> waiting request numbers
        self.rendezvous_deadline: dict[int, float] = {}
        self.failed_groups: set[int] = set()
        self.finished = False

    def _timeout(self, kind: str | None) -> float:
        return self.limits.cell_timeout_s

    def run(self, process: _CheckProcess) -> tuple[str, str | None]:
        """('finished' | 'start failed' | 'stopped' | 'protocol', step id or None)."""
        self.process = process
        self.step_deadline = min(self.deadline, time.monotonic() + START_TIMEOUT_S)
        while True:
            wake = min([self.step_deadline, *self.rendezvous_deadline.values()])
            try:
                message = process.reader.read(wake)
            except TimedOut:
                now = time.monotonic()
                try:
                    self._release_late_groups(now)
                except (Ended, TimedOut):
                    return "stopped", self._stopped("stopped reading the grader's replies")
                if now < self.step_deadline:
                    continue
                if not self.ready:
                    return "start failed", "it did not say it was ready in time"
                return "stopped", self._stopped("ran out of time" if now >= self.deadline
                                                else f"ran longer than {self._timeout(None):.0f} s and was stopped")
            except Ended:
                if not self.ready:
                    return "start failed", "it exited before it was ready"
                if self.current is None and not self.finished:
                    return "stopped", None
                return "stopped", self._stopped("the process died here (os._exit, a crash or the memory limit)")
            except ProtocolError as exc:
                return "protocol", str(exc)
            try:
                self._handle(message)
            except (ProtocolError, EvidenceError) as exc:
                return "protocol", str(exc)
            except (Ended, TimedOut):
                return "stopped", self._stopped("stopped reading the grader's replies")
            if self.finished:
                return "finished", None

    def _stopped(self, why: str) -> str | None:
        if self.current is None:
            return None
        self.outcome.steps[self.current] = StepResult(False, failure=why)
        return self.current

    def _reply(self, number, **message) -> None:
        self.process.send(dict(message, reply=number), self.step_deadline)

    def _release_late_groups(self, now: float) -> None:
        for group, due in list(self.rendezvous_deadline.items()):
            if now >= due:
                for number in self.pending.pop(group, []):
                    self._reply(number, filled=False)
                self.failed_groups.add(group)
                del self.rendezvous_deadline[group]

    def _handle(self, message: dict) -> None:
        kind = message.get("kind")
        if kind == "ready":
            if self.ready:
                raise ProtocolError("said 'ready' twice")
            self.ready = True
            self.step_deadline = min(self.deadline, time.monotonic() + self.limits.cell_timeout_s)
            return
        if not self.ready:
            raise ProtocolError(f"sent {str(kind)[:20]!r} before it was ready")
        if kind == "start":
            step = message.get("step")
            if type(step) is not str or step not in self.steps or step in self.outcome.steps or self.current:
                raise ProtocolError("started a step that is not next")
            self.current = step
            self.record = StepResult(False)
            self.step_deadline = min(self.deadline, time.monotonic() + self._timeout(self.steps[step].kind))
        elif kind == "end":
            self._end(message)
        elif kind == "serve":
            self._serve(message)
        elif kind == "memory":
            self._memory(message)
        elif kind == "rendezvous":
            self._rendezvous(message)
        elif kind == "clock":
            self._clock(message)
        elif kind == "flags":
            self._flags(message.get("flags"))
        elif kind == "finished":
            if self.current is not None:
                raise ProtocolError("finished in the middle of a step")
            self.finished = True
        else:
            raise ProtocolError("a message of an unknown kind")

    def _flags(self, flags) -> None:
        if flags is None:
            return
        if type(flags) is not list or len(flags) > MAX_FLAGS or not all(type(f) is str for f in flags):
            raise ProtocolError("malformed flags")
        for text in flags:
            self.outcome.flag(text)

    def _end(self, message: dict) -> None:
        step = message.get("step")
        if step != self.current or step is None:
            raise ProtocolError("ended a step that was not running")
        error, observations = message.get("error"), message.get("observations")
        if error is not None and type(error) is not str:
            raise ProtocolError("malformed error")
        if observations is not None and (type(observations) is not dict or self.steps[step].kind != "check"):
            raise ProtocolError("malformed observations")
        self._flags(message.get("flags"))
        if self.pending:
            raise ProtocolError("ended a step while calls still waited at a rendezvous")
        result = self.record
        result.error = None if error is None else printable(error, ERROR_CHARS)
        result.observations = observations
        result.ok = error is None and (observations is not None or self.steps[step].kind != "check")
        if not result.ok and result.failure is None:
            result.failure = "raised an exception" if error else "returned no observations"
        self.outcome.steps[step] = result
        self.current = None
        self.pending, self.rendezvous_deadline, self.failed_groups = {}, {}, set()
        self.step_deadline = min(self.deadline, time.monotonic() + self.limits.cell_timeout_s)

    def _in_check(self) -> StepResult:
        if self.current is None or self.steps[self.current].kind not in TEST_KINDS:
            raise ProtocolError("asked the grader for something outside a test")
        return self.record

    def _serve(self, message: dict) -> None:
        record = self._in_check()
        number, op = message.get("request"), message.get("op")
        if op == "batch":
            reports = message.get("reports")
            if type(reports) is not list or len(reports) > 4096:
                raise ProtocolError("malformed batch")
            for report in reports:
                if type(report) is not dict or report.get("op") not in ("element", "slice", "use"):
                    raise ProtocolError("malformed report")
                self._serve_one(record, report)
            return
        if type(number) is not int:
            raise ProtocolError("a request without a number")
        if op == "register":
            if len(record.served) >= MAX_SERVED_ARRAYS:
                raise ProtocolError("too many served arrays")
            data = message.get("data")
            if type(data) is not str or type(message.get("dtype")) is not str:
                raise ProtocolError("malformed registration")
            try:
                raw = base64.b64decode(data, validate=True)
                record.served.append(register(message["dtype"], message.get("shape"), raw))
            except (ValueError, TypeError) as exc:
                raise ProtocolError(f"malformed registration ({type(exc).__name__})") from None
            self._reply(number, handle=len(record.served) - 1)
            return
        values = self._serve_one(record, message)
        data = None if values is None else base64.b64encode(values.tobytes()).decode("ascii")
        self._reply(number, data=data)

    def _serve_one(self, record: StepResult, message: dict):
        """Record one element read, slice or use; the values handed out (None if not wanted)."""
        op, handle = message.get("op"), message.get("handle")
        if type(handle) is not int or not 0 <= handle < len(record.served):
            raise ProtocolError("no such served array")
        served = record.served[handle]
        if op == "element":
            return served.element(message.get("position"))
        if op not in ("slice", "use"):
            raise ProtocolError("an unknown request")
        view = message.get("view")
        if type(view) is not dict:
            raise ProtocolError("malformed view")
        where = served.positions(view)
        values = served.slice(where) if op == "slice" else served.use(where, message.get("purpose"), message.get("call"))
        return values if message.get("want") else None

    def _memory(self, message: dict) -> None:
        record = self._in_check()
        number, action = message.get("request"), message.get("action")
        if type(number) is not int:
            raise ProtocolError("a request without a number")
        pid = self.process.python_pid()
        if action == "start":
            window = len(record.memory)
            if window >= 64:
                raise ProtocolError("too many memory windows")
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak RSS to the current RSS
                record.memory[window] = _read_kib(pid, "VmRSS")
            except OSError:
                record.memory[window] = None
            self._reply(number, window=window)
        elif action == "stop":
            window = message.get("window")
            if type(window) is not int or window not in record.memory:
                raise ProtocolError("no such memory window")
            start, peak = record.memory[window], _read_kib(pid, "VmHWM")
            record.memory[window] = None if start is None or peak is None else max(0.0, peak - start)
            self._reply(number)
        else:
            raise ProtocolError("an unknown memory request")

    def _clock(self, message: dict) -> None:
        """Record the grader's clock and the process's CPU time now, then reply."""
        record = self._in_check()
        wall = time.monotonic_ns()
        number, label, data = message.get("request"), message.get("label"), message.get("data", "")
        if (type(number) is not int or type(label) is not str or len(label) > MAX_CLOCK_LABEL
                or type(data) is not str or len(data) > MAX_CLOCK_DATA):
            raise ProtocolError("malformed clock request")
        if len(record.clock) >= MAX_CLOCK_MARKS:
            raise ProtocolError("too many clock requests")
        pid = self.process.python_pid()
        main = main_thread_cpu_ns(pid)
        record.clock.append(ClockMark(label, wall, process_cpu_ns(pid), main, data))
        self._reply(number)

    def _rendezvous(self, message: dict) -> None:
        record = self._in_check()
        number, group, count = message.get("request"), message.get("group"), message.get("count")
        if type(number) is not int or type(group) is not int or type(count) is not int or not 1 <= count <= 256:
            raise ProtocolError("malformed rendezvous")
        if group in self.failed_groups:
            self._reply(number, filled=False)
            return
        waiting = self.pending.setdefault(group, [])
        waiting.append(number)
        record.rendezvous[group] = max(record.rendezvous.get(group, 0), len(waiting))
        if len(waiting) >= count:
            for waiter in self.pending.pop(group):
                self._reply(waiter, filled=True)
            self.rendezvous_deadline.pop(group, None)
        else:
            self.rendezvous_deadline.setdefault(group, time.monotonic() + RENDEZVOUS_TIMEOUT_S)


# -- running a whole check ------------------------------------------------------------------
class CheckHost:
    """Where check processes start: a run area, a sandbox user, and (``warm``) a zygote that has
    imported what every check process needs and forks one per start. Use it as a context manager
    around the checks of one submission (or one selftest worker); a cold host starts each check
    process for itself."""

    def __init__(self, helpers: list[Path], *, sandbox: bool = True, course_root: Path | None = None,
                 scratch_root: Path | None = None, limits: Limits = Limits(), threads: int = 1,
                 env: dict[str, str] | None = None, warm: bool = True):
        self.helpers, self.course_root, self.limits, self.threads = helpers, course_root, limits, threads
        self.protections = detect_protections() if sandbox else NO_SANDBOX
        self.scratch_root, self.extra_env, self.warm = scratch_root, env or {}, warm
        self.zygote: _Zygote | None = None

    def __enter__(self) -> "CheckHost":
        self._temporary = None
        if self.scratch_root is None:
            self._temporary = self.scratch_root = Path(tempfile.mkdtemp(prefix="acclab-check-"))
        self._uid_claim = claim_sandbox_uid() if self.protections.separate_user else nullcontext()
        self.uid = self._uid_claim.__enter__()
        self.area = make_run_area(self.scratch_root, self.helpers, self.uid, self.limits, self.protections)
        hide = hidden_paths(*(p for p in (self.course_root, REPO) if p is not None))
        self.prefix = launcher_prefix(self.area, self.uid, hide, self.limits, self.protections, stdio="pipes")
        self.env = allowed_environment(self.area, self.threads, MPLBACKEND="Agg", **self.extra_env)
        return self

    def __exit__(self, *exc) -> None:
        if self.zygote is not None:
            self.zygote.close()
        remove_run_area(self.area)
        self._uid_claim.__exit__(*exc)
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)

    def start(self, request: dict, deadline: float, cold: bool = False) -> _CheckProcess:
        """A check process given ``request``: forked by the zygote when warm (started first if
        needed), else started for itself. ``OSError``, ``Ended`` or ``TimedOut`` if it cannot start."""
        if self.warm and not cold:
            if self.zygote is None or not self.zygote.alive():
                if self.zygote is not None:
                    self.zygote.close()
                self.zygote = None
                self.zygote = _Zygote([*self.prefix, sys.executable, "-I", "-c", ZYGOTE_BOOTSTRAP], self.env,
                                      self.area, self.uid, deadline)
            return _WarmProcess(self.zygote, request, deadline)
        return _ColdProcess([*self.prefix, sys.executable, "-I", "-c", BOOTSTRAP], self.env, self.area, request,
                            deadline)


def run_checks(nb: nbformat.NotebookNode, checks_source: str, batch_seed: int, helpers: list[Path],
               released: nbformat.NotebookNode | None = None, *, runs: int = 1, sandbox: bool = True,
               course_root: Path | None = None, scratch_root: Path | None = None, limits: Limits = Limits(),
               threads: int = 1, only: list[str] | None = None, env: dict[str, str] | None = None,
               host: CheckHost | None = None) -> Outcome:
    """Run the outside check of ``nb`` (see the module docstring) and return what it produced.

    ``helpers`` are the release's helper modules (importable, read-only, in the process);
    ``runs`` checks per test cell, each with its own derived seed; ``only`` runs these checks
    instead of the test cells'. ``host`` (a ``CheckHost`` already entered) starts the processes;
    without one, a cold host for this call alone is made from the other arguments.
    """
    steps = check_steps(nb, check_names(checks_source), batch_seed, runs, released, only)
    outcome = Outcome()
    if host is None:
        with CheckHost(helpers, sandbox=sandbox, course_root=course_root, scratch_root=scratch_root, limits=limits,
                       threads=threads, env=env, warm=False) as own:
            _run(steps, checks_source, own, outcome, runs)
    else:
        _run(steps, checks_source, host, outcome, runs)
    return outcome


def _run(steps: list[Step], checks_source: str, host: CheckHost, outcome: Outcome, runs: int) -> None:
    by_id = {step.id: step for step in steps}
    texts = {"process": PROCESS.read_text(), "observe": OBSERVE.read_text(), "protocol": PROTOCOL.read_text()}
    limits = host.limits
    deadline = time.monotonic() + limits.check_timeout_s * max(1, runs)
    skip: set[str] = set()
    retried = False
    while True:
        request = {**texts, "checks": checks_source, "helpers": str(host.area.helpers), "work": str(host.area.work),
                   "skip": sorted(skip),
                   "steps": [{"id": s.id, "kind": s.kind, "source": s.source, "check": s.check, "seed": s.seed}
                             for s in steps]}
        attempt = _Attempt(by_id, outcome, limits, deadline)
        try:  # a retry starts a process of its own: the zygote may be what failed
            process = host.start(request, min(deadline, time.monotonic() + START_TIMEOUT_S), cold=retried)
        except (OSError, Ended, TimedOut) as exc:
            status, where = "start failed", f"{type(exc).__name__}"
            process = None
        else:
            try:
                status, where = attempt.run(process)
            finally:
                process.stop(host.uid)
        if status == "finished":
            break
        if status == "start failed":
            if not retried:  # nothing of the submission has run yet: the grader's own failure
                retried = True
                continue
            outcome.failure = f"the check process could not start ({where})"
            break
        if status == "protocol":
            outcome.failure = f"the check process broke the protocol ({where})"
            break
        # stopped: a step hung or died (it has its result), or the process ended early
        if where is None:
            outcome.failure = "the check process ended before its last step"
            break
        outcome.restarts += 1
        retried = False
        skip |= {sid for sid in outcome.steps if by_id[sid].kind in TEST_KINDS} | {where}
        for sid in [sid for sid in outcome.steps if by_id[sid].kind in CELL_KINDS and sid != where]:
            del outcome.steps[sid]  # replayed by the next start
        if time.monotonic() >= deadline:
            outcome.failure = f"the check ran out of time ({limits.check_timeout_s * max(1, runs):.0f} s)"
            break
    for step in steps:
        if step.id not in outcome.steps:
            outcome.steps[step.id] = StepResult(False, failure="not run: " + (outcome.failure or "the check stopped"))
