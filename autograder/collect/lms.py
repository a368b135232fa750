"""Collect an LMS download into nbgrader's ``submitted/<student>/<assignment>/`` layout.

The download is a folder or a zip holding notebooks and zips whose names carry the student:
Canvas (``smithjane_12345_67890_01_loops_and_blocking.ipynb``, ``..._LATE_...``), Moodle
(``Jane Smith_12345_assignsubmission_file_/...``), a folder per student, or any name a regular
expression with the groups ``student`` and ``file`` (and, optionally, ``account``) describes.

Every byte of a download was written by a student, so:

- the student is read from the download's top-level entry only (Canvas's file name, Moodle's
  folder, the first folder), never from a name inside a student's zip or folders, and a file keeps
  only a cleaned base name: nothing lands in another student's folder or outside ``submitted/``;
- ids keep Unicode letters and digits (NFC); different names, or one name with two accounts,
  that clean to one id get a hash suffix and a warning;
- links, FIFOs and devices are never opened; a student's zip is opened one level deep and read
  in chunks within the ``MAX_*`` limits below, whatever its headers say;
- an entry that breaks a rule is refused with a reason, every other student is still collected,
  and the command exits 1.

A file that is already collected and differs is moved to ``.grading/replaced/`` first.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO, NamedTuple

from autograder.course import course_arguments, printable

MAX_STUDENT_BYTES = 100 * 2**20      # read from one student's files, uncompressed, refused ones included
MAX_FILE_BYTES = 25 * 2**20          # one collected file
MAX_STUDENT_FILES = 1_000            # files collected for one student
MAX_ARCHIVE_MEMBERS = 1_000          # entries in one student's zip
MAX_ARCHIVE_INDEX_BYTES = 2**20      # a student's zip's table of contents (central directory)
MAX_EXPANSION_RATIO = 200            # uncompressed / compressed bytes of a zip member ...
RATIO_FREE_BYTES = 2**20             # ... once it is larger than this
MAX_FOLDER_DEPTH = 32                # folders inside folders of a download
MAX_PATH_CHARS = 4_096               # a path inside the download (Linux's PATH_MAX)
MAX_ID_BYTES = 100                   # a student id, before a hash suffix
CHUNK_BYTES = 2**16                  # read at a time

PATTERNS = {
    "canvas": r"^(?P<student>[^_/]+)(?:_LATE)?_(?P<account>\d+)_\d+_(?P<file>.+)$",
    "moodle": r"^(?P<student>[^/]+?)_(?P<account>\d+)_assignsubmission_(?:file|onlinetext)_/?(?P<file>.+)$",
    "folders": r"^(?P<student>[^/]+)/(?P<file>.+)$",
}
SKIPPED_FOLDERS = {"__MACOSX", ".ipynb_checkpoints"}    # and every name that starts with "."
ZIP_UTF8_FLAG = 0x800
ZIP_ENCRYPTED_FLAG = 0x1


@dataclass(frozen=True)
class CollectLimits:
    """What one student's upload may cost; the defaults are the ``MAX_*`` constants."""

    student_bytes: int = MAX_STUDENT_BYTES
    file_bytes: int = MAX_FILE_BYTES
    student_files: int = MAX_STUDENT_FILES
    archive_members: int = MAX_ARCHIVE_MEMBERS
    archive_index_bytes: int = MAX_ARCHIVE_INDEX_BYTES
    expansion_ratio: float = MAX_EXPANSION_RATIO
    ratio_free_bytes: int = RATIO_FREE_BYTES


@dataclass
class Collected:
    """What a collection did: files written per student id, and everything left out, with why."""

    files: dict[str, list[str]] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)   # (where in the download, why)
    replaced: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Refused(Exception):
    """An entry of the download that is not collected; the message says why."""


class Opened(NamedTuple):
    """A file of the download, open: the bytes its header or ``fstat`` declares (not trusted), and
    for a zip member the compressed bytes it may expand from (None for a file of a folder)."""

    stream: BinaryIO
    declared_bytes: int
    compressed_bytes: int | None


@dataclass(frozen=True)
class Entry:
    """A file of the download: its ``/``-separated path there, why it is refused, how to open it."""

    path: str
    problem: str | None = None
    open: Callable[[], Opened] | None = None


