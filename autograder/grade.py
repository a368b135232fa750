"""Autograde every submission and write ``grades.csv``: one row per student, always.

For each student: the submitted files are copied to ``.grading/submitted/`` with renamed
notebooks matched and damaged cells repaired from the release (``submitted/`` itself is never
changed); nbgrader's autograde then grades that copy in a long-lived worker process
(``autograder.grade_worker``), with the kernel in the sandbox of ``autograder.sandbox``.
Students are graded in parallel, one worker per core.
Finished students are journaled, so a batch that is stopped and restarted regrades nobody twice.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from tqdm import tqdm

from autograder.build import STAGING, course_arguments, gradebook_url, tool_environment
from autograder.execute import METADATA_KEY
from autograder.integrity import integrity_lines, prepare_reference, reference_path
from autograder.report import write_integrity_reports, write_summary
from autograder.repair import match_notebook_name, read_notebook, repair_notebook
from autograder.sandbox import detect_protections, sweep_sandbox_users
from autograder.verify import CHECKS_ROOT

STATUSES = ("graded", "partial", "failed")


@dataclass
class GradeRow:
    """One student's result. Scores are points; ``None`` where a notebook was not graded."""

    student_id: str
    scores: dict[str, float | None]
    max_total: float
    status: str
    reason: str
    manual_pending: int = 0
    autograded_score: float = 0.0
    autograded_max: float = 0.0
    seconds: float = 0.0
    repairs: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)       # for the instructor's review
    overrides: list[str] = field(default_factory=list)   # cells where the outside verdict replaced nbgrader's

    @property
    def total(self) -> float:
        return sum(score or 0.0 for score in self.scores.values())


def assignment_notebooks(root: Path, assignment: str) -> dict[str, float]:
    """Notebook name -> maximum points, as recorded by ``nbgrader generate_assignment``."""
    if not (root / "gradebook.db").exists():
        raise SystemExit(f"error: {root / 'gradebook.db'} not found: run 'make release' first")
    with Gradebook(gradebook_url(root)) as gb:
        try:
            found = gb.find_assignment(assignment)
        except MissingEntry:
            raise SystemExit(f"error: assignment {assignment!r} is not in the gradebook: "
                             f"run 'make release' first") from None
        return {nb.name: float(nb.max_score) for nb in sorted(found.notebooks, key=lambda n: n.name)}


def discover_students(root: Path, assignment: str) -> list[str]:
    """Student ids with a ``submitted/<student>/<assignment>/`` folder, sorted."""
    submitted = root / "submitted"
    if not submitted.is_dir():
        return []
    return sorted(d.name for d in submitted.iterdir() if (d / assignment).is_dir())


# -- staging: renamed files matched, damaged cells repaired ------------------------------------
@dataclass
class Staged:
    present: set[str]
    problems: dict[str, str]
    notes: list[str]


def stage_submission(root: Path, assignment: str, student: str, notebooks: list[str]) -> Staged:
    """Copy one submission into ``.grading/submitted/`` the way nbgrader needs to see it."""
    source = root / "submitted" / student / assignment
    target = root / STAGING / "submitted" / student / assignment
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    chosen: dict[str, Path] = {}
    notes: list[str] = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        name = match_notebook_name(path.name, notebooks) if path.parent == source else None
        if name is None:
            if path.suffix != ".ipynb":
                destination = target / path.relative_to(source)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)
            continue
        exact = path.name == f"{name}.ipynb"
        previous = chosen.get(name)
        if previous is None or exact or (previous.name != f"{name}.ipynb"
                                         and path.stat().st_mtime > previous.stat().st_mtime):
            chosen[name] = path
    problems: dict[str, str] = {}
    released_dir = root / "release" / assignment
    for name, path in sorted(chosen.items()):
        if path.name != f"{name}.ipynb":
            notes.append(f"graded '{path.name}' as {name}.ipynb")
        try:
            submitted = read_notebook(path)
        except ValueError as exc:
            problems[name] = str(exc)
            continue
        repaired, repairs = repair_notebook(submitted, nbformat.read(released_dir / f"{name}.ipynb", as_version=4))
        notes += [f"{name}: {line}" for line in repairs]
        nbformat.write(repaired, target / f"{name}.ipynb")
    notes += restore_released_files(released_dir, target)
    return Staged(set(chosen) - set(problems), problems, notes)


