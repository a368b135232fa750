"""``make autograde``: grade every submission and write ``grades.csv``, one row per student, always.

For each student: the notebooks are staged (``autograder.collect.stage``: matched, repaired,
nothing else copied), nbgrader autogrades them in a long-lived worker process
(``autograder.run.worker``) with the kernel in the sandbox, and the outside check
(``autograder.check``) decides which test cells keep their points. Students are graded in
parallel, one worker per core by default. Finished students are journaled, so a batch that is
stopped and restarted regrades nobody twice. Whatever one submission does, the batch goes on:
every per-student step ends in that student's row, with the reason when something failed.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import queue
import select
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from tqdm import tqdm

from autograder.check.answer_key import AnswerKeyError, answer_key_path, make_answer_key
from autograder.check.runner import CHECKS_ROOT
from autograder.check.submission import NotebookCheck, from_plain
from autograder.collect.repair import TAMPERING
from autograder.collect.stage import Staged, stage_submission
from autograder.course import (STAGING, course_arguments, discover_students, gradebook_url, printable, scratch_root,
                               sandbox_limits, tool_environment, valid_student_id)
from autograder.report.grades import STATUSES, GradeRow, failed_row, write_grades_csv
from autograder.report.summary import write_integrity_reports, write_summary
from autograder.run.execute import METADATA_KEY
from autograder.run.sandbox import Limits, detect_protections, sweep_run_areas, sweep_sandbox_users
from autograder.run.worker import zero_test_cells

IMPORTABLE = (".py", ".pyc", ".so", ".pth", ".pyd")
WORKER_START_TIMEOUT_S = 300.0  # importing nbgrader and starting warm hosts, on a busy machine


class GradingBusy(RuntimeError):
    """Another grading of the same course is running."""


def assignment_notebooks(root: Path, assignment: str) -> dict[str, float]:
    """Notebook name -> maximum points, as recorded by ``nbgrader generate_assignment``."""
    if not (root / "gradebook.db").exists():
        raise SystemExit(f"error: {root / 'gradebook.db'} not found: run 'make release' first")
    with Gradebook(gradebook_url(root)) as gb:
        return gradebook_notebooks(gb, assignment)


def gradebook_notebooks(gb: Gradebook, assignment: str) -> dict[str, float]:
    """Notebook name -> maximum points of ``assignment`` in the open gradebook ``gb``."""
    try:
        found = gb.find_assignment(assignment)
    except MissingEntry:
        raise SystemExit(f"error: assignment {assignment!r} is not in the gradebook: "
                         f"run 'make release' first") from None
    return {nb.name: float(nb.max_score) for nb in sorted(found.notebooks, key=lambda n: n.name)}


def folder_digest(folder: Path, digest=None):
    """``digest`` (a new sha256 by default) updated with every regular file's path and bytes in
    ``folder``, links not followed (a link's target counts, not what it points to)."""
    digest = digest or hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = os.fsencode(path.relative_to(folder))
        if path.is_symlink():
            digest.update(b"link " + relative + b" " + os.fsencode(os.readlink(path)))
        elif path.is_file():
            digest.update(relative)
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
    return digest


def grading_digest(root: Path, assignment: str, checks_root: Path):
    """What every submission is graded against: the release and the checks (and the grader's
    own outside-check code), hashed once per batch."""
    digest = folder_digest(root / "release" / assignment)
    digest.update(b"checks")
    for path in sorted((checks_root / assignment).glob("[0-9][0-9]_*.py")):  # not the leaderboard's benchmarks
        digest.update(path.name.encode() + path.read_bytes())
    for path in sorted((Path(__file__).parent / "check").glob("*.py")):
        digest.update(path.read_bytes())
    return digest


def submission_fingerprint(root: Path, assignment: str, student: str, batch_digest) -> str:
    """Hash of the submitted files, the release and the checks: a change in any means regrading."""
    return folder_digest(root / "submitted" / student / assignment, batch_digest.copy()).hexdigest()


# -- one student ----------------------------------------------------------------------------
def _last_error(log: str) -> str:
    """The most useful line of an nbgrader log: its last error, else its last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if "[ERROR]" in line or "Error" in line]
    chosen = (errors or lines or ["no output"])[-1]
    return printable(chosen.split("] ", 1)[-1], 300)


class GradingWorker:
    """One long-lived ``autograder.run.worker`` process, restarted after a kill or a crash.

    Importing nbgrader costs about 3 s; one process per worker pays it once, not per student.
    """

    def __init__(self, root: Path, assignment: str, threads: int, log: Path, answer_key: Path | None,
                 limits: Limits | None = None):
        self.command = [sys.executable, "-m", "autograder.run.worker", f"--root={root}",
                        f"--assignment={assignment}", f"--submitted-directory={STAGING}/submitted",
                        f"--threads={threads}", *([f"--answer-key={answer_key}"] if answer_key else []),
                        *([f"--limits={json.dumps(asdict(limits))}"] if limits else [])]
        self.env, self.root, self.log = tool_environment(), root, log
        self.process: subprocess.Popen | None = None
        self.ready = False

    def _start(self) -> subprocess.Popen:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as stderr:
            return subprocess.Popen(self.command, cwd=self.root, env=self.env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)

    def start(self) -> None:
        """Start the process now (it imports nbgrader), if it is not running."""
        if self.process is None or self.process.poll() is not None:
            self.process, self.ready = self._start(), False

    def _wait_ready(self) -> str | None:
        """Wait for the process's start-up line, which no submission's time includes; why it failed."""
        if self.ready:
            return None
        ready, _, _ = select.select([self.process.stdout], [], [], WORKER_START_TIMEOUT_S)
        line = self.process.stdout.readline() if ready else ""
        try:
            self.ready = json.loads(line) == {"ready": True}
        except ValueError:
            self.ready = False
        if not self.ready:
            self.stop()
            return (f"the grading process did not start in {WORKER_START_TIMEOUT_S:.0f} s" if not ready
                    else f"the grading process could not start (see {self.log})")
        return None

    def grade(self, student: str, timeout_s: float) -> tuple[dict, str | None]:
        """The worker's answer for ``student``, and why there is none (killed, died, timed out)."""
        for _ in range(2):  # a process that fails to start is the grader's trouble: one more try
            self.start()
            not_started = self._wait_ready()
            if not not_started:
                break
        else:
            return {}, not_started
        self.process.stdin.write(student + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            return {}, (f"grading stopped: the submission took longer than {timeout_s:.0f} s" if not ready
                        else f"the grading process died (see {self.log})")
        try:
            return json.loads(line), None
        except ValueError:
            self.stop()
            return {}, "the grading process answered garbage"

    def stop(self) -> None:
        """Kill this worker and everything its kernels left running."""
        if self.process is not None:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process, self.ready = None, False
        sweep_sandbox_users()

    def close(self) -> None:
        """Let an idle worker finish on its own (end of input), or stop it."""
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.stop()
        self.process, self.ready = None, False


def _kernel_record(autograded: Path, name: str) -> dict | None:
    """What the executor recorded in notebook ``name``; None if it was not completely graded.

    nbgrader writes the autograded notebook only after every step, scoring included, so the
    executor's record in it proves that this grading finished (a killed one leaves none).
    """
    try:
        return nbformat.read(autograded / f"{name}.ipynb", as_version=4).metadata.get(METADATA_KEY)
    except Exception:  # missing or unreadable: not graded
        return None


def _events(name: str, record: dict) -> list[str]:
    """The executor's events (crashes, timeouts, truncated output) as reason lines."""
    lines = []
    for event in record.get("events", []):
        where = f"cell {event['cell']}" + (f" [{event['grade_id']}]" if event.get("grade_id") else "")
        lines.append(f"{name}: {event['event']} in {where}")
    return lines


def _late(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"submitted {hours} h {rest // 60} min late" if hours else f"submitted {rest // 60} min late"


def _check_lines(name: str, check: NotebookCheck) -> tuple[list[str], list[str]]:
    """(flags, disagreements) of one notebook's outside check, for the integrity report."""
    flags = [f"{name}: {flag}" for flag in check.flags]
    if check.failure:
        flags.append(f"{name}: outside check stopped early: {check.failure}")
    disagreements = []
    for grade_id, cell in check.cells.items():
        if cell.disagree:
            kernel = "not run" if cell.in_kernel is None else f"{cell.in_kernel:g}/{cell.max:g}"
            outside = "passed" if cell.outside else "failed: " + "; ".join(cell.cases[:3])
            disagreements.append(f"{name}: {grade_id}: in-kernel {kernel}, outside check {outside}")
        flags += [f"{name}: {grade_id}: {line}" for line in cell.detail[:2] if not cell.outside]
    return flags, disagreements


def grade_student(root: Path, assignment: str, student: str, notebooks: dict[str, float],
                  worker: GradingWorker, timeout_s: float, staged: Staged | None = None) -> GradeRow:
    """Stage, autograde and check (in ``worker``), and read back one student's submission.

    ``staged``: staging already done elsewhere (the distributed stage stages on the instructor's
    machine), its notebooks already under ``.grading/submitted/``.
    """
    start = time.perf_counter()
    max_total = sum(notebooks.values())
    if staged is None:
        staged = stage_submission(root, assignment, student, list(notebooks))
    files = [f"refused {line}" for line in staged.refused] + [f"ignored {line}" for line in staged.ignored]
    flags = [f"tests rewritten: {repair}" for repair in staged.repairs if repair.kind in TAMPERING]
    flags += [f"importable file in the submission (never imported): {line}" for line in staged.ignored
              if line.endswith(IMPORTABLE) or "/" in line and line.split("/", 1)[0].isidentifier()]
    problems = [f"{name}.ipynb not graded: {reason}" for name, reason in staged.problems.items()]
    refused = [f"refused {line}" for line in staged.refused]
    repairs = staged.notes + [str(repair) for repair in staged.repairs]
    if not staged.present:
        missing = [f"{nb}.ipynb missing" for nb in notebooks if nb not in staged.problems]
        reason = "; ".join(problems + missing + refused) or "no notebooks"
        if not staged.problems and not staged.refused:
            reason = f"no notebook of {assignment!r} found in submitted/{student}/{assignment}"
        row = failed_row(student, notebooks, reason, time.perf_counter() - start)
        row.repairs, row.flags = repairs + files, flags
        return row
    autograded = root / "autograded" / student / assignment
    for name in notebooks:  # only this grading's results may count
        (autograded / f"{name}.ipynb").unlink(missing_ok=True)
    answer, stopped = worker.grade(student, timeout_s)
    timings = answer.get("timings") if isinstance(answer.get("timings"), dict) else {}
    log = str(answer.get("log", ""))
    checks = from_plain(answer.get("checks") or {}) if answer else {}
    if stopped or answer.get("check_error"):
        zero_test_cells(root, assignment, student)  # unproven in-kernel scores must not stand
        problems.append(f"outside check failed ({printable(stopped or answer['check_error'], 200)}): "
                        f"every test cell scored 0")
    (root / "autograded" / student).mkdir(parents=True, exist_ok=True)
    (root / "autograded" / student / f"{assignment}.autograde.log").write_text(log, encoding="utf-8")
    scores: dict[str, float | None] = {}
    events, disagreements = [], []
    manual_pending, auto_score, auto_max, late = 0, 0.0, 0.0, 0.0
    unchecked = [nb for nb in staged.present if nb not in checks and not stopped and not answer.get("check_error")]
    if unchecked:
        zero_test_cells(root, assignment, student)
    with Gradebook(gradebook_url(root)) as gb:
        for nb in notebooks:
            if nb in staged.problems:
                scores[nb] = None
                continue
            if nb not in staged.present:
                scores[nb] = 0.0
                problems.append(f"{nb}.ipynb missing (scored 0)")
                continue
            executed = _kernel_record(autograded, nb)
            try:
                record = gb.find_submission_notebook(nb, assignment, student)
            except MissingEntry:
                executed = None
            if executed is None:
                scores[nb] = None
                problems.append(f"{nb}.ipynb not graded: {stopped or _last_error(log)}")
                continue
            if nb in checks:
                check_flags, check_disagreements = _check_lines(nb, checks[nb])
                flags += check_flags
                disagreements += check_disagreements
                if checks[nb].failure:
                    problems.append(f"{nb}: outside check stopped early ({checks[nb].failure}); "
                                    f"its unchecked test cells scored 0")
            elif nb in unchecked:
                problems.append(f"{nb}: outside check did not run: its test cells scored 0")
            scores[nb] = float(record.score)
            auto_score += float(record.code_score)
            auto_max += float(record.max_code_score)
            manual_pending += sum(1 for g in record.grades if g.needs_manual_grade)
            events += _events(nb, executed)
        try:
            late = gb.find_submission(assignment, student).total_seconds_late or 0.0
        except MissingEntry:
            pass
    if answer and not answer.get("success") and not problems:
        problems.append(f"nbgrader exited with an error: {_last_error(log)}")
    details = events + refused + ([_late(late)] if late > 0 else [])
    if manual_pending:
        details.append(f"{manual_pending} written answer(s) await manual grading")
    if disagreements:
        details.append(f"in-kernel tests and the outside check disagree on {len(disagreements)} test cell(s)")
    if flags or disagreements or files:
        details.append(f"integrity report: reports/integrity/{printable(student, 120)}.txt")
    if not any(score is not None for nb, score in scores.items() if nb in staged.present):
        status = "failed"
    elif problems:
        status = "partial"
    else:
        status = "graded"
    return GradeRow(printable(student, 120), scores, max_total, status, printable("; ".join(problems + details), 2000),
                    manual_pending, auto_score, auto_max, time.perf_counter() - start, repairs + files, flags,
                    disagreements, {k: float(v) for k, v in timings.items() if isinstance(v, (int, float))})


def grade_student_safely(root: Path, assignment: str, student: str, notebooks: dict[str, float],
                         worker: GradingWorker, timeout_s: float, staged: Staged | None = None) -> GradeRow:
    """``grade_student``; a failure of the grader's own ends in a failed row, the student's
    in-kernel scores set to 0."""
    try:
        return grade_student(root, assignment, student, notebooks, worker, timeout_s, staged)
    except Exception as exc:  # one student's failure must never stop the batch
        try:
            zero_test_cells(root, assignment, student)
        except Exception:
            pass
        return failed_row(student, notebooks, f"grader error: {type(exc).__name__}: {exc}")


def refresh_from_gradebook(root: Path, assignment: str, row: GradeRow, gb: Gradebook | None = None) -> GradeRow:
    """``row`` (from the journal) with the gradebook's current scores: hand grades given in
    formgrader since the autograding count, and nothing is graded again. ``gb``: an open
    gradebook to read instead of the course's ``gradebook.db``."""
    if row.status == "failed":
        return row
    manual = "written answer(s) await manual grading"
    with nullcontext(gb) if gb is not None else Gradebook(gradebook_url(root)) as gb:
        for nb, score in row.scores.items():
            if score is None:
                continue
            try:
                record = gb.find_submission_notebook(nb, assignment, row.student_id)
            except MissingEntry:
                continue
            row.scores[nb] = float(record.score)
        try:
            submission = gb.find_submission(assignment, row.student_id)
            row.manual_pending = sum(1 for nb in submission.notebooks for g in nb.grades if g.needs_manual_grade)
        except MissingEntry:
            pass
    parts = [part for part in row.reason.split("; ") if part]
    at = next((number for number, part in enumerate(parts) if manual in part), len(parts))
    parts = [part for part in parts if manual not in part]
    if row.manual_pending:  # where grading put it, so a refreshed row reads as a fresh one
        parts.insert(at, f"{row.manual_pending} {manual}")
    row.reason = "; ".join(parts)
    return row


# -- the batch ------------------------------------------------------------------------------
class Journal:
    """Finished students, one JSON line each, so a restarted batch resumes where it stopped."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[entry["student"]] = entry
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill: that student is graded again

    def finished(self, student: str, fingerprint: str) -> GradeRow | None:
        entry = self.entries.get(student)
        if entry is None or entry.get("fingerprint") != fingerprint:
            return None
        try:
            return GradeRow(**entry["row"])
        except TypeError:  # a journal written by an older grader: grade again
            return None

    def record(self, row: GradeRow, fingerprint: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"student": row.student_id, "fingerprint": fingerprint, "row": asdict(row)})
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.entries[row.student_id] = json.loads(line)


def warn_missing_protections(stream=None) -> None:
    """Say once, loudly, which protections this machine does not allow (on stderr by default)."""
    stream = stream or sys.stderr
    missing = detect_protections().missing()
    if missing:
        print("WARNING: grading without the full sandbox on this machine:", file=stream)
        for line in missing:
            print(f"WARNING:   {line}", file=stream)
        print("WARNING: grades are still computed; review flagged submissions by hand.", file=stream)


class CourseLock:
    """Only one grading of a course at a time: run areas and the journal are the course's own."""

    def __init__(self, root: Path, assignment: str):
        self.path = root / STAGING / f"{assignment}.lock"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise GradingBusy(f"another grading of this course is running ({self.path} is locked)") from None
        return self

    def __exit__(self, *exc):
        self.handle.close()


def grade_all(root: Path, assignment: str, students: list[str] | None = None, workers: int | None = None,
              timeout_s: float = 900.0, progress: bool = True, resume: bool = True,
              checks_root: Path = CHECKS_ROOT, limits: Limits | None = None) -> list[GradeRow]:
    """Grade ``students`` (default: every submission); write ``grades.csv`` and ``reports/``.

    ``limits`` replaces the sandbox settings of ``nbgrader_config.py`` (tests use it to shorten
    timeouts); ``timeout_s`` bounds one whole submission.
    """
    with CourseLock(root, assignment):
        return _grade_all(root, assignment, students, workers, timeout_s, progress, resume, checks_root, limits)


def _grade_all(root: Path, assignment: str, students: list[str] | None, workers: int | None, timeout_s: float,
               progress: bool, resume: bool, checks_root: Path, limits: Limits | None) -> list[GradeRow]:
    start = time.perf_counter()
    sweep_run_areas(scratch_root(root))
    sweep_sandbox_users()
    notebooks = assignment_notebooks(root, assignment)
    students = students if students is not None else discover_students(root, assignment)
    workers = max(1, min(workers or os.cpu_count() or 1, len(students) or 1))
    threads = 1  # one BLAS thread per kernel and check: workers scale, and sums come out the same every run
    journal = Journal(root / STAGING / f"{assignment}-journal.jsonl")
    if students:
        warn_missing_protections()
    rows: dict[str, GradeRow] = {}
    todo: list[tuple[str, str]] = []
    batch_digest = grading_digest(root, assignment, checks_root)
    for student in students:
        invalid = valid_student_id(student)
        if invalid:
            rows[student] = failed_row(student, notebooks, invalid)
            continue
        try:
            fingerprint = submission_fingerprint(root, assignment, student, batch_digest)
        except OSError as exc:
            rows[student] = failed_row(student, notebooks, f"the submission cannot be read ({exc.strerror})")
            continue
        done = journal.finished(student, fingerprint) if resume else None
        if done is not None:
            rows[student] = refresh_from_gradebook(root, assignment, done)
        else:
            todo.append((student, fingerprint))
    idle: queue.Queue[GradingWorker] = queue.Queue()
    if todo:  # the workers import nbgrader while the answer key is made
        key_path = answer_key_path(root, assignment)
        key_path.unlink(missing_ok=True)
        for number in range(workers):
            worker = GradingWorker(root, assignment, threads, root / STAGING / f"worker-{number}.log", key_path, limits)
            worker.start()
            idle.put(worker)
        try:
            make_answer_key(root, assignment, limits or sandbox_limits(), checks_root)
        except AnswerKeyError as exc:
            while not idle.empty():
                idle.get().stop()
            raise SystemExit(f"error: no grading: {exc}") from None

    def work(student: str, fingerprint: str) -> GradeRow:
        worker = idle.get()
        try:
            row = grade_student_safely(root, assignment, student, notebooks, worker, timeout_s)
        finally:
            idle.put(worker)
        journal.record(row, fingerprint)
        return row

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(work, student, fingerprint): student for student, fingerprint in todo}
        bar = tqdm(as_completed(futures), total=len(futures), desc="autograde", unit="student",
                   disable=not progress, initial=0)
        try:
            for future in bar:
                rows[futures[future]] = future.result()
        finally:
            while not idle.empty():
                idle.get().close()
            sweep_run_areas(scratch_root(root))
    ordered = [rows[student] for student in students]
    write_reports(root, assignment, ordered, list(notebooks), time.perf_counter() - start)
    return ordered


def batch_line(root: Path, assignment: str, rows: list[GradeRow]) -> str:
    """The one line a batch ends with: its rows per status, and the files written."""
    summary = root / "reports" / f"{assignment}-summary.txt"
    counts = {status: sum(row.status == status for row in rows) for status in STATUSES}
    return (f"{len(rows)} submissions: " + ", ".join(f"{n} {s}" for s, n in counts.items())
            + f"; wrote {root / 'grades.csv'} and {summary}")


def write_reports(root: Path, assignment: str, rows: list[GradeRow], notebooks: list[str], seconds: float) -> None:
    """``grades.csv``, the summary and the integrity reports of a batch's rows (in class order)."""
    write_grades_csv(rows, notebooks, root / "grades.csv")
    if rows:
        write_summary(rows, root / "reports", assignment, seconds)
        write_integrity_reports(rows, root / "reports", assignment)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    course_arguments(parser, "grade only this student (repeatable)")
    parser.add_argument("--workers", type=int, default=None, help="parallel workers (default: cores)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per submission")
    parser.add_argument("--regrade", action="store_true", help="ignore the journal: grade everyone again")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        rows = grade_all(root, args.assignment, args.student, args.workers, args.timeout, resume=not args.regrade)
    except GradingBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print(f"no submissions under {root / 'submitted'}/<student>/{args.assignment}/")
        return 0
    print(batch_line(root, args.assignment, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
