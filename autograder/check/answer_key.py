"""The answer key: the reference solution's observations, per check run, for one batch's seed.

``make_answer_key`` runs every notebook's outside check on the reference solution in ``source/``
and keeps, for each check run, what every observation must be compared with (``judge.py``). It
refuses, naming notebook and test cell, when a test cell has no check, a check names no test
cell, or the reference fails its own visible test or check: a batch graded against such a key
would take points from correct work. The key stays in the grader's hands (``.grading/``, which
the sandbox hides); only the derived seeds of each check run reach a check process.
"""
from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

from autograder.check.judge import resolve_reference
from autograder.check.runner import CHECKS_ROOT, CheckHost, Outcome, check_names, check_step_id, checks_file, run_checks
from autograder.course import STAGING, is_autograded_test, nbgrader_meta, scratch_root
from autograder.run.sandbox import Limits


class AnswerKeyError(ValueError):
    """The reference or its checks cannot serve as an answer key; the message names where."""


def answer_key_path(root: Path, assignment: str) -> Path:
    return root / STAGING / f"{assignment}-answer-key.json"


def helper_files(folder: Path) -> list[Path]:
    """The release's helper modules (the ``.py`` files beside the notebooks), importable by checks."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".py")


def autograded_cells(nb: nbformat.NotebookNode) -> list[str]:
    return [nbgrader_meta(c)["grade_id"] for c in nb.cells if is_autograded_test(c)]


def coverage_problems(name: str, nb: nbformat.NotebookNode, checks_path: Path) -> list[str]:
    """Test cells without a check and checks named after no test cell, each naming file and id."""
    tests = autograded_cells(nb)
    if not checks_path.is_file():
        return [f"{checks_path}: missing: {name} has test cells ({', '.join(tests)}) and every one needs a check"]
    names = check_names(checks_path.read_text())
    problems = [f"{checks_path}: no check for test cell {grade_id} of {name}" for grade_id in tests
                if grade_id not in names]
    problems += [f"{checks_path}: check {check} is named after no test cell of {name}" for check in names
                 if check not in tests]
    return problems


def reference_problems(outcome: Outcome, grade_ids: list[str], runs: int) -> list[str]:
    """Why a reference run cannot serve as the answer key (empty when it can)."""
    problems = [f"the check stopped: {outcome.failure}"] if outcome.failure else []
    for grade_id in grade_ids:
        for step in [f"visible {grade_id}", *(check_step_id(grade_id, run) for run in range(runs))]:
            result = outcome.steps.get(step)
            if result is None or not result.ok:
                why = "not run" if result is None else result.error or result.failure
                problems.append(f"{step}: {why}")
            elif step.startswith("check") and not result.observations:
                problems.append(f"{step}: returned no observations")
    problems += [f"flag: {flag}" for flag in outcome.flags]
    return problems


def reference_entries(outcome: Outcome, grade_ids: list[str], runs: int) -> dict[str, list[dict]]:
    """grade_id -> the answer-key entry of each check run."""
    return {grade_id: [resolve_reference(outcome.steps[check_step_id(grade_id, run)]) for run in range(runs)]
            for grade_id in grade_ids}


def notebook_key(name: str, nb: nbformat.NotebookNode, checks_path: Path, batch_seed: int, helpers: list[Path],
                 runs: int = 1, **options) -> dict:
    """The answer key of one notebook (``nb``: the reference); ``AnswerKeyError`` naming the problems."""
    problems = coverage_problems(name, nb, checks_path)
    if problems:
        raise AnswerKeyError("\n".join(problems))
    checks = checks_path.read_text()
    outcome = run_checks(nb, checks, batch_seed, helpers, None, runs=runs, **options)
    grade_ids = autograded_cells(nb)
    problems = reference_problems(outcome, grade_ids, runs)
    if problems:
        raise AnswerKeyError(f"the reference solution of {name} fails its own checks ({checks_path}):\n  "
                             + "\n  ".join(problems[:8]))
    return {"checks": checks, "cells": reference_entries(outcome, grade_ids, runs)}


def make_answer_key(root: Path, assignment: str, limits: Limits, checks_root: Path = CHECKS_ROOT,
                    seed: int | None = None, sandbox: bool = True) -> dict:
    """Run every notebook's check on the reference in ``source/``; the batch's key (also saved)."""
    seed = secrets.randbelow(2**62) if seed is None else seed
    source = root / "source" / assignment
    if not source.is_dir():
        raise AnswerKeyError(f"{source} not found: the outside check compares every submission with the "
                             f"reference solution there (run 'make source')")
    helpers = helper_files(source)
    names = sorted(p.stem for p in source.glob("*.ipynb"))

    def some(part: list[str]) -> dict:  # one warm host for a share of the notebooks
        with CheckHost(helpers, sandbox=sandbox, course_root=root, scratch_root=scratch_root(root),
                       limits=limits) as host:
            return {name: notebook_key(name, nbformat.read(source / f"{name}.ipynb", as_version=4),
                                       checks_file(name, assignment, checks_root), seed, helpers, host=host)
                    for name in part}

    with ThreadPoolExecutor(max_workers=2) as pool:
        shares = list(pool.map(some, [names[0::2], names[1::2]]))
    key = {"seed": seed, "runs": 1, "notebooks": {name: entry for share in shares for name, entry in share.items()}}
    path = answer_key_path(root, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(key))
    return key
