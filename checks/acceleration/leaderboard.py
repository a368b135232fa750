"""Leaderboard benchmarks, run in a student's process in the grading sandbox like the outside checks.

Each probe times one student kernel on inputs of a fixed size and, right after each run, the
machine's own baseline for that kind of work: ``np.matmul`` for the tiled matmul, a memory copy of
the same bytes for the fused GELU. The grader divides the two per repeat, so the ranking does not
depend on how fast the grading machine is. Every repeat gets new input values (drawn untimed from
a fixed seed, the same for every student) and every result is checked, so a kernel that remembers
an earlier answer gains nothing.
"""
import time

import numpy as np
from observe import same

REPEATS = 21
SLOW_S = 2.0          # a kernel slower than this per call is timed once, not ranked
MATMUL_N, MATMUL_BLOCK = 256, 64
GELU_ELEMENTS = 2**22  # 16 MiB of float32: larger than the caches
GELU_CHUNK = 2**16
_clock = time.perf_counter


def _seconds(function) -> tuple[float, object]:
    start = _clock()
    result = function()
    return _clock() - start, result


def _timed(refill, kernel, baseline, correct):
    """Seconds per call of ``kernel`` and ``baseline`` on fresh inputs, alternating; all results correct?"""
    refill()
    first, result = _seconds(kernel)
    ok = correct(result)
    baseline()
    if first > SLOW_S:
        return [first], [], ok
    kernel_s, baseline_s = [], []
    for _ in range(REPEATS):
        refill()
        seconds, result = _seconds(kernel)
        kernel_s.append(seconds)
        baseline_s.append(_seconds(baseline)[0])
        ok = ok and correct(result)
    return kernel_s, baseline_s, ok


def matmul_blocked(ns, rng):
    values = np.random.default_rng(0)
    a = np.empty((MATMUL_N, MATMUL_N), dtype=np.float32)
    b = np.empty_like(a)
    kernel = ns["matmul_blocked"]

    def refill():
        a[...] = values.standard_normal(a.shape, dtype=np.float32)
        b[...] = values.standard_normal(b.shape, dtype=np.float32)

    def correct(result):
        return (isinstance(result, np.ndarray) and result.shape == a.shape
                and bool(np.allclose(result, a @ b, rtol=1e-3, atol=1e-3)))

    kernel_s, baseline_s, ok = _timed(refill, lambda: kernel(a, b, block_size=MATMUL_BLOCK),
                                      lambda: np.matmul(a, b), correct)
    return {"correct": same(ok), "kernel_s": same(kernel_s), "baseline_s": same(baseline_s),
            "work": same(2 * MATMUL_N**3)}


def gelu_chunked(ns, rng):
    values = np.random.default_rng(1)
    x = np.empty(GELU_ELEMENTS, dtype=np.float32)
    copy = np.empty_like(x)
    kernel = ns["gelu_chunked"]

    def refill():
        x[...] = values.standard_normal(x.shape, dtype=np.float32)

    def correct(result):
        if not (isinstance(result, np.ndarray) and result.shape == x.shape):
            return False
        sample = values.integers(0, x.size, size=4096)  # a sample: checking all would take longer than the kernel
        exact = 0.5 * x[sample] * (1.0 + np.tanh(np.sqrt(2.0 / np.pi)
                                                 * (x[sample] + 0.044715 * x[sample].astype(np.float64) ** 3)))
        return bool(np.allclose(result[sample], exact, rtol=1e-4, atol=1e-5))

    kernel_s, baseline_s, ok = _timed(refill, lambda: kernel(x, chunk_elems=GELU_CHUNK),
                                      lambda: np.copyto(copy, x), correct)
    return {"correct": same(ok), "kernel_s": same(kernel_s), "baseline_s": same(baseline_s),
            "work": same(2 * x.nbytes)}
