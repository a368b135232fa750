"""selfcheck.py run as a student runs it, in a copy of a freshly built release.

Each executed run is one module fixture (03_quantization, the quickest notebook to run) that
several tests read, so the module executes a notebook three times in all, plus two one-cell
notebooks that save and load measurements the way notebooks 01 and 02 do.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.build.release import build_release, find_leaks, protected_lines
from autograder.build.source import module_notebooks
from autograder.course import REPO, nbgrader_meta
from autograder.demo import fill_solutions

pytestmark = pytest.mark.xdist_group("selfcheck")
ASSIGNMENT = "acceleration"
NOTEBOOK = "03_quantization.ipynb"
WRONG_DEQUANTIZE = ("return q.astype(np.float32) * np.asarray(scale, dtype=np.float32)",
                    "return q * np.asarray(scale)")


@pytest.fixture(scope="module")
def course(tmp_path_factory, built_source) -> Path:
    """A course root with this repo's source and a release built from it (manifest included)."""
    root = tmp_path_factory.mktemp("selfcheck-course")
    shutil.copytree(built_source / ASSIGNMENT, root / "source" / ASSIGNMENT)
    build_release(root, ASSIGNMENT)
    return root


def student_copy(course: Path, folder: Path) -> Path:
    """The release folder as a student receives it, copied to ``folder``."""
    shutil.copytree(course / "release" / ASSIGNMENT, folder)
    return folder


def selfcheck(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """``python selfcheck.py *args`` in ``folder``, with none of this repo on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JUPYTER_CONFIG_PATH")}
    env.update(JUPYTER_PREFER_ENV_PATH="1", PATH=os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]]))
    return subprocess.run([sys.executable, "selfcheck.py", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)


def reference_notebook(course: Path) -> nbformat.NotebookNode:
    released = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    return fill_solutions(released, nbformat.read(course / "source" / ASSIGNMENT / NOTEBOOK, as_version=4))


def cell_index(nb: nbformat.NotebookNode, grade_id: str) -> int:
    return next(i for i, cell in enumerate(nb.cells) if nbgrader_meta(cell).get("grade_id") == grade_id)


def released_grade_ids(course: Path) -> dict[str, list[str]]:
    """The released NOTEBOOK's grade ids in order: tasks, written answers and visible tests."""
    kinds: dict[str, list[str]] = {"tasks": [], "answers": [], "tests": []}
    for cell in nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4).cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution"):
            kinds["tasks" if cell.cell_type == "code" else "answers"].append(meta["grade_id"])
        elif meta.get("grade"):
            kinds["tests"].append(meta["grade_id"])
    return kinds


@pytest.fixture(scope="module")
def untouched(course, tmp_path_factory) -> subprocess.CompletedProcess:
    return selfcheck(student_copy(course, tmp_path_factory.mktemp("untouched") / ASSIGNMENT), NOTEBOOK)


@pytest.fixture(scope="module")
def reference(course, tmp_path_factory) -> subprocess.CompletedProcess:
    folder = student_copy(course, tmp_path_factory.mktemp("reference") / ASSIGNMENT)
    nbformat.write(reference_notebook(course), folder / NOTEBOOK)
    return selfcheck(folder, NOTEBOOK)


@pytest.fixture(scope="module")
def damaged(course, tmp_path_factory) -> subprocess.CompletedProcess:
    """The reference with a wrong dequantize, and a test cell deleted, duplicated, retyped, edited."""
    folder = student_copy(course, tmp_path_factory.mktemp("damaged") / ASSIGNMENT)
    nb = reference_notebook(course)
    task = nb.cells[cell_index(nb, "dequantize")]
    assert WRONG_DEQUANTIZE[0] in task.source
    task.source = task.source.replace(*WRONG_DEQUANTIZE)
    del nb.cells[cell_index(nb, "t03_quantized_relu_integer_domain")]
    duplicated = cell_index(nb, "t03_quantize_int8_per_tensor")
    pasted = copy.deepcopy(nb.cells[duplicated])
    pasted.id = "pasted-copy"  # Jupyter gives a copied cell a new id, and keeps its metadata
    nb.cells.insert(duplicated + 1, pasted)
    nb.cells[cell_index(nb, "t03_quantized_linear_storage")].source += "\n# my own note"
    retyped = cell_index(nb, "t03_quantized_linear_forward")
    nb.cells[retyped] = nbformat.v4.new_markdown_cell(nb.cells[retyped].source, metadata=nb.cells[retyped].metadata)
    nbformat.write(nb, folder / NOTEBOOK)
    return selfcheck(folder, NOTEBOOK)


