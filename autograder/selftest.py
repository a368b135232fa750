"""Prove the tests: the reference scores full marks, the untouched release scores zero on every
autograded cell, and every known-wrong variant (mutant) loses points.

Each variant is graded as a submission is: executed the way ``nbgrader autograde`` executes it
(a fresh kernel, ``NBGRADER_EXECUTION=autograde``, errors allowed, hidden tests present) and
scored with nbgrader's own ``determine_grade``; then every test cell with a probe is scored by
the outside check (``autograder.verify``) against the reference, and that score counts. Both
must agree for the reference and the release; a mutant must lose points on the score that counts.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbgrader.preprocessors import ClearSolutions
from nbgrader.utils import determine_grade
from traitlets.config.loader import PyFileConfigLoader

from autograder.build import QUIET_KERNEL, REPO, copy_helper_files, ipc_kernel_manager, tool_environment, is_autograded_test, module_notebooks, nbgrader_meta, read_module
from autograder.mutation import Mutant, apply_mutant
from autograder.verify import (CHECKS_ROOT, DRIVER, PROBEKIT, Outcome, ReferenceFailure, answer_key, checks_file,
                               judge_cells, run_checks)

MODULES = REPO / "modules"
MUTANTS_DIR = REPO / "tests" / "mutants"
CELL_TIMEOUT_S = 60
SEED = int(os.environ.get("ACCELERATION_LAB_SELFTEST_SEED", "2026"))  # any seed must pass; CI uses this one


@dataclass(frozen=True)
class Scores:
    """Points per autograded cell of one executed notebook: grade_id -> (score, max)."""

    cells: dict[str, tuple[float, float]]
    errors: tuple[str, ...] = ()
    in_kernel: dict[str, float] | None = None   # nbgrader's scores, where the outside check overrode them
    flags: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        return sum(score for score, _ in self.cells.values())

    @property
    def max_total(self) -> float:
        return sum(maximum for _, maximum in self.cells.values())

    def lost(self) -> list[str]:
        """Grade ids that scored less than their maximum."""
        return [gid for gid, (score, maximum) in self.cells.items() if score < maximum]

    def earned(self) -> list[str]:
        """Grade ids that scored more than zero."""
        return [gid for gid, (score, _) in self.cells.items() if score > 0]

    def in_kernel_total(self) -> float:
        kernel = self.in_kernel or {}
        return sum(kernel.get(gid, score) for gid, (score, _) in self.cells.items())

    def disagreements(self) -> list[str]:
        """Grade ids where nbgrader's in-kernel score and the outside verdict differ."""
        kernel = self.in_kernel or {}
        return [gid for gid, (score, _) in self.cells.items() if gid in kernel and kernel[gid] != score]


def find_module(name: str, assignment: str = "acceleration") -> Path:
    """The source file of notebook ``name`` (e.g. ``01_loops_and_blocking``)."""
    path = MODULES / assignment / f"{name}.py"
    if not path.is_file():
        known = ", ".join(p.stem for p in module_notebooks(MODULES / assignment))
        raise SystemExit(f"error: no notebook {name!r} in {MODULES / assignment} (known: {known})")
    return path


