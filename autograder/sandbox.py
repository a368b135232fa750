"""Start a student's kernel where it cannot reach the course, and clean up after it.

The grader runs ``python autograder/sandbox.py [options] -- <kernel command>``; this launcher
(still privileged) hides the course, gives the kernel private ``/tmp``-like folders and no
network, applies resource limits, becomes an unprivileged user, and ``exec``s the kernel.
Whatever the operating system does not allow is reported by ``detect_protections`` and skipped;
the limits always apply.
"""
from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import resource
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18
MS_REMOUNT, MNT_DETACH = 32, 2
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")
HOLDING = Path("/mnt")  # covered by a private tmpfs inside the sandbox, never written outside it
FIRST_SANDBOX_UID, SANDBOX_UIDS = 61000, 256
LOCK_DIR = Path("/tmp") / "acceleration-lab-sandbox-users"


@dataclass(frozen=True)
class Limits:
    """Resource limits for one student's kernel (bytes and seconds)."""

    memory_bytes: int = 4 * 2**30
    processes: int = 64
    file_size_bytes: int = 64 * 2**20
    cell_timeout_s: float = 60.0
    submission_timeout_s: float = 600.0
    output_bytes: int = 100_000


@dataclass(frozen=True)
class Protections:
    """What this machine lets the grader do to keep student code away from the course."""

    separate_user: bool
    hidden_course: bool
    no_network: bool
    notes: tuple[str, ...] = field(default=())

    def missing(self) -> list[str]:
        """One line per protection that is not available, saying what follows from it."""
        lines = []
        if not self.separate_user:
            lines.append("student code runs as your own user: it can read and write what you can")
        if not self.hidden_course:
            lines.append("course files (source/, gradebook.db, nbgrader_config.py, other submissions) "
                         "are visible to student code")
        if not self.no_network:
            lines.append("student code has network access")
        return lines + list(self.notes)


@lru_cache(maxsize=1)
def detect_protections() -> Protections:
    """Probe once which protections work here (root, mount and network namespaces)."""
    if os.geteuid() != 0:
        return Protections(False, False, False, ("run the grader as root to enable the sandbox",))
    unshare = shutil.which("unshare")
    if unshare is None:
        return Protections(True, False, False, ("the 'unshare' command is missing",))
    mount_ok = (HOLDING.is_dir()
                and subprocess.run([unshare, "--mount", "true"], capture_output=True).returncode == 0)
    net_ok = subprocess.run([unshare, "--net", "true"], capture_output=True).returncode == 0
    # Running as another user needs the mount namespace: it makes this Python reachable to them.
    notes = () if mount_ok else ("mount namespaces are not available (unshare --mount failed or /mnt missing)",)
    return Protections(mount_ok, mount_ok, net_ok, notes)


