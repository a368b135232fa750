"""The distributed stage against real servers: PostgreSQL 15 and Redis started here
(``autograder.distributed.local_stack``), Celery workers as subprocesses, one of them in a network
namespace that reaches the servers through a veth pair only, as a second machine would.

Run by ``make test-distributed`` (as root: network namespaces, the sandbox, ``runuser postgres``),
not by ``make test``. Each test grades into a database of its own with a worker of its own.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import func, select

from autograder.check.answer_key import answer_key_path, make_answer_key
from autograder.check.runner import CHECKS_ROOT
from autograder.course import REPO, nbgrader_meta, sandbox_limits, tool_environment
from autograder.demo import STUDENTS, make_submissions, prepare_course
from autograder.distributed import store
from autograder.distributed.autograde import autograde, create_tables
from autograder.distributed.broker import QUEUE
from autograder.distributed.connections import (ConnectionSettingsError, broker_url, gradebook_engine, gradebook_url,
                                                read_secrets)
from autograder.distributed.local_stack import make_remote_host, start_local_stack
from autograder.grade import grade_all, grading_digest

ASSIGNMENT = "acceleration"
TIMEOUT_S = 900


# -- servers, machines, courses -------------------------------------------------------------------
@pytest.fixture(scope="module")
def remote():
    assert os.geteuid() == 0, "make test-distributed runs as root (network namespaces, the sandbox, postgres)"
    host = make_remote_host()
    yield host
    host.remove()


@pytest.fixture(scope="module")
def stack(remote):
    servers = start_local_stack(remote.host_address)
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def demo_course(tmp_path_factory, built_source) -> Path:
    """The demo's course and its three submissions, never graded (each test grades a copy)."""
    folder = tmp_path_factory.mktemp("distributed") / "demo"
    prepare_course(folder, ASSIGNMENT, built_source)
    make_submissions(folder, ASSIGNMENT)
    return folder


@pytest.fixture(scope="module")
def embedded(demo_course, tmp_path_factory) -> Path:
    """The demo graded the embedded way (``make autograde`` with no server)."""
    folder = copy_course(demo_course, tmp_path_factory.mktemp("embedded") / "course", STUDENTS)
    grade_all(folder, ASSIGNMENT, list(STUDENTS), workers=2, progress=False)
    return folder


@pytest.fixture(scope="module")
def answer_key(demo_course) -> tuple[str, dict]:
    """(digest, key) of the demo's release and checks, made once for the tests that do not test it."""
    digest = grading_digest(demo_course, ASSIGNMENT, CHECKS_ROOT).hexdigest()
    return digest, make_answer_key(demo_course, ASSIGNMENT, sandbox_limits(), CHECKS_ROOT)


def copy_course(course: Path, target: Path, students) -> Path:
    """A course at ``target`` with ``course``'s source, release, gradebook and these submissions."""
    for part in ("source", "release"):
        shutil.copytree(course / part, target / part)
    shutil.copy(course / "gradebook.db", target / "gradebook.db")
    for student in students:
        shutil.copytree(course / "submitted" / student, target / "submitted" / student)
    return target


def submit_untouched(course: Path, student: str, notebooks: int = 1) -> Path:
    """``student`` hands in the first ``notebooks`` release notebooks as given (quick to grade)."""
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((course / "release" / ASSIGNMENT).glob("*.ipynb"))[:notebooks]:
        shutil.copy(path, folder / path.name)
    return folder


