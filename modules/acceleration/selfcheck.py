"""Check your notebooks before you submit them: tasks left, visible tests, notebook structure.

Run it in the folder you were given:

    python selfcheck.py                                  # every notebook of the assignment
    python selfcheck.py 01_loops_and_blocking.ipynb      # one notebook

Each notebook runs the way ``nbgrader validate`` runs it (outputs cleared, every cell executed,
the notebook's folder as working directory). For each one this says which tasks still raise
NotImplementedError, which visible tests fail and why, whether graded or locked cells were
deleted, duplicated, retyped or edited since the release, and whether it is ready to submit.
Only the visible tests run here: hidden tests are added when your work is graded.

Exit status: 0 every notebook is ready to submit, 1 problems found, 2 a file is missing or is
not a notebook, or this Python lacks nbgrader.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

# Checked before importing them, so that a Python without them gets one line saying what to do.
REQUIRED = ("nbformat", "nbclient", "jupyter_client", "nbgrader")
if missing := [name for name in REQUIRED if importlib.util.find_spec(name) is None]:
    print(f"selfcheck: error: this Python ({sys.executable}) lacks {', '.join(missing)}; install nbgrader, "
          f"which brings them, with: python -m pip install nbgrader (or run selfcheck.py with the Python "
          f"that runs your JupyterLab)", file=sys.stderr)
    sys.exit(2)

import nbformat  # noqa: E402
from jupyter_client.kernelspec import NoSuchKernel  # noqa: E402
from nbclient.exceptions import DeadKernelError  # noqa: E402
from nbgrader import utils  # noqa: E402
from nbgrader.preprocessors import ClearOutput, Execute  # noqa: E402

HERE = Path(__file__).resolve().parent
MANIFEST_NAME = "selfcheck_manifest.json"
HIDDEN_TESTS_NOTE = ("Only the visible tests run here; hidden tests are added when your work is "
                     "graded, so passing here does not guarantee full marks.")
CODE_STUB = re.compile(r"^\s*raise NotImplementedError\b", re.MULTILINE)
ANSWER_STUB = "YOUR ANSWER HERE"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# numpy.testing follows the test's own message with mismatch details and both arrays.
NUMPY_DETAILS = re.compile(r"^\s*(x:|y:|ACTUAL:|DESIRED:|Mismatched elements|Mismatch at ind|First \d+ mismatches"
                           r"|Max (absolute|relative))")
MESSAGE_CHARS = 240
TIMEOUT_ERROR = "CellTimeoutError"  # nbgrader's name for a cell stopped at the timeout
RESTORE = "restore it from a fresh copy of the release"
# ipykernel warns about its transport at every start; that is not the notebook's output.
QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]


class UsageError(Exception):
    """A file that is missing, unreadable or not a notebook; the message names it."""


@dataclass(frozen=True)
class ReleasedCell:
    """A graded or locked cell as the release contained it (no source text)."""

    grade_id: str
    cell_type: str
    solution: bool
    grade: bool
    locked: bool
    checksum: str | None

    @property
    def kind(self) -> str:
        """What the cell is to a student: task, written answer, test or locked cell."""
        if self.solution:
            return "task cell" if self.cell_type == "code" else "answer cell"
        return "test cell" if self.grade else "locked cell"


@dataclass
class NotebookReport:
    """Everything found in one notebook; each list entry is one problem."""

    name: str
    structure: list[str] = field(default_factory=list)
    tasks_not_done: list[str] = field(default_factory=list)
    answers_not_written: list[str] = field(default_factory=list)
    task_errors: list[str] = field(default_factory=list)
    tests_failing: list[str] = field(default_factory=list)
    tests_waiting: list[str] = field(default_factory=list)
    kernel_died: list[str] = field(default_factory=list)
    ungraded_errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    visible_tests: int = 0

    @property
    def problem_count(self) -> int:
        return (len(self.structure) + len(self.tasks_not_done) + len(self.answers_not_written)
                + len(self.task_errors) + len(self.tests_failing) + len(self.tests_waiting)
                + len(self.kernel_died))

    def lines(self) -> list[str]:
        """The report as plain lines, each starting with the notebook's name."""
        out = []
        if self.tasks_not_done:
            out.append(f"{counted(len(self.tasks_not_done), 'task')} not done yet: "
                       + ", ".join(self.tasks_not_done))
        if self.answers_not_written:
            out.append(f"{counted(len(self.answers_not_written), 'written answer')} not done yet: "
                       + ", ".join(self.answers_not_written))
        out += self.task_errors
        if self.tests_waiting:
            out.append(f"{counted(len(self.tests_waiting), 'visible test')} fail with "
                       f"NotImplementedError (they call a task not done yet): " + ", ".join(self.tests_waiting))
        out += self.tests_failing
        out += [f"structure: {problem}" for problem in self.structure]
        out += self.kernel_died
        # with tasks left, errors in ungraded cells are knock-on effects (names never defined)
        notes = self.notes + ([] if self.tasks_not_done else self.ungraded_errors)
        out += [f"note: {note}" for note in notes]
        if self.problem_count:
            out.append(f"not ready ({counted(self.problem_count, 'problem')})")
        else:
            out.append(f"ready to submit ({counted(self.visible_tests, 'visible test')} pass)")
        return [f"{self.name}: {line}" for line in out]


