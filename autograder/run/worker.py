"""A long-lived grading process: imports nbgrader once, then grades one student per request.

The batch grader (``autograder/grade.py``) starts one per parallel worker and writes student ids
to its stdin, one per line; the worker answers each with one JSON line: nbgrader's success and
log, and the outside check's result per notebook (``autograder.check.submission``), which has
already put the scores that count into the gradebook. If the outside check fails for a reason
of the grader's, every autograded test cell of that student is set to 0 before the answer is
sent: nothing student code could have written stays in the gradebook unchecked. The answers go
to a private copy of the original stdout: file descriptor 1 is pointed at stderr before
anything runs. If a submission takes too long, the batch grader kills this process and starts
a new one.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps import NbGraderAPI

from autograder.check.submission import check_submission, to_plain
from autograder.course import gradebook_url, nbgrader_config, sandbox_limits

MAX_LOG_CHARS = 20_000


def make_api(root: Path, submitted_directory: str, threads: int, limits: dict | None = None) -> NbGraderAPI:
    """nbgrader's API for the course at ``root``, with this repo's ``nbgrader_config.py`` (and, for
    tests, ``limits`` replacing some of its ``Sandbox`` settings)."""
    config = nbgrader_config().copy()
    if limits:
        config.Sandbox.update(limits)
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.submitted_directory = submitted_directory
    config.CourseDirectory.db_url = gradebook_url(root, timeout_s=120)  # parallel workers wait, not fail
    config.SandboxedExecute.course_root = str(root)
    config.SandboxedExecute.threads = threads
    return NbGraderAPI(config=config)


def zero_test_cells(root: Path, assignment: str, student: str) -> None:
    """Set every autograded test cell of ``student`` to 0: what the kernel scored is not proven."""
    with Gradebook(gradebook_url(root, timeout_s=120)) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if grade.auto_score is not None and grade.cell.cell_type == "code":
                    grade.auto_score = 0.0
        gb.db.commit()


def _cpu_s() -> float:
    """CPU seconds of this process and of every process it has waited for (kernels, checks)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def grade_one(api: NbGraderAPI, root: Path, assignment: str, student: str, key: dict | None,
              threads: int) -> dict:
    start_s, start_cpu = time.perf_counter(), _cpu_s()
    result = api.autograde(assignment, student, force=True, create=True)
    kernel_s, kernel_cpu = time.perf_counter() - start_s, _cpu_s() - start_cpu
    log = result.get("log", "") + (f"\n[ERROR] {result['error']}" if result.get("error") else "")
    answer = {"student": student, "success": bool(result.get("success")), "log": log[-MAX_LOG_CHARS:],
              "checks": {}, "check_error": None,
              "timings": {"autograde_s": kernel_s, "autograde_cpu_s": kernel_cpu}}
    if key is None:
        return answer
    try:
        sandbox = bool(api.config.SandboxedExecute.get("sandbox", True))
        answer["checks"] = to_plain(check_submission(root, assignment, student, key, sandbox_limits(api.config),
                                                     sandbox=sandbox, threads=threads))
    except Exception as exc:  # the grader's own failure: fail closed, and say so in the row
        zero_test_cells(root, assignment, student)
        answer["check_error"] = f"{type(exc).__name__}: {exc}"[:300]
    answer["timings"].update(check_s=time.perf_counter() - start_s - kernel_s, check_cpu_s=_cpu_s() - start_cpu - kernel_cpu)
    return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="autograde students named on stdin, one per line")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--assignment", required=True)
    parser.add_argument("--submitted-directory", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--answer-key", type=Path, default=None, help="outside-check every submission")
    parser.add_argument("--limits", type=json.loads, default=None, help="JSON: Sandbox settings to replace")
    args = parser.parse_args(argv)
    key = None  # read with the first request: the batch writes it while the workers start
    answers = os.fdopen(os.dup(1), "w", buffering=1)  # not inherited by kernels (PEP 446)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    root = args.root.resolve()
    api = make_api(root, args.submitted_directory, args.threads, args.limits)
    answers.write(json.dumps({"ready": True}) + "\n")  # start-up is not part of any submission's time
    for line in sys.stdin:
        student = line.strip()
        if not student:
            continue
        if key is None and args.answer_key:
            key = json.loads(args.answer_key.read_text())
        answers.write(json.dumps(grade_one(api, root, args.assignment, student, key, args.threads)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
