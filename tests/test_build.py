"""make source refuses metadata that would break grading; make release leaks nothing."""
from __future__ import annotations

import json

import nbformat
import pytest

from autograder.build.release import build_release, find_leaks
from autograder.build.source import BuildError, build_source
from toy_courses import ANSWER, GRADE, SOLUTION, TOY_CELLS, toy_module


def build(course, text=None):
    if text is not None:
        (course / "modules" / "acceleration" / "01_toy.py").write_text(text)
    return build_source(course / "modules", course / "source")


def refused(course, text) -> str:
    with pytest.raises(BuildError) as info:
        build(course, text)
    message = str(info.value)
    assert "01_toy.py: cell" in message, f"the message must name the file and cell: {message}"
    return message


def test_valid_module_builds_with_helpers_and_metadata(toy_course):
    [written] = build(toy_course)
    folder = toy_course / "source" / "acceleration"
    assert sorted(p.name for p in folder.iterdir()) == ["01_toy.ipynb", "benchmarking.py", "plotting.py"]
    nb = nbformat.read(written, as_version=4)
    metas = [c.metadata.get("nbgrader") for c in nb.cells]
    assert [m["grade_id"] for m in metas if m] == ["double", "t01_double_values", "q01_why"]
    assert all(m["schema_version"] == 3 for m in metas if m)
    assert "jupytext" not in nb.metadata


def test_refuses_missing_schema_version(toy_course):
    message = refused(toy_course, toy_module(solution=TOY_CELLS["solution"].replace(
        ', "schema_version": 3', "")))
    assert "schema_version" in message and "[double]" in message


def test_refuses_duplicate_grade_id(toy_course):
    grade = TOY_CELLS["grade"]
    message = refused(toy_course, toy_module(extra=grade))
    assert "duplicate grade_id 't01_double_values'" in message and "first used in" in message


def test_refuses_solution_cell_without_markers(toy_course):
    cell = SOLUTION + '\ndef double(x):\n    return 2 * x'
    message = refused(toy_course, toy_module(solution=cell))
    assert "without '### BEGIN SOLUTION'" in message and "(line " in message


@pytest.mark.parametrize("body", [
    'def test_double():\n    assert double(2) == 4',
    'import numpy as np\n\nclass TestDouble:\n    def test(self):\n        assert double(2) == 4',
    'expected = 4',
])
def test_refuses_grade_cell_that_calls_nothing(toy_course, body):
    message = refused(toy_course, toy_module(grade=GRADE + "\n" + body))
    assert "calls nothing" in message and "[t01_double_values]" in message


def test_accepts_grade_cell_that_defines_and_calls(toy_course):
    body = 'def check(x):\n    assert double(x) == 2 * x\n\ncheck(3)'
    build(toy_course, toy_module(grade=GRADE + "\n" + body))


@pytest.mark.parametrize("body, expected", [
    ("assert double(2) == 4\n### BEGIN HIDDEN TESTS\nassert double(1) == 2\n### END HIDDEN TESTS",
     "hidden tests do not belong in a notebook"),
    ("assert double(2) == 4\n### END HIDDEN TESTS", "hidden tests do not belong in a notebook"),
    ("assert double(2) == (4", "syntax error"),
])
def test_refuses_broken_grade_cells(toy_course, body, expected):
    assert expected in refused(toy_course, toy_module(grade=GRADE + "\n" + body))


def test_refuses_markers_in_plain_cells_and_bad_points(toy_course):
    plain = "# %%\nx = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION"
    assert "without nbgrader metadata" in refused(toy_course, toy_module(imports=plain))
    no_points = GRADE.replace('"points": 2, ', "") + "\nassert double(2) == 4"
    assert "needs \"points\"" in refused(toy_course, toy_module(grade=no_points))


def test_reports_every_problem_and_keeps_previous_source(toy_course):
    build(toy_course)
    before = (toy_course / "source" / "acceleration" / "01_toy.ipynb").read_text()
    text = toy_module(answer=ANSWER.replace(', "schema_version": 3', "") + "\nanswer",
                      grade=GRADE + "\nexpected = 4")
    message = refused(toy_course, text)
    assert "schema_version" in message and "calls nothing" in message
    assert (toy_course / "source" / "acceleration" / "01_toy.ipynb").read_text() == before


@pytest.mark.parametrize("question", ["**Q1. Why?** Explain.", "## Question\nWhy?", "Q2: why does it work?"])
def test_refuses_an_answer_cell_that_holds_its_question(toy_course, question):
    answer = ANSWER + "\n" + "\n".join(f"# {line}" for line in question.splitlines())
    message = refused(toy_course, toy_module(answer=answer))
    assert "looks like the question" in message and "[q01_why]" in message


def test_refuses_file_that_is_not_percent_format(toy_course):
    with pytest.raises(BuildError, match="not a jupytext percent-format notebook"):
        build(toy_course, "import numpy as np\n")


def test_release_has_no_solutions_or_model_answers_and_leaks_are_found(toy_course):
    build(toy_course)
    release = build_release(toy_course, "acceleration")
    text = (release / "01_toy.ipynb").read_text()
    assert "doubled_value_of_the_input" not in text and "model answer says so" not in text
    assert "raise NotImplementedError()" in text and "YOUR ANSWER HERE" in text
    assert sorted(p.name for p in release.iterdir()) == ["01_toy.ipynb", "benchmarking.py", "plotting.py"]
    assert find_leaks(toy_course / "source" / "acceleration", release) == []

    # the leak check finds solution lines in any release file (one release built, for time)
    (release / "notes.txt").write_text("    doubled_value_of_the_input = 2 * x\nBecause the model answer says so.\n")
    nb = json.loads((release / "01_toy.ipynb").read_text())
    nb["cells"][0]["source"] = ["### BEGIN HIDDEN TESTS\n"]
    (release / "01_toy.ipynb").write_text(json.dumps(nb))
    leaks = find_leaks(toy_course / "source" / "acceleration", release)
    assert any("notes.txt" in leak and "doubled_value_of_the_input" in leak for leak in leaks)
    assert any("notes.txt" in leak and "model answer says so" in leak for leak in leaks)
    assert any("01_toy.ipynb" in leak and "BEGIN HIDDEN TESTS" in leak for leak in leaks)


def test_refuses_a_graded_cell_that_needs_an_experiment(toy_course):
    experiment = "# %%\nfactor = 2\nprint(f'measured {factor}')"
    grade = GRADE + "\nassert double(2) == 2 * factor"
    message = refused(toy_course, toy_module(imports=TOY_CELLS["imports"] + "\n\n" + experiment, grade=grade))
    assert "needs 'factor', which only the experiment in cell 2 defines" in message and "[t01_double_values]" in message
    defined = "# %%\nFACTOR = 2"
    build(toy_course, toy_module(imports=TOY_CELLS["imports"] + "\n\n" + defined,
                                 grade=GRADE + "\nassert double(2) == 2 * FACTOR"))
