"""Timing and machine-limit helpers shared by every Acceleration Lab notebook.

Everything here measures; nothing here is graded. Times are wall-clock seconds from
``time.perf_counter``; rates are GFLOP/s (1e9 floating-point operations per second) and
GB/s (1e9 bytes per second).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
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


def measure_peak_gflops(n: int = 1024, dtype: Any = np.float32, repeats: int = 5) -> float:
    """This machine's GEMM rate in GFLOP/s: median time of ``np.matmul`` on (n, n) @ (n, n).

    Counts 2 * n**3 floating-point operations per product (one multiply and one add per term).
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    timing = time_call(np.matmul, a, b, out=out, repeats=repeats, warmup=1)
    return gflops(2.0 * n**3, timing.median_s)


def time_copy(n_values: int, dtype: Any = np.float64, repeats: int = 5) -> Timing:
    """Time copying an ``n_values`` array of ``dtype`` into another, preallocated one.

    One copy reads and writes ``n_values * itemsize`` bytes each.
    """
    src = np.ones(n_values, dtype=dtype)
    dst = np.empty_like(src)
    return time_call(np.copyto, dst, src, repeats=repeats, warmup=1)


def measure_copy_bandwidth_gbs(nbytes: int = 256 * 2**20, repeats: int = 5) -> float:
    """This machine's memory bandwidth in GB/s from copying a ``nbytes`` array into another.

    A copy reads ``nbytes`` and writes ``nbytes``, so 2 * nbytes count as moved. The arrays
    should be much larger than the last-level cache, or this measures the cache instead.
    """
    n_values = nbytes // 8
    timing = time_copy(n_values, np.float64, repeats)
    return 2.0 * n_values * 8 / timing.median_s / 1e9


def measurements_path(notebook: str) -> Path:
    """Where ``notebook``'s saved measurements live: ``measurements/<notebook>.json`` here."""
    return Path("measurements") / f"{notebook}.json"


def save_measurements(notebook: str, records: list[dict]) -> Path:
    """Save a notebook's measured kernels so later notebooks can plot them.

    Each record is a dict of plain numbers and strings, for example
    ``{"kernel": "blocked(64)", "n": 256, "flops": 3.4e7, "bytes": 7.9e5, "time_s": 0.021}``.
    """
    path = measurements_path(notebook)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(records, indent=1))
    return path


def load_measurements(notebook: str) -> list[dict]:
    """Records saved by ``save_measurements(notebook, ...)``; a clear error if it has not run."""
    path = measurements_path(notebook)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run notebook {notebook} first, "
                                f"it saves the measurements this cell plots")
    return json.loads(path.read_text())