def counted(n: int, noun: str) -> str:
    """``3 tasks``, ``1 task``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def nbgrader_meta(cell: nbformat.NotebookNode) -> dict:
    """The cell's nbgrader metadata, or an empty dict for a plain cell."""
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read one notebook; ``UsageError`` naming the file if it is missing or not a notebook."""
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir() or path.suffix != ".ipynb":
        raise UsageError(f"{path}: not a notebook (give a .ipynb file)")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        checkpoint = path.parent / ".ipynb_checkpoints" / f"{path.stem}-checkpoint.ipynb"
        earlier = f"Jupyter's last checkpoint is {checkpoint}" if checkpoint.is_file() else "use a backup"
        raise UsageError(f"{path}: not a readable notebook ({type(exc).__name__}: {exc}); {earlier}, "
                         f"or start again from a fresh copy of the release") from None
    is_notebook = (isinstance(data, dict) and data.get("nbformat") == 4 and isinstance(data.get("cells"), list)
                   and all(isinstance(c, dict) and "cell_type" in c and "source" in c for c in data["cells"]))
    if not is_notebook:
        raise UsageError(f"{path}: not a notebook (the file is JSON, but not nbformat 4 with a list of cells)")
    with warnings.catch_warnings():  # duplicate or missing cell ids: nbformat repairs them itself
        warnings.simplefilter("ignore")
        return nbformat.reads(text, as_version=4)


def load_manifest(path: Path) -> dict[str, list[ReleasedCell]] | None:
    """The released graded and locked cells per notebook name, or None if there is no manifest."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: [ReleasedCell(c["grade_id"], c["cell_type"], bool(c["solution"]), bool(c["grade"]),
                                    bool(c["locked"]), c.get("checksum")) for c in cells]
                for name, cells in data["notebooks"].items()}
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path}: damaged ({type(exc).__name__}); {RESTORE}") from None


def cells_from_own_metadata(nb: nbformat.NotebookNode) -> list[ReleasedCell]:
    """What the notebook's own nbgrader metadata says was released (first copy of each id)."""
    released: dict[str, ReleasedCell] = {}
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if grade_id and grade_id not in released:
            released[grade_id] = ReleasedCell(
                grade_id, meta.get("cell_type") or cell.cell_type, bool(meta.get("solution")),
                bool(meta.get("grade")), bool(utils.is_locked(cell)),
                meta.get("checksum") if utils.is_locked(cell) else None)
    return list(released.values())


def grade_ids(nb: nbformat.NotebookNode) -> set[str]:
    return {nbgrader_meta(cell)["grade_id"] for cell in nb.cells if nbgrader_meta(cell).get("grade_id")}


def matching_release(name: str, nb: nbformat.NotebookNode,
                     manifest: dict[str, list[ReleasedCell]]) -> str | None:
    """The released notebook ``name`` stands for: the same name, else the most grade ids shared."""
    if name in manifest:
        return name
    ids = grade_ids(nb)
    shared = {released: len(ids & {c.grade_id for c in cells}) for released, cells in manifest.items()}
    best = max(shared, key=shared.get, default=None)
    return best if best is not None and shared[best] > 0 else None


