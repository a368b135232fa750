"""Stage one submission for grading: ``submitted/<student>/<assignment>/`` ->
``.grading/submitted/<student>/<assignment>/``, as nbgrader must see it.

Only notebooks are staged, and only from regular files: nothing else in a submission is ever
imported, opened by student code or followed. Each file is looked at without following links
(``lstat``, then ``open`` with ``O_NOFOLLOW``); a symlink, a hard link, a FIFO, a device, a file
whose name is not valid UTF-8 and a notebook over ``MAX_NOTEBOOK_BYTES`` are refused and named.
Renamed notebooks (``01_loops_and_blocking (1).ipynb``) are matched to the release, and every
notebook is repaired from it (``repair.py``). ``submitted/`` itself is never changed.
"""
from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder.collect.repair import Repair, match_notebook_name, read_notebook, repair_notebook
from autograder.course import STAGING, printable

MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_FILES = 2_000            # entries looked at in one submission
TIMESTAMP = "timestamp.txt"  # nbgrader's record of when the submission was made
MAX_TIMESTAMP_BYTES = 100


@dataclass
class Staged:
    """What staging found: notebooks staged, problems per notebook, repairs, and files refused or ignored."""

    present: set[str] = field(default_factory=set)
    problems: dict[str, str] = field(default_factory=dict)
    repairs: list[Repair] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)       # renamed notebooks matched
    refused: list[str] = field(default_factory=list)     # links, devices, odd names, oversized: never opened
    ignored: list[str] = field(default_factory=list)     # regular files that are not notebooks: never used


def _relative(path: Path, root: Path) -> str:
    return printable(os.fsdecode(path.relative_to(root)), 120)


def _walk(folder: Path, staged: Staged, root: Path) -> list[tuple[Path, os.stat_result]]:
    """Regular files under ``folder`` (links never followed); everything else refused."""
    found: list[tuple[Path, os.stat_result]] = []
    pending = [folder]
    seen = 0
    while pending:
        current = pending.pop()
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            staged.refused.append(f"{_relative(current, root) or '.'}: cannot be listed ({exc.strerror})")
            continue
        for entry in entries:
            seen += 1
            path = Path(entry.path)
            if seen > MAX_FILES:
                staged.refused.append(f"more than {MAX_FILES} files: the rest were not looked at")
                return found
            try:
                name_ok = entry.name.encode("utf-8", "strict") is not None
            except UnicodeEncodeError:
                name_ok = False
            try:
                info = os.lstat(path)
            except OSError:
                continue
            where = _relative(path, root)
            if not name_ok:
                staged.refused.append(f"{where}: the file name is not valid UTF-8")
            elif stat.S_ISLNK(info.st_mode):
                staged.refused.append(f"{where}: a symbolic link (never followed)")
            elif stat.S_ISDIR(info.st_mode):
                pending.append(path)
            elif not stat.S_ISREG(info.st_mode):
                staged.refused.append(f"{where}: not a regular file (a FIFO, socket or device)")
            elif info.st_nlink > 1:
                staged.refused.append(f"{where}: a hard link to another file")
            else:
                found.append((path, info))
    return found


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is still a regular file (not a link), at most ``limit`` of them;
    ``ValueError`` otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            raise ValueError("no longer a regular file")
        if info.st_size > limit:
            raise ValueError(f"{info.st_size} bytes, over the {limit}-byte limit")
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > limit:
                raise ValueError(f"over the {limit}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def stage_submission(root: Path, assignment: str, student: str, notebooks: list[str]) -> Staged:
    """Copy one submission's notebooks, repaired, into ``.grading/submitted/`` (see the module docstring)."""
    source = root / "submitted" / student / assignment
    target = root / STAGING / "submitted" / student / assignment
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    staged = Staged()
    if source.is_symlink() or not source.is_dir():
        staged.refused.append(f"{assignment}: the submission folder is a symbolic link (never followed)")
        return staged
    chosen: dict[str, tuple[Path, os.stat_result]] = {}
    for path, info in _walk(source, staged, source):
        name = match_notebook_name(path.name, notebooks) if path.parent == source else None
        if name is None:
            if path.parent == source and path.name == TIMESTAMP and info.st_size <= MAX_TIMESTAMP_BYTES:
                try:
                    (target / TIMESTAMP).write_bytes(read_regular_file(path, MAX_TIMESTAMP_BYTES))
                except (OSError, ValueError) as exc:
                    staged.refused.append(f"{TIMESTAMP}: {exc}")
            else:
                staged.ignored.append(_relative(path, source))
            continue
        exact = path.name == f"{name}.ipynb"
        previous = chosen.get(name)
        if previous is None or exact or (previous[0].name != f"{name}.ipynb" and info.st_mtime > previous[1].st_mtime):
            if previous is not None:
                staged.ignored.append(_relative(previous[0], source))
            chosen[name] = (path, info)
        else:
            staged.ignored.append(_relative(path, source))
    released_dir = root / "release" / assignment
    for name, (path, _) in sorted(chosen.items()):
        shown = _relative(path, source)
        if path.name != f"{name}.ipynb":
            staged.notes.append(f"graded '{shown}' as {name}.ipynb")
        try:
            submitted = read_notebook(read_regular_file(path, MAX_NOTEBOOK_BYTES), shown)
            repaired, repairs = repair_notebook(submitted, nbformat.read(released_dir / f"{name}.ipynb", as_version=4))
            nbformat.write(repaired, target / f"{name}.ipynb")
        except (OSError, ValueError) as exc:
            staged.problems[name] = printable(f"{shown}: {exc}" if shown not in str(exc) else str(exc), 300)
            continue
        except Exception as exc:  # a notebook nbformat reads but repair cannot handle
            staged.problems[name] = printable(f"{shown} could not be repaired ({type(exc).__name__})", 300)
            continue
        staged.repairs += [Repair(r.kind, r.grade_id, f"{name}: {r.text}") for r in repairs]
        staged.present.add(name)
    return staged
