"""``make worker``: a Celery worker that grades queued submissions, ``WORKERS`` processes.

Each process keeps a scratch course of its own under ``<repo>/.grading/workers/`` (hidden from
student code, as the whole repository is): this machine's copy of the release, a private SQLite
gradebook and, as an embedded worker has, a long-lived ``autograder.run.worker`` process that
runs nbgrader with the kernel in the sandbox and the outside check; its sandbox user is claimed
per kernel (``claim_sandbox_uid``), so processes never share one. For one task key it

1. takes the key's advisory lock (another delivery of a key being graded is skipped) and marks
   the task running; a task superseded by a newer submission, or done, is skipped;
2. writes the staged notebooks (from PostgreSQL, by hash) and a private gradebook holding the
   assignment and the student's current rows, then grades exactly as ``make autograde`` does
   (``grade_student_safely`` with the staging the instructor's machine did);
3. in one transaction: checks the task is still the student's newest, copies the student's rows
   into nbgrader's tables, stores the row and the autograded notebooks, marks the task done.

The answer key comes from PostgreSQL into a 0600 file of the scratch course, read by the grading
process only. A worker grades only tasks enqueued for the release and checks it has itself
(their digest); a task for another fails with the reason, and the next ``make autograde``
enqueues it again.
"""
from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from celery.exceptions import SecurityWarning
from celery.signals import after_setup_logger, worker_process_init, worker_process_shutdown, worker_ready
from nbgrader.api import Gradebook
from sqlalchemy import Engine, URL, func, select
from sqlalchemy.exc import InterfaceError, OperationalError

from autograder.check.answer_key import answer_key_path
from autograder.check.runner import CHECKS_ROOT
from autograder.course import REPO, STAGING, course_arguments, scratch_root
from autograder.distributed import gradebook, store
from autograder.distributed.broker import TASK, make_app
from autograder.distributed.connections import (ConnectionSettingsError, broker_url, environment_url,
                                                gradebook_engine, gradebook_url, shown)
from autograder.grade import (GradingWorker, gradebook_notebooks, grade_student_safely, grading_digest,
                              warn_missing_protections)
from autograder.report.grades import failed_row
from autograder.run.sandbox import sweep_run_areas, sweep_sandbox_users

WORKER_AREAS = REPO / STAGING / "workers"
CONNECTION_VARIABLES = ("GRADEBOOK", "BROKER")
PR_SET_PDEATHSIG = 1
DATABASE_DOWN = (OperationalError, InterfaceError)  # the gradebook unreachable: try the task again later
log = logging.getLogger("autograder.distributed.worker")


@dataclass(frozen=True)
class WorkerSettings:
    """What every process of this worker grades with (set before the processes fork)."""

    root: Path
    assignment: str
    gradebook: URL
    node: str
    digest: str
    threads: int
    timeout_s: float


@dataclass
class Prepared:
    """What grading against one release-and-checks digest needs, made once per process."""

    digest: str
    notebooks: dict[str, float]
    template: Path
    grader: GradingWorker


@dataclass
class WorkerProcess:
    """One process of the worker: its scratch course, database engine and grading process."""

    settings: WorkerSettings
    course: Path
    lock: object
    engine: Engine
    prepared: Prepared | None = field(default=None)


SETTINGS: WorkerSettings | None = None
PROCESS: WorkerProcess | None = None


class ReleaseMismatch(RuntimeError):
    """The task was enqueued for another release or other checks than this worker has."""


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ChildGradingWorker(GradingWorker):
    """The embedded grading process, ended with the worker process that started it (SIGKILL
    included), and started without the worker's connection settings in its environment."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in (*CONNECTION_VARIABLES, "GRADING_SECRETS"):
            self.env.pop(name, None)

    def _start(self) -> subprocess.Popen:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as stderr:
            return subprocess.Popen(self.command, cwd=self.root, env=self.env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True,
                                    preexec_fn=_die_with_parent)


# -- one process's scratch course ------------------------------------------------------------
def remove_scratch_course(course: Path) -> None:
    sweep_run_areas(scratch_root(course))
    shutil.rmtree(course, ignore_errors=True)


def claim_scratch_course(settings: WorkerSettings) -> tuple[Path, object]:
    """A new scratch course for this process, locked while it lives; courses of dead processes
    (their lock free) are removed on the way."""
    WORKER_AREAS.mkdir(parents=True, exist_ok=True)
    for stale in WORKER_AREAS.iterdir():
        try:
            handle = open(stale / "lock")
        except OSError:  # never locked: left by a process killed while it began
            remove_scratch_course(stale)
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            remove_scratch_course(stale)
    course = WORKER_AREAS / f"{socket.gethostname()}-{os.getpid()}"
    remove_scratch_course(course)
    (course / STAGING).mkdir(parents=True, mode=0o700)
    lock = open(course / "lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    shutil.copytree(settings.root / "release" / settings.assignment, course / "release" / settings.assignment)
    return course, lock


def start_process(**_) -> None:
    """Celery's ``worker_process_init``: this process's scratch course and database engine."""
    global PROCESS
    course, lock = claim_scratch_course(SETTINGS)
    PROCESS = WorkerProcess(SETTINGS, course, lock, gradebook_engine(SETTINGS.gradebook, pooled=False))


def stop_process(**_) -> None:
    """Celery's ``worker_process_shutdown``: end the grading process, remove the scratch course."""
    if PROCESS is not None:
        if PROCESS.prepared is not None:
            PROCESS.prepared.grader.stop()
        remove_scratch_course(PROCESS.course)
        PROCESS.lock.close()


