"""A long-lived grading process: imports nbgrader once, then autogrades one student per request.

The batch grader (autograder/grade.py) starts one per parallel worker and writes student ids to
its stdin, one per line; the worker answers each with one JSON line
``{"student", "success", "log", "verification"}``. With ``--reference`` (the batch's answer key
from ``autograder.integrity.prepare_reference``) each graded submission is then checked from
outside (``autograder.integrity.verify_submission``), which may change its gradebook scores. The answers go to a private copy of the original stdout: file
descriptor 1 is pointed at stderr before anything runs, so nothing a kernel or a library prints
can be mistaken for an answer. If a submission takes too long, the batch grader kills this
process (and whatever the sandbox user still runs) and starts a new one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nbgrader.apps import NbGraderAPI
from traitlets.config.loader import PyFileConfigLoader

from autograder.build import REPO, gradebook_url
from autograder.integrity import verify_submission
from autograder.verify import Timeouts


def make_api(root: Path, submitted_directory: str, cell_timeout_s: float | None) -> NbGraderAPI:
    """nbgrader's API for the course at ``root``, with this repo's ``nbgrader_config.py``."""
    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.submitted_directory = submitted_directory
    config.CourseDirectory.db_url = gradebook_url(root, timeout_s=120)  # parallel workers wait, not fail
    config.SandboxedExecute.course_root = str(root)
    if cell_timeout_s:
        config.SandboxedExecute.timeout = int(cell_timeout_s)
    return NbGraderAPI(config=config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="autograde students named on stdin, one per line")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--assignment", required=True)
    parser.add_argument("--submitted-directory", required=True)
    parser.add_argument("--cell-timeout", type=float, default=None)
    parser.add_argument("--reference", type=Path, default=None, help="answer key: check each submission outside")
    args = parser.parse_args(argv)
    key = json.loads(args.reference.read_text()) if args.reference else None
    timeouts = Timeouts(cell_s=args.cell_timeout, probe_s=args.cell_timeout) if args.cell_timeout else Timeouts()
    answers = os.fdopen(os.dup(1), "w", buffering=1)  # not inherited by kernels (PEP 446)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    api = make_api(args.root.resolve(), args.submitted_directory, args.cell_timeout)
    for line in sys.stdin:
        student = line.strip()
        if not student:
            continue
        result = api.autograde(args.assignment, student, force=True, create=True)
        log = result.get("log", "") + (f"\n[ERROR] {result['error']}" if result.get("error") else "")
        answer = {"student": student, "success": bool(result.get("success")), "log": log, "verification": {}}
        if key is not None:
            try:
                answer["verification"] = verify_submission(args.root.resolve(), args.assignment, student, key,
                                                           timeouts=timeouts)
            except Exception as exc:  # reported in the student's row; the batch goes on
                answer["verification_error"] = f"{type(exc).__name__}: {exc}"
        answers.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