@dataclass
class Budget:
    """What one student may still take: bytes read and files written."""

    bytes_left: int
    files_left: int


# -- student ids ------------------------------------------------------------------------------
def name_hash(text: str, digits: int) -> str:
    """The first ``digits`` hex digits of the SHA-256 of ``text`` (NFC, UTF-8)."""
    data = unicodedata.normalize("NFC", text).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:digits]


def clean_id(raw: str) -> str:
    """``raw`` as a folder name: NFC; Unicode letters, digits and marks, ``.``, ``_``, ``-`` kept;
    each run of anything else one ``_``; no ``.``, ``_`` or ``-`` at either end; at most
    ``MAX_ID_BYTES`` bytes. Empty when no letter or digit is left."""
    kept: list[str] = []
    for ch in unicodedata.normalize("NFC", raw.strip()):
        if unicodedata.category(ch)[0] in "LNM" or ch in "._-":
            kept.append(ch)
        elif not kept or kept[-1] != "_":
            kept.append("_")
    cleaned = "".join(kept).strip("._-")
    while len(cleaned.encode("utf-8")) > MAX_ID_BYTES:
        cleaned = cleaned[:-1].rstrip("._-")
    return cleaned if any(unicodedata.category(ch)[0] in "LN" for ch in cleaned) else ""


def student_id(raw: str) -> str:
    """The folder name for the student ``raw`` names: ``clean_id(raw)``, or ``student-`` and a hash
    of ``raw`` when that is empty (a name of only punctuation, ``.`` or ``..``)."""
    return clean_id(raw) or f"student-{name_hash(raw, 10)}"


def assign_ids(identities: Iterable[tuple[str, str]]) -> tuple[dict[tuple[str, str], str], list[str]]:
    """A distinct student id for each (name, account), and a warning for each id that is not the
    plain ``student_id`` of its name or is made from a hash. Ids differ even ignoring case (a
    case-insensitive disk would merge them); which name keeps the plain id depends only on the set
    of names: names already clean first, then in sorted order."""
    ids: dict[tuple[str, str], str] = {}
    holders: dict[str, str] = {}      # casefolded id -> the name that has it
    warnings: list[str] = []
    for identity in sorted(set(identities), key=lambda i: (student_id(i[0]) != i[0], i)):
        raw, account = identity
        base = candidate = student_id(raw)
        attempt = 0
        while candidate.casefold() in holders:
            attempt += 1
            candidate = f"{base}-{name_hash(f'{attempt}:{account}:{raw}', 8)}"
        holders[candidate.casefold()] = raw
        ids[identity] = candidate
        shown = f"'{printable(raw, 80)}'" + (f" (account {printable(account, 20)})" if account else "")
        if candidate != base:
            warnings.append(f"{shown} gives the id {base}, which '{printable(holders[base.casefold()], 80)}' "
                            f"already has: collected as {candidate}")
        elif not clean_id(raw):
            warnings.append(f"{shown} has no letter or digit: collected as {candidate}")
    return ids, warnings


# -- names inside the download ----------------------------------------------------------------
def is_skipped(name: str) -> bool:
    """A name collect passes over silently: ``__MACOSX``, ``.ipynb_checkpoints``, any dotfile."""
    return name.startswith(".") or name in SKIPPED_FOLDERS


def path_parts(name: str) -> list[str]:
    """The components of a path from a zip, ``\\`` read as ``/``, empty and ``.`` parts dropped
    (so absolute paths become relative); ``Refused`` for a ``..`` part."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Refused("its path climbs out of the archive with '..'")
    return parts


def safe_file_name(name: str) -> str | None:
    """The last component of ``name`` as a file name: NFC, control and line-separator characters
    replaced by ``_``, spaces at the ends removed. None for a dotfile (skipped); ``Refused`` when
    nothing usable is left or it is longer than 255 bytes."""
    base = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1])
    base = "".join("_" if unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp")
                   else ch for ch in base).strip()
    if base in ("", ".", ".."):
        raise Refused("it has no usable file name")
    if is_skipped(base):
        return None
    if len(base.encode("utf-8")) > 255:
        raise Refused("its file name is longer than 255 bytes")
    return base


def zip_member_name(info: zipfile.ZipInfo) -> str:
    """The member's name as UTF-8 text; ``Refused`` when the zip does not mark it UTF-8 and its
    bytes are not UTF-8 (zipfile reads such names as cp437, which gives them back unchanged)."""
    if info.flag_bits & ZIP_UTF8_FLAG:
        return info.orig_filename
    try:
        return info.orig_filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        raise Refused("its file name is not valid UTF-8") from None


def zip_shown_name(info: zipfile.ZipInfo) -> str:
    """The member's name for messages, bytes that are not UTF-8 shown as ``\\xNN``."""
    if info.flag_bits & ZIP_UTF8_FLAG:
        return info.orig_filename
    return info.orig_filename.encode("cp437").decode("utf-8", "backslashreplace")


def zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member is not read as a file (a link, a device, encrypted), or None."""
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return "a symbolic link (never followed)"
    if kind not in (0, stat.S_IFREG):
        return "not a regular file (a FIFO, socket or device)"
    if info.flag_bits & ZIP_ENCRYPTED_FLAG:
        return "encrypted"
    return None


def is_zip_folder(info: zipfile.ZipInfo) -> bool:
    return info.is_dir() or stat.S_IFMT(info.external_attr >> 16) == stat.S_IFDIR


def size_text(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:g} MiB" if n_bytes >= 2**20 else f"{int(n_bytes)} bytes"


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- the download: a folder or a zip ----------------------------------------------------------
def open_regular(root_fd: int, parts: tuple[str, ...]) -> Opened:
    """The regular file at ``parts`` below ``root_fd``, opened without following a link at any
    step and without blocking (a FIFO swapped in cannot hang collect)."""
    dir_fd, opened_fds = root_fd, []
    try:
        for part in parts[:-1]:
            dir_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            opened_fds.append(dir_fd)
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    finally:
        for opened_fd in opened_fds:
            os.close(opened_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        raise Refused("no longer a regular file")
    return Opened(os.fdopen(fd, "rb"), info.st_size, None)


def folder_entries(root_fd: int, dir_fd: int, parts: tuple[str, ...] = ()) -> Iterator[Entry]:
    """Every file below ``dir_fd``, looked at with ``lstat`` only: links, FIFOs, sockets, devices,
    hard links and names that are not UTF-8 come back as refused entries, never opened."""
    try:
        with os.scandir(dir_fd) as listing:
            children = sorted(listing, key=lambda child: child.name)
    except OSError as exc:
        yield Entry("/".join(parts) or ".", f"cannot be listed ({exc.strerror})")
        return
    for child in children:
        if is_skipped(child.name):
            continue
        child_parts = (*parts, child.name)
        path = "/".join(child_parts)
        try:
            child.name.encode("utf-8")
            info = child.stat(follow_symlinks=False)
        except UnicodeEncodeError:
            yield Entry(os.fsencode(path).decode("utf-8", "backslashreplace"), "its file name is not valid UTF-8")
            continue
        except OSError as exc:
            yield Entry(path, f"cannot be looked at ({exc.strerror})")
            continue
        if stat.S_ISLNK(info.st_mode):
            yield Entry(path, "a symbolic link (never followed)")
        elif stat.S_ISDIR(info.st_mode):
            if len(child_parts) > MAX_FOLDER_DEPTH:
                yield Entry(path, f"folders nested more than {MAX_FOLDER_DEPTH} deep")
                continue
            try:
                child_fd = os.open(child.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                   dir_fd=dir_fd)
            except OSError as exc:
                yield Entry(path, f"cannot be opened ({exc.strerror})")
                continue
            try:
                yield from folder_entries(root_fd, child_fd, child_parts)
            finally:
                os.close(child_fd)
        elif not stat.S_ISREG(info.st_mode):
            yield Entry(path, "not a regular file (a FIFO, socket or device)")
        elif info.st_nlink > 1:
            yield Entry(path, "a hard link to another file")
        else:
            yield Entry(path, open=partial(open_regular, root_fd, child_parts))


def open_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, archive_bytes: int) -> Opened:
    # a member cannot be compressed into more bytes than the whole archive has
    return Opened(archive.open(info), info.file_size, max(1, min(info.compress_size, archive_bytes)))


def zip_entries(archive: zipfile.ZipFile, archive_bytes: int) -> Iterator[Entry]:
    """Every file member of the download zip (folders and skipped names left out)."""
    for info in archive.infolist():
        if is_zip_folder(info):
            continue
        try:
            parts = path_parts(zip_member_name(info))
        except Refused as exc:
            yield Entry(zip_shown_name(info), str(exc))
            continue
        path = "/".join(parts)
        if not parts or any(is_skipped(part) for part in parts):
            continue
        if len(path) > MAX_PATH_CHARS:
            yield Entry(path[:200], f"its path is longer than {MAX_PATH_CHARS} characters")
        elif problem := zip_member_problem(info):
            yield Entry(path, problem)
        else:
            yield Entry(path, open=partial(open_zip_member, archive, info, archive_bytes))


@contextmanager
def download_entries(download: Path) -> Iterator[list[Entry]]:
    """The download's files in path order, openable while the context lasts."""
    if download.is_dir():
        root_fd = os.open(download, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield sorted(folder_entries(root_fd, root_fd), key=lambda entry: entry.path)
        finally:
            os.close(root_fd)
        return
    if not zipfile.is_zipfile(download):
        raise ValueError(f"{download} is neither a folder nor a zip")
    try:
        archive = zipfile.ZipFile(download)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{download} has a member name marked UTF-8 that is not; "
                         "unzip it into a folder and collect the folder") from exc
    with archive:
        yield sorted(zip_entries(archive, download.stat().st_size), key=lambda entry: entry.path)


