"""What the instructor reads from the PostgreSQL gradebook: ``make grades``, ``make
grading-status``, and ``make feedback`` and ``make leaderboard`` with ``GRADEBOOK=``.

Feedback and the leaderboard run the embedded path's own code on a course made for the run
under ``.grading/``: the local release and source, and from the database the gradebook (as a
SQLite copy), the autograded notebooks (feedback) or the staged notebooks and nicknames
(leaderboard). Their output is moved into the course's ``feedback/`` and ``reports/``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from nbgrader.api import Gradebook
from sqlalchemy import Engine, URL, func, select

from autograder.course import STAGING, course_arguments, printable
from autograder.distributed import gradebook, store
from autograder.distributed.autograde import rows_from_database
from autograder.distributed.connections import (ConnectionSettingsError, environment_url, gradebook_engine,
                                                gradebook_url)
from autograder.grade import gradebook_notebooks
from autograder.report.feedback import generate_feedback
from autograder.report.grades import write_grades_csv
from autograder.report.leaderboard import build_leaderboard


def graded_students(engine: Engine, assignment: str) -> list[str]:
    """Every student with a task of ``assignment`` in the gradebook, sorted."""
    with engine.connect() as conn:
        return sorted(store.current_tasks(conn, assignment))


def write_grades(engine: Engine, url: URL, root: Path, assignment: str) -> tuple[Path, int]:
    """``grades.csv`` from the gradebook, now: graded rows with their hand grades, the rest
    saying what they wait for; (path, rows written)."""
    with Gradebook(url.render_as_string(hide_password=False)) as gb:
        notebooks = gradebook_notebooks(gb, assignment)
    students = graded_students(engine, assignment)
    rows = rows_from_database(engine, url, root, assignment, notebooks, students)
    write_grades_csv(rows, list(notebooks), root / "grades.csv")
    return root / "grades.csv", len(rows)


def status_lines(engine: Engine, assignment: str) -> list[str]:
    """Done, running, queued and failed submissions per worker, then the totals."""
    with engine.connect() as conn:
        current = store.current_tasks(conn, assignment)
        superseded = conn.scalar(select(func.count()).where(store.tasks.c.assignment == assignment,
                                                            store.tasks.c.state == store.SUPERSEDED))
    per_worker: dict[str, Counter] = {}
    for task in current.values():
        per_worker.setdefault(task.worker or "", Counter())[task.state] += 1
    lines = []
    for worker, counts in sorted(per_worker.items()):
        name = worker or "not taken by a worker yet"
        lines.append(f"{name}: " + ", ".join(f"{counts[state]} {state}" for state in
                                             (store.DONE, store.RUNNING, store.QUEUED, store.FAILED)))
    total = Counter(task.state for task in current.values())
    lines.append(f"{assignment}: {len(current)} students: " + ", ".join(
        f"{total[state]} {state}" for state in (store.DONE, store.RUNNING, store.QUEUED, store.FAILED))
        + f"; {superseded} older submissions superseded")
    for task in sorted(current.values(), key=lambda t: t.student):
        if task.state == store.FAILED:
            lines.append(f"failed: {printable(task.student, 60)}: {task.reason}")
    return lines


@contextmanager
def course_from_database(root: Path, assignment: str):
    """A course for one report run under ``root/.grading/`` with the local release and source;
    removed afterwards."""
    (root / STAGING).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="from-database-", dir=root / STAGING) as folder:
        course = Path(folder)
        for part in ("release", "source"):
            if (root / part / assignment).is_dir():
                (course / part).mkdir()
                (course / part / assignment).symlink_to(root / part / assignment)
        yield course


def _write_files(folder: Path, names: dict[str, str], contents: dict[str, bytes], suffix: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, digest in names.items():
        (folder / f"{name}{suffix}").write_bytes(contents[digest])


def feedback_from_database(engine: Engine, root: Path, assignment: str, students: list[str] | None = None,
                           progress: bool = True) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """``generate_feedback`` for every graded student; files under ``root/feedback/``."""
    with course_from_database(root, assignment) as course, engine.connect() as conn:
        gradebook.export_gradebook(conn, course / "gradebook.db")
        graded = {student: task for student, task in store.current_tasks(conn, assignment, students).items()
                  if task.state == store.DONE and task.autograded}
        contents = store.get_blobs(conn, [h for task in graded.values() for h in task.autograded.values()])
        for student, task in graded.items():
            _write_files(course / "autograded" / student / assignment, task.autograded, contents, ".ipynb")
        written, errors = generate_feedback(course, assignment, sorted(graded), progress)
        moved = {}
        for student, paths in written.items():
            target = root / "feedback" / student / assignment
            if paths:
                shutil.rmtree(target, ignore_errors=True)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(course / "feedback" / student / assignment, target)
            moved[student] = [target / path.name for path in paths]
    return moved, errors


def leaderboard_from_database(engine: Engine, root: Path, assignment: str, students: list[str] | None = None):
    """``build_leaderboard`` on every graded student's staged notebooks, gated on their grades in the
    database (exported to the report's course as its ``gradebook.db``); ``reports/leaderboard.*``."""
    with course_from_database(root, assignment) as course:
        with engine.connect() as conn:
            gradebook.export_gradebook(conn, course / "gradebook.db")
            graded = {student: task for student, task in store.current_tasks(conn, assignment, students).items()
                      if task.state == store.DONE}
            contents = store.get_blobs(conn, [h for task in graded.values()
                                              for h in [*task.files.values(), *task.extras.values()]])
        for student, task in graded.items():
            _write_files(course / STAGING / "submitted" / student / assignment, task.files, contents)
            _write_files(course / "submitted" / student / assignment, task.extras, contents)
        page, boards = build_leaderboard(course, assignment, sorted(graded))
        (root / "reports").mkdir(parents=True, exist_ok=True)
        for path in page.parent.glob("leaderboard.*"):
            shutil.copyfile(path, root / "reports" / path.name)
    return root / "reports" / page.name, boards


def main(command: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m autograder.distributed {command}",
                                     description=f"{command} from the PostgreSQL gradebook")
    course_arguments(parser, "only this student (repeatable)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        url = gradebook_url(environment_url("GRADEBOOK"))
    except ConnectionSettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    engine = gradebook_engine(url)
    try:
        if command == "grades":
            path, count = write_grades(engine, url, root, args.assignment)
            print(f"wrote {path}: {count} students from the gradebook")
        elif command == "status":
            print("\n".join(status_lines(engine, args.assignment)))
        elif command == "feedback":
            written, errors = feedback_from_database(engine, root, args.assignment, args.student)
            print(f"feedback: {sum(len(p) for p in written.values())} files for {len(written)} students under "
                  f"{root / 'feedback'}")
            for student, message in sorted(errors.items()):
                print(f"error: no feedback for {printable(student, 60)}: {message}", file=sys.stderr)
            return 1 if errors else 0
        elif command == "leaderboard":
            page, boards = leaderboard_from_database(engine, root, args.assignment, args.student)
            counts = ", ".join(f"{kernel}: {sum(e.status == 'ranked' for e in entries)} ranked of {len(entries)}"
                               for kernel, entries in boards.items())
            print(f"leaderboard: {counts}; wrote {page}")
    finally:
        engine.dispose()
    return 0
