"""Time budgets of the reference notebooks on this machine (slow: `make bench`).

Full run at most 60 s; graded run (NBGRADER_EXECUTION set, benchmarks shrunk) at most 15 s.
"""
from __future__ import annotations

import time

import pytest

from autograder.build import module_notebooks, read_module
from autograder.selftest import MODULES, grade_notebook
from autograder.site import execute_in_order

NOTEBOOKS = module_notebooks(MODULES / "acceleration")
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_graded_run_within_15_s(path):
    start = time.perf_counter()
    scores = grade_notebook(read_module(path), path.parent)
    seconds = time.perf_counter() - start
    assert not scores.lost(), f"reference lost points: {scores.lost()}"
    assert seconds <= 15, f"{path.stem} took {seconds:.1f} s to grade (budget 15 s)"


def test_full_runs_within_60_s_each(built_source):
    notebooks = sorted((built_source / "acceleration").glob("*.ipynb"))
    for path, (_, seconds) in zip(notebooks, execute_in_order(notebooks, graded_sizes=False), strict=True):
        print(f"{path.stem}: {seconds:.1f} s")
        assert seconds <= 60, f"{path.stem} took {seconds:.1f} s at full size (budget 60 s)"
