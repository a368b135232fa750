"""``make feedback``: per-student feedback HTML from the autograded notebooks.

``feedback/<student>/<assignment>/<notebook>.html`` shows the student's notebook with a score
under every graded cell. A test cell shows the visible test students were given and, when it
failed in their kernel, that error's type and message, shortened (never a traceback). Below it,
the grader writes what its outside check found, from structured results only: the name of each
failing case (written by the instructor to give nothing hidden away) and how it failed. Never
the reference's values, a seed, a check's code, or text that student code produced in the check
process. Each student's feedback is made in its own process with a time limit, so no notebook
can stall the run for the others.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from tqdm import tqdm

from autograder.check.runner import CHECKS_ROOT
from autograder.course import (REPO, course_arguments, discover_students, gradebook_url, is_autograded_test,
                               nbgrader_meta, printable, tool_environment)
from autograder.report.html import html_exporter
from autograder.run.execute import METADATA_KEY

MESSAGE_CHARS = 400          # a failing test's message, as shown
TEXT_CELL_CHARS = 50_000     # a cell's text or output, as shown
STUDENT_TIMEOUT_S = 300.0
NOT_IMPLEMENTED = "not implemented yet: this task still raises NotImplementedError"
SHOWN_OUTPUTS = ("image/png", "image/jpeg", "text/plain")  # of a cell's results; HTML, SVG, scripts dropped


class FeedbackLeak(RuntimeError):
    """Feedback that would show a line of a check (a hidden case)."""


def as_text(text: str) -> str:
    """``text`` for a Markdown cell, shown as written: every punctuation character backslash-escaped,
    so that it makes no emphasis, link, math or markup (the page's renderer escapes HTML)."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", " ".join(text.split()))


def _bounded(text: str, limit: int) -> str:
    text = printable(text, 10 * limit) if len(text) > 10 * limit else text
    return text if len(text) <= limit else text[:limit] + f" ... [{len(text) - limit} more characters not shown]"


def _score_line(grade_id: str, grade) -> str:
    if grade is None:
        return f"**{grade_id}**: not graded"
    if grade.needs_manual_grade:
        return f"**{grade_id}**: awaiting manual grading (out of {grade.max_score:g} points)"
    text = f"**{grade_id}**: {grade.score:g} / {grade.max_score:g} points"
    comment = next((c.comment for c in grade.notebook.comments if c.name == grade_id and c.comment), None)
    return text + (f"\n\n> {as_text(_bounded(comment, MESSAGE_CHARS))}" if comment else "")


def outside_lines(verdict: dict | None, failure: str | None) -> str:
    """What the grader says about a test cell's outside check, from its structured verdict."""
    if verdict is None:
        return ("> Not checked apart from your notebook" + (f": {as_text(failure)}" if failure else "")
                + ", so this cell scored 0.")
    if verdict["outside"]:
        if verdict["in_kernel"] is None or verdict["in_kernel"] < verdict["max"]:
            return "> The test above failed in your notebook, so this cell scored 0 (the check apart from it passed)."
        return ""
    lines = ["> Checked apart from your notebook, on other inputs chosen at grading time, this failed:"]
    lines += [f"> - {as_text(case)}" for case in verdict.get("cases", [])[:12]]
    return "\n".join(lines)


def _sanitise_output(output: nbformat.NotebookNode) -> nbformat.NotebookNode:
    if output.get("output_type") in ("display_data", "execute_result"):
        # only kinds of output that cannot carry markup or script into the page
        output.data = {kind: value for kind, value in output.get("data", {}).items() if kind in SHOWN_OUTPUTS}
        if "text/plain" in output.data:
            output.data["text/plain"] = _bounded(str(output.data["text/plain"]), TEXT_CELL_CHARS)
        output.metadata = {kind: value for kind, value in output.get("metadata", {}).items() if kind in SHOWN_OUTPUTS}
    if output.get("output_type") == "error":
        if output.get("ename") == "NotImplementedError":
            output.ename, output.evalue = "NotImplementedError", NOT_IMPLEMENTED
        output.evalue = _bounded(str(output.get("evalue", "")), MESSAGE_CHARS)
        output.traceback = [f"{output.get('ename', 'Error')}: {output.evalue}"]
    elif output.get("output_type") == "stream":
        output.text = _bounded(str(output.get("text", "")), TEXT_CELL_CHARS)
    return output


def sanitise(autograded: nbformat.NotebookNode, released: nbformat.NotebookNode,
             grades: dict[str, object]) -> nbformat.NotebookNode:
    """The autograded notebook as a student may see it, with a score under each graded cell."""
    nb = copy.deepcopy(autograded)
    given = {nbgrader_meta(c)["grade_id"]: c for c in released.cells if nbgrader_meta(c).get("grade_id")}
    record = nb.metadata.get(METADATA_KEY, {})
    outside, failure = record.get("outside", {}), record.get("outside_failure")
    cells = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if cell.cell_type == "markdown":
            cell.source = _bounded(cell.source, TEXT_CELL_CHARS)
        if is_autograded_test(cell):
            cell.source = given[grade_id].source if grade_id in given else "# (test code not shown)"
        if cell.cell_type == "code":
            cell.source = _bounded(cell.source, TEXT_CELL_CHARS)
            cell.outputs = [_sanitise_output(o) for o in cell.get("outputs", [])]
        cells.append(cell)
        if meta.get("grade"):
            line = _score_line(grade_id, grades.get(grade_id))
            if is_autograded_test(cell):
                extra = outside_lines(outside.get(grade_id), failure)
                line += f"\n\n{extra}" if extra else ""
            cells.append(nbformat.v4.new_markdown_cell(line))
    nb.cells = cells
    nb.metadata.pop(METADATA_KEY, None)
    return nb


def check_lines(assignment: str, root: Path, checks_root: Path = CHECKS_ROOT) -> set[str]:
    """Lines of the checks (hidden cases) that appear in neither the release nor the reference:
    feedback must show none of them."""
    given = set()
    for folder in (root / "release" / assignment, root / "source" / assignment):
        for path in folder.glob("*"):
            if path.suffix == ".ipynb":
                text = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
            elif path.suffix == ".py":
                text = path.read_text(encoding="utf-8", errors="replace")
            else:
                continue
            given |= {line.strip() for line in text.splitlines()}
    hidden = set()
    for path in (checks_root / assignment).glob("*.py"):
        hidden |= {line.strip() for line in path.read_text().splitlines()
                   if len(line.strip()) >= 30 and not line.strip().startswith(("#", '"', "'"))}
    return hidden - given


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


def check_no_hidden_cases(nb: nbformat.NotebookNode, hidden: set[str]) -> None:
    """Raise ``FeedbackLeak`` if any line of the checks appears in ``nb``."""
    shown = {line.strip() for line in _notebook_text(nb).splitlines()}
    leaked = sorted(hidden & shown)
    if leaked:
        raise FeedbackLeak(f"feedback would show {len(leaked)} line(s) of the checks")


def write_feedback(root: Path, assignment: str, student: str) -> list[Path]:
    """Write one HTML file per autograded notebook of ``student``; returns the files written."""
    exporter = html_exporter()
    release = root / "release" / assignment
    hidden = check_lines(assignment, root)
    autograded_dir = root / "autograded" / student / assignment
    out_dir = root / "feedback" / student / assignment
    written = []
    with Gradebook(gradebook_url(root)) as gb:
        for released_path in sorted(release.glob("*.ipynb")):
            name = released_path.stem
            nb_path = autograded_dir / f"{name}.ipynb"
            if not nb_path.is_file():
                continue
            try:
                record = gb.find_submission_notebook(name, assignment, student)
            except MissingEntry:
                continue
            grades = {g.name: g for g in record.grades}
            nb = sanitise(nbformat.read(nb_path, as_version=4), nbformat.read(released_path, as_version=4), grades)
            check_no_hidden_cases(nb, hidden)
            summary = (f"# Feedback: {name}\n\nStudent **{as_text(student)}**, assignment "
                       f"**{assignment}**: {record.score:g} / {record.max_score:g} points"
                       + (" (written answers still to be graded)" if record.needs_manual_grade else "")
                       + ". A test cell's points need its test to pass in your notebook and its check, run apart "
                         "from your notebook on other inputs, to pass as well.")
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(summary))
            body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": f"{name} feedback"}})
            out_dir.mkdir(parents=True, exist_ok=True)
            target = out_dir / f"{name}.html"
            target.write_text(body, encoding="utf-8")
            written.append(target)
    return written


