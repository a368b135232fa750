"""``make selftest``: the one authoring check. It proves the grading of every notebook and names,
by file and grade id, everything an author has left to do.

- Every test cell has a check in ``checks/<assignment>/<notebook>.py`` and every check names a
  test cell; every task (solution cell) has mutants in ``mutants/<assignment>/<notebook>.py``,
  and every mutant still applies to the reference.
- The reference scores full marks as nbgrader grades it (in its kernel, no error in any cell),
  and passes every visible test and check, outside, under each of ``RUNS`` seeds, raising no flag.
- The untouched release scores zero on every test cell, in its kernel and outside.
- Every mutant loses points under each seed: some test cell's visible test or check fails.
- No check is weak: where a mutant fails a test cell's visible test, that cell's own check
  (its hidden cases) fails too, under each seed. Otherwise subverting the visible test would
  be enough.

``make selftest NOTEBOOK=01 VARIANT=<name>`` grades one variant and prints every cell.
"""
from __future__ import annotations

import argparse
import copy
import functools
import importlib.util
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.util import Finalize
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbgrader.preprocessors import ClearSolutions
from nbgrader.utils import determine_grade

from autograder.build.source import BuildError, copy_helper_files, module_notebooks, read_module
from autograder.cells import cell_roles
from autograder.check.answer_key import AnswerKeyError, coverage_problems, notebook_key, autograded_cells
from autograder.check.judge import judge_run, judge_visible
from autograder.check.runner import CHECKS_ROOT, CheckHost, check_step_id, checks_file, run_checks
from autograder.course import (ASSIGNMENT, QUIET_KERNEL, REPO, ipc_kernel_manager, is_autograded_test,
                               nbgrader_config, nbgrader_meta, sandbox_limits, tool_environment)
from autograder.mutation import Mutant, MutantError, apply_mutant

MODULES = REPO / "modules"
MUTANTS_ROOT = REPO / "mutants"
RUNS = 5
SEED = int(os.environ.get("ACCELERATION_LAB_SELFTEST_SEED", "2026"))  # any seed must pass; CI uses this one


def find_module(name: str, assignment: str = ASSIGNMENT) -> Path:
    """The source file of notebook ``name`` (``01`` or ``01_loops_and_blocking``)."""
    folder = MODULES / assignment
    matches = [p for p in module_notebooks(folder) if p.stem == name or p.stem.split("_", 1)[0] == name]
    if len(matches) != 1:
        known = ", ".join(p.stem for p in module_notebooks(folder))
        raise SystemExit(f"error: no notebook {name!r} in {folder} (known: {known})")
    return matches[0]


def mutants_file(name: str, assignment: str = ASSIGNMENT) -> Path:
    return MUTANTS_ROOT / assignment / f"{name}.py"


def load_mutants(name: str, assignment: str = ASSIGNMENT) -> list[Mutant]:
    """``MUTANTS`` from ``mutants/<assignment>/<name>.py``; an empty list if the file does not exist."""
    path = mutants_file(name, assignment)
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


def authoring_problems(name: str, assignment: str = ASSIGNMENT) -> list[str]:
    """What an author still has to write for notebook ``name``, each naming file and grade id."""
    path = find_module(name, assignment)
    try:
        nb = read_module(path)
    except BuildError as exc:
        return [str(exc)]
    problems = coverage_problems(name, nb, checks_file(name, assignment, CHECKS_ROOT))
    try:
        mutants = load_mutants(name, assignment)
    except Exception as exc:  # a broken mutants file is an authoring problem like any other
        return problems + [f"{mutants_file(name, assignment)}: cannot be loaded ({type(exc).__name__}: {exc})"]
    tasks = [nbgrader_meta(c)["grade_id"] for c in nb.cells if c.cell_type == "code" and nbgrader_meta(c).get("solution")]
    covered = {m.cell for m in mutants}
    problems += [f"{mutants_file(name, assignment)}: no mutant for task {task} of {name}" for task in tasks
                 if task not in covered]
    for mutant in mutants:
        try:
            apply_mutant(nb, mutant)
        except MutantError as exc:
            problems.append(f"{mutants_file(name, assignment)}: {exc}")
    return problems


