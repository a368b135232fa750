"""Submissions are put back into the released shape before grading; renamed files are found."""
from __future__ import annotations

import copy

import nbformat
import pytest

from autograder.repair import match_notebook_name, read_notebook, repair_notebook


def cell(kind, source, **nbgrader):
    new = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    made = new(source)
    if nbgrader:
        made.metadata["nbgrader"] = dict(nbgrader, schema_version=3)
    return made


def released():
    return nbformat.v4.new_notebook(cells=[
        cell("markdown", "# Task"),
        cell("code", "def f(x):\n    raise NotImplementedError()", grade_id="f", solution=True, grade=False, locked=False),
        cell("code", "assert f(1) == 2", grade_id="t_f", grade=True, solution=False, locked=True, points=2),
        cell("markdown", "YOUR ANSWER HERE", grade_id="q", grade=True, solution=True, locked=False, points=1),
    ])


def answered():
    nb = copy.deepcopy(released())
    nb.cells[1].source = "def f(x):\n    return 2 * x"
    nb.cells[3].source = "Because."
    return nb


def ids(nb):
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]


def test_honest_submission_needs_no_repair():
    nb, notes = repair_notebook(answered(), released())
    assert notes == [] and nb.cells[1].source == "def f(x):\n    return 2 * x"


def test_edited_test_cell_is_restored():
    nb = answered()
    nb.cells[2].source = "pass"
    repaired, notes = repair_notebook(nb, released())
    assert repaired.cells[2].source == "assert f(1) == 2"
    assert notes == ["locked cell t_f was edited -> restored"]


def test_deleted_test_cell_comes_back_after_its_answer():
    nb = answered()
    del nb.cells[2]
    repaired, notes = repair_notebook(nb, released())
    assert ids(repaired) == [None, "f", "t_f", "q"] and "deleted cell t_f restored" in notes
    assert repaired.cells[2].source == "assert f(1) == 2", "a restored test must run, not be commented out"


def test_retyped_cells_get_their_type_back():
    nb = answered()
    nb.cells[2].cell_type = "raw"
    nb.cells[2].pop("outputs")
    nb.cells[2].pop("execution_count")
    nb.cells[1] = nbformat.v4.new_markdown_cell(nb.cells[1].source, metadata=nb.cells[1].metadata)
    repaired, notes = repair_notebook(nb, released())
    assert [c.cell_type for c in repaired.cells] == ["markdown", "code", "code", "markdown"]
    assert repaired.cells[1].source == "def f(x):\n    return 2 * x", "the student's answer is kept"
    assert len(notes) == 2


def test_duplicates_are_kept_as_code_or_dropped_as_tests():
    nb = answered()
    nb.cells.insert(2, copy.deepcopy(nb.cells[1]))
    nb.cells.insert(4, copy.deepcopy(nb.cells[3]))
    repaired, notes = repair_notebook(nb, released())
    assert ids(repaired) == [None, "f", None, "t_f", "q"]
    assert repaired.cells[2].source == "def f(x):\n    return 2 * x"
    assert sorted(notes) == ["a second copy of answer cell f kept as plain code",
                             "dropped a duplicate of locked cell t_f"]


def test_changed_flags_and_invented_cells_are_undone():
    nb = answered()
    nb.cells[1].metadata.nbgrader.update(grade=True, points=100)
    nb.cells.append(cell("code", "assert True", grade_id="free_points", grade=True, points=50, locked=True))
    repaired, notes = repair_notebook(nb, released())
    assert repaired.cells[1].metadata.nbgrader == released().cells[1].metadata.nbgrader
    assert "nbgrader" not in repaired.cells[-1].metadata
    assert len(notes) == 2


@pytest.mark.parametrize("name, expected", [
    ("01_loops_and_blocking.ipynb", "01_loops_and_blocking"),
    ("01_loops_and_blocking (1).ipynb", "01_loops_and_blocking"),
    ("01_loops_and_blocking (2) (1).ipynb", "01_loops_and_blocking"),
    ("01_loops_and_blocking-3.ipynb", "01_loops_and_blocking"),
    ("Copy of 01_loops_and_blocking.ipynb", "01_loops_and_blocking"),
    ("01 Loops And Blocking.ipynb", "01_loops_and_blocking"),
    ("02_vectorization_and_fusion.ipynb", None),
    ("01_loops_and_blocking.py", None),
    ("notes.ipynb", None),
])
def test_match_notebook_name(name, expected):
    assert match_notebook_name(name, ["01_loops_and_blocking", "03_quantization"]) == expected


def test_read_notebook_names_the_problem(tmp_path):
    (tmp_path / "a.ipynb").write_text('{"cells": [')
    with pytest.raises(ValueError, match="a.ipynb is not a readable notebook"):
        read_notebook(tmp_path / "a.ipynb")
