"""The check process: a submission's code, then its visible tests and checks, in the sandbox.

``autograder/check/runner.py`` starts ``python -I -c BOOTSTRAP`` in a run area as the sandbox
user. The first frame on stdin (``protocol.py``) is the request: this file's text, the protocol's
and ``observe.py``'s, the checks, the steps and one seed per check run. The process then

1. keeps a private copy of stdout for its frames and points file descriptor 1 at /dev/null;
2. installs an audit hook (which cannot be removed) noting what student code does outside its
   lane: files outside the work folder, processes, sockets, ctypes, the garbage collector,
   stack frames, attributes set on classes it did not write;
3. imports what the checks need, and says ``ready``: a failure before this point is the
   grader's own, after it the submission's;
4. runs the given cells and the student's cells in an IPython shell, as a kernel would (magics
   work), but never a test cell as the notebook has it;
5. puts back what student code replaced (functions of numpy, numpy.testing, builtins and friends,
   given names, import hooks) and notes it;
6. for each test cell: runs its visible test as plain Python in a copy of the namespace, then
   calls its check once per seed, and sends the observations.

Nothing this process sends is trusted: student code runs in it and can write any frame. The
grader compares observations with the reference's outside, computes evidence from its own
records, and scores nothing it did not see finish. What is noted here are flags for review.
Only the standard library, NumPy and IPython are used: the repository is hidden in the sandbox.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import types
import zlib

WATCHED_MODULES = ("builtins", "numpy", "numpy.testing", "numpy.linalg", "numpy.random", "numpy.fft",
                   "math", "time", "threading", "tracemalloc", "functools", "operator", "os", "io",
                   "json", "unittest", "IPython.display", "IPython.core.display_functions", "observe",
                   "acclab_protocol")
SYS_ATTRIBUTES = ("displayhook", "excepthook", "meta_path", "path_hooks", "stdout", "stderr", "modules")
IMPORT_HOOKS = ("meta_path", "path_hooks")  # lists changed in place: compared by content
IGNORED_CHANGES = {("builtins", "_"), ("builtins", "__"), ("builtins", "___")}
FILE_READS = {"open", "os.listdir", "os.scandir"}
FILE_WRITES = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink",
               "os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile"}
PROCESSES = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
             "os.forkpty", "os.kill", "os.killpg", "pty.spawn"}
NETWORK = {"socket.connect", "socket.bind", "socket.sendto"}
# Flagged only when student code calls them itself (libraries use some of them innocently).
DIRECT = {"ctypes.dlopen": "used ctypes", "ctypes.dlsym": "used ctypes", "ctypes.addressof": "used ctypes",
          "ctypes.cdata": "used ctypes", "ctypes.string_at": "used ctypes",
          "gc.get_referrers": "searched the garbage collector", "gc.get_referents": "searched the garbage collector",
          "gc.get_objects": "searched the garbage collector", "sys._getframe": "inspected stack frames",
          "sys._current_frames": "inspected stack frames", "sys.setprofile": "installed a profile hook",
          "sys.settrace": "installed a trace hook", "sys.addaudithook": "installed an audit hook",
          "object.__setattr__": "set an attribute", "object.__delattr__": "deleted an attribute",
          "code.__new__": "built a code object", "function.__new__": "built a function object"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
READ_ROOTS_EXTRA = ("/usr/share/", "/usr/lib/", "/usr/local/lib/", "/usr/lib64/", "/etc/",
                    "/sys/devices/system/cpu/", "/dev/null", "/dev/urandom")
MAX_FLAGS = 40
MESSAGE_CHARS = 300
_exec, _compile = exec, compile  # bound before student code runs
TRUSTED_FILES = ("<check-process>", "<observe>", "<protocol>", "<checks>", "<visible-test>")


class Watch:
    """The audit hook's view: which code is the student's, and what it did."""

    def __init__(self, work: str, helpers: str):
        self.phase = "setup"            # setup | given | student | probe
        self.flags: list[str] = []
        self.given_objects: set[int] = set()
        self.work = os.path.abspath(work) + os.sep
        self.helpers = os.path.join(os.path.abspath(helpers), "")
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
        prefixes |= {os.path.realpath(p) for p in prefixes}
        self.library = tuple(os.path.join(p, "") for p in prefixes)
        self.read_roots = (self.work, self.helpers, *self.library, *READ_ROOTS_EXTRA)
        self._busy = False

    def flag(self, text: str) -> None:
        if text not in self.flags and len(self.flags) < MAX_FLAGS:
            self.flags.append(text)

    # -- whose code is running ------------------------------------------------------------
    def _kind(self, filename: str) -> str:
        """'student', 'trusted' or 'library' for the code in ``filename``."""
        if filename.startswith("<ipython-input-"):
            return "student"
        if filename in TRUSTED_FILES or filename.startswith("<given-cell-"):
            return "trusted"
        if filename.startswith("<frozen ") or filename.startswith(self.library) or filename.startswith(self.helpers):
            return "library"
        return "student"

    def _caller(self, frame, through_libraries: bool) -> str:
        while frame is not None:
            kind = self._kind(frame.f_code.co_filename)
            if kind != "library" or not through_libraries:
                return kind
            frame = frame.f_back
        return "trusted"

    # -- the audit hook -------------------------------------------------------------------
    def hook(self, event: str, args: tuple) -> None:
        if self._busy or self.phase not in ("student", "probe"):
            return
        watched = event in FILE_READS or event in FILE_WRITES or event in PROCESSES or event in NETWORK
        if not watched and event not in DIRECT:
            return
        self._busy = True
        try:
            frame = sys._getframe(1)  # the code that made the audited call (C functions have no frame)
            if watched:
                if self._caller(frame, through_libraries=True) == "student":
                    self._note(event, args)
            elif self._caller(frame, through_libraries=False) == "student":
                self._note_direct(event, args)
        except Exception as exc:  # an audit hook must never break the code it watches
            self.flag(f"audit hook error on {event}: {type(exc).__name__}")
        finally:
            self._busy = False

    def _note(self, event: str, args: tuple) -> None:
        if event in PROCESSES:
            self.flag(f"started or signalled a process ({event})")
        elif event in NETWORK:
            self.flag(f"used the network ({event})")
        elif event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            if isinstance(path, int):
                return
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & WRITE_FLAGS)
            self._path(path, writing)
        elif event in FILE_READS:
            if args and not isinstance(args[0], int):
                self._path(args[0] if args[0] is not None else ".", False)
        else:
            for path in args[:2]:
                if isinstance(path, (str, bytes, os.PathLike)):
                    self._path(path, True)

    def _path(self, path, writing: bool) -> None:
        full = os.path.abspath(os.fsdecode(path))
        if writing and not (full + os.sep).startswith(self.work) and full != "/dev/null":
            self.flag(f"wrote {full} outside its work folder")
        elif not writing and not (full + os.sep).startswith(self.read_roots) and not full.startswith(self.read_roots):
            self.flag(f"read {full} outside its work folder")

    def _note_direct(self, event: str, args: tuple) -> None:
        what = DIRECT[event]
        if event in ("object.__setattr__", "object.__delattr__"):
            target = args[0]
            own = getattr(target, "__module__", None) == "__main__" and id(target) not in self.given_objects
            if own:
                return
            name = getattr(target, "__qualname__", type(target).__name__)
            self.flag(f"{what} {args[1]!r} on {name}, which the student did not write")
        else:
            self.flag(f"{what} ({event})")


def module_state() -> tuple[dict, dict]:
    """The watched modules' attributes (objects, not copies), and copies of sys's import-hook lists."""
    modules = {name: (sys.modules[name], dict(vars(sys.modules[name])))
               for name in WATCHED_MODULES if name in sys.modules}
    modules["sys"] = (sys, {attr: getattr(sys, attr) for attr in SYS_ATTRIBUTES})
    return modules, {attr: list(getattr(sys, attr)) for attr in IMPORT_HOOKS}


def restore_modules(before: tuple[dict, dict], watch: Watch) -> None:
    """Put back replaced or deleted module attributes and changed import hooks; flag each one."""
    modules, hooks = before
    for attr, entries in hooks.items():
        if list(getattr(sys, attr)) != entries:
            watch.flag(f"sys.{attr} changed (import hooks installed; restored for the checks)")
            getattr(sys, attr)[:] = entries
    for name, (module, attributes) in modules.items():
        if name != "sys" and sys.modules.get(name) is not module:
            watch.flag(f"sys.modules[{name!r}] replaced (restored for the checks)")
            sys.modules[name] = module
        current = vars(module)
        for attr, value in attributes.items():
            if (name, attr) in IGNORED_CHANGES:
                continue
            now = current.get(attr, watch)
            if now is not value:
                watch.flag(f"{name}.{attr} {'deleted' if now is watch else 'replaced'} (restored for the checks)")
                setattr(module, attr, value)


def _callable_owner(function) -> str:
    return str(getattr(function, "__module__", None) or getattr(type(function), "__module__", ""))


def ipython_state(shell) -> dict:
    """Everything in the shell through which code can change how later cells run or display."""
    formatters = {}
    for mime, formatter in shell.display_formatter.formatters.items():
        printers = list(formatter.type_printers.values()) + list(formatter.deferred_printers.values())
        printers += list(getattr(formatter, "singleton_printers", {}).values())
        formatters[mime] = ([id(p) for p in printers if _callable_owner(p) == "__main__"], formatter.enabled)
    return {
        "an input transformer": [id(t) for t in shell.input_transformers_cleanup + shell.input_transformers_post],
        "an AST transformer": [id(t) for t in shell.ast_transformers],
        "an IPython event callback": sorted(id(cb) for cbs in shell.events.callbacks.values() for cb in cbs
                                           if _callable_owner(cb) == "__main__"),
        "a display formatter": formatters,
        "a custom exception handler": [getattr(t, "__name__", "?") for t in shell.custom_exceptions],
        "sys.displayhook": id(sys.displayhook),
        "sys.excepthook": id(sys.excepthook),
        "a trace or profile function": (id(sys.gettrace()), id(sys.getprofile())),
    }


def given_state(names: dict) -> dict:
    """Given names -> (object, its attributes, its code): what a student might swap or patch."""
    state = {}
    for name, obj in names.items():
        attributes = dict(vars(obj)) if isinstance(obj, type) else {}
        code = getattr(obj, "__code__", None)
        state[name] = (obj, attributes, code)
    return state


def restore_given(user_ns: dict, before: dict, watch: Watch) -> None:
    """Given names rebound, given classes patched, given functions' code swapped: flag, put back."""
    for name, (obj, attributes, code) in before.items():
        if user_ns.get(name, watch) is not obj:
            watch.flag(f"given name {name!r} rebound by student code (restored for the checks)")
            user_ns[name] = obj
        if isinstance(obj, type):
            current = vars(obj)
            for attr, value in attributes.items():
                if current.get(attr, watch) is not value:
                    watch.flag(f"given class {name}.{attr} replaced (restored for the checks)")
                    type.__setattr__(obj, attr, value)
        if code is not None and getattr(obj, "__code__", None) is not code:
            watch.flag(f"given function {name} had its code replaced (restored for the checks)")
            obj.__code__ = code