def checksum_matches(cell: nbformat.NotebookNode, checksum: str) -> bool:
    """True if nbgrader's checksum of ``cell`` (source, type, flags, id, points) is ``checksum``."""
    try:
        return utils.compute_checksum(cell) == checksum
    except (KeyError, TypeError, ValueError):  # nbgrader metadata damaged: points or id missing
        return False


def structure_problems(nb: nbformat.NotebookNode, released: list[ReleasedCell]) -> list[str]:
    """Released cells deleted, duplicated, retyped or (locked ones) edited; unknown nbgrader ids."""
    copies: dict[str, list[nbformat.NotebookNode]] = {}
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id:
            copies.setdefault(grade_id, []).append(cell)
    problems = []
    for expected in released:
        found = copies.get(expected.grade_id, [])
        what = f"{expected.kind} {expected.grade_id}"
        if not found:
            problems.append(f"{what} was deleted ({RESTORE})")
            continue
        if len(found) > 1:
            problems.append(f"{what} appears {len(found)} times (a copied cell keeps its grading id): "
                            f"keep one and delete the others")
        cell = found[0]
        if cell.cell_type != expected.cell_type:
            problems.append(f"{what} was changed from {expected.cell_type} to {cell.cell_type} "
                            f"(change it back to {expected.cell_type})")
        elif expected.locked and expected.checksum and not checksum_matches(cell, expected.checksum):
            problems.append(f"{what} was edited; grading uses the released version "
                            f"(undo your edit, or {RESTORE})")
    known = {c.grade_id for c in released}
    for grade_id in copies:
        if grade_id not in known:
            problems.append(f"cell {grade_id} has grading metadata the release does not have "
                            f"(it is graded as a plain cell)")
    return problems


def run_notebook(nb: nbformat.NotebookNode, folder: Path,
                 timeout_s: int) -> tuple[nbformat.NotebookNode, str | None]:
    """Execute every cell as ``nbgrader validate`` does; the notebook and a note if the kernel died.

    Errors in cells are kept as outputs and execution goes on; a cell running longer than
    ``timeout_s`` is interrupted and gets an error output.
    """
    resources = {"metadata": {"path": str(folder)}}
    with utils.setenv(NBGRADER_VALIDATING="1", NBGRADER_EXECUTION="validate"):
        nb, resources = ClearOutput().preprocess(nb, resources)
        try:
            timed_out = {"ename": TIMEOUT_ERROR, "traceback": [],
                         "evalue": f"the cell was still running after {timeout_s} s and was stopped"}
            nb, _ = Execute(timeout=timeout_s, error_on_timeout=timed_out,
                            extra_arguments=QUIET_KERNEL).preprocess(nb, resources)
        except DeadKernelError:
            return nb, ("the kernel died while running the notebook (a crash, or out of memory); "
                        "the cells after that did not run")
        except NoSuchKernel as exc:
            raise UsageError(f"cannot start the notebook's kernel {exc.name!r}: run this with the Python "
                             f"you use for Jupyter") from None
    return nb, None


def error_output(cell: nbformat.NotebookNode) -> tuple[str, str] | None:
    """(error type, one-line message) of the error the cell raised, a timeout first, or None."""
    errors = [output for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    errors.sort(key=lambda output: output.get("ename") != TIMEOUT_ERROR)
    if not errors:
        return None
    return errors[0].get("ename", "Error"), one_line(errors[0].get("evalue", ""))


def one_line(message: str) -> str:
    """An error message on one line: colour codes and numpy's mismatch details dropped, shortened."""
    lines = []
    for line in ANSI_ESCAPE.sub("", message).splitlines():
        if NUMPY_DETAILS.match(line):
            break
        if line.strip():
            lines.append(line.strip())
    text = "; ".join(lines)
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 3] + "..."


def describe_error(ename: str, message: str) -> str:
    return f"{ename}: {message}" if message else f"{ename} (no message)"


