"""Timing and machine-limit helpers shared by every Acceleration Lab notebook.

Everything here measures; nothing here is graded. Times are wall-clock seconds from
``time.perf_counter``; rates are GFLOP/s (1e9 floating-point operations per second) and
GB/s (1e9 bytes per second).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np


def under_grading() -> bool:
    """True while nbgrader executes the notebook (``NBGRADER_EXECUTION`` is set)."""
    return "NBGRADER_EXECUTION" in os.environ


def benchmark_size(full: Any, grading: Any) -> Any:
    """Return ``grading`` while the notebook is being graded, else ``full``.

    Benchmarks shrink under grading so a notebook grades in seconds; tests never use this.
    """
    return grading if under_grading() else full


@dataclass(frozen=True)
class Timing:
    """Seconds per call over ``repeats`` timed runs, after warm-up."""

    median_s: float
    q1_s: float
    q3_s: float
    min_s: float
    repeats: int
    calls_per_repeat: int

    @property
    def spread(self) -> float:
        """Interquartile range divided by the median (0.1 means +-5 % around it)."""
        return (self.q3_s - self.q1_s) / self.median_s if self.median_s > 0 else float("inf")

    def __str__(self) -> str:
        return f"{format_seconds(self.median_s)} (spread {self.spread:.0%}, n={self.repeats})"


def time_call(fn: Callable[..., Any], *args: Any, repeats: int = 5, warmup: int = 1,
              min_repeat_s: float = 2e-3, **kwargs: Any) -> Timing:
    """Time ``fn(*args, **kwargs)``: warm-up calls, then the median of ``repeats`` runs.

    A call faster than ``min_repeat_s`` is looped inside each repeat, so that the timer's
    resolution does not dominate; the result is always seconds per single call.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        fn(*args, **kwargs)
    start = time.perf_counter()
    fn(*args, **kwargs)
    single_s = time.perf_counter() - start
    calls = 1 if single_s >= min_repeat_s else min(10_000, int(min_repeat_s / max(single_s, 1e-9)) + 1)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn(*args, **kwargs)
        samples.append((time.perf_counter() - start) / calls)
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    return Timing(float(median), float(q1), float(q3), float(min(samples)), repeats, calls)


def format_seconds(seconds: float) -> str:
    """Seconds as a short human string: ``'3.20 ms'``, ``'41.0 us'``, ``'1.50 s'``."""
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= factor:
            return f"{seconds / factor:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def gflops(flop_count: float, seconds: float) -> float:
    """Rate in GFLOP/s for ``flop_count`` operations done in ``seconds``."""
    return flop_count / seconds / 1e9


# A repeat in which the timed thread ran for less than this share of the wall-clock time lost the
# CPU to something else (another program, a notebook running beside this one).
UNDISTURBED_CPU_SHARE = 0.8


@lru_cache(maxsize=1)
def thread_clock_step_s() -> float:
    """The smallest step ``time.thread_time`` takes on this machine, in seconds.

    About a microsecond on Linux and macOS; 15.6 ms on Windows, where a short repeat's CPU time
    can read 0. Infinite (no cross-check) if the clock did not move within 0.1 s.
    """
    start, give_up = time.thread_time(), time.perf_counter() + 0.1
    while (now := time.thread_time()) == start:
        if time.perf_counter() > give_up:
            return math.inf
    return now - start


