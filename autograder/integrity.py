"""Grade integrity for a batch: the reference's answer key, each submission's outside check, and
the integrity report.

``prepare_reference`` runs every notebook's probes (``autograder/checks/<assignment>/``) on the
reference solution in ``source/`` with a seed chosen for this batch, and refuses to grade if the
reference itself fails one. ``verify_submission`` runs the same probes on a staged submission,
writes the outside verdict of each test cell into the gradebook in place of the in-kernel score,
and returns what happened: scores before and after, and the flags raised.
"""
from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from autograder.execute import METADATA_KEY
from autograder.verify import (CHECKS_ROOT, NOT_PLAIN, Timeouts, checks_file, judge_cells, probe_names, reference_problems,
                               run_checks)

STAGING = ".grading"
# Repairs made while staging that mean a test or given cell was tampered with.
TAMPERING = ("locked cell", "deleted cell", "duplicate", "metadata", "retyped")


def reference_path(root: Path, assignment: str) -> Path:
    return root / STAGING / f"{assignment}-reference.json"


def helper_files(folder: Path) -> list[str]:
    """Names of the files released beside the notebooks (helper modules)."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".ipynb")


def prepare_reference(root: Path, assignment: str, checks_root: Path = CHECKS_ROOT, seed: int | None = None,
                      sandbox: bool = True) -> dict:
    """Run the probes on the reference solution; the answer key for this batch (also saved).

    Raises SystemExit naming the notebook and probe if the reference fails its own checks: a
    batch graded against a broken key would take points from every student.
    """
    seed = secrets.randbelow(2**31) if seed is None else seed
    source = root / "source" / assignment
    if not source.is_dir():
        raise SystemExit(f"error: {source} not found: the outside check compares every submission with the "
                         f"reference solution there (run 'make source', or grade with --no-verify)")
    notebooks = sorted(p.stem for p in source.glob("*.ipynb"))
    with_checks = [nb for nb in notebooks if checks_file(nb, assignment, checks_root).is_file()]

    def one(name: str):
        checks = checks_file(name, assignment, checks_root).read_text()
        nb = nbformat.read(source / f"{name}.ipynb", as_version=4)
        outcome = run_checks(nb, checks, seed, source, None, sandbox=sandbox, course_root=root,
                             helpers=helper_files(source))
        return name, checks, outcome

    key = {"seed": seed, "notebooks": {}, "unchecked": [nb for nb in notebooks if nb not in with_checks]}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for name, checks, outcome in pool.map(one, with_checks):
            problems = reference_problems(outcome, probe_names(checks))
            if problems:
                raise SystemExit(f"error: the reference solution of {name} fails its outside checks "
                                 f"({checks_file(name, assignment, checks_root)}): " + "; ".join(problems[:5]))
            key["notebooks"][name] = {"observations": outcome.observations, "checks": checks,
                                      "seconds": round(outcome.seconds, 2)}
    path = reference_path(root, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(key))
    return key


def verify_submission(root: Path, assignment: str, student: str, key: dict, sandbox: bool = True,
                      timeouts: Timeouts = Timeouts()) -> dict:
    """Outside-check one staged, autograded submission and put its verdicts in the gradebook.

    Returns ``{notebook: {"cells": {grade_id: {"in_kernel", "outside", "max", "why"}},
    "flags": [...], "cell_errors": {...}, "skipped": reason or None, "seconds"}}``.
    """
    staged = root / STAGING / "submitted" / student / assignment
    release = root / "release" / assignment
    results: dict[str, dict] = {}
    for name, entry in key["notebooks"].items():
        path = staged / f"{name}.ipynb"
        if not path.is_file():
            continue
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}?timeout=120") as gb:
            try:
                graded = {g.name: g.auto_score for g in gb.find_submission_notebook(name, assignment, student).grades}
            except MissingEntry:
                continue  # nbgrader did not grade this notebook; the batch grader reports why
        outcome = run_checks(nbformat.read(path, as_version=4), entry["checks"], key["seed"], staged,
                             nbformat.read(release / f"{name}.ipynb", as_version=4), sandbox=sandbox,
                             course_root=root, helpers=helper_files(release), timeouts=timeouts)
        result = {"cells": {}, "flags": list(outcome.flags), "seconds": round(outcome.seconds, 2),
                  "cell_errors": {step: error for step, error in outcome.errors.items()
                                  if step not in entry["observations"]},
                  "skipped": None}
        if "start" in outcome.errors:  # the check process never ran student code: keep nbgrader's scores
            result["skipped"] = outcome.errors["start"]
            results[name] = result
            continue
        verdicts = judge_cells(entry["observations"], outcome)
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}?timeout=120") as gb:
            for grade_id, verdict in verdicts.items():
                if grade_id not in graded:
                    continue
                grade = gb.find_grade(grade_id, name, assignment, student)
                maximum = float(grade.max_score)
                outside = maximum if verdict.passed else 0.0
                result["cells"][grade_id] = {"in_kernel": graded[grade_id], "outside": outside, "max": maximum,
                                             "why": verdict.why}
                if NOT_PLAIN in verdict.why:
                    result["flags"].append(f"{grade_id}: student code returned objects that are not plain data "
                                           f"({verdict.why}); such an object may claim to equal anything")
                grade.auto_score = outside
            gb.db.commit()
        record_in_autograded(root / "autograded" / student / assignment / f"{name}.ipynb", result["cells"])
        results[name] = result
    return results


def record_in_autograded(path: Path, cells: dict[str, dict]) -> None:
    """Keep the outside verdicts in the autograded notebook, for the feedback to explain them."""
    if not path.is_file():
        return
    nb = nbformat.read(path, as_version=4)
    nb.metadata.setdefault(METADATA_KEY, {})["outside"] = cells
    nbformat.write(nb, path)


def integrity_lines(verification: dict, repairs: list[str]) -> tuple[list[str], list[str]]:
    """(flags, overrides) for one submission: what to review, and where the outside verdict won."""
    flags = [f"tests rewritten: {note}" for note in repairs if any(word in note for word in TAMPERING)]
    overrides = []
    for name, result in sorted(verification.items()):
        flags += [f"{name}: {flag}" for flag in result["flags"]]
        if result.get("skipped"):
            flags.append(f"{name}: outside check could not run ({result['skipped']}); in-kernel scores kept")
        for grade_id, cell in result["cells"].items():
            if cell["in_kernel"] is None or float(cell["in_kernel"]) != cell["outside"]:
                in_kernel = "error" if cell["in_kernel"] is None else f"{float(cell['in_kernel']):g}"
                overrides.append(f"{name}: {grade_id} in-kernel {in_kernel}/{cell['max']:g}, outside "
                                 f"{cell['outside']:g}/{cell['max']:g}" + (f" ({cell['why']})" if cell["why"] else ""))
    return flags, overrides
