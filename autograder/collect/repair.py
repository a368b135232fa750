"""Put a submitted notebook back into the shape the instructor released, before grading.

Students delete, duplicate, retype and edit cells; nbgrader then grades the wrong thing (a
deleted test cell comes back commented out and passes). ``repair_notebook`` restores every
instructor cell from the released notebook, keeps every answer the student wrote, and says what
it changed. Locked cells get their released source here; nbgrader then puts the hidden tests back.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import nbformat
from nbformat import NotebookNode

from autograder.course import nbgrader_meta

COPY_SUFFIX = re.compile(r"(\s*\(\d+\)|\s*-\s*copy|\s+copy|-\d+|_\d+)+$", re.IGNORECASE)


def _grade_id(cell: NotebookNode) -> str | None:
    value = nbgrader_meta(cell).get("grade_id")
    return value if isinstance(value, str) else None


def _plain(cell: NotebookNode) -> NotebookNode:
    cell = copy.deepcopy(cell)
    cell.metadata.pop("nbgrader", None)
    return cell


def _released_copy(cell: NotebookNode) -> NotebookNode:
    cell = copy.deepcopy(cell)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    return cell


@dataclass(frozen=True)
class Repair:
    """One change made to a submitted notebook before grading.

    ``kind`` is one of ``REPAIR_KINDS``; those in ``TAMPERING`` mean a test or given cell was
    changed, and raise a flag for review.
    """

    kind: str
    grade_id: str | None
    text: str

    def __str__(self) -> str:
        return self.text


REPAIR_KINDS = ("invented_metadata", "answer_copy", "locked_copy", "answer_retyped", "answer_metadata",
                "locked_retyped", "locked_edited", "locked_metadata", "deleted")
TAMPERING = {"invented_metadata", "locked_copy", "locked_retyped", "locked_edited", "locked_metadata", "deleted"}


def repair_notebook(submitted: NotebookNode, released: NotebookNode) -> tuple[NotebookNode, list[Repair]]:
    """The submission with every released nbgrader cell restored; and one ``Repair`` per change.

    - answer cells keep the student's text but get back their released type and metadata;
    - locked cells (tests, given code, prose) get back their released source, type and metadata;
    - a deleted nbgrader cell is put back after the cell that preceded it in the release;
    - a second cell with the same grade_id keeps its code as a plain cell if it was an answer
      (a split or copied answer), and is dropped if it was a locked cell;
    - nbgrader metadata the instructor never wrote is removed.
    """
    given = {_grade_id(c): c for c in released.cells if _grade_id(c)}
    order = [_grade_id(c) for c in released.cells if _grade_id(c)]
    notes: list[Repair] = []
    cells: list[NotebookNode] = []
    seen: set[str] = set()
    for cell in submitted.cells:
        grade_id = _grade_id(cell)
        if "nbgrader" in cell.get("metadata", {}) and grade_id not in given:
            notes.append(Repair("invented_metadata", None, f"removed nbgrader metadata the release does not have "
                                                            f"(grade_id {str(grade_id)[:40]!r})"))
            cells.append(_plain(cell))
            continue
        if grade_id is None:
            cells.append(cell)
            continue
        original = given[grade_id]
        answer = bool(nbgrader_meta(original).get("solution"))
        if grade_id in seen:
            if answer:
                notes.append(Repair("answer_copy", grade_id, f"a second copy of answer cell {grade_id} kept as plain code"))
                cells.append(_plain(cell))
            else:
                notes.append(Repair("locked_copy", grade_id, f"dropped a duplicate of locked cell {grade_id}"))
            continue
        seen.add(grade_id)
        if answer:
            repaired = copy.deepcopy(cell)
            if repaired.cell_type != original.cell_type:
                notes.append(Repair("answer_retyped", grade_id, f"answer cell {grade_id} retyped {cell.cell_type} -> "
                                                                f"restored to {original.cell_type}"))
                repaired = (nbformat.v4.new_code_cell(cell.source) if original.cell_type == "code"
                            else nbformat.v4.new_markdown_cell(cell.source))
            if nbgrader_meta(cell) != nbgrader_meta(original):
                notes.append(Repair("answer_metadata", grade_id, f"answer cell {grade_id}: nbgrader metadata restored"))
            repaired.metadata = copy.deepcopy(original.metadata)
            cells.append(repaired)
        else:
            if cell.cell_type != original.cell_type:
                notes.append(Repair("locked_retyped", grade_id, f"locked cell {grade_id} retyped {cell.cell_type} -> restored"))
            elif cell.source != original.source:
                notes.append(Repair("locked_edited", grade_id, f"locked cell {grade_id} was edited -> restored"))
            elif nbgrader_meta(cell) != nbgrader_meta(original):
                notes.append(Repair("locked_metadata", grade_id, f"locked cell {grade_id}: nbgrader metadata restored"))
            restored = _released_copy(original)
            if cell.cell_type == original.cell_type == "code":
                restored.outputs = cell.get("outputs", [])
            cells.append(restored)
    for position, grade_id in enumerate(order):
        if grade_id in seen:
            continue
        before = order[:position]
        insert_at = 0
        for index, cell in enumerate(cells):
            if _grade_id(cell) in before:
                insert_at = index + 1
        cells.insert(insert_at, _released_copy(given[grade_id]))
        seen.add(grade_id)
        notes.append(Repair("deleted", grade_id, f"deleted cell {grade_id} restored"))
    repaired_nb = copy.deepcopy(submitted)
    repaired_nb.cells = cells
    repaired_nb.metadata["kernelspec"] = copy.deepcopy(released.metadata.get("kernelspec", {}))
    return repaired_nb, notes


def match_notebook_name(filename: str, notebooks: list[str]) -> str | None:
    """The released notebook a submitted file name stands for, or None.

    Accepts the exact name and the names browsers and LMSs make of it:
    ``01_loops_and_blocking (1).ipynb``, ``01_loops_and_blocking-2.ipynb``, ``Copy of ...``,
    other letter case and spaces for underscores.
    """
    if not filename.lower().endswith(".ipynb"):
        return None
    stem = filename[: -len(".ipynb")].strip()
    stem = re.sub(r"^copy of\s+", "", stem, flags=re.IGNORECASE)
    candidates = {stem, COPY_SUFFIX.sub("", stem)}
    normalise = (lambda s: re.sub(r"[\s\-]+", "_", s.strip().lower()))
    wanted = {normalise(c) for c in candidates}
    for name in notebooks:
        if normalise(name) in wanted:
            return name
    return None


def read_notebook(data: bytes, name: str) -> NotebookNode:
    """A submitted notebook from its bytes; ``ValueError`` with a plain reason if it is not one.

    Every exception of the JSON parser and nbformat counts (deep nesting raises RecursionError),
    and the structure repair relies on is checked: a list of cells, each a dict with a known type,
    string or list-of-strings source, and dict metadata.
    """
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    except Exception as exc:  # the submission chose the bytes: any parser failure is "unreadable"
        detail = str(exc).splitlines()[0][:120] if str(exc) else "no detail"
        raise ValueError(f"{name} is not a readable notebook ({type(exc).__name__}: {detail})") from None
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise ValueError(f"{name} has no list of cells")
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise ValueError(f"{name}: cell {number} is not a notebook cell")
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            cell["source"] = "".join(source)
        elif not isinstance(source, str):
            raise ValueError(f"{name}: cell {number} has no text source")
        if not isinstance(cell.get("metadata", {}), dict) or not isinstance(
                cell.get("metadata", {}).get("nbgrader", {}), dict):
            raise ValueError(f"{name}: cell {number} has malformed metadata")
        if cell["cell_type"] == "code" and not isinstance(cell.get("outputs", []), list):
            raise ValueError(f"{name}: cell {number} has malformed outputs")
    if not isinstance(nb.get("metadata", {}), dict):
        raise ValueError(f"{name} has malformed metadata")
    return nb