def _one_student(root: Path, assignment: str, student: str) -> tuple[list[Path], str | None]:
    """Feedback for one student in a process of its own, bounded in time."""
    command = [sys.executable, "-m", "autograder.report.feedback", "--one", student, f"--root={root}",
               f"--assignment={assignment}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=STUDENT_TIMEOUT_S,
                              env=tool_environment(), cwd=REPO)
    except subprocess.TimeoutExpired:
        return [], f"took longer than {STUDENT_TIMEOUT_S:.0f} s"
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return [], printable(lines[-1] if lines else f"exit status {done.returncode}", 300)
    try:
        return [Path(p) for p in json.loads(done.stdout.splitlines()[-1])], None
    except (ValueError, IndexError):
        return [], "no answer from the feedback process"


def generate_feedback(root: Path, assignment: str, students: list[str] | None = None,
                      progress: bool = True, workers: int = 2) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Feedback for every autograded student (default: all with a submission).

    Returns the files written per student, and an error message per student whose feedback
    could not be written; one student's problem never stops the others.
    """
    students = students if students is not None else discover_students(root, assignment)
    written, errors = {}, {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda s: (s, _one_student(root, assignment, s)), students)
        for student, (paths, error) in tqdm(results, total=len(students), desc="feedback", unit="student",
                                            disable=not progress):
            written[student] = paths
            if error:
                errors[student] = error
    return written, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    course_arguments(parser, "only this student (repeatable)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # one student, in this process (used internally)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.one:
        try:
            paths = write_feedback(root, args.assignment, args.one)
        except Exception as exc:  # reported in the batch's error list
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(json.dumps([str(p) for p in paths]))
        return 0
    written, errors = generate_feedback(root, args.assignment, args.student)
    files = sum(len(paths) for paths in written.values())
    missing = sorted(printable(s, 60) for s, paths in written.items() if not paths and s not in errors)
    print(f"feedback: {files} files for {len(written)} students under {root / 'feedback'}"
          + (f"; none for {', '.join(missing)} (not autograded)" if missing else ""))
    for student, message in sorted(errors.items()):
        print(f"error: no feedback for {printable(student, 60)}: {message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