def run_given(source: str, user_ns: dict, modules_before: tuple[dict, dict], given_before: dict,
              watch: Watch) -> BaseException | None:
    """Run an instructor's cell as plain Python: no IPython transformer a student installed
    touches it, and the modules it sees are as they were before any student code ran."""
    restore_modules(modules_before, watch)
    before = dict(user_ns)
    watch.phase = "given"
    error = None
    try:
        _exec(_compile(source, f"<given-cell-{len(given_before)}>", "exec"), user_ns)
    except Exception as exc:  # reported like any failing cell
        error = exc
    watch.phase = "setup"
    defined = {name: obj for name, obj in user_ns.items()
               if not (name == "_" or name.startswith("__")) and before.get(name, watch) is not obj}
    given_before.update(given_state(defined))
    watch.given_objects.update(id(obj) for obj in defined.values())
    return error


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:MESSAGE_CHARS]


def run_visible(source: str, user_ns: dict, watch: Watch) -> BaseException | None:
    """A test cell's visible test as plain Python in the notebook's namespace, as the kernel runs
    it (no IPython transformer touches it); the names it binds are put back afterwards, so they
    do not leak into the checks."""
    before = dict(user_ns)
    watch.phase = "probe"
    try:
        _exec(_compile(source, "<visible-test>", "exec"), user_ns)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from student code too
        return exc
    finally:
        watch.phase = "setup"
        user_ns.clear()
        user_ns.update(before)
    return None