# -- grading one variant ------------------------------------------------------------------------
def untouched_release(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with every solution replaced by the student stub: what a student who changed nothing submits."""
    cleared, _ = ClearSolutions(config=nbgrader_config()).preprocess(copy.deepcopy(nb), {})
    return cleared


@functools.lru_cache(maxsize=None)
def _module(path: Path, modified_ns: int) -> nbformat.NotebookNode:
    return read_module(path)


def variant_notebook(name: str, variant: str, assignment: str = ASSIGNMENT) -> nbformat.NotebookNode:
    path = find_module(name, assignment)
    nb = copy.deepcopy(_module(path, path.stat().st_mtime_ns))  # parsed once per process and version
    if variant == "reference":
        return nb
    if variant == "release":
        return untouched_release(nb)
    mutants = {m.name: m for m in load_mutants(name, assignment)}
    if variant not in mutants:
        raise SystemExit(f"error: {name} has no mutant {variant!r} (known: {', '.join(mutants)})")
    return apply_mutant(nb, mutants[variant])


def kernel_scores(nb: nbformat.NotebookNode, helpers_dir: Path,
                  experiments: bool = False) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """Execute ``nb`` as nbgrader's autograder does (a fresh kernel, grading mode, errors allowed)
    and score its test cells with nbgrader's ``determine_grade``; also every cell's error. Experiment
    cells (benchmarks, plots) are left out, as grading leaves them out, unless ``experiments`` (as
    nbgrader's Validate and ``selfcheck.py`` run them, at grading sizes)."""
    nb = copy.deepcopy(nb)
    if not experiments:
        nb.cells = [cell for cell, role in zip(nb.cells, cell_roles(nb)) if role != "experiment"]
    with tempfile.TemporaryDirectory(prefix="selftest-") as tmp:
        workdir = Path(tmp) / "work"
        copy_helper_files(helpers_dir, workdir)
        client = NotebookClient(nb, km=ipc_kernel_manager(workdir), timeout=int(sandbox_limits().cell_timeout_s),
                                extra_arguments=QUIET_KERNEL, allow_errors=True,
                                resources={"metadata": {"path": str(workdir)}})
        client.owns_km = True  # shut the kernel down when done
        client.execute(env=tool_environment(NBGRADER_EXECUTION="autograde"), cwd=str(workdir))
    cells, errors = {}, []
    for index, cell in enumerate(nb.cells):
        if is_autograded_test(cell):
            score, maximum = determine_grade(cell)
            cells[nbgrader_meta(cell)["grade_id"]] = (float(score), float(maximum))
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                errors.append(f"cell {index}: {output.ename}: {output.evalue}"[:200])
    return cells, errors


@dataclass
class VariantResult:
    """How one variant of one notebook fared: per test cell, the visible test outside, each check
    run's failures, and (reference and release only) nbgrader's in-kernel scores."""

    notebook: str
    variant: str
    visible: dict[str, list[str]] = field(default_factory=dict)       # grade_id -> failures
    runs: dict[str, list[list[str]]] = field(default_factory=dict)    # grade_id -> failures per run
    in_kernel: dict[str, tuple[float, float]] | None = None
    kernel_errors: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    failure: str | None = None


def grade_variant(name: str, variant: str, key: dict, assignment: str = ASSIGNMENT) -> VariantResult:
    """Grade one variant of notebook ``name`` outside under every seed of ``key`` (and, for the
    reference and the release, in its kernel too)."""
    path = find_module(name, assignment)
    nb = variant_notebook(name, variant, assignment)
    runs = len(next(iter(key["cells"].values()), []))
    outcome = run_checks(nb, key["checks"], SEED, [], None, runs=runs, host=warm_host(assignment))
    result = VariantResult(name, variant, flags=list(outcome.flags), failure=outcome.failure)
    for grade_id in autograded_cells(nb):
        result.visible[grade_id] = judge_visible(outcome, grade_id)[0]
        result.runs[grade_id] = [judge_run(entry, outcome.steps.get(check_step_id(grade_id, run)))[0]
                                 for run, entry in enumerate(key["cells"].get(grade_id, []))]
    if variant in ("reference", "release"):
        result.in_kernel, result.kernel_errors = kernel_scores(nb, path.parent)
    return result


_HOSTS: dict[str, CheckHost] = {}


def warm_host(assignment: str = ASSIGNMENT) -> CheckHost:
    """This process's warm check host for ``assignment`` (no sandbox: the selftest runs only the
    instructor's own variants), made on first use and closed when the process exits."""
    folder = MODULES / assignment
    if str(folder) not in _HOSTS:
        notebooks = {p.name for p in module_notebooks(folder)}
        helpers = sorted(p for p in folder.glob("*.py") if p.name not in notebooks)
        host = CheckHost(helpers, sandbox=False, limits=sandbox_limits()).__enter__()
        _HOSTS[str(folder)] = host
        Finalize(host, host.__exit__, args=(None, None, None), exitpriority=10)
    return _HOSTS[str(folder)]


def reference_key(name: str, assignment: str = ASSIGNMENT, runs: int = RUNS) -> dict:
    """The answer key of notebook ``name`` for the selftest's seed; ``AnswerKeyError`` if the
    reference fails its own checks."""
    path = find_module(name, assignment)
    return notebook_key(name, read_module(path), checks_file(name, assignment, CHECKS_ROOT), SEED, [], runs,
                        host=warm_host(assignment))


# -- judging ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    notebook: str
    variant: str
    ok: bool
    line: str
    problems: tuple[str, ...] = ()
    detail: tuple[str, ...] = ()   # per test cell: what failed, in the kernel and outside


def judge(result: VariantResult, assignment: str = ASSIGNMENT) -> Verdict:
    """Whether the variant scored as it must; one plain line, and each problem naming file and id."""
    name, variant = result.notebook, result.variant
    checks = checks_file(name, assignment, CHECKS_ROOT)
    problems: list[str] = []
    passed = {gid: not result.visible[gid] and all(not failures for failures in result.runs[gid])
              for gid in result.visible}
    if variant == "reference":
        problems += [f"{find_module(name, assignment)}: reference loses {gid} in its kernel" for gid, (score, maximum)
                     in (result.in_kernel or {}).items() if score < maximum]
        problems += [f"{find_module(name, assignment)}: reference raised {error}" for error in result.kernel_errors]
        problems += [f"{checks}: reference fails {gid} outside: {'; '.join((result.visible[gid] + sum(result.runs[gid], []))[:3])}"
                     for gid, ok in passed.items() if not ok]
        problems += [f"{checks}: reference raised a flag: {flag}" for flag in result.flags]
    elif variant == "release":
        problems += [f"{find_module(name, assignment)}: untouched release earns {gid} in its kernel"
                     for gid, (score, _) in (result.in_kernel or {}).items() if score > 0]
        problems += [f"{checks}: untouched release passes {gid} outside" for gid, ok in passed.items() if ok]
    else:
        mutants = mutants_file(name, assignment)
        for run in range(max((len(r) for r in result.runs.values()), default=0)):
            caught = [gid for gid in result.visible if result.visible[gid] or
                      (run < len(result.runs[gid]) and result.runs[gid][run])]
            if not caught:
                problems.append(f"{mutants}: mutant {variant} NOT CAUGHT under seed {run} (scores full marks)")
        for gid, failures in result.visible.items():
            weak = [run for run, run_failures in enumerate(result.runs[gid]) if failures and not run_failures]
            if weak:
                problems.append(f"{checks}: weak check {gid}: mutant {variant} fails its visible test but passes "
                                f"its check under seed(s) {weak}")
    lost = sorted(gid for gid, ok in passed.items() if not ok)
    shown = f"loses {', '.join(lost[:4])}{' ...' if len(lost) > 4 else ''}" if lost else "full marks"
    line = f"{name:<28} {variant:<34} {shown}"
    if problems:
        line += "\n  " + "\n  ".join(problems)
    detail = []
    for gid in result.visible:
        kernel = (result.in_kernel or {}).get(gid)
        head = f"{gid}: " + ("passes" if passed[gid] else "fails") + (
            f" (in its kernel {kernel[0]:g}/{kernel[1]:g})" if kernel else "")
        lines = [f"visible test outside: {failure}" for failure in result.visible[gid]]
        lines += [f"seed {run}: {failure}" for run, failures in enumerate(result.runs[gid]) for failure in failures]
        detail.append(head + "".join(f"\n    {text}" for text in lines[:12]))
    return Verdict(name, variant, not problems, line, tuple(problems), tuple(detail))


def _job(job: tuple[str, str, dict]) -> Verdict:
    name, variant, key = job
    try:
        return judge(grade_variant(name, variant, key))
    except Exception as exc:  # report, do not hide: a broken variant fails the selftest
        line = f"{name:<28} {variant:<34} error: {type(exc).__name__}: {exc}"
        return Verdict(name, variant, False, line, (line,))


def _key_job(name: str) -> dict | str:
    """The reference key of notebook ``name``, or the authoring problem that prevents it."""
    try:
        return reference_key(name)
    except (AnswerKeyError, BuildError) as exc:
        return str(exc)


def run_selftest(names: list[str], workers: int, variants: list[str] | None = None,
                 echo=print) -> tuple[list[Verdict], list[str]]:
    """Grade the reference, the release and every mutant (or ``variants``) of each notebook in
    ``names``; returns the verdicts and the authoring problems."""
    problems = [problem for name in names for problem in authoring_problems(name)]
    jobs, verdicts = [], []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for name, key in zip(names, pool.map(_key_job, names)):  # the notebooks' keys, side by side
            if isinstance(key, str):
                problems.append(key)
                continue
            for variant in variants or ["reference", "release", *(m.name for m in load_mutants(name))]:
                jobs.append((name, variant, key))
        for verdict in pool.map(_job, jobs):
            echo(verdict.line)
            verdicts.append(verdict)
    return verdicts, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook names or numbers (default: all)")
    parser.add_argument("--variant", help="grade only this variant: reference, release or a mutant's name")
    parser.add_argument("--assignment", default=ASSIGNMENT)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    names = [find_module(n, args.assignment).stem for n in args.notebooks] or \
        [p.stem for p in module_notebooks(MODULES / args.assignment)]
    verdicts, problems = run_selftest(names, args.workers, [args.variant] if args.variant else None)
    if args.variant:
        for verdict in verdicts:
            print("\n".join(f"  {line}" for line in verdict.detail))
    for name in names:
        mine = [v for v in verdicts if v.notebook == name]
        mutants = [v for v in mine if v.variant not in ("reference", "release")]
        status = {v.variant: "ok" if v.ok else "FAILED" for v in mine if v.variant in ("reference", "release")}
        caught = sum(v.ok for v in mutants)
        score = f"{caught / len(mutants):.0%}" if mutants else "n/a"
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in status.items())
              + (f"{', ' if status else ''}mutants caught {caught}/{len(mutants)} under each of {RUNS} seeds "
                 f"(mutation score {score}, seed {SEED})" if mutants else ""))
    for problem in problems:
        print(f"selftest: {problem}")
    failed = [v for v in verdicts if not v.ok]
    if failed or problems:
        print(f"selftest FAILED: {len(failed)} variant(s) and {len(problems)} authoring problem(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
