"""nbgrader's gradebook in PostgreSQL, and the private SQLite gradebooks the workers grade in.

nbgrader commits after every notebook and every cell, so a worker never lets it write to
PostgreSQL. Each task is graded against a private SQLite gradebook in the worker's scratch
course, made from PostgreSQL's copy of the assignment (the same ids) and the student's rows as
they stand there (hand grades included). After grading, the student's rows are copied back in
the same transaction that stores the task's result and marks it done, so formgrader, ``make
grades`` and ``make feedback`` never see a half-graded student. Hand-entered values (manual
scores, extra credit, manual comments, flags, extensions) already in PostgreSQL are never
overwritten: formgrader may be in use while a batch runs.

The assignment itself (notebooks, cells, points) reaches PostgreSQL from the instructor's
``gradebook.db``, written by ``make release``.
"""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nbgrader.api import Base, Gradebook
from sqlalchemy import Connection, Table, create_engine, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

T = Base.metadata.tables
ASSIGNMENT_TABLES = ("course", "assignment", "notebook", "base_cell", "grade_cells", "solution_cells", "task_cells",
                     "source_cell")
SUBMISSION_TABLES = ("submitted_assignment", "submitted_notebook", "grade", "comment")  # parents first
HAND_ENTERED = {"submitted_assignment": {"extension"}, "submitted_notebook": {"flagged"},
                "grade": {"manual_score", "extra_credit"}, "comment": {"manual_comment"}}


class AssignmentMismatch(RuntimeError):
    """The gradebook holds another version of the assignment than the release being graded."""


def create_gradebook(url: str) -> None:
    """nbgrader's tables at ``url`` (a database URL string), as nbgrader itself makes them."""
    Gradebook(url).close()


@contextmanager
def sqlite_connection(path: Path) -> Iterator[Connection]:
    """A connection to the SQLite gradebook at ``path``, its engine disposed afterwards."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _rows(conn: Connection, table: Table, where=None) -> list[dict]:
    query = select(table) if where is None else select(table).where(where)
    return [dict(row._mapping) for row in conn.execute(query.order_by(*table.primary_key.columns))]


def assignment_rows(conn: Connection, assignment: str) -> dict[str, list[dict]]:
    """The rows that describe ``assignment`` (its course, notebooks, cells, points); empty if absent."""
    found = _rows(conn, T["assignment"], T["assignment"].c.name == assignment)
    if not found:
        return {}
    notebooks = _rows(conn, T["notebook"], T["notebook"].c.assignment_id == found[0]["id"])
    notebook_ids = [nb["id"] for nb in notebooks]
    cells = _rows(conn, T["base_cell"], T["base_cell"].c.notebook_id.in_(notebook_ids))
    cell_ids = [cell["id"] for cell in cells]
    return {"course": _rows(conn, T["course"], T["course"].c.id == found[0]["course_id"]),
            "assignment": found, "notebook": notebooks, "base_cell": cells,
            **{name: _rows(conn, T[name], T[name].c.id.in_(cell_ids))
               for name in ("grade_cells", "solution_cells", "task_cells")},
            "source_cell": _rows(conn, T["source_cell"], T["source_cell"].c.notebook_id.in_(notebook_ids))}


def _shape(rows: dict[str, list[dict]]) -> set[tuple]:
    """What grading depends on: notebooks, cells with their kinds, and points (not the ids)."""
    notebooks = {nb["id"]: nb["name"] for nb in rows["notebook"]}
    points = {c["id"]: c["max_score"] for name in ("grade_cells", "task_cells") for c in rows[name]}
    return {(notebooks[c["notebook_id"]], c["name"], c["type"], points.get(c["id"])) for c in rows["base_cell"]}


def publish_assignment(pg: Connection, local_gradebook: Path, assignment: str) -> bool:
    """Copy ``assignment`` from the instructor's ``gradebook.db`` into PostgreSQL unless it is
    there; True if copied. ``AssignmentMismatch`` when PostgreSQL's differs in notebooks, cells
    or points (a release rebuilt after grading began)."""
    with sqlite_connection(local_gradebook) as local:
        rows = assignment_rows(local, assignment)
    if not rows:
        raise AssignmentMismatch(f"{local_gradebook} has no assignment {assignment!r}: run 'make release' first")
    published = assignment_rows(pg, assignment)
    if published:
        if _shape(published) != _shape(rows):
            raise AssignmentMismatch(
                f"the gradebook in PostgreSQL holds another version of {assignment!r} (other notebooks, cells or "
                f"points) than {local_gradebook}: grade into a new database, or release the version graded before")
        return False
    for name in ASSIGNMENT_TABLES:
        if rows[name]:
            pg.execute(pg_insert(T[name]).on_conflict_do_nothing(), rows[name])
    return True


def student_rows(conn: Connection, assignment: str, student: str) -> dict[str, list[dict]]:
    """The student's row and their submission of ``assignment`` (notebooks, grades, comments)."""
    assignment_id = conn.scalar(select(T["assignment"].c.id).where(T["assignment"].c.name == assignment))
    submitted = _rows(conn, T["submitted_assignment"], (T["submitted_assignment"].c.assignment_id == assignment_id)
                      & (T["submitted_assignment"].c.student_id == student))
    notebooks = _rows(conn, T["submitted_notebook"],
                      T["submitted_notebook"].c.assignment_id.in_([s["id"] for s in submitted]))
    notebook_ids = [nb["id"] for nb in notebooks]
    return {"student": _rows(conn, T["student"], T["student"].c.id == student),
            "submitted_assignment": submitted, "submitted_notebook": notebooks,
            "grade": _rows(conn, T["grade"], T["grade"].c.notebook_id.in_(notebook_ids)),
            "comment": _rows(conn, T["comment"], T["comment"].c.notebook_id.in_(notebook_ids))}


