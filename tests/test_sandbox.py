"""The grading kernel: isolated from the course, limited, and survivable when it dies or hangs.

These run SandboxedExecute directly on small notebooks. Isolation needs root and namespaces
(as on CI); where the machine lacks them, that is what detect_protections reports instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from autograder.build import REPO
from autograder.execute import KernelStartError, SandboxedExecute, score_ignoring_stderr
from autograder.sandbox import FIRST_SANDBOX_UID, SANDBOX_UIDS, claim_sandbox_uid, detect_protections

pytestmark = pytest.mark.xdist_group("sandbox")
FULL = detect_protections()
needs_sandbox = pytest.mark.skipif(FULL.missing() != [], reason="; ".join(FULL.missing()))


def run(sources, tmp_path, **options):
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "helper.py").write_text("VALUE = 7\n")
    executor = SandboxedExecute(timeout=options.pop("timeout", 20), course_root=str(tmp_path), **options)
    nb, _ = executor.preprocess(nb, {"metadata": {"path": str(work)}})
    return nb


def text(cell):
    return "".join(o.get("text", "") + o.get("evalue", "") for o in cell.outputs)


def processes_of(uid: int) -> list[str]:
    """Live (not zombie) processes of ``uid``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                if "State:\tZ" not in (entry / "status").read_text():
                    found.append(entry.name)
        except (FileNotFoundError, ProcessLookupError):
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
              "print('after')"], tmp_path, timeout=3)
    assert nb.cells[0].outputs[-1].ename == "CellTimeout"
    assert text(nb.cells[1]).strip() == "after"


def test_output_is_capped_in_bytes_as_it_arrives(tmp_path):
    nb = run(["print('x' * 20_000_000)", "for i in range(50_000):\n    print(i)", "print('small')"],
             tmp_path, output_bytes=10_000)
    assert len(nbformat.writes(nb)) < 100_000, "20 MB printed must not reach the notebook"
    assert "[output truncated" in text(nb.cells[0]) and "[output truncated" in text(nb.cells[1])
    assert text(nb.cells[2]).strip() == "small"


@needs_sandbox
def test_memory_and_process_limits_hold_and_nothing_is_left_running(tmp_path):
    nb = run([
        "import numpy as np, os\nprint(os.getuid())\ntry:\n    np.ones(10**10)\nexcept MemoryError:\n    print('memory limit')",
        "import os, time\nchildren = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError:\n"
        "        break\n    if pid == 0:\n        time.sleep(600)\n        os._exit(0)\n    children += 1\n"
        "print('process limit', children)",
    ], tmp_path, max_processes=40)
    assert "memory limit" in text(nb.cells[0])
    assert text(nb.cells[1]).startswith("process limit") and int(text(nb.cells[1]).split()[-1]) < 40
    assert processes_of(int(text(nb.cells[0]).split()[0])) == []


def test_a_kernel_that_cannot_start_is_an_error_not_an_empty_grade(tmp_path):
    with pytest.raises(KernelStartError, match="did not start"):
        run(["print(1)"], tmp_path, memory_bytes=20 * 2**20)


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
    from autograder.sandbox import Protections

    monkeypatch.setattr(grade, "detect_protections", lambda: Protections(False, False, False))
    grade.warn_missing_protections()
    err = capsys.readouterr().err
    assert err.count("WARNING") >= 4 and "own user" in err and "network" in err
    nb = run(["print(6 * 7)"], tmp_path, sandbox=False)
    assert text(nb.cells[0]).strip() == "42"
    assert "turned off" in " ".join(nb.metadata["acceleration_lab"]["sandbox_missing"])