def restore_released_files(released_dir: Path, target: Path) -> list[str]:
    """Put the release's helper files (not notebooks) into ``target``; a note for each one changed."""
    notes = []
    for path in sorted(p for p in released_dir.iterdir() if p.is_file() and p.suffix != ".ipynb"):
        copy = target / path.name
        if copy.is_file() and copy.read_bytes() != path.read_bytes():
            notes.append(f"{path.name} differed from the release's copy: the release's was used")
        shutil.copy2(path, copy)
    return notes


def folder_digest(folder: Path, digest=None):
    """``digest`` (a new sha256 by default) updated with every file's path and bytes in ``folder``."""
    digest = digest or hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest


def submission_fingerprint(root: Path, assignment: str, student: str, release_digest) -> str:
    """Hash of the submitted files and the release: a change in either means regrading.

    ``release_digest`` is ``folder_digest`` of the release, computed once per batch.
    """
    return folder_digest(root / "submitted" / student / assignment, release_digest.copy()).hexdigest()


# -- one student ----------------------------------------------------------------------------
def _last_error(log: str) -> str:
    """The most useful line of an nbgrader log: its last error, else its last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if "[ERROR]" in line or "Error" in line]
    chosen = (errors or lines or ["no output"])[-1]
    return chosen.split("] ", 1)[-1][:300]


class GradingWorker:
    """One long-lived ``autograder.grade_worker`` process, restarted after a kill or a crash.

    Importing nbgrader costs about 3 s; one process per worker pays it once, not per student.
    """

    def __init__(self, root: Path, assignment: str, threads: int, cell_timeout_s: float | None, log: Path,
                 reference: Path | None = None):
        self.command = [sys.executable, "-m", "autograder.grade_worker", f"--root={root}",
                        f"--assignment={assignment}", f"--submitted-directory={STAGING}/submitted",
                        *([f"--cell-timeout={cell_timeout_s:g}"] if cell_timeout_s else []),
                        *([f"--reference={reference}"] if reference else [])]
        blas = {name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        self.env, self.root, self.log = tool_environment(**blas), root, log
        self.process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as stderr:
            return subprocess.Popen(self.command, cwd=self.root, env=self.env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)

    def grade(self, student: str, timeout_s: float) -> tuple[str, bool, dict]:
        """Autograde ``student``; returns nbgrader's log, whether grading failed, and the worker's
        whole answer (with the outside check's results)."""
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        self.process.stdin.write(student + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            why = (f"grading stopped: the submission took longer than {timeout_s:.0f} s" if not ready
                   else f"the grading process died (see {self.log})")
            return f"[ERROR] {why}", True, {}
        answer = json.loads(line)
        return answer["log"], not answer["success"], answer

    def stop(self) -> None:
        """Kill this worker and everything its kernels left running."""
        if self.process is not None:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None
        sweep_sandbox_users()

    def close(self) -> None:
        """Let an idle worker finish on its own (end of input), or stop it."""
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.stop()
        self.process = None


def _grading_record(autograded: Path, name: str) -> dict | None:
    """What the executor recorded in notebook ``name``; None if it was not completely graded.

    nbgrader writes the autograded notebook only after every step, scoring included, so the
    executor's record in it proves that this grading finished (a killed one leaves none).
    """
    try:
        return nbformat.read(autograded / f"{name}.ipynb", as_version=4).metadata.get(METADATA_KEY)
    except (OSError, ValueError):
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


def grade_student(root: Path, assignment: str, student: str, notebooks: dict[str, float],
                  worker: GradingWorker, timeout_s: float) -> GradeRow:
    """Stage, autograde (in ``worker``) and read back one student's submission."""
    start = time.perf_counter()
    max_total = sum(notebooks.values())
    staged = stage_submission(root, assignment, student, list(notebooks))
    scores: dict[str, float | None] = {}
    problems = [f"{name}.ipynb not graded: {reason}" for name, reason in staged.problems.items()]
    if not staged.present:
        missing = [f"{nb}.ipynb missing" for nb in notebooks if nb not in staged.problems]
        reason = "; ".join(problems + missing) or "no notebooks"
        if not staged.problems:
            reason = f"no notebook of {assignment!r} found in submitted/{student}/{assignment}"
        return GradeRow(student, {nb: None for nb in notebooks}, max_total, "failed", reason,
                        seconds=time.perf_counter() - start, repairs=staged.notes)
    autograded = root / "autograded" / student / assignment
    shutil.rmtree(autograded, ignore_errors=True)  # only this grading's results may count
    log, crashed, answer = worker.grade(student, timeout_s)
    flags, overrides = integrity_lines(answer.get("verification", {}), staged.notes)
    if answer.get("verification_error"):
        flags.append(f"outside check failed: {answer['verification_error']}; in-kernel scores kept")
    (root / "autograded" / student).mkdir(parents=True, exist_ok=True)
    (root / "autograded" / student / f"{assignment}.autograde.log").write_text(log)
    events: list[str] = []
    manual_pending, auto_score, auto_max, late = 0, 0.0, 0.0, 0.0
    with Gradebook(gradebook_url(root)) as gb:
        for nb in notebooks:
            if nb in staged.problems:
                scores[nb] = None
                continue
            if nb not in staged.present:
                scores[nb] = 0.0
                problems.append(f"{nb}.ipynb missing (scored 0)")
                continue
            executed = _grading_record(autograded, nb)
            try:
                record = gb.find_submission_notebook(nb, assignment, student)
            except MissingEntry:
                executed = None
            if executed is None:
                scores[nb] = None
                problems.append(f"{nb}.ipynb not graded: {_last_error(log)}")
                continue
            scores[nb] = float(record.score)
            auto_score += float(record.code_score)
            auto_max += float(record.max_code_score)
            manual_pending += sum(1 for g in record.grades if g.needs_manual_grade)
            events += _events(nb, executed)
        try:
            late = gb.find_submission(assignment, student).total_seconds_late or 0.0
        except MissingEntry:
            pass
    if crashed and not problems:
        problems.append(f"nbgrader exited with an error: {_last_error(log)}")
    details = events + ([_late(late)] if late > 0 else [])
    if manual_pending:
        details.append(f"{manual_pending} written answer(s) await manual grading")
    if overrides:
        details.append(f"outside check overrode {len(overrides)} test cell(s)")
    if flags or overrides:
        details.append(f"integrity report: reports/integrity/{student}.txt")
    if not any(score is not None for nb, score in scores.items() if nb in staged.present):
        status = "failed"
    elif problems:
        status = "partial"
    else:
        status = "graded"
    return GradeRow(student, scores, max_total, status, "; ".join(problems + details), manual_pending,
                    auto_score, auto_max, time.perf_counter() - start, staged.notes, flags, overrides)


def refresh_from_gradebook(root: Path, assignment: str, row: GradeRow) -> GradeRow:
    """``row`` (from the journal) with the gradebook's current scores: hand grades given in
    formgrader since the autograding count, and nothing is graded again."""
    if row.status == "failed":
        return row
    manual = "written answer(s) await manual grading"
    with Gradebook(gradebook_url(root)) as gb:
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
    parts = [part for part in row.reason.split("; ") if part and manual not in part]
    if row.manual_pending:
        parts.append(f"{row.manual_pending} {manual}")
    row.reason = "; ".join(parts)
    return row


# -- the batch ------------------------------------------------------------------------------
def csv_columns(notebooks: list[str]) -> list[str]:
    """The columns of ``grades.csv``: one score column per notebook, then the totals."""
    return ["student_id", *notebooks, "total", "max_total", "status", "reason", "manual_pending",
            "autograded_score", "autograded_max", "outside_overrides", "integrity_flags"]


def write_grades_csv(rows: list[GradeRow], notebooks: list[str], path: Path) -> None:
    """Write ``rows`` into ``grades.csv``, keeping the rows of students not graded this time.

    The file is replaced atomically, so a reader never sees a half-written file; a file with
    other columns is kept beside it under a dated name.
    """
    columns = csv_columns(notebooks)
    merged: dict[str, dict[str, str]] = {}
    if path.exists():
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames == columns:
                merged = {line["student_id"]: line for line in reader}
        if not merged:
            path.replace(path.with_name(f"{path.stem}.{time.strftime('%Y%m%d-%H%M%S')}.csv"))
    for row in rows:
        scores = {nb: "" if row.scores[nb] is None else f"{row.scores[nb]:g}" for nb in notebooks}
        merged[row.student_id] = {
            "student_id": row.student_id, **scores, "total": f"{row.total:g}",
            "max_total": f"{row.max_total:g}", "status": row.status, "reason": row.reason,
            "manual_pending": str(row.manual_pending),
            "autograded_score": f"{row.autograded_score:g}", "autograded_max": f"{row.autograded_max:g}",
            "outside_overrides": str(len(row.overrides)), "integrity_flags": str(len(row.flags))}
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(merged[student] for student in sorted(merged))
    tmp.replace(path)


class Journal:
    """Finished students, one JSON line each, so a restarted batch resumes where it stopped."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill: that student is graded again
                self.entries[entry["student"]] = entry

    def finished(self, student: str, fingerprint: str) -> GradeRow | None:
        entry = self.entries.get(student)
        if entry is None or entry["fingerprint"] != fingerprint:
            return None
        return GradeRow(**entry["row"])

    def record(self, row: GradeRow, fingerprint: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"student": row.student_id, "fingerprint": fingerprint, "row": asdict(row)})
        with self.path.open("a") as handle:
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


def grade_all(root: Path, assignment: str, students: list[str] | None = None, workers: int | None = None,
              timeout_s: float = 900.0, progress: bool = True, resume: bool = True,
              cell_timeout_s: float | None = None, verify: bool = True,
              checks_root: Path = CHECKS_ROOT) -> list[GradeRow]:
    """Grade ``students`` (default: every submission); write ``grades.csv`` and ``reports/``.

    With ``verify`` (the default) every test cell that has a probe in ``checks_root`` is scored
    by the outside check (``autograder.integrity``), against the reference run once per batch.
    """
    start = time.perf_counter()
    notebooks = assignment_notebooks(root, assignment)
    students = students if students is not None else discover_students(root, assignment)
    workers = max(1, min(workers or os.cpu_count() or 1, len(students) or 1))
    threads = max(1, (os.cpu_count() or 1) // workers)
    journal = Journal(root / STAGING / f"{assignment}-journal.jsonl")
    if students:
        warn_missing_protections()
    rows: dict[str, GradeRow] = {}
    todo: list[tuple[str, str]] = []
    release_digest = folder_digest(root / "release" / assignment)
    if verify:  # graded with other probes, or without them, means graded again
        release_digest.update(b"outside check")
        if (checks_root / assignment).is_dir():
            folder_digest(checks_root / assignment, release_digest)
    for student in students:
        fingerprint = submission_fingerprint(root, assignment, student, release_digest)
        done = journal.finished(student, fingerprint) if resume else None
        if done is not None:
            rows[student] = refresh_from_gradebook(root, assignment, done)
        else:
            todo.append((student, fingerprint))
    reference = None
    if verify and todo:
        key = prepare_reference(root, assignment, checks_root)
        reference = reference_path(root, assignment)
        for name in key["unchecked"]:
            print(f"warning: {name} has no outside checks in {checks_root / assignment}: its in-kernel "
                  f"scores stand", file=sys.stderr)
    idle: queue.Queue[GradingWorker] = queue.Queue()
    for number in range(workers):
        idle.put(GradingWorker(root, assignment, threads, cell_timeout_s,
                               root / STAGING / f"worker-{number}.log", reference))

    def work(student: str, fingerprint: str) -> GradeRow:
        worker = idle.get()
        try:
            row = grade_student(root, assignment, student, notebooks, worker, timeout_s)
        except Exception as exc:  # one student's failure must never stop the batch
            row = GradeRow(student, {nb: None for nb in notebooks}, sum(notebooks.values()), "failed",
                           f"grader error: {type(exc).__name__}: {exc}")
        finally:
            idle.put(worker)
        journal.record(row, fingerprint)
        return row

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(work, student, fingerprint) for student, fingerprint in todo]
        bar = tqdm(as_completed(futures), total=len(futures), desc="autograde", unit="student",
                   disable=not progress, initial=0)
        try:
            for future in bar:
                row = future.result()
                rows[row.student_id] = row
        finally:
            while not idle.empty():
                idle.get().close()
    ordered = [rows[s] for s in students]
    write_grades_csv(ordered, list(notebooks), root / "grades.csv")
    if ordered:
        write_summary(ordered, root / "reports", assignment, time.perf_counter() - start)
        write_integrity_reports(ordered, root / "reports", assignment)
    return ordered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    course_arguments(parser, "grade only this student (repeatable)")
    parser.add_argument("--workers", type=int, default=None, help="parallel workers (default: cores)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per submission")
    parser.add_argument("--regrade", action="store_true", help="ignore the journal: grade everyone again")
    parser.add_argument("--no-verify", action="store_true",
                        help="keep nbgrader's in-kernel scores: no outside check (not recommended)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    rows = grade_all(root, args.assignment, args.student, args.workers, args.timeout, resume=not args.regrade,
                     verify=not args.no_verify)
    if not rows:
        print(f"no submissions under {root / 'submitted'}/<student>/{args.assignment}/")
        return 0
    summary = root / "reports" / f"{args.assignment}-summary.txt"
    counts = {status: sum(row.status == status for row in rows) for status in STATUSES}
    print(f"{len(rows)} submissions: " + ", ".join(f"{n} {s}" for s, n in counts.items())
          + f"; wrote {root / 'grades.csv'} and {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
