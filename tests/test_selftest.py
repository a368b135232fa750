"""The tests prove the grading: the selftest runs once, and each of its verdicts is a test here.

For every notebook: the reference scores full marks in its kernel and passes every visible test
and check outside under each of 5 seeds; the untouched release scores zero; every mutant is
caught under each seed; no check is weak. The selftest itself is tested on a toy course: it must
name, by file and grade id, each thing an author left undone.
"""
from __future__ import annotations

import textwrap

import nbformat
import pytest

import autograder.selftest as selftest
from autograder.build.source import module_notebooks
from autograder.mutation import Mutant, MutantError, apply_mutant
from toy_courses import TWO_TASK_CHECKS, TWO_TASK_COURSE, write_course

pytestmark = pytest.mark.xdist_group("selftest")
NOTEBOOKS = [path.stem for path in module_notebooks(selftest.MODULES / "acceleration")]
CASES = [(name, variant) for name in NOTEBOOKS
         for variant in ["reference", "release", *(m.name for m in selftest.load_mutants(name))]]


@pytest.fixture(scope="module")
def verdicts():
    found, problems = selftest.run_selftest(NOTEBOOKS, workers=2, echo=lambda line: None)
    return {(v.notebook, v.variant): v for v in found}, problems


def test_no_authoring_problem(verdicts):
    _, problems = verdicts
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("notebook, variant", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_variant_scores_as_it_must(verdicts, notebook, variant):
    verdict = verdicts[0][notebook, variant]
    assert verdict.ok, verdict.line


def test_mutant_must_match_exactly_once():
    cell = nbformat.v4.new_code_cell("x = 1\ny = 1\n")
    cell.metadata["nbgrader"] = {"grade_id": "f", "solution": True, "schema_version": 3}
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert apply_mutant(nb, Mutant("m", "f", "x = 1", "x = 2", "why")).cells[0].source == "x = 2\ny = 1\n"
    assert nb.cells[0].source == "x = 1\ny = 1\n", "apply_mutant must not change its input"
    with pytest.raises(MutantError, match="occurs 2 times"):
        apply_mutant(nb, Mutant("m", "f", " = 1", " = 2", "why"))
    with pytest.raises(MutantError, match="occurs 0 times"):
        apply_mutant(nb, Mutant("m", "f", "z = 1", "z = 2", "why"))
    with pytest.raises(MutantError, match="found 0"):
        apply_mutant(nb, Mutant("m", "g", "x = 1", "x = 2", "why"))


# -- the selftest names what an author left undone ---------------------------------------------
MUTANTS = textwrap.dedent('''
    from autograder.mutation import Mutant

    MUTANTS = [
        Mutant(name="double_adds", cell="double", find="return 2 * x", replace="return x + 2",
               why="adds two instead of doubling"),
        Mutant(name="triple_off_by_one", cell="triple", find="return 3 * x", replace="return 3 * x + 1",
               why="off by one"),
    ]
''')


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A one-notebook course in ``tmp_path`` that the selftest reads instead of the real one."""
    write_course(tmp_path, TWO_TASK_COURSE, TWO_TASK_CHECKS)
    (tmp_path / "mutants" / "acceleration").mkdir(parents=True)
    (tmp_path / "mutants" / "acceleration" / "01_toy.py").write_text(MUTANTS)
    monkeypatch.setattr(selftest, "MODULES", tmp_path / "modules")
    monkeypatch.setattr(selftest, "MUTANTS_ROOT", tmp_path / "mutants")
    monkeypatch.setattr(selftest, "CHECKS_ROOT", tmp_path / "checks")
    return tmp_path


def run_toy():
    found, problems = selftest.run_selftest(["01_toy"], workers=1, echo=lambda line: None)
    return {v.variant: v for v in found}, problems


def test_the_toy_course_passes(toy):
    found, problems = run_toy()
    assert problems == [] and all(v.ok for v in found.values()), [v.line for v in found.values()] + problems


def test_a_test_cell_without_a_check_and_a_check_without_a_test_cell_are_named(toy):
    checks = toy / "checks" / "acceleration" / "01_toy.py"
    checks.write_text(TWO_TASK_CHECKS.replace("def t01_triple(", "def t01_tripled("))
    _, problems = run_toy()
    text = "\n".join(problems)
    assert f"{checks}: no check for test cell t01_triple of 01_toy" in text
    assert f"{checks}: check t01_tripled is named after no test cell of 01_toy" in text


def test_a_task_without_mutants_and_a_mutant_that_no_longer_applies_are_named(toy):
    mutants = toy / "mutants" / "acceleration" / "01_toy.py"
    mutants.write_text(MUTANTS.replace('cell="triple", find="return 3 * x"', 'cell="double", find="return 3 * x"'))
    _, problems = run_toy()
    text = "\n".join(problems)
    assert f"{mutants}: no mutant for task triple of 01_toy" in text
    assert "triple_off_by_one" in text and "occurs 0 times" in text


def test_an_uncaught_mutant_and_a_weak_check_are_named(toy):
    checks = toy / "checks" / "acceleration" / "01_toy.py"
    checks.write_text(TWO_TASK_CHECKS.replace('"zero": same(ns["double"](0))', '"zero": same(0)')
                      .replace('same(ns["double"](x))', 'same(x)'))
    (toy / "mutants" / "acceleration" / "01_toy.py").write_text(MUTANTS.replace(
        'replace="return x + 2"', 'replace="return 2 * x if x != 2 else 5"').replace(
        'replace="return 3 * x + 1"', 'replace="return 3 * x if x < 10 else 0"'))
    found, _ = run_toy()
    weak = found["double_adds"]
    assert not weak.ok and f"{checks}: weak check t01_double: mutant double_adds fails its visible test" in weak.line
    missed = found["triple_off_by_one"]
    assert not missed.ok and "mutant triple_off_by_one NOT CAUGHT under seed 0" in missed.line
    assert "01_toy.py" in missed.line