# -- reading within the limits ----------------------------------------------------------------
def copy_bounded(opened: Opened, sink: BinaryIO, limit_bytes: int, too_large: str,
                 limits: CollectLimits) -> None:
    """Copy ``opened`` into ``sink`` in chunks, and ``Refused`` as soon as it passes
    ``limit_bytes`` (the reason ``too_large``) or, for a zip member, expands more than
    ``limits.expansion_ratio`` times. The declared size is checked first but never trusted; every
    chunk read is in ``sink``, the one that passed a limit included."""
    def check(n_bytes: int) -> None:
        if (opened.compressed_bytes is not None and n_bytes > limits.ratio_free_bytes
                and n_bytes > limits.expansion_ratio * opened.compressed_bytes):
            raise Refused(f"it expands more than {limits.expansion_ratio:g} times "
                          f"({opened.compressed_bytes} bytes compressed): a zip bomb?")
        if n_bytes > limit_bytes:
            raise Refused(too_large)

    check(opened.declared_bytes)
    read_bytes = 0
    while chunk := opened.stream.read(CHUNK_BYTES):
        sink.write(chunk)
        read_bytes += len(chunk)
        check(read_bytes)


def read_file(opened: Opened, budget: Budget, limits: CollectLimits) -> bytes:
    """The bytes of one file for a student, within the limit per file and what the student has
    left; every byte read counts against the student, refused or not."""
    if budget.files_left <= 0:
        raise Refused(f"the student has more than {limits.student_files} files")
    if budget.bytes_left < limits.file_bytes:
        limit_bytes = budget.bytes_left
        too_large = f"the student's files pass {size_text(limits.student_bytes)} uncompressed in total"
    else:
        limit_bytes = limits.file_bytes
        too_large = f"larger than {size_text(limits.file_bytes)}, the limit for one file"
    data = io.BytesIO()
    try:
        copy_bounded(opened, data, limit_bytes, too_large, limits)
    finally:
        budget.bytes_left -= data.tell()
    return data.getvalue()


class CappedReads:
    """A seekable binary file whose single reads may be capped at ``cap_bytes``: zipfile reads a
    zip's whole table of contents in one read while opening it, so the cap bounds the memory a
    forged table (millions of entries) could take. Set ``cap_bytes`` to None once it is open."""

    def __init__(self, file: BinaryIO, size_bytes: int, cap_bytes: int | None):
        self.file, self.size_bytes, self.cap_bytes = file, size_bytes, cap_bytes

    def read(self, n: int | None = -1) -> bytes:
        if self.cap_bytes is not None:
            wanted = self.size_bytes - self.file.tell() if n is None or n < 0 else n
            if wanted > self.cap_bytes:
                raise Refused(f"its table of contents is larger than {size_text(self.cap_bytes)}")
        return self.file.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def seekable(self) -> bool:
        return True


