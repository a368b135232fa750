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

from autograder.build import STAGING, gradebook_url
from autograder.execute import METADATA_KEY
from autograder.verify import (CHECKS_ROOT, NOT_PLAIN, ReferenceFailure, Timeouts, answer_key, checks_file,
                               judge_cells, run_checks)

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

    def one(name: str) -> tuple[str, dict]:
        path = checks_file(name, assignment, checks_root)
        checks = path.read_text()
        nb = nbformat.read(source / f"{name}.ipynb", as_version=4)
        try:
            observations = answer_key(nb, checks, seed, source, sandbox=sandbox, course_root=root,
                                      helpers=helper_files(source))
        except ReferenceFailure as failure:
            raise SystemExit(f"error: the reference solution of {name} fails its outside checks ({path}): "
                             f"{failure}") from None
        return name, {"observations": observations, "checks": checks}

    key = {"seed": seed, "notebooks": {}, "unchecked": [nb for nb in notebooks if nb not in with_checks]}
    with ThreadPoolExecutor(max_workers=2) as pool:
        key["notebooks"] = dict(pool.map(one, with_checks))
    path = reference_path(root, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(key))
    return key


def verify_submission(root: Path, assignment: str, student: str, key: dict, sandbox: bool = True,
                      timeouts: Timeouts = Timeouts()) -> dict:
    """Outside-check one staged, autograded submission and put its verdicts in the gradebook.

    Returns ``{notebook: {"cells": {grade_id: {"in_kernel", "outside", "max", "why"}},
    "flags": [...], "skipped": reason or None}}``.
    """
    staged = root / STAGING / "submitted" / student / assignment
    release = root / "release" / assignment
    in_kernel: dict[str, dict[str, float | None]] = {}
    with Gradebook(gradebook_url(root, timeout_s=120)) as gb:
        for name in key["notebooks"]:
            if not (staged / f"{name}.ipynb").is_file():
                continue
            try:
                record = gb.find_submission_notebook(name, assignment, student)
            except MissingEntry:
                continue  # nbgrader did not grade this notebook; the batch grader reports why
            in_kernel[name] = {g.name: g.auto_score for g in record.grades}
    results: dict[str, dict] = {}
    verdicts: dict[str, dict] = {}
    for name, graded in in_kernel.items():
        entry = key["notebooks"][name]
        outcome = run_checks(nbformat.read(staged / f"{name}.ipynb", as_version=4), entry["checks"], key["seed"],
                             staged, nbformat.read(release / f"{name}.ipynb", as_version=4), sandbox=sandbox,
                             course_root=root, helpers=helper_files(release), timeouts=timeouts)
        results[name] = {"cells": {}, "flags": list(outcome.flags), "skipped": outcome.errors.get("start")}
        if "start" not in outcome.errors:  # else the process never ran student code: nbgrader's scores stay
            verdicts[name] = {grade_id: verdict for grade_id, verdict in
                              judge_cells(entry["observations"], outcome).items() if grade_id in graded}
    with Gradebook(gradebook_url(root, timeout_s=120)) as gb:
        for name, cells in verdicts.items():
            result = results[name]
            for grade_id, verdict in cells.items():
                grade = gb.find_grade(grade_id, name, assignment, student)
                maximum = float(grade.max_score)
                outside = maximum if verdict.passed else 0.0
                result["cells"][grade_id] = {"in_kernel": in_kernel[name][grade_id], "outside": outside,
                                             "max": maximum, "why": verdict.why}
                if NOT_PLAIN in verdict.why:
                    result["flags"].append(f"{grade_id}: student code returned objects that are not plain data "
                                           f"({verdict.why}); such an object may claim to equal anything")
                grade.auto_score = outside
        gb.db.commit()
    for name in verdicts:
        record_in_autograded(root / "autograded" / student / assignment / f"{name}.ipynb", results[name]["cells"])
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
