"""nbgrader preprocessors that grade hostile notebooks correctly.

``SandboxedExecute`` replaces nbgrader's ``Execute``: the kernel runs in the sandbox of
``autograder.sandbox``; a kernel that dies or hangs costs only the cell it was running (a new
kernel replays the cells before it and grading goes on); output is capped in bytes as it arrives.
``SaveAutoGradesKeepingStderr`` replaces ``SaveAutoGrades``: a passing test that wrote to stderr
(a ``RuntimeWarning``) keeps its points. What happened is recorded in the notebook's metadata
under ``acceleration_lab`` for the batch grader's ``reason`` column.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.client import NotebookClient
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.preprocessors import Execute, SaveAutoGrades
from traitlets import Bool, Float, Integer, Unicode

from autograder.sandbox import (Limits, Protections, claim_sandbox_uid, detect_protections, hidden_paths,
                                kill_user_processes, launcher_prefix)

REPO = Path(__file__).resolve().parent.parent
METADATA_KEY = "acceleration_lab"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
SANDBOX_OFF = Protections(False, False, False, ("the sandbox is turned off (SandboxedExecute.sandbox = False)",))


def sandbox_env(scratch: Path, **extra: str) -> dict[str, str]:
    """Environment for student code: its home in ``scratch``, grading mode on, no API tokens."""
    env = dict(os.environ, HOME=str(scratch), IPYTHONDIR=str(scratch / ".ipython"),
               MPLCONFIGDIR=str(scratch / ".matplotlib"), JUPYTER_RUNTIME_DIR=str(scratch / ".runtime"),
               NBGRADER_EXECUTION="autograde", **extra)
    for secret in ("JPY_API_TOKEN", "JUPYTERHUB_API_TOKEN"):
        env.pop(secret, None)
    return env


def prepare_scratch(source_dir: Path, uid: int | None) -> Path:
    """A private folder with the submission's files (not its notebooks), owned by ``uid``."""
    scratch = Path(tempfile.mkdtemp(prefix=f"acclab-scratch-{uid or 'me'}-"))
    shutil.copytree(source_dir, scratch, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.ipynb", "*.log", ".ipynb_checkpoints"))
    cache = Path.home() / ".cache" / "matplotlib"
    if cache.is_dir():  # a warm font cache saves seconds per kernel start
        shutil.copytree(cache, scratch / ".matplotlib", dirs_exist_ok=True)
    if uid is not None:
        for path in [scratch, *scratch.rglob("*")]:
            os.chown(path, uid, uid, follow_symlinks=False)
    os.chmod(scratch, 0o700)
    return scratch


class SandboxKernelManager(AsyncKernelManager):
    """Starts the kernel through the sandbox launcher, over sockets in the scratch folder."""

    sandbox_wrap: list[str] = []
    sandbox_uid: int | None = None

    def format_kernel_cmd(self, extra_arguments=None):
        return [*self.sandbox_wrap, *super().format_kernel_cmd(extra_arguments)]

    def write_connection_file(self, **kwargs):
        super().write_connection_file(**kwargs)
        if self.sandbox_uid is not None:
            os.chown(self.connection_file, self.sandbox_uid, self.sandbox_uid)


def error_output(ename: str, evalue: str) -> NotebookNode:
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def output_size(output: NotebookNode) -> int:
    """Bytes an output takes in the notebook (text, data and traceback)."""
    return len(json.dumps(output, default=str))


class SandboxedExecute(Execute):
    """Execute a submission in the grading sandbox, surviving dead and hung kernels."""

    sandbox = Bool(True, help="Run kernels in the sandbox (as far as the OS allows).").tag(config=True)
    course_root = Unicode("", help="Course root to hide from student code (default: cwd).").tag(config=True)
    memory_bytes = Integer(Limits.memory_bytes, help="Address-space limit per kernel.").tag(config=True)
    max_processes = Integer(Limits.processes, help="Processes and threads per kernel user.").tag(config=True)
    file_size_bytes = Integer(Limits.file_size_bytes, help="Largest file a kernel may write.").tag(config=True)
    output_bytes = Integer(Limits.output_bytes, help="Output kept per cell, in bytes.").tag(config=True)
    max_restarts = Integer(8, help="Kernel restarts per notebook before giving up.").tag(config=True)
    notebook_timeout = Float(Limits.submission_timeout_s,
                             help="Seconds for a whole notebook; cells after it are not run.").tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(*args, **kwargs)

    # -- output capping, applied to every message as it arrives --------------------------
    def output(self, outs, msg, display_id, cell_index):
        if cell_index in self._output_capped:
            return None
        out = super().output(outs, msg, display_id, cell_index)
        if out is None:
            return None
        size = output_size(out)
        used = self._output_used.get(cell_index, 0) + size
        self._output_used[cell_index] = used
        if used > self.output_bytes:
            if outs and outs[-1] is out:
                outs.pop()
            room = self.output_bytes - (used - size)
            if out.output_type == "stream" and room > 0:
                out.text = out.text[:room]
                outs.append(out)
            outs.append(new_output("stream", name="stdout",
                                   text=f"\n[output truncated: more than {self.output_bytes} bytes]\n"))
            self._output_capped.add(cell_index)
        return out

    # -- the sandboxed kernel -------------------------------------------------------------
    def _kernel_manager(self, scratch: Path, uid: int | None) -> SandboxKernelManager:
        km = SandboxKernelManager(kernel_name=self.kernel_name or "python3", config=self.config,
                                  transport="ipc", ip=str(scratch / "kernel"))
        km.connection_file = str(scratch / "kernel.json")
        km.sandbox_uid = uid
        root = Path(self.course_root or os.getcwd())
        limits = Limits(self.memory_bytes, self.max_processes, self.file_size_bytes)
        hide = hidden_paths(root, REPO)
        km.sandbox_wrap = launcher_prefix(scratch, uid, hide, limits, self._protections)
        return km

    def _run_cells(self, cells: list[int], replay: list[int], scratch: Path, uid: int | None,
                   deadline: float) -> int | None:
        """Run ``cells`` after silently replaying ``replay``; the index that killed the kernel."""
        self.km = self._kernel_manager(scratch, uid)
        self.owns_km = True
        current = None
        try:
            with self.setup_kernel(env=sandbox_env(scratch, MPLBACKEND=INLINE_BACKEND), cwd=str(scratch)):
                self.wait_for_reply(self.kc.kernel_info())
                for index in replay:  # nbclient stores the executed cell back: keep the original
                    current, original = index, self.nb.cells[index]
                    self.execute_cell(copy.deepcopy(original), index, store_history=False)
                    self.nb.cells[index] = original
                for index in cells:
                    current = index
                    if time.monotonic() > deadline:
                        raise NotebookTimeout(index)
                    self.execute_cell(self.nb.cells[index], index, store_history=True)
            return None
        except (DeadKernelError, CellTimeoutError, RuntimeError) as exc:
            if isinstance(exc, NotebookTimeout):
                raise
            if current is None:
                raise KernelStartError(f"the grading kernel did not start: {exc}") from exc
            self._failure = exc
            return current
        finally:
            if uid is not None:
                kill_user_processes(uid)

    def preprocess(self, nb, resources=None, km=None):
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self.interrupt_on_timeout = False
        self._output_used, self._output_capped = {}, set()
        self._protections = detect_protections() if self.sandbox else SANDBOX_OFF
        if self._protections.separate_user:
            with claim_sandbox_uid() as uid:
                return self._preprocess_as(nb, uid)
        return self._preprocess_as(nb, None)

    def _preprocess_as(self, nb, uid: int | None):
        source_dir = Path(self.resources.get("metadata", {}).get("path") or os.getcwd())
        scratch = prepare_scratch(source_dir, uid)
        events: list[dict] = []
        code_cells = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
        done: list[int] = []
        deadline = time.monotonic() + self.notebook_timeout
        try:
            pending = code_cells
            restarts = 0
            while pending:
                self._failure = None
                try:
                    failed = self._run_cells(pending, done, scratch, uid, deadline)
                except NotebookTimeout as stop:
                    for index in pending[pending.index(stop.index):]:
                        nb.cells[index].outputs.append(error_output(
                            "NotRun", f"not run: the notebook exceeded {self.notebook_timeout:.0f} s"))
                    events.append(self._event(stop.index, "notebook time limit", "cells from here not run"))
                    break
                if failed is None:
                    break
                if failed in done:  # the replay itself failed: stop rather than loop
                    events.append(self._event(failed, "replay failed", str(self._failure)))
                    break
                kind, message = self._describe(self._failure)
                nb.cells[failed].outputs.append(error_output(kind, message))
                events.append(self._event(failed, kind, message))
                done += [i for i in pending[:pending.index(failed)]]
                pending = pending[pending.index(failed) + 1:]
                restarts += 1
                if restarts > self.max_restarts:
                    for index in pending:
                        nb.cells[index].outputs.append(error_output("NotRun", "not run: too many kernel restarts"))
                    events.append(self._event(pending[0] if pending else failed, "too many restarts", ""))
                    break
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for index in sorted(self._output_capped):
            events.append(self._event(index, "output truncated", f"more than {self.output_bytes} bytes"))
        nb.metadata[METADATA_KEY] = {"events": events, "sandbox_missing": self._protections.missing()}
        self.set_widgets_metadata()
        return nb, self.resources

    def _describe(self, failure: Exception | None) -> tuple[str, str]:
        if isinstance(failure, CellTimeoutError):
            return "CellTimeout", f"the cell ran longer than {self.timeout} s and its kernel was stopped"
        return "KernelDied", ("the kernel died while running this cell (os._exit, a crash, or the "
                              "memory limit); later cells ran in a new kernel")

    def _event(self, index: int, kind: str, detail: str) -> dict:
        grade_id = self.nb.cells[index].get("metadata", {}).get("nbgrader", {}).get("grade_id")
        return {"cell": index, "grade_id": grade_id, "event": kind, "detail": detail}


class KernelStartError(RuntimeError):
    """The sandboxed kernel could not be started: nothing of the notebook was graded."""


class NotebookTimeout(RuntimeError):
    """The whole notebook ran out of time before cell ``index``."""

    def __init__(self, index: int):
        super().__init__(f"notebook time limit reached before cell {index}")
        self.index = index


def score_ignoring_stderr(cell: NotebookNode, log=None):
    """nbgrader's ``determine_grade``, except that stderr output does not cost points."""
    cell = copy.deepcopy(cell)
    if "outputs" in cell:
        cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    return utils.determine_grade(cell, log)


class SaveAutoGradesKeepingStderr(SaveAutoGrades):
    """nbgrader's ``SaveAutoGrades`` scoring with ``score_ignoring_stderr``."""

    def _add_score(self, cell, resources):
        grade = self.gradebook.find_grade(cell.metadata["nbgrader"]["grade_id"], self.notebook_id,
                                          self.assignment_id, self.student_id)
        grade.auto_score, _ = score_ignoring_stderr(cell, self.log)
        grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        self.gradebook.db.commit()
