"""The grading kernel: isolated from the grader, limited, and survivable when it dies or hangs.

These run SandboxedExecute directly on small notebooks. Isolation needs root and namespaces
(as on CI); where the machine lacks them, that is what detect_protections reports instead.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from autograder.course import REPO, scratch_root
from autograder.run.execute import KernelStartError, SandboxedExecute, score_ignoring_stderr
from autograder.run.sandbox import (FIRST_SANDBOX_UID, SANDBOX_UIDS, Limits, claim_sandbox_uid,
                                    detect_protections, sweep_run_areas)

pytestmark = pytest.mark.xdist_group("sandbox")
FULL = detect_protections()
needs_sandbox = pytest.mark.skipif(FULL.missing() != [], reason="; ".join(FULL.missing()))
FAST = Limits(cell_timeout_s=20)


def run(sources, tmp_path, limits=FAST, **options):
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    helpers = tmp_path / "helpers"
    helpers.mkdir(exist_ok=True)
    (helpers / "helper.py").write_text("VALUE = 7\n")
    work = tmp_path / "submission"
    work.mkdir(exist_ok=True)
    (work / "student_module.py").write_text("VALUE = 'a file from the submission'\n")
    executor = SandboxedExecute(course_root=str(tmp_path), helpers_dir=str(helpers), limits=limits, **options)
    nb, _ = executor.preprocess(nb, {"metadata": {"path": str(work)}})
    return nb


def text(cell):
    return "".join(o.get("text", "") + o.get("evalue", "") for o in cell.outputs)


def processes_of(uid: int) -> list[str]:
    """Live (not zombie) processes with ``uid`` among their uids (read from ``status``: a process
    that made itself non-dumpable shows ``/proc/<pid>`` as root's)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                status = (entry / "status").read_text()
                uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
                if str(uid) in uids and "State:\tZ" not in status:
                    found.append(entry.name)
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return found


@needs_sandbox
def test_student_code_cannot_reach_the_course_tmp_or_network(tmp_path):
    secret = tmp_path / "source" / "hidden.txt"
    secret.parent.mkdir()
    secret.write_text("hidden tests live here")
    nb = run([
        "import os, socket\nfrom helper import VALUE\nprint(os.getuid(), VALUE)",
        f"print(os.path.exists({str(secret)!r}), os.path.exists({str(REPO / 'nbgrader_config.py')!r}))",
        f"try:\n    open({str(REPO / 'hacked.txt')!r}, 'w')\nexcept OSError as e:\n    print('no write', e.errno)",
        "open('/tmp/planted', 'w').write('x')\nprint(sorted(os.listdir('/tmp')))",
        "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\nexcept OSError:\n    print('no network')",
    ], tmp_path)
    uid, value = text(nb.cells[0]).split()
    assert FIRST_SANDBOX_UID <= int(uid) < FIRST_SANDBOX_UID + SANDBOX_UIDS and value == "7"
    assert text(nb.cells[1]).strip() == "False False"
    assert "no write 13" in text(nb.cells[2]) and not (REPO / "hacked.txt").exists()
    assert not Path("/tmp/planted").exists(), "the kernel's /tmp must be its own"
    assert "no network" in text(nb.cells[4])
    assert processes_of(int(uid)) == []


def test_a_dead_kernel_costs_only_its_cell(tmp_path):
    nb = run(["a = 41", "import os\nos._exit(1)", "print(a + 1)"], tmp_path)
    assert nb.cells[1].outputs[-1].ename == "KernelDied"
    assert text(nb.cells[2]).strip() == "42", "cells before the crash are replayed in a new kernel"
    events = nb.metadata["acceleration_lab"]["events"]
    assert [(e["cell"], e["event"]) for e in events] == [(1, "KernelDied")]


def test_a_hung_cell_ignoring_interrupts_is_stopped_and_grading_goes_on(tmp_path):
    nb = run(["import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
              "print('after')"], tmp_path, limits=Limits(cell_timeout_s=3))
    assert nb.cells[0].outputs[-1].ename == "CellTimeout"
    assert text(nb.cells[1]).strip() == "after"


def test_output_is_capped_in_bytes_as_it_arrives(tmp_path):
    nb = run(["print('x' * 20_000_000)", "for i in range(50_000):\n    print(i)", "print('small')"],
             tmp_path, limits=Limits(cell_timeout_s=20, output_bytes=10_000))
    assert len(nbformat.writes(nb)) < 100_000, "20 MB printed must not reach the notebook"
    assert "[output truncated" in text(nb.cells[0]) and "[output truncated" in text(nb.cells[1])
    assert text(nb.cells[2]).strip() == "small"


@needs_sandbox
def test_memory_and_process_limits_hold_and_nothing_is_left_running(tmp_path):
    nb = run([
        "import numpy as np, os\nprint(os.getuid())\ntry:\n    np.ones(10**10)\nexcept MemoryError:\n    print('memory limit')",
        # a process that hides its /proc entry from its owner's view (non-dumpable) and outlives the cell
        "import ctypes, os, time\nif os.fork() == 0:\n    os.setsid()\n    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\n"
        "    time.sleep(600)\n    os._exit(0)\nprint('hidden one started')",
        "import os, time\nchildren = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError:\n"
        "        break\n    if pid == 0:\n        time.sleep(600)\n        os._exit(0)\n    children += 1\n"
        "print('process limit', children)",
    ], tmp_path, limits=Limits(cell_timeout_s=20, processes=40))
    assert "memory limit" in text(nb.cells[0])
    assert "hidden one started" in text(nb.cells[1])
    assert text(nb.cells[2]).startswith("process limit") and int(text(nb.cells[2]).split()[-1]) < 40
    assert processes_of(int(text(nb.cells[0]).split()[0])) == []


def test_a_kernel_that_cannot_start_is_an_error_not_an_empty_grade(tmp_path):
    with pytest.raises(KernelStartError, match="did not start"):
        run(["print(1)"], tmp_path, limits=Limits(cell_timeout_s=20, memory_bytes=20 * 2**20))


def test_stderr_does_not_cost_points_but_errors_do():
    cell = new_code_cell("assert True")
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "points": 2, "solution": False,
                                 "schema_version": 3}
    cell.outputs = [new_output("stream", name="stderr", text="RuntimeWarning: divide by zero\n")]
    assert score_ignoring_stderr(cell) == (2, 2)
    cell.outputs.append(new_output("error", ename="AssertionError", evalue="", traceback=[]))
    assert score_ignoring_stderr(cell) == (0, 2)


