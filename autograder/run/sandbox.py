"""Start student code where it cannot reach the grader, and clean up after it.

The grader runs ``python autograder/run/sandbox.py [options] -- <command>``. This launcher, still
privileged, puts the command in namespaces of its own: the course and this repository covered,
private ``/tmp``-like folders, no network, its own process ids and ``/proc`` (other processes,
their command lines and environments are invisible). It closes every inherited file descriptor
but the protocol's, applies resource limits, drops to an unprivileged user that can gain no
privileges, and ``exec``s the command. What the operating system does not allow is reported by
``detect_protections`` and skipped; the resource limits always apply.

Each run gets a run area in the course's scratch folder (``autograder.course.scratch_root``):
``work/`` (the working directory and home, a size-limited tmpfs) and ``helpers/`` (the release's
helper modules, read-only, the only place on ``sys.path`` besides the standard library and the
venv). Areas left by a killed grader are removed by ``sweep_run_areas`` at the next start.

This file runs as a script before anything else is imported: it uses the standard library only.
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
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID = 0x00020000, 0x40000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 4096, 16384, 1 << 18
MS_REMOUNT, MNT_DETACH = 32, 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_THP_DISABLE = 1, 38, 41
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")
HOLDING = Path("/mnt")  # covered by a private tmpfs inside the sandbox, never written outside it
FIRST_SANDBOX_UID, SANDBOX_UIDS = 61000, 256
LOCK_DIR = Path("/tmp") / "acceleration-lab-sandbox-users"  # user ids are machine-wide, so is this
STDIO = ("none", "pipes")  # kernel: nothing on 0-2; check process: the protocol on 0 and 1


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed process (bytes and seconds); set in ``nbgrader_config.py``."""

    memory_bytes: int = 4 * 2**30
    processes: int = 64
    file_size_bytes: int = 64 * 2**20
    scratch_bytes: int = 256 * 2**20
    output_bytes: int = 100_000
    cell_timeout_s: float = 60.0
    notebook_timeout_s: float = 300.0
    check_timeout_s: float = 240.0


@dataclass(frozen=True)
class Protections:
    """What this machine lets the grader do to keep student code away from the grader."""

    separate_user: bool
    hidden_course: bool
    no_network: bool
    own_processes: bool = False
    notes: tuple[str, ...] = field(default=())

    def missing(self) -> list[str]:
        """One line per protection that is not available, saying what follows from it."""
        lines = []
        if not self.separate_user:
            lines.append("student code runs as your own user: it can read and write what you can")
        if not self.hidden_course:
            lines.append("course files (source/, gradebook.db, nbgrader_config.py, other submissions) "
                         "are visible to student code, and its scratch space has no total size limit")
        if not self.no_network:
            lines.append("student code has network access")
        if not self.own_processes:
            lines.append("student code sees the machine's other processes, their command lines and "
                         "environments")
        return lines + list(self.notes)


@lru_cache(maxsize=1)
def detect_protections() -> Protections:
    """Probe once which protections work here (root; mount, network and process-id namespaces)."""
    if os.geteuid() != 0:
        return Protections(False, False, False, False, ("run the grader as root to enable the sandbox",))
    unshare = shutil.which("unshare")
    if unshare is None:
        return Protections(True, False, False, False, ("the 'unshare' command is missing",))

    def works(*options: str) -> bool:
        return subprocess.run([unshare, *options, "true"], capture_output=True).returncode == 0

    mount_ok = HOLDING.is_dir() and works("--mount")
    net_ok = works("--net")
    pid_ok = mount_ok and works("--mount", "--pid", "--fork", "--mount-proc")
    # Running as another user needs the mount namespace: it makes this Python reachable to them.
    notes = () if mount_ok else ("mount namespaces are not available (unshare --mount failed or /mnt missing)",)
    return Protections(mount_ok, mount_ok, net_ok, pid_ok, notes)


# -- sandbox user ids ---------------------------------------------------------------------
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


def _has_processes(uid: int) -> bool:
    """Whether any process on the machine has ``uid`` as a real, effective, saved or filesystem
    uid. ``/proc/<pid>/status`` says so even for a process that made itself non-dumpable (which
    makes ``/proc/<pid>`` itself root's), so no process of ``uid`` can hide from this scan; a
    process it misses because it was being forked has a parent of ``uid`` that it sees."""
    wanted = str(uid)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as status:
                for line in status:
                    if line.startswith(b"Uid:"):
                        if wanted in line.decode().split()[1:]:
                            return True
                        break
        except OSError:
            continue  # it ended meanwhile
    return False