def fastest_seconds(call: Callable[[], Any], repeats: int = 5, warmup: int = 2, budget_s: float = 0.1,
                    min_repeat_s: float = 1e-4, single_thread: bool = False) -> float:
    """Seconds per ``call()``: the fastest of at least ``repeats`` timed repeats, after warm-up.

    For machine ceilings: other programs only ever slow a repeat down, so the fastest repeat is
    the closest to what the machine can do. A repeat is one call, or as many as last
    ``min_repeat_s``; repeats go on until ``budget_s`` is spent too. With ``single_thread`` (the
    work runs in this thread only) a repeat counts only if ``time.thread_time`` says this thread
    had the CPU for 80 % of it; without one, up to twice as many repeats run, then a warning.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        call()
    start = time.perf_counter()
    call()
    single_s = time.perf_counter() - start
    calls = max(1, min(10_000, math.ceil(min_repeat_s / max(single_s, 1e-9))))
    cpu_slack_s = thread_clock_step_s() if single_thread else 0.0
    fastest_s = fastest_undisturbed_s = math.inf
    done, timed_start = 0, time.perf_counter()
    while True:
        wall_start, cpu_start = time.perf_counter(), time.thread_time()
        for _ in range(calls):
            call()
        cpu_s, wall_s = time.thread_time() - cpu_start, time.perf_counter() - wall_start
        done += 1
        fastest_s = min(fastest_s, wall_s / calls)
        if cpu_s + cpu_slack_s >= UNDISTURBED_CPU_SHARE * wall_s:
            fastest_undisturbed_s = min(fastest_undisturbed_s, wall_s / calls)
        elapsed_s = time.perf_counter() - timed_start
        enough = done >= repeats and elapsed_s >= budget_s
        if enough and (not single_thread or fastest_undisturbed_s < math.inf):
            return fastest_undisturbed_s if single_thread else fastest_s
        if (done >= 2 * repeats and elapsed_s >= 2 * budget_s) or done >= 10_000:
            break
    warnings.warn(f"this thread lost the CPU to other programs for over {1 - UNDISTURBED_CPU_SHARE:.0%} "
                  f"of every one of {done} repeats, so the result is too slow: rerun it with nothing "
                  f"else running", RuntimeWarning, stacklevel=3)
    return fastest_s


def measure_peak_gflops(n: int = 1024, dtype: Any = np.float32, repeats: int = 5) -> float:
    """This machine's GEMM rate in GFLOP/s: the fastest of ``repeats`` ``np.matmul`` (n, n) @ (n, n).

    Counts 2 * n**3 floating-point operations per product (one multiply and one add per term).
    Two warm-up products first (BLAS starts its threads, the output's pages are touched), then
    each product timed alone, at least ``repeats`` times and for 0.25 s (0.05 s under grading).
    No CPU-time cross-check: BLAS computes on worker threads that ``time.thread_time`` does not
    count, and the process's CPU time cannot tell a thread waiting for another from one that
    lost the CPU.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    seconds = fastest_seconds(lambda: np.matmul(a, b, out=out), repeats=repeats,
                              budget_s=benchmark_size(0.25, 0.05))
    return gflops(2.0 * n**3, seconds)


def time_copy(n_values: int, dtype: Any = np.float64, repeats: int = 5) -> Timing:
    """Time copying an ``n_values`` array of ``dtype`` into another, preallocated one.

    One copy reads and writes ``n_values * itemsize`` bytes each.
    """
    src = np.ones(n_values, dtype=dtype)
    dst = np.empty_like(src)
    return time_call(np.copyto, dst, src, repeats=repeats, warmup=1)


def measure_copy_bandwidth_gbs(nbytes: int = 256 * 2**20, repeats: int = 5) -> float:
    """This machine's memory bandwidth in GB/s: the fastest of ``repeats`` copies of ``nbytes``.

    A copy reads ``nbytes`` and writes ``nbytes``, so 2 * nbytes count as moved. The arrays
    should be much larger than the last-level cache, or this measures the cache instead. NumPy
    copies in one thread, so repeats in which that thread lost the CPU (its ``time.thread_time``
    under 80 % of the wall-clock time) do not count. Two warm-up copies first (they fault the
    destination's pages in), then each copy timed alone, at least ``repeats`` times and for
    0.25 s (0.05 s under grading).
    """
    n_values = nbytes // 8
    src = np.ones(n_values, dtype=np.float64)
    dst = np.empty_like(src)
    seconds = fastest_seconds(lambda: np.copyto(dst, src), repeats=repeats, budget_s=benchmark_size(0.25, 0.05),
                              single_thread=True)
    return 2.0 * n_values * 8 / seconds / 1e9


def measurements_path(notebook: str) -> Path:
    """Where ``notebook``'s measurements are saved: ``measurements/<notebook>.json`` here, or,
    under grading, ``grading_measurements_dir()`` (grading-size runs must never replace yours)."""
    folder = grading_measurements_dir() if under_grading() else Path("measurements")
    return folder / f"{notebook}.json"


def grading_measurements_dir() -> Path:
    """Where measurements made under grading (nbgrader's Validate, ``selfcheck.py``, autograding)
    go: a folder in the temporary directory, one per user and working directory."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    here = hashlib.sha256(str(Path.cwd().resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"acceleration-lab-{user}" / here


def save_measurements(notebook: str, records: list[dict]) -> Path:
    """Save a notebook's measured kernels so later notebooks can plot them; returns the file.

    Each record is a dict of plain numbers and strings, for example
    ``{"kernel": "blocked(64)", "n": 256, "flops": 3.4e7, "bytes": 7.9e5, "time_s": 0.021}``.
    Under grading this writes outside ``measurements/`` (see ``measurements_path``).
    """
    path = measurements_path(notebook)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps(records, indent=1))
    return path


def load_measurements(notebook: str) -> list[dict]:
    """Records saved by ``save_measurements(notebook, ...)``; a clear error if it has not run.

    Your own ``measurements/`` come first, also under grading; there, a grading run's records
    are the fallback.
    """
    mine = Path("measurements") / f"{notebook}.json"
    candidates = [mine, measurements_path(notebook)] if under_grading() else [mine]
    for path in candidates:
        if path.is_file():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"{mine} not found: run notebook {notebook} first, "
                            f"it saves the measurements this cell plots")