def load_mutants(name: str) -> list[Mutant]:
    """``MUTANTS`` from ``tests/mutants/<name>.py``; an empty list if the file does not exist."""
    path = MUTANTS_DIR / f"{name}.py"
    if not path.is_file():
        return []
    spec = importlib.util.spec_from_file_location(f"mutants_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mutants = list(module.MUTANTS)
    names = [m.name for m in mutants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate mutant names {duplicates}")
    return mutants


def untouched_release(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with every solution replaced by the student stub, hidden tests kept.

    This is what ``nbgrader autograde`` runs for a student who changed nothing: the release
    notebook with its grade cells restored from the gradebook.
    """
    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    clear = ClearSolutions(config=config)
    cleared, _ = clear.preprocess(copy.deepcopy(nb), {})
    return cleared


def grade_notebook(nb: nbformat.NotebookNode, helpers_dir: Path) -> Scores:
    """Execute ``nb`` as nbgrader's autograder would and score its autograded cells."""
    with tempfile.TemporaryDirectory(prefix="selftest-") as tmp:
        workdir = Path(tmp) / "work"
        copy_helper_files(helpers_dir, workdir)
        env = tool_environment(NBGRADER_EXECUTION="autograde")
        client = NotebookClient(nb, km=ipc_kernel_manager(workdir), timeout=CELL_TIMEOUT_S,
                                extra_arguments=QUIET_KERNEL, allow_errors=True,
                                resources={"metadata": {"path": str(workdir)}})
        client.owns_km = True  # shut the kernel down when done
        client.execute(env=env, cwd=str(workdir))
    cells, errors = {}, []
    for index, cell in enumerate(nb.cells):
        if is_autograded_test(cell):
            score, maximum = determine_grade(cell)
            cells[nbgrader_meta(cell)["grade_id"]] = (float(score), float(maximum))
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                errors.append(f"cell {index}: {output.ename}: {output.evalue}"[:200])
    return Scores(cells, tuple(errors))


def reference_observations(name: str, assignment: str = "acceleration", seed: int = SEED) -> dict:
    """The reference solution's probe observations for ``seed`` (cached on disk by content).

    Raises ValueError if the reference fails its own outside checks.
    """
    path = find_module(name, assignment)
    checks = checks_file(name, assignment, CHECKS_ROOT).read_text()
    digest = hashlib.sha256()
    for part in (path.read_bytes(), checks.encode(), DRIVER.read_bytes(), PROBEKIT.read_bytes(), str(seed).encode()):
        digest.update(part)
    cache = Path(tempfile.gettempdir()) / f"acceleration-lab-reference-{name}-{digest.hexdigest()[:16]}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    try:
        observations = answer_key(read_module(path), checks, seed, path.parent, sandbox=False)
    except ReferenceFailure as failure:
        raise ValueError(f"the reference of {name} fails its outside checks: {failure}") from None
    partial = cache.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(observations))
    partial.replace(cache)
    return observations


def outside_scores(name: str, nb: nbformat.NotebookNode, in_kernel: Scores, assignment: str = "acceleration",
                   seed: int = SEED) -> Scores:
    """``in_kernel`` with every cell that has a probe scored by the outside check instead."""
    path = find_module(name, assignment)
    checks_path = checks_file(name, assignment, CHECKS_ROOT)
    if not checks_path.is_file():
        return in_kernel
    reference = reference_observations(name, assignment, seed)
    outcome: Outcome = run_checks(nb, checks_path.read_text(), seed, path.parent, sandbox=False)
    verdicts = judge_cells(reference, outcome)
    cells = dict(in_kernel.cells)
    for grade_id, verdict in verdicts.items():
        maximum = cells[grade_id][1]
        cells[grade_id] = (maximum if verdict.passed else 0.0, maximum)
    kernel = {gid: in_kernel.cells[gid][0] for gid in verdicts}
    return Scores(cells, in_kernel.errors, kernel, tuple(outcome.flags))


def grade_variant(name: str, variant: str, assignment: str = "acceleration") -> Scores:
    """Grade one variant of notebook ``name``: ``"reference"``, ``"release"`` or a mutant name."""
    path = find_module(name, assignment)
    nb = read_module(path)
    if variant == "release":
        nb = untouched_release(nb)
    elif variant != "reference":
        mutants = {m.name: m for m in load_mutants(name)}
        if variant not in mutants:
            raise SystemExit(f"error: {name} has no mutant {variant!r} (known: {', '.join(mutants)})")
        nb = apply_mutant(nb, mutants[variant])
    unexecuted = copy.deepcopy(nb)
    return outside_scores(name, unexecuted, grade_notebook(nb, path.parent), assignment)


@dataclass(frozen=True)
class Verdict:
    notebook: str
    variant: str
    scores: Scores
    ok: bool
    line: str


def judge(name: str, variant: str, scores: Scores) -> Verdict:
    """Whether ``variant`` scored as it must, and one plain line saying so."""
    got = f"{scores.total:g}/{scores.max_total:g}"
    if scores.in_kernel is not None:
        got += f" (in-kernel {scores.in_kernel_total():g})"
    if not scores.cells:
        return Verdict(name, variant, scores, False, f"{name} {variant}: no autograded cells")
    if variant in ("reference", "release"):
        ok = not scores.disagreements() and not scores.flags
        detail = "" if ok else (f"  outside check and in-kernel tests disagree on: {', '.join(scores.disagreements())}"
                                + (f"  flags: {'; '.join(scores.flags)}" if scores.flags else ""))
        if variant == "reference" and (scores.lost() or scores.errors):
            ok = False
            detail += f"  lost: {', '.join(scores.lost())}  errors: {'; '.join(scores.errors)}"
        elif variant == "release" and scores.earned():
            ok = False
            detail += f"  passes without student code: {', '.join(scores.earned())}"
    else:
        ok = bool(scores.lost())
        detail = f"  lost: {', '.join(scores.lost())}" if ok else "  NOT CAUGHT: scores full marks"
    return Verdict(name, variant, scores, ok, f"{name:<28} {variant:<32} {got:>9}{detail}")


def _run(job: tuple[str, str]) -> Verdict:
    name, variant = job
    try:
        return judge(name, variant, grade_variant(name, variant))
    except Exception as exc:  # report, do not hide: a broken variant fails the selftest
        return Verdict(name, variant, Scores({}), False,
                       f"{name:<28} {variant:<32} error: {type(exc).__name__}: {exc}")


def run_selftest(names: list[str], workers: int) -> list[Verdict]:
    """Grade the reference, the release and every mutant of each notebook in ``names``."""
    jobs = [(name, variant) for name in names
            for variant in ["reference", "release", *(m.name for m in load_mutants(name))]]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        verdicts = []
        for verdict in pool.map(_run, jobs):
            print(verdict.line, flush=True)
            verdicts.append(verdict)
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook names (default: all)")
    parser.add_argument("--assignment", default="acceleration")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    names = args.notebooks or [p.stem for p in module_notebooks(MODULES / args.assignment)]
    for name in names:
        find_module(name, args.assignment)
    verdicts = run_selftest(names, args.workers)
    for name in names:
        mine = [v for v in verdicts if v.notebook == name]
        mutants = [v for v in mine if v.variant not in ("reference", "release")]
        caught = sum(v.ok for v in mutants)
        score = f"{caught / len(mutants):.0%}" if mutants else "n/a (no mutants)"
        print(f"{name}: reference {'ok' if mine[0].ok else 'FAILED'}, release "
              f"{'ok' if mine[1].ok else 'FAILED'}, mutants caught {caught}/{len(mutants)} "
              f"(mutation score {score}, outside check seed {SEED})")
    failed = [v for v in verdicts if not v.ok]
    no_mutants = [name for name in names if not load_mutants(name)]
    if no_mutants:
        print(f"selftest: no mutants for {', '.join(no_mutants)}")
    return 1 if failed or no_mutants else 0


if __name__ == "__main__":
    sys.exit(main())
