"""Shared fixtures: a small throwaway course for fast pipeline tests, and the built real one."""
from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

from autograder.build.source import build_source
from autograder.course import REPO

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
        assert double(2) == 4, "double(2) should be 4"'''),
    "answer": ANSWER + "\n# Because the model answer says so.",
}


# Two tasks (double, triple; 2 points each, a visible test and a check each) and a written answer:
# the course of the end-to-end grading tests (tests/test_hostile.py, tests/test_integrity.py).
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

    # %% nbgrader={"grade": false, "grade_id": "triple", "locked": false, "schema_version": 3, "solution": true}
    def triple(x):
        """3 * x."""
        ### BEGIN SOLUTION
        return 3 * x
        ### END SOLUTION

    # %% nbgrader={"grade": true, "grade_id": "t01_triple", "locked": true, "points": 2, "schema_version": 3, "solution": false}
    assert triple(2) == 6, "triple(2) should be 6"

    # %% [markdown] nbgrader={"grade": true, "grade_id": "q01_why", "locked": false, "points": 1, "schema_version": 3, "solution": true}
    # Because the model answer says so.
''')


# The hidden cases of the two-task course: one check per test cell.
TWO_TASK_CHECKS = textwrap.dedent('''
    import numpy as np
    from observe import same


    def t01_double(ns, rng):
        x = int(rng.integers(-50, -1))
        return {"a negative number": same(ns["double"](x)), "zero": same(ns["double"](0))}


    def t01_triple(ns, rng):
        x = int(rng.integers(-50, -1))
        return {"a negative number": same(ns["triple"](x)), "one": same(ns["triple"](1))}
''')
TOY_CHECKS = TWO_TASK_CHECKS.split("\n\n\ndef t01_triple")[0].replace("t01_double", "t01_double_values") + "\n"


def write_course(root: Path, module: str, checks: str, name: str = "01_toy") -> Path:
    """A course at ``root``: ``modules/acceleration/<name>.py`` (with the real helper files) and its
    checks in ``root/checks/acceleration/<name>.py``; returns the checks root to grade with."""
    assignment = root / "modules" / "acceleration"
    assignment.mkdir(parents=True, exist_ok=True)
    for helper in ("benchmarking.py", "plotting.py"):
        shutil.copy(REPO / "modules" / "acceleration" / helper, assignment / helper)
    (assignment / f"{name}.py").write_text(module)
    (root / "checks" / "acceleration").mkdir(parents=True, exist_ok=True)
    (root / "checks" / "acceleration" / f"{name}.py").write_text(checks)
    return root / "checks"


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
    """A course root with modules/acceleration/01_toy.py, the real helper files, and its checks."""
    write_course(tmp_path, toy_module(), TOY_CHECKS)
    return tmp_path


@pytest.fixture(scope="session")
def built_source(tmp_path_factory) -> Path:
    """``source/`` built from this repo's modules into a temporary folder."""
    target = tmp_path_factory.mktemp("built") / "source"
    build_source(REPO / "modules", target)
    return target