def report_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line.removeprefix(f"{NOTEBOOK}: ") for line in result.stdout.splitlines() if line.startswith(NOTEBOOK)]


def test_untouched_release_reports_every_task_not_done(untouched, course):
    lines = report_lines(untouched)
    assert untouched.returncode == 1, untouched.stdout + untouched.stderr
    tasks, answers, tests = released_grade_ids(course).values()
    assert f"{len(tasks)} tasks not done yet: {', '.join(tasks)}" in lines, lines
    assert f"{len(answers)} written answers not done yet: {', '.join(answers)}" in lines, lines
    assert any(line.startswith(f"{len(tests)} visible tests fail with NotImplementedError") for line in lines)
    assert lines[-1] == f"not ready ({len(tasks) + len(answers) + len(tests)} problems)"
    assert not any(line.startswith("structure:") for line in lines), "an untouched release is intact"
    assert untouched.stdout.count("hidden tests") == 1
    assert "Traceback" not in untouched.stdout + untouched.stderr


def test_reference_solutions_are_ready_to_submit(reference, course):
    assert reference.returncode == 0, reference.stdout + reference.stderr
    tests = released_grade_ids(course)["tests"]
    assert report_lines(reference)[-1] == f"ready to submit ({len(tests)} visible tests pass)"
    assert "not done" not in reference.stdout and "fails" not in reference.stdout


def test_failing_visible_test_is_one_line_with_error_type_and_message(damaged):
    lines = report_lines(damaged)
    assert ("visible test t03_dequantize_broadcast fails: AssertionError: "
            "dequantize must return float32, got float64") in lines, lines
    assert "Traceback" not in damaged.stdout and "----" not in damaged.stdout


def test_deleted_test_cell_is_reported(damaged):
    assert ("structure: test cell t03_quantized_relu_integer_domain was deleted "
            "(restore it from a fresh copy of the release)") in report_lines(damaged)


def test_duplicated_graded_cell_is_reported(damaged):
    assert any(line.startswith("structure: test cell t03_quantize_int8_per_tensor appears 2 times")
               for line in report_lines(damaged)), damaged.stdout


def test_edited_locked_cell_is_reported(damaged):
    assert any(line.startswith("structure: test cell t03_quantized_linear_storage was edited")
               for line in report_lines(damaged)), damaged.stdout


def test_retyped_cell_is_reported(damaged):
    assert ("structure: test cell t03_quantized_linear_forward was changed from code to markdown "
            "(change it back to code)") in report_lines(damaged)


def test_damaged_notebook_is_not_ready(damaged):
    assert damaged.returncode == 1
    assert report_lines(damaged)[-1].startswith("not ready (")
    assert "ready to submit" not in damaged.stdout


def test_unreadable_or_missing_files_exit_2_naming_each_before_running_anything(course, tmp_path):
    folder = student_copy(course, tmp_path / ASSIGNMENT)
    (folder / NOTEBOOK).write_text('{"cells": [')
    (folder / "notes.ipynb").write_text("[1, 2]")
    result = selfcheck(folder, "01_loops_and_blocking.ipynb", NOTEBOOK, "missing.ipynb", "benchmarking.py",
                       "notes.ipynb")
    assert result.returncode == 2, result.stdout + result.stderr
    errors = result.stderr.splitlines()
    assert any(line.startswith(f"selfcheck: error: {NOTEBOOK}: not a readable notebook (JSONDecodeError")
               for line in errors), errors
    assert "selfcheck: error: missing.ipynb: no such file" in errors
    assert "selfcheck: error: benchmarking.py: not a notebook (give a .ipynb file)" in errors
    assert any(line.startswith("selfcheck: error: notes.ipynb: not a notebook") for line in errors)
    assert "Traceback" not in result.stderr
    assert result.stdout == "", "nothing runs while a named file is unusable"