class GradingDatabase:
    """One test's database on the stack, its URLs as the instructor and the workers see them."""

    def __init__(self, stack, name: str, redis_db: int, answer=None):
        self.stack, self.redis_db = stack, redis_db
        self.address = stack.create_database(name)
        self.broker_address = stack.broker_url(redis_db)
        secrets = read_secrets(stack.secrets_file)
        self.url, self.broker = gradebook_url(self.address, secrets), broker_url(self.broker_address, secrets)
        self.engine = gradebook_engine(self.url)
        stack.redis_client(redis_db).flushdb()
        if answer is not None:
            create_tables(self.engine, self.url)
            with self.engine.begin() as conn:
                store.put_answer_key(conn, answer[0], ASSIGNMENT, answer[1])

    def environment(self, host: str | None = None) -> dict[str, str]:
        """What a worker or ``make`` gets: URLs without passwords, and the secrets file's path."""
        gradebook = self.stack.gradebook_url(self.address.rsplit("/", 1)[1], host or "127.0.0.1")
        return tool_environment(GRADEBOOK=gradebook, BROKER=self.stack.broker_url(self.redis_db, host or "127.0.0.1"),
                                GRADING_SECRETS=str(self.stack.secrets_file))

    def autograde(self, course: Path, wait: bool):
        return autograde(course, ASSIGNMENT, self.url, self.broker, wait=wait, progress=False)

    def tasks(self, student: str | None = None) -> list:
        query = select(store.tasks).order_by(store.tasks.c.sequence)
        if student is not None:
            query = query.where(store.tasks.c.student == student)
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def results(self, key: str) -> list:
        with self.engine.connect() as conn:
            return list(conn.execute(select(store.results).where(store.results.c.key == key)))

    def wait_done(self, keys, timeout_s: float = TIMEOUT_S) -> None:
        """Poll the database only (never sending again) until every task in ``keys`` is done."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.engine.connect() as conn:
                states = store.task_states(conn, keys)
            if all(states.get(key) == store.DONE for key in keys):
                return
            assert time.monotonic() < deadline, f"not graded in {timeout_s} s: {states}"
            time.sleep(1)

    def queued_messages(self) -> int:
        return self.stack.redis_client(self.redis_db).llen(QUEUE)


class Worker:
    """``python -m autograder.distributed worker`` as a subprocess, its output collected line by line."""

    def __init__(self, course: Path, env: dict[str, str], name: str, processes: int = 1, prefix=()):
        command = [*prefix, sys.executable, "-m", "autograder.distributed", "worker", f"--root={course}",
                   f"--workers={processes}", f"--name={name}"]
        self.name, self.lines = name, []
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    def wait_for(self, text: str, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, f"worker {self.name} ended:\n{self.output()}"
            assert time.monotonic() < deadline, f"no '{text}' from worker {self.name}:\n{self.output()}"
            time.sleep(0.2)

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def workers():
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def start_worker(workers: list, course: Path, env: dict[str, str], name: str, prefix=()) -> Worker:
    worker = Worker(course, env, name, prefix=prefix)
    workers.append(worker)
    worker.wait_for(f"worker {name} ready")
    return worker


def grades_csv(course: Path) -> list[dict]:
    with (course / "grades.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


# -- the tests ------------------------------------------------------------------------------------
def test_demo_graded_on_two_machines_equals_the_embedded_grades(stack, remote, demo_course, embedded, workers,
                                                                tmp_path):
    """Bit for bit: grades.csv and the integrity reports of the demo, graded by a worker here and
    one in a network namespace with its own copy of the release; feedback and leaderboard from
    the database; no password on any command line or in any output. The embedded batch's answer
    key (its seed names the failing cases of the integrity reports) serves both."""
    key = json.loads(answer_key_path(embedded, ASSIGNMENT).read_text())
    db = GradingDatabase(stack, "demo", 0, (grading_digest(embedded, ASSIGNMENT, CHECKS_ROOT).hexdigest(), key))
    course = copy_course(demo_course, tmp_path / "course", STUDENTS)
    elsewhere = tmp_path / "remote-machine"  # what the other machine has: the repo and its own release
    shutil.copytree(demo_course / "release", elsewhere / "release")
    here = start_worker(workers, demo_course, db.environment(), "here")
    there = start_worker(workers, elsewhere, db.environment(remote.host_address), "there",
                         prefix=remote.command())
    done = subprocess.run(["make", "--no-print-directory", "autograde", f"COURSE={course}", f"GRADEBOOK={db.address}",
                           f"BROKER={db.broker_address}"], cwd=REPO, env=db.environment(), capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (course / "grades.csv").read_text() == (embedded / "grades.csv").read_text()
    for report in sorted((embedded / "reports" / "integrity").iterdir()):
        assert (course / "reports" / "integrity" / report.name).read_text() == report.read_text()
    assert {task.worker for task in db.tasks()} == {"here", "there"}, "both machines should have graded"
    status = subprocess.run([sys.executable, "-m", "autograder.distributed", "status", f"--root={course}"], cwd=REPO,
                            env=db.environment(), capture_output=True, text=True, timeout=120)
    assert "there: 1 done" in status.stdout or "there: 2 done" in status.stdout, status.stdout
    (course / "grades.csv").unlink()
    printed = {}
    for target in ("grading-status", "grades"):  # as docs/distributed.md has them
        made = subprocess.run(["make", "--no-print-directory", target, f"COURSE={course}", f"GRADEBOOK={db.address}"],
                              cwd=REPO, env=db.environment(), capture_output=True, text=True, timeout=300)
        assert made.returncode == 0, made.stdout + made.stderr
        printed[target] = made.stdout
    assert "here:" in printed["grading-status"] and "there:" in printed["grading-status"], printed
    assert (course / "grades.csv").read_text() == (embedded / "grades.csv").read_text(), "make grades differs"

    one = "demo-reference"
    for command in ("feedback", "leaderboard"):
        made = subprocess.run([sys.executable, "-m", "autograder.distributed", command, f"--root={course}",
                               f"--student={one}"], cwd=REPO, env=db.environment(), capture_output=True, text=True,
                              timeout=TIMEOUT_S)
        assert made.returncode == 0, made.stdout + made.stderr
    pages = sorted(p.name for p in (course / "feedback" / one / ASSIGNMENT).glob("*.html"))
    assert pages == sorted(p.stem + ".html" for p in (course / "release" / ASSIGNMENT).glob("*.ipynb"))
    assert "Reference Rabbit" in (course / "reports" / "leaderboard.csv").read_text()  # the nickname, via the database

    passwords = (stack.grader_password, stack.broker_password)
    for worker in (here, there):
        assert not any(p in worker.output() for p in passwords), f"a password in {worker.name}'s output"
    assert not any(p in done.stdout + done.stderr for p in passwords)
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        assert not any(p in text for p in passwords), f"a password on the command line of {cmdline.parent.name}"


def test_the_same_submission_enqueued_twice_is_graded_once(stack, demo_course, answer_key, workers, tmp_path):
    db = GradingDatabase(stack, "twice", 1, answer_key)
    course = copy_course(demo_course, tmp_path / "course", [])
    submit_untouched(course, "twice")
    db.autograde(course, wait=False)
    db.autograde(course, wait=False)
    assert db.queued_messages() == 2
    (task,) = db.tasks()
    worker = start_worker(workers, demo_course, db.environment(), "once")
    db.wait_done([task.key])
    worker.wait_for(f"skipped {task.key[:12]}")
    (task,) = db.tasks()
    assert task.attempts == 1 and len(db.results(task.key)) == 1
    assert sum(f"({task.key[:12]})" in line for line in worker.lines) == 1, worker.output()
    rows = db.autograde(course, wait=True)  # run again: nothing is enqueued, the same row comes back
    assert [row.student_id for row in rows] == ["twice"] and db.tasks()[0].attempts == 1


def test_a_worker_killed_mid_task_loses_nothing_and_doubles_nothing(stack, demo_course, embedded, answer_key,
                                                                     workers, tmp_path):
    db = GradingDatabase(stack, "killed", 2, answer_key)
    course = copy_course(demo_course, tmp_path / "course", ["demo-reference"])
    start_worker(workers, demo_course, db.environment(), "victim")
    db.autograde(course, wait=False)
    deadline = time.monotonic() + 300
    while not (db.tasks()[0].state == store.RUNNING and db.tasks()[0].worker_pid):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.5)
    time.sleep(5)  # well inside its grading
    os.kill(db.tasks()[0].worker_pid, signal.SIGKILL)
    db.wait_done([db.tasks()[0].key])
    (task,) = db.tasks()
    assert task.attempts == 2 and len(db.results(task.key)) == 1
    db.autograde(course, wait=True)
    expected = {row["student_id"]: row for row in grades_csv(embedded)}["demo-reference"]
    assert grades_csv(course) == [expected]


def test_a_whole_worker_killed_mid_task_is_sent_again_by_make_autograde(stack, demo_course, answer_key, workers,
                                                                      tmp_path):
    """The worker machine gone (every process at once): the broker keeps the message unacknowledged
    for hours, so ``make autograde`` sends again what is marked running and locked by nobody."""
    db = GradingDatabase(stack, "lost-machine", 7, answer_key)
    course = copy_course(demo_course, tmp_path / "course", [])
    submit_untouched(course, "unlucky")
    lost = start_worker(workers, demo_course, db.environment(), "lost")
    db.autograde(course, wait=False)
    deadline = time.monotonic() + 300
    while db.tasks()[0].state != store.RUNNING:
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.1)
    os.killpg(lost.process.pid, signal.SIGKILL)
    lost.process.wait()
    start_worker(workers, demo_course, db.environment(), "spare")
    (row,) = db.autograde(course, wait=True)
    (task,) = db.tasks()
    assert task.worker == "spare" and task.attempts == 2 and len(db.results(task.key)) == 1
    assert row.status == "partial" and row.autograded_score == 0  # one notebook of four handed in


def test_a_broker_restart_mid_batch_loses_no_queued_task(stack, demo_course, answer_key, workers, tmp_path):
    db = GradingDatabase(stack, "restart", 3, answer_key)
    course = copy_course(demo_course, tmp_path / "course", [])
    students = [f"student-{number}" for number in range(3)]
    for student in students:
        submit_untouched(course, student)
    start_worker(workers, demo_course, db.environment(), "steady")
    db.autograde(course, wait=False)
    keys = [task.key for task in db.tasks()]
    deadline = time.monotonic() + 300
    while not any(task.state == store.RUNNING for task in db.tasks()):
        assert time.monotonic() < deadline, "no task started"
        time.sleep(0.2)
    assert db.queued_messages() >= 1, "tasks should still wait in the broker when it goes down"
    stack.kill_redis()
    stack.start_redis()
    db.wait_done(keys)  # no message sent again: what was queued came back from Redis's append-only file
    for task in db.tasks():
        assert len(db.results(task.key)) == 1, task.student
    assert all(task.attempts <= 2 for task in db.tasks())  # the one running may be delivered again


def test_a_resubmission_supersedes_the_older_queued_one(stack, demo_course, answer_key, workers, tmp_path):
    db = GradingDatabase(stack, "resubmit", 4, answer_key)
    course = copy_course(demo_course, tmp_path / "course", [])
    submit_untouched(course, "changes-mind", notebooks=1)
    db.autograde(course, wait=False)
    submit_untouched(course, "changes-mind", notebooks=2)  # the second notebook, handed in later
    db.autograde(course, wait=False)
    old, new = db.tasks("changes-mind")
    assert (old.state, new.state) == (store.SUPERSEDED, store.QUEUED)
    assert db.queued_messages() == 2, "the old message is still in the queue, ahead of the new one"
    worker = start_worker(workers, demo_course, db.environment(), "fresh")
    db.wait_done([new.key])
    worker.wait_for(f"skipped {old.key[:12]}")
    old, new = db.tasks("changes-mind")
    assert old.state == store.SUPERSEDED and old.attempts == 0 and db.results(old.key) == []
    assert new.attempts == 1 and len(db.results(new.key)) == 1
    (row,) = db.autograde(course, wait=True)
    second, third = sorted(row.scores)[1:3]
    assert f"{second}.ipynb missing" not in row.reason and f"{third}.ipynb missing" in row.reason, row.reason


HOSTILE = '''
import json, os, socket
found = []
for host, port in {targets}:
    try:
        socket.create_connection((host, port), timeout=3).close()
        found.append(f"REACHED {{host}}:{{port}}")
    except OSError as exc:
        found.append(f"blocked {{host}}:{{port}} {{type(exc).__name__}}")
for path in {paths}:
    try:
        found.append("READ " + open(path).read())
    except OSError as exc:
        found.append(f"unreadable {{path}} {{type(exc).__name__}}")
found.append("ENVIRONMENT " + json.dumps(dict(os.environ)))
print("\\n".join(found))
'''


def test_student_code_reaches_neither_broker_nor_database_nor_their_secrets(stack, remote, demo_course, workers,
                                                                            tmp_path):
    db = GradingDatabase(stack, "hostile", 5)  # no key given: autograde makes it, as for a new release
    course = copy_course(demo_course, tmp_path / "course", [])
    folder = submit_untouched(course, "curious")
    targets = [(host, port) for host in ("127.0.0.1", remote.host_address) for port in (stack.pg_port, stack.redis_port)]
    paths = [str(stack.secrets_file), str(Path.home() / ".config" / "acceleration-lab" / "grading-secrets")]
    path = next(folder.glob("*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and nbgrader_meta(c).get("solution"))
    cell.source = HOSTILE.format(targets=targets, paths=paths) + "\n" + cell.source
    nbformat.write(nb, path)
    start_worker(workers, demo_course, db.environment(), "guarded")
    db.autograde(course, wait=False)
    (task,) = db.tasks()
    db.wait_done([task.key])
    (result,) = db.results(task.key)
    digest = result.autograded[path.stem]
    with db.engine.connect() as conn:
        graded = nbformat.reads(store.get_blobs(conn, [digest])[digest].decode(), as_version=4)
    printed = "".join(output.get("text", "") for c in graded.cells for output in c.get("outputs", []))
    assert all(f"blocked {host}:{port}" in printed for host, port in targets), printed
    assert "REACHED" not in printed and "READ " not in printed, printed
    environment = json.loads(printed.split("ENVIRONMENT ", 1)[1].splitlines()[0])
    assert not {"GRADEBOOK", "BROKER", "GRADING_SECRETS"} & set(environment), sorted(environment)
    assert not any(p in printed for p in (stack.grader_password, stack.broker_password))
    with db.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(store.results)) == 1


def test_a_task_whose_worker_died_is_found_and_one_being_graded_is_not(stack, demo_course, answer_key, tmp_path):
    """What ``make autograde`` sends again while it waits: running, and nobody holds its lock."""
    db = GradingDatabase(stack, "orphans", 6, answer_key)
    course = copy_course(demo_course, tmp_path / "course", [])
    for student in ("dead-worker", "live-worker"):
        submit_untouched(course, student)
    db.autograde(course, wait=False)
    dead, live = (task.key for task in db.tasks())
    with db.engine.begin() as conn:
        for key in (dead, live):
            store.take(conn, key, "somewhere", 1)
    with db.engine.connect() as holder:
        holder.scalar(select(func.pg_advisory_lock(store.lock_id(live))))
        with db.engine.connect() as conn:
            assert store.orphaned(conn, [dead, live]) == [dead]


def test_passwords_stay_out_of_urls_and_out_of_files_others_can_read(tmp_path, monkeypatch):
    secrets = tmp_path / "grading-secrets"
    secrets.write_text("gradebook_password = pw1\nbroker_password = p/w:2\n")
    secrets.chmod(0o644)
    monkeypatch.setenv("GRADING_SECRETS", str(secrets))
    with pytest.raises(ConnectionSettingsError, match="chmod 600"):
        read_secrets()
    secrets.chmod(0o600)
    assert gradebook_url("postgresql://grader@db:5432/grading").password == "pw1"
    assert broker_url("redis://broker:6379/0") == "redis://:p%2Fw%3A2@broker:6379/0"
    for variable, url, parse in (("GRADEBOOK", "postgresql://grader:pw@db/grading", gradebook_url),
                                 ("BROKER", "redis://:pw@broker:6379/0", broker_url)):
        with pytest.raises(ConnectionSettingsError, match=f"{variable} holds a password"):
            parse(url)


def test_the_documented_backup_restores_the_gradebook(stack, answer_key, tmp_path):
    """docs/distributed.md's pg_dump and pg_restore lines, pointed at the test's server: a gradebook
    whose answer key was lost comes back whole from the dump."""
    db = GradingDatabase(stack, "backup", 8, answer_key)
    env = dict(os.environ, PGPASSWORD=stack.grader_password)
    where = ["--host=127.0.0.1", f"--port={stack.pg_port}", "--username=grader"]
    dump = tmp_path / "grading-backup.dump"
    subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", *where, "backup"], env=env, check=True,
                   capture_output=True, timeout=120)
    with db.engine.begin() as conn:
        conn.execute(store.answer_keys.delete())
    subprocess.run(["pg_restore", "--clean", "--if-exists", *where, "--dbname=backup", str(dump)], env=env,
                   check=True, capture_output=True, timeout=120)
    with db.engine.connect() as conn:
        assert store.answer_key(conn, answer_key[0]) == json.loads(json.dumps(answer_key[1]))