@needs_sandbox
def test_sandbox_user_ids_are_never_shared():
    with claim_sandbox_uid() as first, claim_sandbox_uid() as second:
        assert first != second
    assert os.geteuid() == 0


def test_without_protections_the_grader_says_so_loudly_and_still_grades(tmp_path, monkeypatch, capsys):
    import autograder.grade as grade
    from autograder.run.sandbox import Protections

    monkeypatch.setattr(grade, "detect_protections", lambda: Protections(False, False, False, False))
    grade.warn_missing_protections()
    err = capsys.readouterr().err
    assert err.count("WARNING") >= 5 and "own user" in err and "network" in err and "other processes" in err
    nb = run(["print(6 * 7)"], tmp_path, sandbox=False)
    assert text(nb.cells[0]).strip() == "42"
    assert "turned off" in " ".join(nb.metadata["acceleration_lab"]["sandbox_missing"])


@needs_sandbox
def test_student_code_holds_nothing_of_the_graders(tmp_path, monkeypatch):
    """Environment, processes, descriptors, logs: none of the grader's reach the kernel."""
    monkeypatch.setenv("CANVAS_API_TOKEN", "secret-token-123")
    log = open(tmp_path / "grader.log", "w")
    os.set_inheritable(log.fileno(), True)
    try:
        nb = run([
            "import os, sys\nprint(sorted(k for k in os.environ if 'TOKEN' in k or 'SECRET' in k))",
            "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))",
            "targets = []\nfor fd in os.listdir('/proc/self/fd'):\n    try:\n        targets.append(os.readlink("
            "'/proc/self/fd/' + fd))\n    except OSError:\n        pass\n"
            "print([t for t in targets if t.startswith('/') and t != '/dev/null'])",
            "os.write(1, b'x' * 100)\nos.write(2, b'y' * 100)",
            "print('' in sys.path, any('submission' in p for p in sys.path))",
            "try:\n    import student_module\nexcept ImportError:\n    print('not importable')",
            "from helper import VALUE\nprint(VALUE)",
            "import helper\ntry:\n    open(helper.__file__, 'a').write('x')\nexcept OSError as e:\n    print('read-only', e.errno)",
        ], tmp_path)
    finally:
        log.close()
    assert text(nb.cells[0]).strip() == "[]", "the instructor's environment reached student code"
    assert text(nb.cells[1]).strip().startswith("[1"), "student code must see only its own processes"
    assert text(nb.cells[2]).strip() == "[]", "a file of the grader's reached the kernel"
    assert (tmp_path / "grader.log").read_text() == "", "the kernel wrote into the grader's log"
    assert text(nb.cells[4]).strip() == "False False", "the working directory must not be on sys.path"
    assert text(nb.cells[5]).strip() == "not importable"
    assert text(nb.cells[6]).strip() == "7"
    assert text(nb.cells[7]).strip().startswith("read-only")


@needs_sandbox
def test_scratch_space_has_a_total_limit_and_is_swept_after_a_kill(tmp_path):
    limits = dataclasses.replace(FAST, scratch_bytes=8 * 2**20, file_size_bytes=64 * 2**20)
    nb = run(["import os\nwritten = 0\ntry:\n    for i in range(100):\n        with open(f'f{i}', 'wb') as f:\n"
              "            f.write(b'x' * 2**20)\n        written += 1\nexcept OSError as e:\n"
              "    print('full after', written, 'MiB', e.errno)"], tmp_path, limits=limits)
    words = text(nb.cells[0]).split()
    assert words[:2] == ["full", "after"] and int(words[2]) <= 8, text(nb.cells[0])
    scratch = scratch_root(tmp_path)
    assert not any(scratch.iterdir()), "a finished run leaves no run area behind"
    (scratch / "run-left-by-a-killed-grader" / "work").mkdir(parents=True)
    assert sweep_run_areas(scratch) == 1 and not any(scratch.iterdir())