# -- writing ----------------------------------------------------------------------------------
def backup_path(path: Path) -> Path:
    """``path``, or ``path`` with ``-2``, ``-3``, ... before the suffix if that exists."""
    candidate, n = path, 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def write_collected(root: Path, student: str, assignment: str, name: str, data: bytes,
                    stamp: str, result: Collected) -> None:
    """Write ``data`` to ``submitted/<student>/<assignment>/<name>``; an earlier, different file
    there is moved to ``.grading/replaced/<stamp>/`` first. Links are never written through."""
    folder = root / "submitted" / student / assignment
    for path in (folder.parent, folder):
        if path.is_symlink():
            raise Refused(f"{path.relative_to(root)} is a symbolic link (never written through)")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise Refused(f"{target.relative_to(root)} is not a regular file")
    if target.exists():
        if target.stat().st_size == len(data) and target.read_bytes() == data:
            result.files.setdefault(student, []).append(name)
            return
        backup = backup_path(root / ".grading" / "replaced" / stamp / student / assignment / name)
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(target, backup)
        result.replaced.append(str(backup.relative_to(root)))
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with open(fd, "wb") as out:
        out.write(data)
    result.files.setdefault(student, []).append(name)


# -- one student's files ----------------------------------------------------------------------
@dataclass
class Target:
    """Where one student's files go, and what the student may still take."""

    root: Path
    student: str
    assignment: str
    stamp: str
    budget: Budget
    limits: CollectLimits


def collect_file(opened: Opened, name: str, target: Target, result: Collected) -> None:
    with opened.stream:
        data = read_file(opened, target.budget, target.limits)
    write_collected(target.root, target.student, target.assignment, name, data, target.stamp, result)
    target.budget.files_left -= 1


@contextmanager
def seekable_copy(opened: Opened, limits: CollectLimits) -> Iterator[BinaryIO]:
    """A student's zip as a seekable file: a file of a folder as it is, a member of the download
    zip copied to a temporary file (at most ``limits.student_bytes``)."""
    with opened.stream:
        if opened.compressed_bytes is None:
            yield opened.stream
            return
        with tempfile.TemporaryFile() as spool:
            copy_bounded(opened, spool, limits.student_bytes,
                         f"the zip is larger than {size_text(limits.student_bytes)}", limits)
            yield spool


def collect_archive(opened: Opened, where: str, target: Target, result: Collected) -> None:
    """Collect the files of a student's zip, one level deep: a zip inside it stays a file. The
    whole zip is refused when it cannot be opened or holds too many members; a member that cannot
    be read is refused alone."""
    limits = target.limits
    with seekable_copy(opened, limits) as archive_file:
        archive_bytes = archive_file.seek(0, os.SEEK_END)
        archive_file.seek(0)
        if archive_bytes > limits.student_bytes:
            raise Refused(f"the zip is larger than {size_text(limits.student_bytes)}")
        capped = CappedReads(archive_file, archive_bytes, limits.archive_index_bytes)
        try:
            archive = zipfile.ZipFile(capped)
        except Refused:
            raise
        except UnicodeDecodeError:
            raise Refused("not a readable zip: a member name marked UTF-8 is not UTF-8") from None
        except Exception as exc:  # any error of a student's zip refuses that zip only
            raise Refused(f"not a readable zip ({describe(exc)})") from None
        capped.cap_bytes = None
        with archive:
            members = archive.infolist()
            if len(members) > limits.archive_members:
                raise Refused(f"the zip holds {len(members)} members, more than {limits.archive_members}")
            for info in sorted(members, key=lambda member: member.orig_filename):
                if is_zip_folder(info):
                    continue
                member_where = f"{where}/{zip_shown_name(info)}"
                try:
                    parts = path_parts(zip_member_name(info))
                    name = safe_file_name(parts[-1]) if parts else None
                    if name is None or any(is_skipped(part) for part in parts):
                        continue
                    if problem := zip_member_problem(info):
                        raise Refused(problem)
                    collect_file(open_zip_member(archive, info, archive_bytes), name, target, result)
                except Refused as exc:
                    result.refused.append((member_where, str(exc)))
                except Exception as exc:  # a bad member refuses that member only
                    result.refused.append((member_where, f"cannot be collected ({describe(exc)})"))


