"""The distributed stage's own tables in the PostgreSQL gradebook, beside nbgrader's.

``grading_blobs``         file contents by sha256: staged notebooks, autograded notebooks
``grading_answer_keys``   the answer key (a secret) per release-and-checks digest
``grading_tasks``         one per submission version: key, student, staged files, state
``grading_results``       the row and autograded notebooks of a graded task (one per key)
``grading_students``      each student's current (newest) task key

A task's key hashes the student, the staged files' hashes, the release and the checks: the
same submission enqueued twice is one task. States: ``queued`` -> ``running`` -> ``done``, or
``failed`` (the grader's own trouble: enqueued again by the next ``make autograde``), or
``superseded`` (the student submitted again; never graded after the newer one). A worker that
grades a task holds a PostgreSQL advisory lock on its key for as long as it grades: a second
delivery of the same key leaves it alone, and ``running`` with nobody holding the lock means the
worker died (``orphaned``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, Column, Connection, DateTime, ForeignKey, Integer, LargeBinary, MetaData,
                        String, Table, Text, func, select, update)
from sqlalchemy.dialects.postgresql import insert

from autograder.collect.repair import Repair
from autograder.collect.stage import Staged
from autograder.report.grades import GradeRow

QUEUED, RUNNING, DONE, FAILED, SUPERSEDED = "queued", "running", "done", "failed", "superseded"
STATES = (QUEUED, RUNNING, DONE, FAILED, SUPERSEDED)
MAX_ATTEMPTS = 3  # deliveries that ended with the worker killed before a task counts as ungradable

metadata = MetaData()
blobs = Table("grading_blobs", metadata,
              Column("sha256", String(64), primary_key=True),
              Column("content", LargeBinary, nullable=False))
answer_keys = Table("grading_answer_keys", metadata,
                    Column("digest", String(64), primary_key=True),
                    Column("assignment", String(128), nullable=False),
                    Column("key", Text, nullable=False),
                    Column("created_at", DateTime(timezone=True), nullable=False))
tasks = Table("grading_tasks", metadata,
              Column("key", String(64), primary_key=True),
              Column("assignment", String(128), nullable=False, index=True),
              Column("student", String(128), nullable=False),
              Column("digest", String(64), nullable=False),     # release and checks graded against
              Column("fingerprint", String(64), nullable=False),  # submitted folder, release and checks
              Column("staged", JSON, nullable=False),           # what staging found (Staged, plain)
              Column("files", JSON, nullable=False),            # staged file name -> sha256
              Column("extras", JSON, nullable=False),           # submitted file the reports read -> sha256
              Column("state", String(16), nullable=False),
              Column("reason", Text),                           # why it failed
              Column("worker", String(255)),                    # node that last took it
              Column("worker_pid", Integer),
              Column("attempts", Integer, nullable=False, default=0),
              Column("sequence", BigInteger, nullable=False),   # enqueue order: the newest submission wins
              Column("enqueued_at", DateTime(timezone=True), nullable=False),
              Column("started_at", DateTime(timezone=True)),
              Column("finished_at", DateTime(timezone=True)))
results = Table("grading_results", metadata,
                Column("key", String(64), ForeignKey("grading_tasks.key"), primary_key=True),
                Column("row", JSON, nullable=False),            # GradeRow, plain
                Column("autograded", JSON, nullable=False),     # notebook -> sha256 of its autograded copy
                Column("log", Text, nullable=False),
                Column("worker", String(255), nullable=False),
                Column("graded_at", DateTime(timezone=True), nullable=False))
students = Table("grading_students", metadata,
                 Column("assignment", String(128), primary_key=True),
                 Column("student", String(128), primary_key=True),
                 Column("current_key", String(64), nullable=False))


def now() -> datetime:
    return datetime.now(timezone.utc)


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def task_key(assignment: str, student: str, files: dict[str, str], digest: str) -> str:
    """The key of grading ``files`` (name -> sha256) of ``student`` against release and checks ``digest``."""
    text = json.dumps([assignment, student, sorted(files.items()), digest])
    return sha256(text.encode())


def lock_id(key: str) -> int:
    """The advisory-lock number of a task key (positive, 60 bits)."""
    return int(key[:15], 16)


# -- plain data ------------------------------------------------------------------------------
def staged_to_plain(staged: Staged) -> dict:
    plain = asdict(staged)
    plain["present"] = sorted(staged.present)
    return plain


def staged_from_plain(plain: dict) -> Staged:
    return Staged(set(plain["present"]), dict(plain["problems"]), [Repair(**r) for r in plain["repairs"]],
                  list(plain["notes"]), list(plain["refused"]), list(plain["ignored"]))


def row_from_plain(plain: dict) -> GradeRow:
    return GradeRow(**plain)


# -- blobs and answer keys -------------------------------------------------------------------
def put_blobs(conn: Connection, contents: dict[str, bytes]) -> None:
    """Store ``contents`` (sha256 -> bytes); a hash stored before is kept as it is."""
    if contents:
        conn.execute(insert(blobs).on_conflict_do_nothing(),
                     [{"sha256": digest, "content": data} for digest, data in contents.items()])


def get_blobs(conn: Connection, hashes) -> dict[str, bytes]:
    wanted = sorted(set(hashes))
    found = {digest: bytes(data) for digest, data in
             conn.execute(select(blobs.c.sha256, blobs.c.content).where(blobs.c.sha256.in_(wanted)))}
    missing = set(wanted) - set(found)
    if missing:
        raise LookupError(f"{len(missing)} file(s) missing from grading_blobs (e.g. {sorted(missing)[0][:12]})")
    return found


def answer_key(conn: Connection, digest: str) -> dict | None:
    text = conn.scalar(select(answer_keys.c.key).where(answer_keys.c.digest == digest))
    return None if text is None else json.loads(text)


def put_answer_key(conn: Connection, digest: str, assignment: str, key: dict) -> None:
    conn.execute(insert(answer_keys).on_conflict_do_nothing(),
                 {"digest": digest, "assignment": assignment, "key": json.dumps(key), "created_at": now()})


# -- enqueueing ------------------------------------------------------------------------------
def current_task(conn: Connection, assignment: str, student: str):
    """The student's current task row, or None."""
    return conn.execute(select(tasks).join(students, students.c.current_key == tasks.c.key).where(
        students.c.assignment == assignment, students.c.student == student)).first()


