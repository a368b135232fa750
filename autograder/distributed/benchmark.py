"""Seconds per submission through Celery on this machine, the broker's overhead, and N machines.

Grades N copies of the reference solution (every notebook) three ways on a scratch course:
the embedded path with one worker, then Celery with one worker process and with two, against a
PostgreSQL and a Redis of this machine's own (``local_stack.py``). The broker's overhead per
submission is what the Celery path adds to the same grading: on the instructor's side, staging
and storing the submission and sending its message; on the worker's, its time per task beyond
the grading itself (files from the database, the private gradebook, the result transaction);
and in all, Celery's seconds per submission beyond the embedded path's with one worker each.
The arithmetic for N machines assumes machines like this one, each with two worker processes.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from autograder.benchmark import make_course
from autograder.check.answer_key import make_answer_key
from autograder.check.runner import CHECKS_ROOT
from autograder.course import REPO, sandbox_limits, tool_environment
from autograder.distributed import store
from autograder.distributed.autograde import autograde, prepare_database
from autograder.distributed.connections import broker_url, gradebook_engine, gradebook_url, read_secrets
from autograder.distributed.local_stack import start_local_stack
from autograder.grade import grade_all, grading_digest

CLASS_SIZE = 5000  # submissions in the arithmetic: a large course, or a deadline night


def time_celery(root: Path, assignment: str, stack, database: str, processes: int, key: dict) -> dict[str, float]:
    """Grade every submission of ``root`` with one Celery worker of ``processes`` (``key``: the
    answer key, made once); seconds in all, enqueueing, and the worker's mean seconds per task
    beyond grading."""
    secrets = read_secrets(stack.secrets_file)
    address = stack.create_database(database)
    url, broker = gradebook_url(address, secrets), broker_url(stack.broker_url(), secrets)
    stack.redis_client().flushdb()
    engine = gradebook_engine(url)
    prepare_database(engine, url, root, assignment)
    with engine.begin() as conn:
        store.put_answer_key(conn, grading_digest(root, assignment, CHECKS_ROOT).hexdigest(), assignment, key)
    shutil.rmtree(root / ".grading", ignore_errors=True)
    env = tool_environment(GRADEBOOK=address, BROKER=stack.broker_url(), GRADING_SECRETS=str(stack.secrets_file))
    worker = subprocess.Popen([sys.executable, "-m", "autograder.distributed", "worker", f"--root={root}",
                               f"--workers={processes}", "--name=bench"], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    while not any("ready:" in line for line in lines):
        line = worker.stdout.readline()
        if not line:
            raise RuntimeError("the worker ended before it was ready:\n" + "".join(lines))
        lines.append(line)
    try:
        start = time.perf_counter()
        autograde(root, assignment, url, broker, wait=False, progress=False)
        enqueue_s = time.perf_counter() - start
        rows = autograde(root, assignment, url, broker, wait=True, progress=False)
        total_s = time.perf_counter() - start
    finally:
        worker.terminate()
        worker.wait()
    with engine.connect() as conn:
        done = conn.execute(select(store.tasks.c.started_at, store.tasks.c.finished_at, store.results.c.row)
                            .join(store.results, store.results.c.key == store.tasks.c.key)).all()
    engine.dispose()
    beyond = [(t.finished_at - t.started_at).total_seconds() - t.row["seconds"] for t in done]
    check_full_marks(rows)
    return {"total_s": total_s, "enqueue_s": enqueue_s, "worker_extra_s": sum(beyond) / len(beyond)}


def check_full_marks(rows) -> None:
    bad = [r.student_id for r in rows if r.status != "graded" or r.autograded_score != r.autograded_max]
    if bad:
        raise SystemExit(f"error: {len(bad)} reference submissions did not get full marks: {bad[:3]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.distributed.benchmark",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--assignment", default="acceleration")
    args = parser.parse_args(argv)
    n = args.students
    stack = start_local_stack()
    try:
        with tempfile.TemporaryDirectory(prefix="celery-benchmark-") as tmp:
            root = Path(tmp)
            notebooks = make_course(root, n, args.assignment)
            start = time.perf_counter()
            key = make_answer_key(root, args.assignment, sandbox_limits(), CHECKS_ROOT)
            key_s = time.perf_counter() - start
            start = time.perf_counter()
            check_full_marks(grade_all(root, args.assignment, workers=1, progress=False, resume=False))
            embedded_s = time.perf_counter() - start - key_s  # it makes its own key per batch: not counted
            one = time_celery(root, args.assignment, stack, "bench1", 1, key)
            two = time_celery(root, args.assignment, stack, "bench2", 2, key)
    finally:
        stack.stop()
    per = {"embedded": embedded_s / n, "one": one["total_s"] / n, "two": two["total_s"] / n}
    print(f"{n} submissions x {notebooks} notebooks  embedded 1 worker {per['embedded']:.1f} s/submission  "
          f"Celery 1 process {per['one']:.1f} s  Celery 2 processes {per['two']:.1f} s  "
          f"(2 vs 1: {per['one'] / per['two']:.2f}x faster); the answer key, {key_s:.0f} s, not counted")
    print(f"broker overhead per submission: enqueue {one['enqueue_s'] / n:.2f} s on the instructor's machine, "
          f"{one['worker_extra_s']:.2f} s per task on the worker beyond grading, "
          f"Celery 1 process vs embedded 1 worker {per['one'] - per['embedded']:+.1f} s")
    rate = 1 / per["two"]  # submissions per second of one machine like this, two processes
    hours = "  ".join(f"{machines} machine{'s' if machines > 1 else ''} {CLASS_SIZE / (machines * rate) / 3600:.1f} h"
                      for machines in (1, 2, 4, 8, 16))
    print(f"{CLASS_SIZE} submissions on N machines like this one (2 processes each, {rate:.3f} submissions/s "
          f"each): {hours}; the shared part per submission (enqueue {one['enqueue_s'] / n:.2f} s, serial on the "
          f"instructor's machine) bounds the batch at {CLASS_SIZE * one['enqueue_s'] / n / 60:.0f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