# -- one task ------------------------------------------------------------------------------------
def prepare(process: WorkerProcess, digest: str) -> Prepared:
    """The answer key, private gradebook template and grading process for ``digest``."""
    if process.prepared is not None and process.prepared.digest == digest:
        return process.prepared
    settings = process.settings
    if digest != settings.digest:
        raise ReleaseMismatch(f"worker {settings.node} grades against release and checks {settings.digest[:12]}, "
                              f"the submission was enqueued for {digest[:12]}: update the repo there and run "
                              f"'make release'")
    with process.engine.connect() as conn:
        key = store.answer_key(conn, digest)
        assignment = gradebook.assignment_rows(conn, settings.assignment)
    if key is None or not assignment:
        raise LookupError(f"the gradebook has no {'answer key' if key is None else 'assignment'} for this release")
    key_path = answer_key_path(process.course, settings.assignment)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(key, handle)
    template = process.course / STAGING / "template.db"
    gradebook.write_template(template, assignment)
    with Gradebook(f"sqlite:///{template}") as gb:
        notebooks = gradebook_notebooks(gb, settings.assignment)
    if process.prepared is not None:
        process.prepared.grader.stop()
    grader = ChildGradingWorker(process.course, settings.assignment, settings.threads,
                                process.course / STAGING / "worker.log", key_path)
    process.prepared = Prepared(digest, notebooks, template, grader)
    return process.prepared


def write_submission(course: Path, task, files: dict[str, bytes]) -> None:
    """The staged notebooks of ``task`` where the grading process reads them; old results removed."""
    staged = course / STAGING / "submitted" / task.student / task.assignment
    shutil.rmtree(staged.parent, ignore_errors=True)
    shutil.rmtree(course / "autograded" / task.student, ignore_errors=True)
    staged.mkdir(parents=True)
    for name, digest in task.files.items():
        (staged / name).write_bytes(files[digest])


def read_autograded(course: Path, task) -> tuple[dict[str, bytes], str]:
    """The autograded notebooks (name -> bytes) and nbgrader's log of ``task``'s grading."""
    folder = course / "autograded" / task.student
    notebooks = {path.stem: path.read_bytes() for path in sorted((folder / task.assignment).glob("*.ipynb"))}
    log_path = folder / f"{task.assignment}.autograde.log"
    return notebooks, log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""


def grade_task(process: WorkerProcess, task) -> str:
    """Grade ``task`` (running, its lock held) and store the result; one line saying what happened."""
    settings, start = process.settings, time.perf_counter()
    prepared = prepare(process, task.digest)
    course, student, assignment = process.course, task.student, task.assignment
    if task.attempts > store.MAX_ATTEMPTS:
        row = failed_row(student, prepared.notebooks, f"grading was interrupted {task.attempts - 1} times (its worker "
                                                      f"process was killed): not graded")
        autograded, log_text, graded = {}, "", None
    else:
        with process.engine.connect() as conn:
            files = store.get_blobs(conn, task.files.values())
            before = gradebook.student_rows(conn, assignment, student)
        write_submission(course, task, files)
        gradebook.write_private_gradebook(course / "gradebook.db", prepared.template, before)
        row = grade_student_safely(course, assignment, student, prepared.notebooks, prepared.grader,
                                   settings.timeout_s, store.staged_from_plain(task.staged))
        autograded, log_text = read_autograded(course, task)
        with gradebook.sqlite_connection(course / "gradebook.db") as private:
            graded = gradebook.student_rows(private, assignment, student)
    with process.engine.begin() as conn:
        if not store.still_current(conn, task):
            return f"superseded {student} ({task.key[:12]}) while grading: a newer submission counts"
        store.put_blobs(conn, {store.sha256(data): data for data in autograded.values()})
        if graded is not None:
            gradebook.store_student(conn, graded, assignment, student)
        store.record_result(conn, task.key, row, {name: store.sha256(data) for name, data in autograded.items()},
                            log_text, settings.node)
    shutil.rmtree(course / STAGING / "submitted" / student, ignore_errors=True)
    shutil.rmtree(course / "autograded" / student, ignore_errors=True)
    return (f"graded {student} ({task.key[:12]}) in {time.perf_counter() - start:.1f} s: {row.status}, "
            f"{row.autograded_score:g}/{row.autograded_max:g} autograded")