def submit(conn: Connection, assignment: str, student: str, key: str, new_task: dict | None = None) -> str:
    """Make ``key`` the student's current task (in the caller's transaction); its state after.

    ``new_task`` (digest, fingerprint, staged, files, extras) is needed when ``key`` is new. The
    student's previous task, unless done, is superseded; a task already done stays done while it
    is current, and is queued again when it comes back after another one; a failed one is queued.
    """
    conn.execute(insert(students).on_conflict_do_nothing(),
                 {"assignment": assignment, "student": student, "current_key": key})
    current = conn.scalar(select(students.c.current_key).where(
        students.c.assignment == assignment, students.c.student == student).with_for_update())
    if current != key:
        conn.execute(update(tasks).where(tasks.c.key == current, tasks.c.state.in_((QUEUED, RUNNING, FAILED)))
                     .values(state=SUPERSEDED, finished_at=now()))
        conn.execute(update(students).where(students.c.assignment == assignment, students.c.student == student)
                     .values(current_key=key))
    sequence = conn.scalar(select(func.coalesce(func.max(tasks.c.sequence), 0) + 1))
    state = conn.scalar(select(tasks.c.state).where(tasks.c.key == key).with_for_update())
    if state is None:
        if new_task is None:
            raise LookupError(f"task {key[:12]} is not in the gradebook")
        conn.execute(insert(tasks), {"key": key, "assignment": assignment, "student": student, **new_task,
                                     "state": QUEUED, "attempts": 0, "sequence": sequence, "enqueued_at": now()})
        return QUEUED
    if state in (FAILED, SUPERSEDED) or (state == DONE and current != key):
        conn.execute(update(tasks).where(tasks.c.key == key).values(
            state=QUEUED, reason=None, attempts=0, sequence=sequence, enqueued_at=now()))
        return QUEUED
    return state


