"""``make autograde GRADEBOOK=... BROKER=...``: grade every submission on the Celery workers.

On the instructor's machine, for each ``submitted/<student>/<assignment>/``: staging, exactly as
the embedded path does it (it never runs student code); the staged notebooks go into PostgreSQL
by content hash and the task into ``grading_tasks``, the student's older queued task superseded;
a submission graded before (same files, release and checks) is not enqueued again. The answer key
of this release and checks is made here once and kept in PostgreSQL. Each task's message goes to
the broker as soon as the task is stored, so workers start while the rest is staged; then this
command waits, with a progress bar, until each is done, re-sending any task whose worker died, and
writes ``grades.csv``, ``reports/`` and the integrity reports from the database, as the embedded
path writes them. Interrupted, it leaves the
tasks queued; run again, it resumes. ``--no-wait`` (``WAIT=0``) returns once they are sent.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nbgrader.api import Gradebook
from sqlalchemy import Engine, URL
from tqdm import tqdm

from autograder.check.answer_key import AnswerKeyError, make_answer_key
from autograder.check.runner import CHECKS_ROOT
from autograder.collect.stage import read_regular_file, stage_submission
from autograder.course import STAGING, course_arguments, discover_students, sandbox_limits, valid_student_id
from autograder.distributed import gradebook, store
from autograder.distributed.broker import make_app, persistence_problem, send
from autograder.distributed.connections import (ConnectionSettingsError, broker_url, environment_url,
                                                gradebook_engine, gradebook_url, shown)
from autograder.grade import (CourseLock, GradingBusy, assignment_notebooks, batch_line, grading_digest,
                              refresh_from_gradebook, submission_fingerprint, write_reports)
from autograder.report.grades import GradeRow, failed_row
from autograder.report.leaderboard import NICKNAME_FILE

POLL_S = 2.0
ORPHAN_CHECK_S = 30.0
MAX_STUDENT_ID = 128  # nbgrader's student id column
FINISHED = (store.DONE, store.FAILED, store.SUPERSEDED)
REPORT_EXTRAS = {NICKNAME_FILE: 1000}  # submitted files the reports read -> most bytes kept


def create_tables(engine: Engine, url: URL) -> None:
    """nbgrader's tables, then the distributed stage's (nbgrader records its schema version only
    in a database it finds empty)."""
    gradebook.create_gradebook(url.render_as_string(hide_password=False))
    store.metadata.create_all(engine)


def prepare_database(engine: Engine, url: URL, root: Path, assignment: str) -> None:
    """The tables, and the assignment from the instructor's ``gradebook.db``."""
    create_tables(engine, url)
    with engine.begin() as conn:
        gradebook.publish_assignment(conn, root / "gradebook.db", assignment)


def staged_files(root: Path, assignment: str, student: str) -> dict[str, bytes]:
    """What staging wrote for ``student`` (repaired notebooks, the timestamp), name -> bytes."""
    folder = root / STAGING / "submitted" / student / assignment
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def report_extras(root: Path, assignment: str, student: str) -> dict[str, bytes]:
    """Small submitted files the reports read (the leaderboard's nickname), if regular files."""
    found = {}
    for name, limit in REPORT_EXTRAS.items():
        try:
            found[name] = read_regular_file(root / "submitted" / student / assignment / name, limit)
        except (OSError, ValueError):
            continue
    return found


def enqueue_student(engine: Engine, root: Path, assignment: str, student: str, notebooks: dict[str, float],
                    digest: str, batch_digest) -> tuple[str, str]:
    """Stage ``student``'s submission unless this version is in the gradebook already, and make
    it their current task; (key, state)."""
    fingerprint = submission_fingerprint(root, assignment, student, batch_digest)
    with engine.connect() as conn:
        current = store.current_task(conn, assignment, student)
    if current is not None and current.fingerprint == fingerprint:
        with engine.begin() as conn:
            return current.key, store.submit(conn, assignment, student, current.key)
    staged = stage_submission(root, assignment, student, list(notebooks))
    graded, extra = staged_files(root, assignment, student), report_extras(root, assignment, student)
    files = {name: store.sha256(data) for name, data in graded.items()}
    extras = {name: store.sha256(data) for name, data in extra.items()}
    key = store.task_key(assignment, student, files, digest)
    new_task = {"digest": digest, "fingerprint": fingerprint, "staged": store.staged_to_plain(staged),
                "files": files, "extras": extras}
    with engine.begin() as conn:
        store.put_blobs(conn, {store.sha256(data): data for data in [*graded.values(), *extra.values()]})
        return key, store.submit(conn, assignment, student, key, new_task)


def ensure_answer_key(engine: Engine, root: Path, assignment: str, digest: str, checks_root: Path) -> None:
    """The answer key of this release and checks in the gradebook, made here if it is not."""
    with engine.connect() as conn:
        if store.answer_key(conn, digest) is not None:
            return
    try:
        key = make_answer_key(root, assignment, sandbox_limits(), checks_root)
    except AnswerKeyError as exc:
        raise SystemExit(f"error: no grading: {exc}") from None
    with engine.begin() as conn:
        store.put_answer_key(conn, digest, assignment, key)


def warn_if_broker_forgets(broker: str) -> None:
    problem = persistence_problem(broker)
    if problem:
        print(f"WARNING: {problem}; 'make autograde' sends them again", file=sys.stderr)