def write_template(path: Path, assignment: dict[str, list[dict]]) -> None:
    """A new SQLite gradebook at ``path`` holding only the assignment's rows (``assignment_rows``)."""
    path.unlink(missing_ok=True)
    create_gradebook(f"sqlite:///{path}")
    _insert(path, assignment)


def write_private_gradebook(path: Path, template: Path, student: dict[str, list[dict]]) -> None:
    """``template`` copied to ``path`` with ``student``'s rows added (``student_rows``)."""
    partial = path.with_suffix(".partial")
    shutil.copyfile(template, partial)
    _insert(partial, student)
    partial.replace(path)


def _insert(path: Path, rows: dict[str, list[dict]]) -> None:
    with sqlite_connection(path) as conn:
        for name in (*ASSIGNMENT_TABLES, "student", *SUBMISSION_TABLES):
            if rows.get(name):
                conn.execute(T[name].insert().prefix_with("OR IGNORE"), rows[name])
        conn.commit()


def store_student(pg: Connection, graded: dict[str, list[dict]], assignment: str, student: str) -> None:
    """Make PostgreSQL's rows of ``student``'s submission those of ``graded`` (from the private
    gradebook), in the caller's transaction; hand-entered values in PostgreSQL are kept."""
    before = student_rows(pg, assignment, student)
    for name in reversed(SUBMISSION_TABLES):  # rows graded away, children first
        kept = {row["id"] for row in graded[name]}
        gone = [row["id"] for row in before[name] if row["id"] not in kept]
        if gone:
            pg.execute(delete(T[name]).where(T[name].c.id.in_(gone)))
    if graded["student"]:
        pg.execute(pg_insert(T["student"]).on_conflict_do_nothing(), graded["student"])
    for name in SUBMISSION_TABLES:
        if not graded[name]:
            continue
        statement = pg_insert(T[name])
        replaced = {column.name: statement.excluded[column.name] for column in T[name].columns
                    if not column.primary_key and column.name not in HAND_ENTERED[name]}
        pg.execute(statement.on_conflict_do_update(index_elements=["id"], set_=replaced), graded[name])


def export_gradebook(pg: Connection, path: Path) -> None:
    """Every nbgrader row in PostgreSQL, into a new SQLite gradebook at ``path``."""
    path.unlink(missing_ok=True)
    create_gradebook(f"sqlite:///{path}")
    with sqlite_connection(path) as conn:
        for table in Base.metadata.sorted_tables:
            rows = _rows(pg, table)
            if rows:
                conn.execute(table.insert().prefix_with("OR IGNORE"), rows)
        conn.commit()
