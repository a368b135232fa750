"""Put a submitted notebook back into the shape the instructor released, before grading.

Students delete, duplicate, retype and edit cells; nbgrader then grades the wrong thing (a
deleted test cell comes back commented out and passes). ``repair_notebook`` restores every
instructor cell from the released notebook, keeps every answer the student wrote, and says what
it changed. Locked cells get their released source here; nbgrader then puts the hidden tests back.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from autograder.build import nbgrader_meta

COPY_SUFFIX = re.compile(r"(\s*\(\d+\)|\s*-\s*copy|\s+copy|-\d+|_\d+)+$", re.IGNORECASE)


def _grade_id(cell: NotebookNode) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def _plain(cell: NotebookNode) -> NotebookNode:
    cell = copy.deepcopy(cell)
    cell.metadata.pop("nbgrader", None)
    return cell


def _released_copy(cell: NotebookNode) -> NotebookNode:
    cell = copy.deepcopy(cell)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    return cell


def repair_notebook(submitted: NotebookNode, released: NotebookNode) -> tuple[NotebookNode, list[str]]:
    """The submission with every released nbgrader cell restored; and a line per repair.

    - answer cells keep the student's text but get back their released type and metadata;
    - locked cells (tests, given code, prose) get back their released source, type and metadata;
    - a deleted nbgrader cell is put back after the cell that preceded it in the release;
    - a second cell with the same grade_id keeps its code as a plain cell if it was an answer
      (a split or copied answer), and is dropped if it was a locked cell;
    - nbgrader metadata the instructor never wrote is removed.
    """
    given = {_grade_id(c): c for c in released.cells if _grade_id(c)}
    order = [_grade_id(c) for c in released.cells if _grade_id(c)]
    notes: list[str] = []
    cells: list[NotebookNode] = []
    seen: set[str] = set()
    for cell in submitted.cells:
        grade_id = _grade_id(cell)
        if "nbgrader" in cell.get("metadata", {}) and grade_id not in given:
            notes.append(f"removed nbgrader metadata the release does not have (grade_id {grade_id!r})")
            cells.append(_plain(cell))
            continue
        if grade_id is None:
            cells.append(cell)
            continue
        original = given[grade_id]
        answer = bool(nbgrader_meta(original).get("solution"))
        if grade_id in seen:
            if answer:
                notes.append(f"a second copy of answer cell {grade_id} kept as plain code")
                cells.append(_plain(cell))
            else:
                notes.append(f"dropped a duplicate of locked cell {grade_id}")
            continue
        seen.add(grade_id)
        if answer:
            repaired = copy.deepcopy(cell)
            if repaired.cell_type != original.cell_type:
                notes.append(f"answer cell {grade_id} retyped {cell.cell_type} -> restored to {original.cell_type}")
                repaired = (nbformat.v4.new_code_cell(cell.source) if original.cell_type == "code"
                            else nbformat.v4.new_markdown_cell(cell.source))
            if nbgrader_meta(cell) != nbgrader_meta(original):
                notes.append(f"answer cell {grade_id}: nbgrader metadata restored")
            repaired.metadata = copy.deepcopy(original.metadata)
            cells.append(repaired)
        else:
            if cell.cell_type != original.cell_type:
                notes.append(f"locked cell {grade_id} retyped {cell.cell_type} -> restored")
            elif cell.source != original.source:
                notes.append(f"locked cell {grade_id} was edited -> restored")
            elif nbgrader_meta(cell) != nbgrader_meta(original):
                notes.append(f"locked cell {grade_id}: nbgrader metadata restored")
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
        notes.append(f"deleted cell {grade_id} restored")
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


def read_notebook(path: Path) -> NotebookNode:
    """Read a submitted notebook; ``ValueError`` with a plain reason if it is not one."""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises several types for broken files
        raise ValueError(f"{path.name} is not a readable notebook ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120] if str(exc) else 'no detail'})") from None
    if not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path.name} has no cells")
    return nb