# -- the whole download -----------------------------------------------------------------------
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` (a name in ``PATTERNS`` or a regex) compiled; ``ValueError`` without the groups."""
    regex = re.compile(PATTERNS.get(pattern, pattern))
    if "student" not in regex.groupindex or "file" not in regex.groupindex:
        raise ValueError("the pattern needs the named groups 'student' and 'file'")
    return regex


def owner_of(path: str, regex: re.Pattern[str]) -> tuple[tuple[str, str], str | None] | None:
    """(the student's (name, account), the file name) that ``path`` gives, None when the pattern
    does not match; ``Refused`` when the student is not named by the top-level entry."""
    match = regex.match(path)
    if match is None:
        return None
    top_end = path.find("/") if "/" in path else len(path)
    if match.start("student") < 0 or match.end("student") > top_end:
        raise Refused("the pattern takes the student from below the top-level entry; "
                      "only the top-level file or folder may name the student")
    if not match["file"]:
        raise Refused("the pattern finds no file name")
    account = match["account"] if "account" in regex.groupindex and match["account"] else ""
    return (unicodedata.normalize("NFC", match["student"]), account), safe_file_name(match["file"])


def collect(download: Path, root: Path, assignment: str, pattern: str,
            limits: CollectLimits = CollectLimits()) -> Collected:
    """Copy every notebook and file of ``download`` into ``root/submitted/`` (see the module docstring)."""
    regex = compile_pattern(pattern)
    result = Collected()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with download_entries(download) as entries:
        owners: dict[str, tuple[str, str]] = {}     # top-level entry -> the student it names
        matched: list[tuple[Entry, tuple[str, str], str]] = []
        for entry in entries:
            try:
                if entry.problem:
                    raise Refused(entry.problem)
                found = owner_of(entry.path, regex)
                if found is None:
                    result.unmatched.append(entry.path)
                    continue
                identity, name = found
                top = entry.path.split("/", 1)[0]
                if owners.setdefault(top, identity) != identity:
                    raise Refused(f"its name gives the student '{identity[0]}', "
                                  f"but '{top}' holds the files of '{owners[top][0]}'")
                if name is not None:
                    matched.append((entry, identity, name))
            except Refused as exc:
                result.refused.append((entry.path, str(exc)))
        ids, result.warnings = assign_ids(identity for _, identity, _ in matched)
        budgets: dict[str, Budget] = {}
        for entry, identity, name in matched:
            student = ids[identity]
            budget = budgets.setdefault(student, Budget(limits.student_bytes, limits.student_files))
            target = Target(root, student, assignment, stamp, budget, limits)
            try:
                opened = entry.open()
                if name.lower().endswith(".zip"):
                    collect_archive(opened, entry.path, target, result)
                else:
                    collect_file(opened, name, target, result)
            except Refused as exc:
                result.refused.append((entry.path, str(exc)))
            except Exception as exc:  # one student's bytes never stop the class
                result.refused.append((entry.path, f"cannot be collected ({describe(exc)})"))
    return result


def report_lines(result: Collected, root: Path, assignment: str, pattern: str) -> tuple[list[str], list[str]]:
    """(lines for stdout, lines for stderr): what was collected, then each entry left out and why."""
    n_files = sum(len(set(names)) for names in result.files.values())
    out = [f"collected {n_files} files for {len(result.files)} students into "
           f"{root / 'submitted'}/<student>/{assignment}/"]
    out += [f"kept the earlier version at {backup}" for backup in result.replaced]
    out += [f"warning: {warning}" for warning in result.warnings]
    err = [f"refused {printable(where)}: {printable(reason, 300)}" for where, reason in result.refused]
    err += [f"unmatched {printable(path)}: its name does not match --format '{printable(pattern, 100)}'"
            for path in result.unmatched]
    if err:
        err.append(f"{len(result.refused)} refused and {len(result.unmatched)} unmatched; "
                   "every other file was collected")
    return out, err


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
    except (OSError, ValueError, re.error, zipfile.BadZipFile) as exc:
        print(f"error: {printable(str(exc), 300)}", file=sys.stderr)
        return 1
    out, err = report_lines(result, args.root, args.assignment, args.format)
    print("\n".join(out))
    if err:
        print("\n".join(err), file=sys.stderr)
    return 1 if err else 0


if __name__ == "__main__":
    sys.exit(main())
