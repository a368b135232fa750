"""Per-student feedback HTML from the autograded notebooks, with hidden tests kept secret.

``feedback/<student>/<assignment>/<notebook>.html`` shows the student's notebook with a score
under every graded cell. A grade cell shows the source students were given (hidden tests
removed) and, when it failed, only the error's type and message: a traceback would quote the
hidden test's code.
"""
from __future__ import annotations

import argparse
import copy
import html
import sys
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbgrader.api import Gradebook, MissingEntry
from tqdm import tqdm

from autograder.build import course_arguments, is_autograded_test, nbgrader_meta, protected_lines
from autograder.execute import METADATA_KEY
from autograder.grade import discover_students, gradebook_url

HIDDEN_NOTE = "# Hidden tests ran here too; their code is not shown."
OUTSIDE_NOTE = ("The grader also checks this task apart from your notebook, calling your functions on inputs "
                "chosen at grading time; that check decides the score, and here it disagreed with the test "
                "output above: {why}")


class FeedbackLeak(RuntimeError):
    """Sanitised feedback that would still show a hidden test."""


def _grade_cells(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    return {nbgrader_meta(c)["grade_id"]: c for c in nb.cells if nbgrader_meta(c).get("grade_id")}


def _score_line(grade_id: str, grade) -> str:
    if grade is None:
        return f"**{grade_id}**: not graded"
    if grade.needs_manual_grade:
        return f"**{grade_id}**: awaiting manual grading (out of {grade.max_score:g} points)"
    text = f"**{grade_id}**: {grade.score:g} / {grade.max_score:g} points"
    comment = next((c.comment for c in grade.notebook.comments if c.name == grade_id and c.comment), None)
    return text + (f"\n\n> {comment}" if comment else "")


def sanitise(autograded: nbformat.NotebookNode, released: nbformat.NotebookNode,
             grades: dict[str, object]) -> nbformat.NotebookNode:
    """The autograded notebook as a student may see it, with a score under each graded cell."""
    nb = copy.deepcopy(autograded)
    released_cells = _grade_cells(released)
    outside = nb.metadata.get(METADATA_KEY, {}).get("outside", {})
    cells = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if is_autograded_test(cell):
            had_hidden = "BEGIN HIDDEN TESTS" in cell.source
            given = released_cells.get(grade_id)
            cell.source = (given.source if given is not None else "# (test code not shown)")
            if had_hidden:
                cell.source = cell.source.rstrip() + "\n" + HIDDEN_NOTE
            outputs = []
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
                outputs.append(output)
            cell.outputs = outputs
        cells.append(cell)
        if meta.get("grade"):
            line = _score_line(grade_id, grades.get(grade_id))
            verdict = outside.get(grade_id)
            if verdict and verdict.get("in_kernel") is not None and float(verdict["in_kernel"]) != verdict["outside"]:
                line += "\n\n> " + OUTSIDE_NOTE.format(why=html.escape(verdict.get("why") or "no detail"))
            cells.append(nbformat.v4.new_markdown_cell(line))
    nb.cells = cells
    return nb


def _notebook_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        parts.append(cell.source)
        for output in cell.get("outputs", []):
            parts.append(str(output.get("text", "")))
            parts.extend(str(v) for v in output.get("data", {}).values())
            parts.extend(output.get("traceback", []))
            parts.append(str(output.get("evalue", "")))
    return "\n".join(parts)


def check_no_hidden_tests(nb: nbformat.NotebookNode, hidden: set[str]) -> None:
    """Raise ``FeedbackLeak`` if any of the ``hidden`` test lines appears in ``nb``."""
    shown = {line.strip() for line in _notebook_text(nb).splitlines()}
    leaked = sorted(hidden & shown)
    if leaked:
        raise FeedbackLeak(f"feedback would show hidden test lines: {leaked[:3]}")


def load_given(root: Path, assignment: str) -> dict[str, tuple[nbformat.NotebookNode, set[str]]]:
    """Notebook name -> (released notebook, its hidden-test lines), read once per batch."""
    given = {}
    for released_path in sorted((root / "release" / assignment).glob("*.ipynb")):
        source_path = root / "source" / assignment / released_path.name
        if source_path.exists():
            hidden = protected_lines(nbformat.read(source_path, as_version=4), kinds=("HIDDEN TESTS",),
                                     min_length=12)
            given[released_path.stem] = (nbformat.read(released_path, as_version=4), hidden)
    return given


def write_feedback(root: Path, assignment: str, student: str, exporter: HTMLExporter,
                   given: dict[str, tuple[nbformat.NotebookNode, set[str]]]) -> list[Path]:
    """Write one HTML file per autograded notebook of ``student``; returns the files written."""
    autograded_dir = root / "autograded" / student / assignment
    out_dir = root / "feedback" / student / assignment
    written = []
    with Gradebook(gradebook_url(root)) as gb:
        for nb_path in sorted(autograded_dir.glob("*.ipynb")):
            name = nb_path.stem
            if name not in given:
                continue  # not a notebook of this assignment (a student's extra file)
            released, hidden = given[name]
            try:
                record = gb.find_submission_notebook(name, assignment, student)
            except MissingEntry:
                continue
            grades = {g.name: g for g in record.grades}
            nb = sanitise(nbformat.read(nb_path, as_version=4), released, grades)
            check_no_hidden_tests(nb, hidden)
            summary = (f"# Feedback: {name}\n\nStudent **{html.escape(student)}**, assignment "
                       f"**{assignment}**: {record.score:g} / {record.max_score:g} points"
                       + (" (written answers still to be graded)" if record.needs_manual_grade else "")
                       + ".")
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(summary))
            body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": f"{name} feedback"}})
            out_dir.mkdir(parents=True, exist_ok=True)
            target = out_dir / f"{name}.html"
            target.write_text(body, encoding="utf-8")
            written.append(target)
    return written


def generate_feedback(root: Path, assignment: str, students: list[str] | None = None,
                      progress: bool = True) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Feedback for every autograded student (default: all with a submission).

    Returns the files written per student, and an error message per student whose feedback
    could not be written; one student's problem never stops the others.
    """
    exporter = HTMLExporter(template_name="lab")
    given = load_given(root, assignment)
    students = students if students is not None else discover_students(root, assignment)
    written, errors = {}, {}
    for student in tqdm(students, desc="feedback", unit="student", disable=not progress):
        try:
            written[student] = write_feedback(root, assignment, student, exporter, given)
        except Exception as exc:
            errors[student] = f"{type(exc).__name__}: {exc}"
    return written, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    course_arguments(parser, "only this student (repeatable)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    written, errors = generate_feedback(root, args.assignment, args.student)
    files = sum(len(paths) for paths in written.values())
    missing = sorted(student for student, paths in written.items() if not paths)
    print(f"feedback: {files} files for {len(written)} students under {root / 'feedback'}"
          + (f"; none for {', '.join(missing)} (not autograded)" if missing else ""))
    for student, message in sorted(errors.items()):
        print(f"error: no feedback for {student}: {message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