def wait_for(engine: Engine, app, keys: list[str], progress: bool = True) -> None:
    """Until every task in ``keys`` is done, failed or superseded; tasks marked running whose
    worker died are sent again."""
    with engine.connect() as conn:
        finished = {key for key, state in store.task_states(conn, keys).items() if state in FINISHED}
    bar = tqdm(total=len(keys), initial=len(finished), desc="autograde", unit="student", disable=not progress)
    last_check = time.monotonic()
    try:
        while len(finished) < len(keys):
            time.sleep(POLL_S)
            pending = [key for key in keys if key not in finished]
            with engine.connect() as conn:
                newly = {key for key, state in store.task_states(conn, pending).items() if state in FINISHED}
                if time.monotonic() - last_check > ORPHAN_CHECK_S:
                    last_check = time.monotonic()
                    lost = store.orphaned(conn, [key for key in pending if key not in newly])
                    if lost:
                        send(app, lost)
                        bar.write(f"sent again {len(lost)} task(s) whose worker died")
            finished |= newly
            bar.update(len(newly))
    finally:
        bar.close()


def rows_from_database(engine: Engine, url: URL, root: Path, assignment: str, notebooks: dict[str, float],
                       students: list[str]) -> list[GradeRow]:
    """Each student's row from their current task, with the gradebook's current hand grades."""
    with engine.connect() as conn:
        current = store.current_tasks(conn, assignment, students)
    rows = []
    with Gradebook(url.render_as_string(hide_password=False)) as gb:
        for student in students:
            task = current.get(student)
            if task is None:
                rows.append(failed_row(student, notebooks, "not enqueued: run 'make autograde'"))
            elif task.state == store.DONE:
                rows.append(refresh_from_gradebook(root, assignment, store.row_from_plain(task.result_row), gb))
            elif task.state == store.FAILED:
                rows.append(failed_row(student, notebooks, f"grading failed {task.reason}; 'make autograde' "
                                                           f"enqueues it again"))
            else:
                where = f" on {task.worker}" if task.state == store.RUNNING else ""
                rows.append(failed_row(student, notebooks, f"not graded yet ({task.state}{where})"))
    return rows


def autograde(root: Path, assignment: str, url: URL, broker: str, students: list[str] | None = None,
              wait: bool = True, progress: bool = True, checks_root: Path = CHECKS_ROOT) -> list[GradeRow] | None:
    """Enqueue ``students`` (default: every submission), wait and write the reports (see the
    module docstring); the rows, or None with ``wait=False``."""
    start = time.perf_counter()
    engine = gradebook_engine(url)
    app = make_app(broker)
    try:
        with CourseLock(root, assignment):
            notebooks = assignment_notebooks(root, assignment)
            prepare_database(engine, url, root, assignment)
            students = students if students is not None else discover_students(root, assignment)
            batch_digest = grading_digest(root, assignment, checks_root)
            digest = batch_digest.hexdigest()
            local_rows: dict[str, GradeRow] = {}
            keys: dict[str, str] = {}
            states: dict[str, str] = {}
            sent: list[str] = []
            for student in students:
                invalid = valid_student_id(student) or (
                    f"the folder name is longer than {MAX_STUDENT_ID} characters: rename it"
                    if len(student) > MAX_STUDENT_ID else None)
                if invalid:
                    local_rows[student] = failed_row(student, notebooks, invalid)
                    continue
                try:
                    keys[student], states[student] = enqueue_student(engine, root, assignment, student, notebooks,
                                                                     digest, batch_digest)
                except OSError as exc:
                    local_rows[student] = failed_row(student, notebooks,
                                                     f"the submission cannot be read ({exc.strerror})")
                    continue
                if states[student] == store.QUEUED:  # sent at once: workers start while the rest is staged
                    if not sent:
                        ensure_answer_key(engine, root, assignment, digest, checks_root)
                        warn_if_broker_forgets(broker)
                    send(app, [keys[student]])
                    sent.append(keys[student])
            running = [keys[s] for s in keys if states[s] == store.RUNNING]
            if running:
                with engine.connect() as conn:
                    lost = store.orphaned(conn, running)
                send(app, lost)
                sent += lost
            waiting = [keys[s] for s in keys if states[s] != store.DONE]
            print(f"{len(waiting)} of {len(keys)} submissions to grade ({len(keys) - len(waiting)} graded before, "
                  f"{len(waiting) - len(sent)} being graded); sent {len(sent)} to {shown(broker)}", flush=True)
            if not wait:
                return None
            wait_for(engine, app, waiting, progress)
            rows = rows_from_database(engine, url, root, assignment, notebooks, list(keys))
            by_student = {**local_rows, **dict(zip(keys, rows))}
            ordered = [by_student[student] for student in students]
            write_reports(root, assignment, ordered, list(notebooks), time.perf_counter() - start)
            return ordered
    finally:
        app.close()
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.distributed autograde",
                                     description=__doc__.splitlines()[0])
    course_arguments(parser, "grade only this student (repeatable)")
    parser.add_argument("--no-wait", action="store_true", help="return once the submissions are enqueued")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        url = gradebook_url(environment_url("GRADEBOOK"))
        broker = broker_url(environment_url("BROKER"))
        rows = autograde(root, args.assignment, url, broker, args.student, wait=not args.no_wait)
    except (ConnectionSettingsError, GradingBusy, gradebook.AssignmentMismatch) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the tasks stay queued; 'make autograde' again waits for them", file=sys.stderr)
        return 130
    if rows is None:
        return 0
    print(batch_line(root, args.assignment, rows))
    return 0