def main(request: dict, reader) -> None:
    out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    protocol = sys.modules["acclab_protocol"]
    send_lock = threading.Lock()

    def send(message: dict) -> None:
        with send_lock:
            protocol.write_frame(out, message)

    sys.path[:] = [path for path in sys.path if path] + [request["helpers"]]
    watch = Watch(request["work"], request["helpers"])
    sys.addaudithook(watch.hook)
    observe = types.ModuleType("observe")
    exec(compile(request["observe"], "<observe>", "exec"), vars(observe))
    sys.modules["observe"] = observe
    observe._connect(observe.Client(send, reader.read))
    import numpy as np
    import numpy.testing  # noqa: F401 (watched: students' first target)
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    user_ns = shell.user_ns
    checks: dict = {"__name__": "checks"}
    _exec(_compile(request["checks"], "<checks>", "exec"), checks)
    send({"kind": "ready"})

    modules_before = module_state()
    ipython_before = ipython_state(shell)
    given_before: dict = {}
    skip = set(request["skip"])
    steps = [step for step in request["steps"] if step["id"] not in skip]
    for step in [s for s in steps if s["kind"] in ("given", "student")]:
        send({"kind": "start", "step": step["id"]})
        if step["kind"] == "given":
            error = run_given(step["source"], user_ns, modules_before, given_before, watch)
        else:
            watch.phase = "student"
            result = shell.run_cell(step["source"], store_history=True)
            watch.phase = "setup"
            error = result.error_before_exec or result.error_in_exec
        send({"kind": "end", "step": step["id"], "error": None if error is None else _error_text(error),
              "flags": watch.flags})

    ipython_after = ipython_state(shell)
    for what, value in ipython_before.items():
        if ipython_after[what] != value:
            watch.flag(f"student code installed or changed {what}")
    restore_modules(modules_before, watch)
    restore_given(user_ns, given_before, watch)
    sys.settrace(None)
    sys.setprofile(None)
    threading.settrace(None)
    threading.setprofile(None)
    running = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if running:
        watch.flag(f"student code left {len(running)} thread(s) running")

    for step in [s for s in steps if s["kind"] in ("visible", "check")]:
        send({"kind": "start", "step": step["id"]})
        restore_modules(modules_before, watch)
        restore_given(user_ns, given_before, watch)
        if step["kind"] == "visible":
            error = run_visible(step["source"], user_ns, watch)
            send({"kind": "end", "step": step["id"], "error": None if error is None else _error_text(error),
                  "flags": watch.flags})
            continue
        check = checks.get(step["check"])
        rng = np.random.default_rng(step["seed"])
        observations, error = None, None
        watch.phase = "probe"
        try:
            observations = check(user_ns, rng)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt from student code too
            error = _error_text(exc)
        watch.phase = "setup"
        try:
            observe._client.flush()
        except BaseException as exc:  # the channel itself failed: say so rather than end silently
            error = error or _error_text(exc)
        if error is None and not (type(observations) is dict
                                  and all(type(v) is dict and "rule" in v for v in observations.values())):
            observations, error = None, "the check did not return observations"
        try:
            send({"kind": "end", "step": step["id"], "error": error, "observations": observations,
                  "flags": watch.flags})
        except (TypeError, ValueError) as exc:
            send({"kind": "end", "step": step["id"], "error": _error_text(exc), "observations": None,
                  "flags": watch.flags})
    restore_modules(modules_before, watch)
    send({"kind": "flags", "flags": watch.flags})
    send({"kind": "finished"})
    os._exit(0)  # threads the student left must not keep the process alive


if __name__ == "check_process":
    main(globals()["REQUEST"], globals()["READER"])
