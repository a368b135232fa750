"""Small throwaway courses for the fast pipeline tests: a one-task toy notebook built from named
cells, and a two-task course with its hidden checks."""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

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