def check_cells(nb: nbformat.NotebookNode, report: NotebookReport) -> None:
    """Fill ``report`` with tasks not done, unwritten answers and failing visible tests."""
    seen: set[str] = set()
    for number, cell in enumerate(nb.cells, 1):
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        error = error_output(cell)
        if grade_id in seen:
            continue
        if grade_id:
            seen.add(grade_id)
        if meta.get("solution") and cell.cell_type == "code":
            if CODE_STUB.search(cell.source) or (error and error[0] == "NotImplementedError"):
                report.tasks_not_done.append(grade_id)
            elif error:
                report.task_errors.append(f"task {grade_id} raises {describe_error(*error)}")
        elif meta.get("solution"):
            if cell.source.strip() in ("", ANSWER_STUB):
                report.answers_not_written.append(grade_id)
        elif meta.get("grade") and cell.cell_type == "code":
            report.visible_tests += 1
            if error and error[0] == "NotImplementedError":
                report.tests_waiting.append(grade_id)
            elif error:
                report.tests_failing.append(f"visible test {grade_id} fails: {describe_error(*error)}")
        elif error and error[0] != "NotImplementedError":
            report.ungraded_errors.append(f"cell {number} (not graded) raises {describe_error(*error)}")


def check_notebook(path: Path, nb: nbformat.NotebookNode, manifest: dict[str, list[ReleasedCell]] | None,
                   timeout_s: int) -> NotebookReport:
    """Structure against the release, then run the notebook and read its tasks and tests."""
    report = NotebookReport(path.name)
    if manifest is None:
        released = cells_from_own_metadata(nb)
    else:
        release_name = matching_release(path.name, nb, manifest)
        if release_name is None:
            report.structure.append("no graded cell of any released notebook is in this file; "
                                    "is it the right file?")
            released = []
        else:
            released = manifest[release_name]
            if release_name != path.name:
                report.notes.append(f"compared with the released {release_name}; submit it under that name")
    report.structure += structure_problems(nb, released)
    nb, died = run_notebook(nb, path.parent, timeout_s)
    if died:
        report.kernel_died.append(died)
    check_cells(nb, report)
    return report


def default_notebooks(folder: Path, manifest: dict[str, list[ReleasedCell]] | None) -> list[Path]:
    """The assignment's notebooks in ``folder``: those the manifest names, else every .ipynb."""
    if manifest is not None:
        return [folder / name for name in manifest]
    found = sorted(folder.glob("*.ipynb"))
    if not found:
        raise UsageError(f"{folder}: no notebooks here")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="selfcheck.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check notebooks before submitting: tasks not done, failing visible tests, "
                    "deleted/duplicated/retyped/edited graded cells.",
        epilog=f"{HIDDEN_TESTS_NOTE}\nExit status: 0 ready to submit, 1 problems found, "
               f"2 a file is missing or not a notebook, or nbgrader is not installed.")
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to check (default: every notebook of the assignment in this folder)")
    parser.add_argument("--timeout", type=int, default=60, metavar="SECONDS",
                        help="longest a single cell may run (default: 60)")
    args = parser.parse_args(argv)
    notebooks = []
    try:
        manifest = load_manifest(HERE / MANIFEST_NAME)
        paths = args.notebooks or default_notebooks(HERE, manifest)
    except UsageError as exc:
        print(f"selfcheck: error: {exc}", file=sys.stderr)
        return 2
    errors = []
    for path in paths:
        try:
            notebooks.append((path, read_notebook(path)))
        except UsageError as exc:
            errors.append(str(exc))
    if errors:
        for message in errors:
            print(f"selfcheck: error: {message}", file=sys.stderr)
        return 2
    if manifest is None:
        print(f"note: no {MANIFEST_NAME} beside selfcheck.py, so deleted cells cannot be detected")
    reports = []
    for path, nb in notebooks:
        print(f"{path.name}: running every cell ...", flush=True)
        try:
            report = check_notebook(path, nb, manifest, args.timeout)
        except UsageError as exc:
            print(f"selfcheck: error: {exc}", file=sys.stderr)
            return 2
        reports.append(report)
        print("\n".join(report.lines()), flush=True)
    print(HIDDEN_TESTS_NOTE)
    return 1 if any(report.problem_count for report in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