def kill_user_processes(uid: int) -> None:
    """Kill every process of ``uid``: nothing a student started outlives its grading.

    A child process becomes ``uid`` and sends SIGKILL to everything it may signal (``kill(-1)``:
    every process of ``uid`` but itself), until a round finds nothing left; a fork bomb forking
    between rounds is bounded by its process limit and the number of rounds.
    """
    if os.geteuid() != 0 or uid == 0 or not _has_processes(uid):
        return
    for _ in range(5):
        child = os.fork()
        if child == 0:
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
                os._exit(0)
            except ProcessLookupError:
                os._exit(1)  # nothing of uid's was left
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(child, 0)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            return


# -- run areas ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RunArea:
    """Where one sandboxed process runs: ``work`` (its cwd and home) and read-only ``helpers``."""

    path: Path
    work: Path
    helpers: Path
    limited: bool  # work is a tmpfs of at most Limits.scratch_bytes


def _mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == target for line in mounts)


def make_run_area(scratch_root: Path, helpers: list[Path], uid: int | None, limits: Limits,
                  protections: Protections) -> RunArea:
    """A fresh run area: ``work/`` owned by ``uid`` (a tmpfs of ``limits.scratch_bytes`` when the
    sandbox is on) and ``helpers/`` holding copies of ``helpers``, read-only to the sandbox user."""
    scratch_root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="run-", dir=scratch_root))
    os.chmod(path, 0o755)
    work, helper_dir = path / "work", path / "helpers"
    work.mkdir()
    helper_dir.mkdir()
    for helper in helpers:
        shutil.copyfile(helper, helper_dir / helper.name)
        os.chmod(helper_dir / helper.name, 0o444)
    os.chmod(helper_dir, 0o555)
    limited = protections.hidden_course and os.geteuid() == 0
    if limited:
        size = max(1, limits.scratch_bytes // 1024)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}k,mode=0700,nosuid,nodev", "tmpfs", str(work)],
                       check=True, capture_output=True)
    cache = Path.home() / ".cache" / "matplotlib"
    if cache.is_dir():  # a warm font cache saves seconds per start
        shutil.copytree(cache, work / ".matplotlib", dirs_exist_ok=True)
    if uid is not None:
        for item in [work, *work.rglob("*")]:
            os.chown(item, uid, uid, follow_symlinks=False)
    os.chmod(work, 0o700)
    return RunArea(path, work, helper_dir, limited)


def remove_run_area(area: RunArea | Path) -> None:
    """Unmount and delete a run area (whatever its processes left in it)."""
    path = area.path if isinstance(area, RunArea) else area
    work = path / "work"
    if os.geteuid() == 0 and work.is_dir() and _mounted(work):
        subprocess.run(["umount", "--lazy", str(work)], capture_output=True)
    helpers = path / "helpers"
    if helpers.is_dir():
        os.chmod(helpers, 0o755)
    shutil.rmtree(path, ignore_errors=True)


def sweep_run_areas(scratch_root: Path) -> int:
    """Remove every run area under ``scratch_root`` (left by a killed grader); the count removed.

    Call only while holding the course's grading lock, when no sandboxed process of this course runs.
    """
    if not scratch_root.is_dir():
        return 0
    areas = [p for p in scratch_root.iterdir() if p.is_dir() and p.name.startswith("run-")]
    for area in areas:
        remove_run_area(area)
    return len(areas)


# -- the environment student code gets ----------------------------------------------------
BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
COURSE_PREFIX = "ACCELERATION_LAB_"


def allowed_environment(area: RunArea, threads: int, **extra: str) -> dict[str, str]:
    """The whole environment of a sandboxed process, built from an allow-list.

    What Python, NumPy and its BLAS, matplotlib, IPython and Jupyter need, grading mode, and the
    course's own ``ACCELERATION_LAB_*`` variables; never the instructor's other variables
    (tokens, credentials, paths). ``extra`` adds or replaces entries.
    """
    work = str(area.work)
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": work, "TMPDIR": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "PYTHONPATH": str(area.helpers), "PYTHONSAFEPATH": "1", "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
        "MPLCONFIGDIR": f"{work}/.matplotlib", "IPYTHONDIR": f"{work}/.ipython",
        "JUPYTER_RUNTIME_DIR": f"{work}/.runtime", "JUPYTER_CONFIG_DIR": f"{work}/.jupyter",
        "JUPYTER_DATA_DIR": f"{work}/.local/share/jupyter", "JUPYTER_PREFER_ENV_PATH": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1", "NBGRADER_EXECUTION": "autograde",
        # large allocations each get their own mapping and return it when freed, so the
        # kernel's peak-RSS counter follows the arrays a call allocates (the memory checks)
        "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072",
        **{name: str(threads) for name in BLAS_THREADS},
    }
    env.update({name: value for name, value in os.environ.items() if name.startswith(COURSE_PREFIX)})
    env.update(extra)
    return env