@contextmanager
def claim_sandbox_uid():
    """Hold an unprivileged user id that no other grading on this machine is using.

    Each id has a lock file; the lock is held for as long as the ``with`` block runs (and is
    released by the OS if the grader is killed). Anything left running under the id by an
    earlier, killed grading is killed on the way in, and everything on the way out.
    """
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    for uid in range(FIRST_SANDBOX_UID, FIRST_SANDBOX_UID + SANDBOX_UIDS):
        handle = open(LOCK_DIR / f"{uid}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            kill_user_processes(uid)
            yield uid
        finally:
            kill_user_processes(uid)
            handle.close()
        return
    raise RuntimeError(f"all {SANDBOX_UIDS} sandbox user ids are in use")


def sweep_sandbox_users() -> None:
    """Kill what runs under any sandbox id that no grading holds (after a killed grader)."""
    if os.geteuid() != 0 or not LOCK_DIR.is_dir():
        return
    for lock in LOCK_DIR.glob("*.lock"):
        with open(lock, "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            kill_user_processes(int(lock.stem))


def kill_user_processes(uid: int) -> None:
    """Kill every process of ``uid``: nothing a student started outlives its grading."""
    if os.geteuid() != 0 or uid == 0:
        return
    for _ in range(3):  # a fork bomb may fork between rounds; its process limit bounds it
        subprocess.run(["kill", "-KILL", "-1"], user=uid, group=uid, extra_groups=[], capture_output=True)


def hidden_paths(*roots: Path) -> list[Path]:
    """The folders to cover, without any that another one already covers."""
    resolved = {root.resolve() for root in roots}
    return sorted(p for p in resolved if not any(other in p.parents for other in resolved))


def launcher_prefix(scratch: Path, uid: int | None, hide: list[Path], limits: Limits,
                    protections: Protections) -> list[str]:
    """The command to put before a kernel's command line to start that kernel in the sandbox."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--scratch", str(scratch),
           "--memory", str(limits.memory_bytes), "--processes", str(limits.processes),
           "--file-size", str(limits.file_size_bytes)]
    if uid is not None and protections.separate_user:
        cmd += ["--uid", str(uid)]
    if protections.hidden_course:
        cmd += [arg for path in hide for arg in ("--hide", str(path))]
    if protections.no_network:
        cmd += ["--no-network"]
    return cmd + ["--"]


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return libc


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(libc, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None):
    enc = (lambda s: s.encode() if s is not None else None)
    _check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _blocked_ancestors(path: Path) -> list[Path]:
    """Ancestors of ``path`` that other users cannot traverse (no o+x), outermost first."""
    return [a for a in reversed(path.parents) if a != Path("/") and not os.stat(a).st_mode & 0o001]


def enter_sandbox(scratch: Path, hide: list[Path], no_network: bool) -> None:
    """In this process: a private mount namespace hiding ``hide``, private temp dirs, no network.

    What the kernel needs (the scratch folder, this venv and the Python it is built on) is parked
    on a private tmpfs first and bound back at its own path after everything else is covered, so
    it stays reachable even under a covered or non-traversable folder such as ``/root``.
    """
    libc = _libc()
    keep = {scratch.resolve(): False}
    keep.update({Path(p).resolve(): True for p in {sys.prefix, sys.base_prefix}})
    blocked = sorted({a for path in keep for a in _blocked_ancestors(path)}, key=lambda a: len(a.parts))
    _check(libc.unshare(CLONE_NEWNS | (CLONE_NEWNET if no_network else 0)), "unshare")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    _mount(libc, "tmpfs", str(HOLDING), "tmpfs", MS_NOSUID | MS_NODEV, "size=4k,mode=0700")
    parked = {}
    for number, path in enumerate(keep):
        parked[path] = HOLDING / str(number)
        parked[path].mkdir()
        _mount(libc, str(path), str(parked[path]), None, MS_BIND | MS_REC)
    for path in hide:
        if path.is_dir():
            _mount(libc, "tmpfs", str(path), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
        elif path.exists():
            _mount(libc, "/dev/null", str(path), None, MS_BIND)
    for tmp in PRIVATE_TMP:
        if os.path.isdir(tmp):
            _mount(libc, "tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, "size=256m,mode=1777")
    for ancestor in blocked:  # one now covered is gone; mkdir below makes it again, traversable
        if ancestor.is_dir():
            _mount(libc, "tmpfs", str(ancestor), "tmpfs", MS_NOSUID | MS_NODEV, "size=4k,mode=0755")
    for path, read_only in keep.items():
        path.mkdir(parents=True, exist_ok=True)
        _mount(libc, str(parked[path]), str(path), None, MS_BIND | MS_REC)
        if read_only:
            _mount(libc, None, str(path), None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    _check(libc.umount2(str(HOLDING).encode(), MNT_DETACH), "umount holding area")


def apply_limits(memory_bytes: int, processes: int, file_size_bytes: int) -> None:
    """Resource limits inherited by the kernel and everything it starts."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_bytes, file_size_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def become(uid: int) -> None:
    """Drop every privilege: user and group ``uid``, no supplementary groups."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="start a kernel in the grading sandbox")
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--uid", type=int)
    parser.add_argument("--hide", type=Path, action="append", default=[])
    parser.add_argument("--no-network", action="store_true")
    parser.add_argument("--memory", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--file-size", type=int, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.hide or args.no_network:
        enter_sandbox(args.scratch, args.hide, args.no_network)
    os.chdir(args.scratch)
    if args.uid is not None:
        become(args.uid)
    apply_limits(args.memory, args.processes, args.file_size)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