def orphaned(conn: Connection, keys) -> list[str]:
    """Of ``keys``, the tasks marked running that no worker holds (their worker died)."""
    running = conn.scalars(select(tasks.c.key).where(tasks.c.key.in_(list(keys)), tasks.c.state == RUNNING)).all()
    return [key for key in running if conn.scalar(select(func.pg_try_advisory_lock(lock_id(key))))
            and conn.scalar(select(func.pg_advisory_unlock(lock_id(key))))]


# -- grading -----------------------------------------------------------------------------------
def take(conn: Connection, key: str, worker: str, pid: int):
    """Mark ``key`` running on ``worker`` (the caller holds its advisory lock); the task row, or
    None when there is nothing to grade (done, superseded, unknown)."""
    task = conn.execute(select(tasks).where(tasks.c.key == key).with_for_update()).first()
    if task is None or task.state in (DONE, SUPERSEDED):
        return None
    current = conn.scalar(select(students.c.current_key).where(
        students.c.assignment == task.assignment, students.c.student == task.student))
    if current != key:
        conn.execute(update(tasks).where(tasks.c.key == key).values(state=SUPERSEDED, finished_at=now()))
        return None
    conn.execute(update(tasks).where(tasks.c.key == key).values(
        state=RUNNING, worker=worker, worker_pid=pid, started_at=now(), attempts=tasks.c.attempts + 1))
    return conn.execute(select(tasks).where(tasks.c.key == key)).first()


def still_current(conn: Connection, task) -> bool:
    """Lock the student's pointer for this transaction; whether ``task`` is still their newest.
    A superseded task is marked so."""
    current = conn.scalar(select(students.c.current_key).where(
        students.c.assignment == task.assignment, students.c.student == task.student).with_for_update())
    state = conn.scalar(select(tasks.c.state).where(tasks.c.key == task.key).with_for_update())
    if current == task.key and state == RUNNING:
        return True
    if state != DONE:
        conn.execute(update(tasks).where(tasks.c.key == task.key).values(state=SUPERSEDED, finished_at=now()))
    return False


def record_result(conn: Connection, key: str, row: GradeRow, autograded: dict[str, str], log: str,
                  worker: str) -> None:
    """Store ``key``'s result (replacing one from an earlier grading) and mark it done."""
    values = {"row": asdict(row), "autograded": autograded, "log": log, "worker": worker, "graded_at": now()}
    conn.execute(insert(results).values(key=key, **values).on_conflict_do_update(
        index_elements=[results.c.key], set_=values))
    conn.execute(update(tasks).where(tasks.c.key == key).values(state=DONE, reason=None, finished_at=now()))


def record_failure(conn: Connection, key: str, reason: str) -> None:
    conn.execute(update(tasks).where(tasks.c.key == key, tasks.c.state != DONE).values(
        state=FAILED, reason=reason[:2000], finished_at=now()))


# -- reading back ------------------------------------------------------------------------------
def current_tasks(conn: Connection, assignment: str, student_ids=None) -> dict[str, object]:
    """student -> current task row (with its result's row, autograded and worker, when graded)."""
    query = (select(tasks, results.c.row.label("result_row"), results.c.autograded, results.c.worker.label("graded_by"))
             .join(students, students.c.current_key == tasks.c.key)
             .outerjoin(results, results.c.key == tasks.c.key)
             .where(students.c.assignment == assignment))
    if student_ids is not None:
        query = query.where(students.c.student.in_(list(student_ids)))
    return {task.student: task for task in conn.execute(query)}


def task_states(conn: Connection, keys) -> dict[str, str]:
    return dict(conn.execute(select(tasks.c.key, tasks.c.state).where(tasks.c.key.in_(list(keys)))).all())
