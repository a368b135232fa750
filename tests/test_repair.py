"""Submissions are put back into the released shape before grading; renamed files are found;
staging copies notebooks only and refuses what it must not open."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import nbformat
import pytest

from autograder.collect.repair import TAMPERING, match_notebook_name, read_notebook, repair_notebook
from autograder.collect.stage import stage_submission
from autograder.course import STAGING


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
    assert [(n.kind, n.grade_id, str(n)) for n in notes] == [
        ("locked_edited", "t_f", "locked cell t_f was edited -> restored")]
    assert notes[0].kind in TAMPERING


def test_deleted_test_cell_comes_back_after_its_answer():
    nb = answered()
    del nb.cells[2]
    repaired, notes = repair_notebook(nb, released())
    assert ids(repaired) == [None, "f", "t_f", "q"] and "deleted cell t_f restored" in map(str, notes)
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
    assert sorted(map(str, notes)) == ["a second copy of answer cell f kept as plain code",
                                       "dropped a duplicate of locked cell t_f"]
    assert [n.kind in TAMPERING for n in sorted(notes, key=str)] == [False, True]


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


@pytest.mark.parametrize("data, words", [
    (b'{"cells": [', "is not a readable notebook"),
    (b"[" * 100_000 + b"]" * 100_000, "is not a readable notebook"),          # nesting the parser cannot take
    (b"\xff\xfe not utf-8", "is not a readable notebook"),
    (b'{"cells": 7, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "is not a readable notebook"),
    (b'{"cells": [{"cell_type": "code", "source": 5, "metadata": {}, "outputs": []}], "metadata": {}, '
     b'"nbformat": 4, "nbformat_minor": 5}', "a.ipynb"),
])
def test_read_notebook_names_the_problem(data, words):
    with pytest.raises(ValueError, match=words):
        read_notebook(data, "a.ipynb")


def make_staging_course(root: Path) -> Path:
    release = root / "release" / "acceleration"
    release.mkdir(parents=True)
    nbformat.write(released(), release / "01_toy.ipynb")
    (release / "benchmarking.py").write_text("# the release's helper\n")
    folder = root / "submitted" / "s" / "acceleration"
    folder.mkdir(parents=True)
    return folder


def test_staging_copies_answered_notebooks_only_and_lists_the_rest(tmp_path):
    folder = make_staging_course(tmp_path)
    nbformat.write(answered(), folder / "01_toy (1).ipynb")
    (folder / "numpy.py").write_text("raise SystemExit('imported a student file')\n")
    (folder / "benchmarking.py").write_text("EVIL = True\n")
    (folder / "pkg").mkdir()
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "site.pth").write_text("import os\n")
    staged = stage_submission(tmp_path, "acceleration", "s", ["01_toy"])
    target = tmp_path / STAGING / "submitted" / "s" / "acceleration"
    assert sorted(p.name for p in target.iterdir()) == ["01_toy.ipynb"], "only notebooks are staged"
    assert staged.present == {"01_toy"} and staged.problems == {}
    assert sorted(staged.ignored) == ["benchmarking.py", "numpy.py", "pkg/__init__.py", "site.pth"]
    assert staged.notes == ["graded '01_toy (1).ipynb' as 01_toy.ipynb"]


def test_staging_refuses_links_fifos_odd_names_and_oversized_notebooks(tmp_path, monkeypatch):
    folder = make_staging_course(tmp_path)
    secret = tmp_path / "secret.ipynb"
    nbformat.write(answered(), secret)
    (folder / "01_toy.ipynb").symlink_to(secret)
    os.link(secret, folder / "hard.ipynb")
    os.mkfifo(folder / "pipe.ipynb")
    (folder / os.fsdecode(b"bad\xffname.py")).write_text("x = 1\n")
    (folder / "linked_dir").symlink_to(tmp_path, target_is_directory=True)
    staged = stage_submission(tmp_path, "acceleration", "s", ["01_toy"])
    refused = "\n".join(staged.refused)
    for words in ("01_toy.ipynb: a symbolic link", "hard.ipynb: a hard link", "pipe.ipynb: not a regular file",
                  "not valid UTF-8", "linked_dir: a symbolic link"):
        assert words in refused, f"{words!r} not in {staged.refused}"
    assert staged.present == set(), "a notebook reached only through a link is never read"
    import autograder.collect.stage as stage
    monkeypatch.setattr(stage, "MAX_NOTEBOOK_BYTES", 100)
    nbformat.write(answered(), folder / "big.ipynb")
    (folder / "01_toy.ipynb").unlink()
    os.rename(folder / "big.ipynb", folder / "01_toy.ipynb")
    staged = stage_submission(tmp_path, "acceleration", "s", ["01_toy"])
    assert "over the 100-byte limit" in staged.problems["01_toy"]


def test_a_submission_folder_that_is_a_link_is_refused(tmp_path):
    folder = make_staging_course(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    nbformat.write(answered(), elsewhere / "01_toy.ipynb")
    folder.rmdir()
    folder.symlink_to(elsewhere, target_is_directory=True)
    staged = stage_submission(tmp_path, "acceleration", "s", ["01_toy"])
    assert staged.present == set() and "symbolic link" in staged.refused[0]
