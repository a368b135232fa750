"""Collect an LMS download into nbgrader's ``submitted/<student>/<assignment>/`` layout.

The download is a folder or a zip holding notebooks and zips whose names carry the student:
Canvas (``smithjane_12345_67890_01_loops_and_blocking.ipynb``, ``..._LATE_...``), Moodle
(``Jane Smith_12345_assignsubmission_file_/...``) or any name a regular expression with the
groups ``student`` and ``file`` describes. A file that is already collected and differs is moved
to ``.grading/replaced/`` first; nothing is overwritten or dropped silently.
"""
from __future__ import annotations

import argparse
import io
import re
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from autograder.course import course_arguments

PATTERNS = {
    "canvas": r"^(?P<student>[^_/]+)(?:_LATE)?_\d+_\d+_(?P<file>.+)$",
    "moodle": r"^(?P<student>[^/]+?)_\d+_assignsubmission_(?:file|onlinetext)_/?(?P<file>.+)$",
    "folders": r"^(?P<student>[^/]+)/(?P<file>.+)$",
}
SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")
SKIPPED = re.compile(r"(^|/)(__MACOSX|\.ipynb_checkpoints)(/|$)|(^|/)\.")


@dataclass
class Collected:
    files: dict[str, list[str]] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


def student_id(raw: str) -> str:
    """A folder-safe student id: letters, digits, ``.``, ``_`` and ``-`` only."""
    cleaned = SAFE_ID.sub("_", raw.strip()).strip("._")
    if not cleaned:
        raise ValueError(f"no usable student id in {raw!r}")
    return cleaned


def _entries(download: Path):
    """(name relative to the download, bytes) for every file, zips opened one level deep."""
    if download.is_file() and zipfile.is_zipfile(download):
        with zipfile.ZipFile(download) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    yield info.filename, archive.read(info)
        return
    for path in sorted(p for p in download.rglob("*") if p.is_file()):
        yield path.relative_to(download).as_posix(), path.read_bytes()


def _expand(name: str, data: bytes):
    """A student's own zip becomes its files, named as if they sat beside it."""
    if name.lower().endswith(".zip") and zipfile.is_zipfile(io.BytesIO(data)):
        stem = name[: -len(".zip")]
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    yield f"{stem}/{info.filename}", archive.read(info)
    else:
        yield name, data


def collect(download: Path, root: Path, assignment: str, pattern: str) -> Collected:
    """Copy every notebook and file of ``download`` into ``root/submitted/``."""
    regex = re.compile(PATTERNS.get(pattern, pattern))
    if "student" not in regex.groupindex or "file" not in regex.groupindex:
        raise ValueError("the pattern needs the named groups 'student' and 'file'")
    result = Collected()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for outer, outer_data in _entries(download):
        for name, data in _expand(outer, outer_data):
            if SKIPPED.search(name):
                continue
            match = regex.match(name) or regex.match(PurePosixPath(name).name)
            if match is None:
                result.unmatched.append(name)
                continue
            student = student_id(match["student"])
            relative = PurePosixPath(match["file"])
            # keep only the file name: a student's folders inside a zip do not matter to grading
            target = root / "submitted" / student / assignment / relative.name
            if target.exists() and target.read_bytes() != data:
                backup = root / ".grading" / "replaced" / stamp / student / assignment / relative.name
                backup.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(target, backup)
                result.replaced.append(str(backup.relative_to(root)))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            result.files.setdefault(student, []).append(relative.name)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("download", type=Path, help="the LMS download: a folder or a zip")
    parser.add_argument("--format", default="canvas",
                        help=f"one of {', '.join(PATTERNS)}, or a regex with groups 'student' and 'file'")
    course_arguments(parser)
    args = parser.parse_args(argv)
    if not args.download.exists():
        print(f"error: {args.download} does not exist", file=sys.stderr)
        return 1
    try:
        result = collect(args.download, args.root.resolve(), args.assignment, args.format)
    except (ValueError, re.error, zipfile.BadZipFile) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    files = sum(len(v) for v in result.files.values())
    print(f"collected {files} files for {len(result.files)} students into "
          f"{args.root / 'submitted'}/<student>/{args.assignment}/")
    for backup in result.replaced:
        print(f"kept the earlier version at {backup}")
    if result.unmatched:
        print(f"not collected ({len(result.unmatched)}; their names do not match --format "
              f"{args.format!r}):", file=sys.stderr)
        for name in result.unmatched:
            print(f"  {name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