def grade_submission(key: str) -> None:
    """The Celery task: grade the submission of task ``key`` once, whatever the deliveries."""
    process = PROCESS
    with process.engine.connect() as lock:
        if not lock.scalar(select(func.pg_try_advisory_lock(store.lock_id(key)))):
            log.info(f"skipped {key[:12]}: another process is grading it")
            return
        lock.commit()  # the session's advisory lock outlives the transaction, until close()
        with process.engine.begin() as conn:
            task = store.take(conn, key, process.settings.node, os.getpid())
        if task is None:
            log.info(f"skipped {key[:12]}: graded already, or superseded by a newer submission")
            return
        try:
            log.info(grade_task(process, task))
        except DATABASE_DOWN:
            raise  # Celery sends the task again later (``autoretry_for``)
        except Exception as exc:  # the grader's own trouble: the task fails with the reason
            reason = f"{type(exc).__name__}: {exc}"
            with process.engine.begin() as conn:
                store.record_failure(conn, key, f"on {process.settings.node}: {reason}")
            log.warning(f"failed {task.student} ({key[:12]}): {reason}")


# -- the worker ------------------------------------------------------------------------------------
def quiet_task_lines(logger=None, **_) -> None:
    """One line per task is ours: Celery's 'received' and 'succeeded' lines are not printed."""
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    global SETTINGS
    parser = argparse.ArgumentParser(prog="python -m autograder.distributed worker",
                                     description=__doc__.splitlines()[0])
    course_arguments(parser)
    parser.add_argument("--workers", type=int, default=None, help="grading processes (default: cores)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per submission")
    parser.add_argument("--name", default=None, help="this worker's name (default: grader-<pid>@<host>)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        gradebook_address, broker_address = environment_url("GRADEBOOK"), environment_url("BROKER")
        url, broker = gradebook_url(gradebook_address), broker_url(broker_address)
    except ConnectionSettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not (root / "release" / args.assignment).is_dir():
        print(f"error: {root / 'release' / args.assignment} not found: run 'make release' on this machine first",
              file=sys.stderr)
        return 1
    processes = max(1, args.workers or os.cpu_count() or 1)
    node = args.name or f"grader-{os.getpid()}@{socket.gethostname()}"
    SETTINGS = WorkerSettings(root, args.assignment, url, node, grading_digest(root, args.assignment, CHECKS_ROOT)
                              .hexdigest(), max(1, (os.cpu_count() or 1) // processes), args.timeout)
    warn_missing_protections()
    sweep_sandbox_users()
    app = make_app(broker)
    app.task(name=TASK, ignore_result=True, autoretry_for=DATABASE_DOWN, max_retries=None, retry_backoff=5,
             retry_backoff_max=300)(grade_submission)
    worker_process_init.connect(start_process, weak=False)
    worker_process_shutdown.connect(stop_process, weak=False)
    after_setup_logger.connect(quiet_task_lines, weak=False)
    worker_ready.connect(lambda **_: log.info(f"worker {node} ready: {processes} processes"), weak=False)
    print(f"worker {node}: {processes} processes grading {args.assignment} (release and checks "
          f"{SETTINGS.digest[:12]}), gradebook {shown(gradebook_address)}, broker {shown(broker_address)}", flush=True)
    # Root is what the sandbox needs to run student code as users of its own; the messages are
    # JSON only (never pickle), which is what Celery's warning about root is for.
    warnings.filterwarnings("ignore", category=SecurityWarning)
    app.worker_main(["--quiet", "worker", f"--concurrency={processes}", f"--hostname={node}", "--loglevel=INFO",
                     "--pool=prefork", "--without-gossip", "--without-mingle", "--without-heartbeat", "-O", "fair"])
    return 0