# -- the launcher ---------------------------------------------------------------------------
def hidden_paths(*roots: Path) -> list[Path]:
    """The folders to cover, without any that another one already covers."""
    resolved = {root.resolve() for root in roots}
    return sorted(p for p in resolved if not any(other in p.parents for other in resolved))


def launcher_prefix(area: RunArea, uid: int | None, hide: list[Path], limits: Limits,
                    protections: Protections, stdio: str = "none") -> list[str]:
    """The command to put before a command line to run it in the sandbox, in ``area``."""
    if stdio not in STDIO:
        raise ValueError(f"stdio must be one of {STDIO}, got {stdio!r}")
    cmd = [sys.executable, "-I", str(Path(__file__).resolve()), "--work", str(area.work),
           "--readonly", str(area.helpers), "--memory", str(limits.memory_bytes),
           "--processes", str(limits.processes), "--file-size", str(limits.file_size_bytes), "--stdio", stdio]
    if uid is not None and protections.separate_user:
        cmd += ["--uid", str(uid)]
    if protections.hidden_course:
        cmd += [arg for path in hide for arg in ("--hide", str(path))]
    if protections.no_network:
        cmd += ["--no-network"]
    if protections.own_processes:
        cmd += ["--own-processes"]
    return cmd + ["--"]


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
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


def enter_sandbox(libc, work: Path, readonly: list[Path], hide: list[Path], no_network: bool,
                  own_processes: bool) -> None:
    """In this process: new mount (and network, process-id) namespaces hiding ``hide``, private
    temp dirs; ``work`` stays writable and ``readonly`` (with this venv and its Python) readable.

    What must stay reachable is parked on a private tmpfs first and bound back at its own path
    after everything else is covered, so it stays reachable even under a covered or
    non-traversable folder such as ``/root`` or the course itself.
    """
    keep = {work.resolve(): False}
    keep.update({Path(p).resolve(): True for p in {sys.prefix, sys.base_prefix, *map(str, readonly)}})
    blocked = sorted({a for path in keep for a in _blocked_ancestors(path)}, key=lambda a: len(a.parts))
    flags = CLONE_NEWNS | (CLONE_NEWNET if no_network else 0) | (CLONE_NEWPID if own_processes else 0)
    _check(libc.unshare(flags), "unshare")
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
            _mount(libc, "tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    for ancestor in blocked:  # one now covered is gone; mkdir below makes it again, traversable
        if ancestor.is_dir():
            _mount(libc, "tmpfs", str(ancestor), "tmpfs", MS_NOSUID | MS_NODEV, "size=4k,mode=0755")
    for path, read_only in keep.items():
        path.mkdir(parents=True, exist_ok=True)
        _mount(libc, str(parked[path]), str(path), None, MS_BIND | MS_REC)
        if read_only:
            _mount(libc, None, str(path), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _check(libc.umount2(str(HOLDING).encode(), MNT_DETACH), "umount holding area")


def apply_limits(memory_bytes: int, processes: int, file_size_bytes: int) -> None:
    """Resource limits inherited by the command and everything it starts."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_bytes, file_size_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def become(uid: int) -> None:
    """Drop every privilege: user and group ``uid``, no supplementary groups."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _set_stdio(stdio: str) -> None:
    """Point the standard streams where ``stdio`` says and close every other descriptor, so no
    file of the grader's (its log, the gradebook) is reachable from inside."""
    null = os.open(os.devnull, os.O_RDWR)
    keep = (0, 1) if stdio == "pipes" else ()
    for fd in (0, 1, 2):
        if fd not in keep:
            os.dup2(null, fd)
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _supervise(child: int) -> None:
    """Forward interrupts to ``child`` (the first process of the new process-id namespace), kill
    it on termination, and leave with its exit status."""
    def forward(signum, _frame):
        os.kill(child, signal.SIGINT if signum == signal.SIGINT else signal.SIGKILL)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="run a command in the grading sandbox")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--readonly", type=Path, action="append", default=[])
    parser.add_argument("--uid", type=int)
    parser.add_argument("--hide", type=Path, action="append", default=[])
    parser.add_argument("--no-network", action="store_true")
    parser.add_argument("--own-processes", action="store_true")
    parser.add_argument("--memory", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--file-size", type=int, required=True)
    parser.add_argument("--stdio", choices=STDIO, default="none")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    libc = _libc()
    isolated = bool(args.hide or args.no_network or args.own_processes)
    if isolated:
        enter_sandbox(libc, args.work, args.readonly, args.hide, args.no_network, args.own_processes)
    if args.own_processes:
        child = os.fork()
        if child:
            _set_stdio("none")
            _supervise(child)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(args.work)
    _set_stdio(args.stdio)
    libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)  # no huge pages: the peak-RSS counter stays exact
    if args.uid is not None:
        become(args.uid)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    apply_limits(args.memory, args.processes, args.file_size)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