def test_manifest_lists_released_cells_and_no_solution_or_hidden_test_text(course):
    release = course / "release" / ASSIGNMENT
    manifest_text = (release / "selfcheck_manifest.json").read_text()
    manifest = json.loads(manifest_text)["notebooks"]
    assert sorted(manifest) == sorted(p.name for p in release.glob("*.ipynb"))
    for name, cells in manifest.items():
        released = [c for c in nbformat.read(release / name, as_version=4).cells if nbgrader_meta(c).get("grade_id")]
        assert [c["grade_id"] for c in cells] == [nbgrader_meta(c)["grade_id"] for c in released]
        for entry, cell in zip(cells, released):
            assert set(entry) == {"grade_id", "cell_type", "solution", "grade", "locked", "points", "checksum"}
            assert entry["cell_type"] == cell.cell_type
            assert entry["checksum"] == (nbgrader_meta(cell)["checksum"] if entry["locked"] else None)
        instructor = protected_lines(nbformat.read(course / "source" / ASSIGNMENT / name, as_version=4))
        assert instructor and not [line for line in instructor if line in manifest_text]
    assert find_leaks(course / "source" / ASSIGNMENT, release) == []


def test_selfcheck_ships_as_a_helper_and_is_not_a_notebook_source(course):
    assert REPO / "modules" / ASSIGNMENT / "selfcheck.py" not in module_notebooks(REPO / "modules" / ASSIGNMENT)
    for folder in ("source", "release"):
        assert (course / folder / ASSIGNMENT / "selfcheck.py").is_file()


def test_a_python_without_nbgrader_gets_one_line_saying_what_to_install(course, tmp_path):
    """``-I -S``: no site-packages, so nbformat and nbgrader cannot be imported (the standard library can)."""
    folder = student_copy(course, tmp_path / ASSIGNMENT)
    result = subprocess.run([sys.executable, "-I", "-S", "selfcheck.py"], cwd=folder, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("selfcheck: error: ") and "Traceback" not in result.stderr, lines
    assert "nbformat" in lines[0] and "python -m pip install nbgrader" in lines[0], lines


SAVES = """import benchmarking
benchmarking.save_measurements("01_loops_and_blocking", [{"kernel": "grading size", "time_s": 1.0}])"""
LOADS = """import benchmarking
loaded = benchmarking.load_measurements("01_loops_and_blocking")
assert loaded == EXPECTED, loaded"""


def one_cell_notebook(path: Path, source: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_selfcheck_never_overwrites_the_students_measurements(course, tmp_path):
    """selfcheck.py runs notebooks as nbgrader validates them (NBGRADER_EXECUTION=validate): what a
    notebook saves then goes elsewhere, and a later notebook still plots the student's own."""
    folder = student_copy(course, tmp_path / ASSIGNMENT)
    mine = [{"kernel": "BLAS", "m": 1024, "k": 1024, "n": 1024, "time_s": 0.02}]
    saved = folder / "measurements" / "01_loops_and_blocking.json"
    saved.parent.mkdir()
    saved.write_text(json.dumps(mine))
    before = saved.read_bytes()
    one_cell_notebook(folder / "saves.ipynb", SAVES)
    one_cell_notebook(folder / "loads.ipynb", f"EXPECTED = {mine!r}\n" + LOADS)
    result = selfcheck(folder, "saves.ipynb", "loads.ipynb")
    assert "raises" not in result.stdout, result.stdout + result.stderr
    assert saved.read_bytes() == before, "a validation run replaced the student's measurements"
    assert sorted(p.name for p in saved.parent.iterdir()) == ["01_loops_and_blocking.json"]
