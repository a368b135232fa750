"""Time budgets of the reference notebooks on this machine (slow: `make bench`).

Full run at most 40 s on an idle 2-core machine (so it stays under 60 s under load); graded run
(NBGRADER_EXECUTION set, benchmarks shrunk) at most 15 s.
"""
from __future__ import annotations

import time

import pytest

from autograder.build.source import module_notebooks, read_module
from autograder.report.site import execute_in_order
from autograder.selftest import MODULES, kernel_scores

NOTEBOOKS = module_notebooks(MODULES / "acceleration")
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_graded_run_within_15_s(path):
    start = time.perf_counter()
    scores, errors = kernel_scores(read_module(path), path.parent, experiments=True)  # as Validate runs it
    seconds = time.perf_counter() - start
    print(f"{path.stem}: {seconds:.1f} s at grading sizes, experiments included")
    assert all(score == maximum for score, maximum in scores.values()), f"reference lost points: {scores}"
    assert not errors, errors
    assert seconds <= 15, f"{path.stem} took {seconds:.1f} s to grade (budget 15 s)"


def test_full_runs_within_40_s_each(built_source):
    notebooks = sorted((built_source / "acceleration").glob("*.ipynb"))
    for path, (_, seconds) in zip(notebooks, execute_in_order(notebooks, graded_sizes=False), strict=True):
        print(f"{path.stem}: {seconds:.1f} s at full size")
        assert seconds <= 40, f"{path.stem} took {seconds:.1f} s at full size (budget 40 s)"
