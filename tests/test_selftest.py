"""The tests prove the grading: reference full marks, release zero, every mutant loses points.

Each case grades one variant of one notebook the way nbgrader autograde would; a failure
names the variant and the grade cells that scored wrongly.
"""
from __future__ import annotations

import nbformat
import pytest

from autograder.build import module_notebooks, nbgrader_meta, read_module
from autograder.mutation import Mutant, MutantError, apply_mutant
from autograder.selftest import MODULES, grade_variant, judge, load_mutants
from autograder.verify import checks_file, probe_names

NOTEBOOKS = [path.stem for path in module_notebooks(MODULES / "acceleration")]
CASES = [(name, variant) for name in NOTEBOOKS
         for variant in ["reference", "release", *(m.name for m in load_mutants(name))]]


@pytest.mark.parametrize("notebook, variant", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_variant_scores_as_it_must(notebook, variant):
    verdict = judge(notebook, variant, grade_variant(notebook, variant))
    assert verdict.ok, verdict.line


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_task_has_a_mutant_that_applies(notebook):
    nb = read_module(MODULES / "acceleration" / f"{notebook}.py")
    tasks = {nbgrader_meta(c)["grade_id"] for c in nb.cells
             if c.cell_type == "code" and nbgrader_meta(c).get("solution")}
    mutants = load_mutants(notebook)
    assert tasks, f"{notebook} has no solution cells"
    missing = tasks - {m.cell for m in mutants}
    assert not missing, f"{notebook}: tasks without a mutant: {sorted(missing)}"
    for mutant in mutants:
        apply_mutant(nb, mutant)  # raises if its text no longer matches the reference


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_test_cell_has_a_probe(notebook):
    nb = read_module(MODULES / "acceleration" / f"{notebook}.py")
    tests = {nbgrader_meta(c)["grade_id"] for c in nb.cells
             if c.cell_type == "code" and nbgrader_meta(c).get("grade") and not nbgrader_meta(c).get("solution")}
    path = checks_file(notebook, "acceleration")
    assert path.is_file(), f"{notebook} has no outside checks: write {path}"
    probes = set(probe_names(path.read_text()))
    assert not tests - probes, f"{notebook}: test cells without a probe in {path}: {sorted(tests - probes)}"
    assert not probes - tests, f"{notebook}: probes named after no test cell: {sorted(probes - tests)}"


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
