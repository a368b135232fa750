"""What every stage of the pipeline shares: the course layout, its settings, and nbgrader cells.

A course root holds ``source/``, ``release/``, ``submitted/``, ``autograded/``, ``feedback/``,
``gradebook.db``, ``grades.csv``, ``reports/`` and ``.grading/`` (``STAGING``: staged
submissions, the journal, the answer key, worker logs, run areas). This repository is the
default course; ``make demo`` makes another one under ``demo/``. Every setting the stages rely
on is read from this repository's ``nbgrader_config.py``.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from autograder.run.sandbox import Limits

REPO = Path(__file__).resolve().parent.parent
STAGING = ".grading"
ASSIGNMENT = "acceleration"
# ipykernel logs a warning about its TCP transport at every start; it is not the notebook's output.
QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]


@lru_cache(maxsize=1)
def nbgrader_config() -> Config:
    """This repository's ``nbgrader_config.py``, loaded once."""
    return PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()


def sandbox_limits(config: Config | None = None) -> Limits:
    """The sandbox's limits and timeouts, from ``c.Sandbox`` in ``nbgrader_config.py``.

    The grading kernel and the outside check's process obey the same values.
    """
    section = (config or nbgrader_config()).get("Sandbox", {})
    unknown = set(section) - set(Limits.__dataclass_fields__)
    if unknown:
        raise ValueError(f"nbgrader_config.py: unknown Sandbox settings {sorted(unknown)} "
                         f"(known: {', '.join(Limits.__dataclass_fields__)})")
    return Limits(**dict(section))


def scratch_root(root: Path) -> Path:
    """Where the course's run areas go: a folder of its own under ``/tmp``, named by a hash of the
    course root. A kernel's socket files live in its run area, and a socket's path must stay under
    108 bytes whatever the course's path; the sandbox keeps the area reachable and ``/tmp`` private."""
    digest = hashlib.sha256(os.fsencode(root.resolve())).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"acclab-scratch-{digest}"


def gradebook_url(root: Path, timeout_s: float | None = None) -> str:
    """The course's nbgrader gradebook; ``timeout_s`` makes a writer wait that long for a lock."""
    return f"sqlite:///{root / 'gradebook.db'}" + (f"?timeout={timeout_s:g}" if timeout_s else "")


def tool_environment(**extra: str) -> dict[str, str]:
    """Environment for the grader's own tools (nbgrader, the workers): this venv first on PATH.

    nbgrader runs ``alembic`` from PATH, imports this repo's preprocessors (``PYTHONPATH``) and
    reads this repo's ``nbgrader_config.py`` whatever the course root (``JUPYTER_CONFIG_PATH``).
    Student code never gets this environment (``autograder.run.sandbox.allowed_environment``).
    """
    env = dict(os.environ, JUPYTER_PREFER_ENV_PATH="1", PYDEVD_DISABLE_FILE_VALIDATION="1", **extra)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("JUPYTER_CONFIG_PATH", "")]))
    return env


def ipc_kernel_manager(folder: Path) -> AsyncKernelManager:
    """A kernel manager whose kernel talks over socket files in ``folder``, not TCP ports.

    With TCP, kernels started at the same moment can pick the same free port and one dies
    ("Address already in use"); socket files cannot collide. A client given this manager must
    set ``owns_km = True`` or nbclient leaves the kernel running.
    """
    return AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(folder / "kernel"))


def course_arguments(parser: argparse.ArgumentParser, student_help: str | None = None) -> argparse.ArgumentParser:
    """Add the options every course command takes: ``--root``, ``--assignment`` and, with
    ``student_help``, a repeatable ``--student``."""
    parser.add_argument("--root", type=Path, default=REPO, help="course root (default: this repo)")
    parser.add_argument("--assignment", default=ASSIGNMENT)
    if student_help:
        parser.add_argument("--student", action="append", help=student_help)
    return parser


def nbgrader_meta(cell: nbformat.NotebookNode) -> dict:
    """The cell's nbgrader metadata, or an empty dict for a plain cell."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def is_autograded_test(cell: nbformat.NotebookNode) -> bool:
    """A code cell whose points nbgrader awards by running it (grade, not solution)."""
    meta = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def printable(text: str, limit: int = 200) -> str:
    """``text`` safe to print, log and write to a CSV: undecodable bytes of a file name escaped,
    control characters replaced, at most ``limit`` characters."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # a file name's undecodable bytes, as they were
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else "?" for ch in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def discover_students(root: Path, assignment: str) -> list[str]:
    """Student ids with a ``submitted/<student>/<assignment>/`` folder (not a link), sorted."""
    submitted = root / "submitted"
    if not submitted.is_dir():
        return []
    return sorted(entry.name for entry in os.scandir(submitted)
                  if entry.is_dir(follow_symlinks=False) and (Path(entry.path) / assignment).is_dir())


def valid_student_id(student: str) -> str | None:
    """Why ``student`` (a folder name) cannot be graded, or None."""
    try:
        student.encode("utf-8")
    except UnicodeEncodeError:
        return "the folder name is not valid UTF-8: rename it (make collect makes safe names)"
    if not student.strip() or student.startswith(".") or any(not ch.isprintable() for ch in student):
        return "the folder name is empty, hidden or has control characters: rename it"
    return None
