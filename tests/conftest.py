"""Shared fixtures: a small throwaway course for fast pipeline tests, and the built real one."""
from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

from autograder.build import REPO, build_source

HEADER = """\
# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---
"""

SOLUTION = ('# %% nbgrader={"grade": false, "grade_id": "double", "locked": false, '
            '"schema_version": 3, "solution": true}')
GRADE = ('# %% nbgrader={"grade": true, "grade_id": "t01_double_values", "locked": true, '
         '"points": 2, "schema_version": 3, "solution": false}')
ANSWER = ('# %% [markdown] nbgrader={"grade": true, "grade_id": "q01_why", "locked": false, '
          '"points": 1, "schema_version": 3, "solution": true}')

TOY_CELLS = {
    "imports": "# %%\nimport numpy as np\nimport benchmarking",
    "solution": SOLUTION + textwrap.dedent('''
        def double(x):
            """2 * x."""
            ### BEGIN SOLUTION
            doubled_value_of_the_input = 2 * x
            return doubled_value_of_the_input
            ### END SOLUTION'''),
    "grade": GRADE + textwrap.dedent('''
        """double doubles"""
        assert double(2) == 4, "double(2) should be 4"
        ### BEGIN HIDDEN TESTS
        assert double(-3) == -6, "double is wrong for a negative input"
        ### END HIDDEN TESTS'''),
    "answer": ANSWER + "\n# Because the model answer says so.",
}


# Two tasks (double, triple; 2 points each, visible and hidden tests) and a written answer: the
# course of the end-to-end grading tests (tests/test_hostile.py, tests/test_integrity.py).
TWO_TASK_COURSE = HEADER + textwrap.dedent('''
    # %%
    import numpy as np

    # %% nbgrader={"grade": false, "grade_id": "double", "locked": false, "schema_version": 3, "solution": true}
    def double(x):
        """2 * x."""
        ### BEGIN SOLUTION
        return 2 * x
        ### END SOLUTION

    # %% nbgrader={"grade": true, "grade_id": "t01_double", "locked": true, "points": 2, "schema_version": 3, "solution": false}
    assert double(2) == 4, "double(2) should be 4"
    ### BEGIN HIDDEN TESTS
    assert double(-3) == -6, "double is wrong for a negative input"
    ### END HIDDEN TESTS

    # %% nbgrader={"grade": false, "grade_id": "triple", "locked": false, "schema_version": 3, "solution": true}
    def triple(x):
        """3 * x."""
        ### BEGIN SOLUTION
        return 3 * x
        ### END SOLUTION

    # %% nbgrader={"grade": true, "grade_id": "t01_triple", "locked": true, "points": 2, "schema_version": 3, "solution": false}
    assert triple(2) == 6, "triple(2) should be 6"
    ### BEGIN HIDDEN TESTS
    assert triple(-1) == -3, "triple is wrong for a negative input"
    ### END HIDDEN TESTS

    # %% [markdown] nbgrader={"grade": true, "grade_id": "q01_why", "locked": false, "points": 1, "schema_version": 3, "solution": true}
    # Because the model answer says so.
''')


def toy_module(**replace: str) -> str:
    """The text of a one-task notebook; keyword arguments replace cells by name."""
    cells = dict(TOY_CELLS, **replace)
    return HEADER + "\n" + "\n\n".join(c for c in cells.values() if c) + "\n"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: full-size benchmarks and budgets (make bench)")


MUTANT_CASES = re.compile(r"test_variant_scores_as_it_must\[(\d\d_[a-z0-9_]+)-(.+)\]$")


def pytest_terminal_summary(terminalreporter):
    """The mutation score per notebook, from the selftest cases that ran (as ``make selftest`` prints it)."""
    caught: dict[str, list[bool]] = {}
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            match = MUTANT_CASES.search(getattr(report, "nodeid", ""))
            if match and report.when == "call" and match.group(2) not in ("reference", "release"):
                caught.setdefault(match.group(1), []).append(outcome == "passed")
    for notebook, results in sorted(caught.items()):
        terminalreporter.write_line(f"{notebook}: mutants caught {sum(results)}/{len(results)} "
                                    f"(mutation score {sum(results) / len(results):.0%})")


@pytest.fixture
def toy_course(tmp_path: Path) -> Path:
    """A course root with modules/acceleration/01_toy.py and the real helper files."""
    assignment = tmp_path / "modules" / "acceleration"
    assignment.mkdir(parents=True)
    for helper in ("benchmarking.py", "plotting.py"):
        shutil.copy(REPO / "modules" / "acceleration" / helper, assignment / helper)
    (assignment / "01_toy.py").write_text(toy_module())
    return tmp_path


@pytest.fixture(scope="session")
def built_source(tmp_path_factory) -> Path:
    """``source/`` built from this repo's modules into a temporary folder."""
    target = tmp_path_factory.mktemp("built") / "source"
    build_source(REPO / "modules", target)
    return target
