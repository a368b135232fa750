"""nbgrader preprocessors that grade hostile notebooks correctly.

``SandboxedExecute`` replaces nbgrader's ``Execute``: the kernel runs in the sandbox of
``autograder.run.sandbox`` (its own run area, an allow-listed environment, nothing on its
standard streams), with the limits of ``c.Sandbox`` in ``nbgrader_config.py``; a kernel that dies
or hangs costs only the cell it was running (a new kernel replays the cells before it and
grading goes on); output is capped in bytes as it arrives.
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

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.client import NotebookClient
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.preprocessors import Execute, SaveAutoGrades
from traitlets import Bool, Integer, Unicode

from autograder.cells import cell_roles
from autograder.course import REPO, sandbox_limits, scratch_root
from autograder.run.sandbox import (Limits, Protections, RunArea, allowed_environment, claim_sandbox_uid,
                                    detect_protections, hidden_paths, kill_user_processes, launcher_prefix,
                                    make_run_area, remove_run_area)

METADATA_KEY = "acceleration_lab"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
SANDBOX_OFF = Protections(False, False, False, False, ("the sandbox is turned off (SandboxedExecute.sandbox = False)",))


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
    helpers_dir = Unicode("", help="Folder whose .py files the kernel may import (default: the release "
                                   "of the notebook's assignment).").tag(config=True)
    threads = Integer(1, help="BLAS threads per kernel.").tag(config=True)
    skip_experiments = Bool(True, help="Skip the release's experiment cells (benchmarks, plots): they grade "
                                       "nothing, and make source checks that no graded cell needs them.").tag(config=True)
    max_restarts = Integer(8, help="Kernel restarts per notebook before giving up.").tag(config=True)

    def __init__(self, *args, limits: Limits | None = None, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(*args, **kwargs)
        self.limits = limits or sandbox_limits(self.config)

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
        limit = self.limits.output_bytes
        if used > limit:
            if outs and outs[-1] is out:
                outs.pop()
            room = limit - (used - size)
            if out.output_type == "stream" and room > 0:
                out.text = out.text[:room]
                outs.append(out)
            outs.append(new_output("stream", name="stdout", text=f"\n[output truncated: more than {limit} bytes]\n"))
            self._output_capped.add(cell_index)
        return out

    # -- the sandboxed kernel -------------------------------------------------------------
    def _kernel_manager(self, area: RunArea, uid: int | None) -> SandboxKernelManager:
        km = SandboxKernelManager(kernel_name=self.kernel_name or "python3", config=self.config,
                                  transport="ipc", ip=str(area.work / "kernel"))
        km.connection_file = str(area.work / "kernel.json")
        km.sandbox_uid = uid
        root = Path(self.course_root or os.getcwd())
        km.sandbox_wrap = launcher_prefix(area, uid, hidden_paths(root, REPO), self.limits, self._protections)
        return km

    def _run_cells(self, cells: list[int], replay: list[int], area: RunArea, uid: int | None,
                   deadline: float) -> int | None:
        """Run ``cells`` after silently replaying ``replay``; the index that killed the kernel."""
        self.km = self._kernel_manager(area, uid)
        self.owns_km = True
        current = None
        env = allowed_environment(area, self.threads, MPLBACKEND=INLINE_BACKEND)
        try:
            with self.setup_kernel(env=env, cwd=str(area.work)):
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

    def _released(self):
        """The release's copy of this notebook, or None (then every cell runs)."""
        info = self.resources.get("nbgrader", {})
        assignment, notebook = info.get("assignment"), info.get("notebook")
        path = Path(self.course_root or os.getcwd()) / "release" / str(assignment) / f"{notebook}.ipynb"
        return nbformat.read(path, as_version=4) if assignment and notebook and path.is_file() else None

    def _helpers(self) -> list[Path]:
        folder = Path(self.helpers_dir) if self.helpers_dir else None
        if folder is None:
            assignment = self.resources.get("nbgrader", {}).get("assignment")
            folder = Path(self.course_root or os.getcwd()) / "release" / assignment if assignment else None
        return sorted(p for p in folder.iterdir() if p.suffix == ".py" and p.is_file()) if folder and folder.is_dir() else []

    def preprocess(self, nb, resources=None, km=None):
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self.interrupt_on_timeout = False
        self.shutdown_kernel = "immediate"  # nothing of the kernel's is kept: no need to wait for it to exit
        self.timeout = int(self.limits.cell_timeout_s)
        self._output_used, self._output_capped = {}, set()
        self._protections = detect_protections() if self.sandbox else SANDBOX_OFF
        if self._protections.separate_user:
            with claim_sandbox_uid() as uid:
                return self._preprocess_as(nb, uid)
        return self._preprocess_as(nb, None)

    def _preprocess_as(self, nb, uid: int | None):
        root = Path(self.course_root or os.getcwd())
        area = make_run_area(scratch_root(root), self._helpers(), uid, self.limits, self._protections)
        events: list[dict] = []
        released = self._released() if self.skip_experiments else None
        roles = cell_roles(nb, released) if released is not None else [None] * len(nb.cells)
        code_cells = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and roles[i] != "experiment"]
        done: list[int] = []
        limit_s = self.limits.notebook_timeout_s
        deadline = time.monotonic() + limit_s
        try:
            pending = code_cells
            restarts = 0
            while pending:
                self._failure = None
                try:
                    failed = self._run_cells(pending, done, area, uid, deadline)
                except NotebookTimeout as stop:
                    for index in pending[pending.index(stop.index):]:
                        nb.cells[index].outputs.append(error_output(
                            "NotRun", f"not run: the notebook exceeded {limit_s:.0f} s"))
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
            remove_run_area(area)
        for index in sorted(self._output_capped):
            events.append(self._event(index, "output truncated", f"more than {self.limits.output_bytes} bytes"))
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
