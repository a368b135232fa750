"""Leaderboard benchmarks, run in a student's process in the grading sandbox like the outside checks.

Each probe times one student kernel on fixed inputs (the same for every student) and, right
after each run, the machine's own baseline for that kind of work: ``np.matmul`` for the tiled
matmul, a memory copy of the same bytes for the fused GELU. The grader divides the two per
repeat, so the ranking does not depend on how fast the grading machine is.
"""
import time

import numpy as np
from probekit import same

REPEATS = 9
SLOW_S = 2.0          # a kernel slower than this per call is timed once, not ranked
SAMPLE_S = 0.02
MATMUL_N, MATMUL_BLOCK = 256, 64
GELU_ELEMENTS = 2**22  # 16 MiB of float32: larger than the caches
GELU_CHUNK = 2**16
_clock = time.perf_counter


def _per_call(function, calls: int) -> float:
    start = _clock()
    for _ in range(calls):
        function()
    return (_clock() - start) / calls


def _calls_for(seconds: float) -> int:
    """Calls per timed sample so that a sample lasts about ``SAMPLE_S`` (short ones are noise)."""
    return max(1, min(200, int(SAMPLE_S / max(seconds, 1e-7))))


def _interleaved(kernel, baseline):
    """Seconds per call of ``kernel`` and ``baseline``, one sample of each in turn, after warm-up."""
    kernel_first, baseline_first = _per_call(kernel, 1), _per_call(baseline, 1)
    if kernel_first > SLOW_S:
        return [kernel_first], []
    kernel_calls, baseline_calls = _calls_for(kernel_first), _calls_for(baseline_first)
    kernel_s, baseline_s = [], []
    for _ in range(REPEATS):
        kernel_s.append(_per_call(kernel, kernel_calls))
        baseline_s.append(_per_call(baseline, baseline_calls))
    return kernel_s, baseline_s


def matmul_blocked(ns, rng):
    fixed = np.random.default_rng(0)
    a = fixed.standard_normal((MATMUL_N, MATMUL_N)).astype(np.float32)
    b = fixed.standard_normal((MATMUL_N, MATMUL_N)).astype(np.float32)
    kernel = ns["matmul_blocked"]
    result = kernel(a, b, block_size=MATMUL_BLOCK)
    correct = (isinstance(result, np.ndarray) and result.shape == a.shape
               and bool(np.allclose(result, a @ b, rtol=1e-3, atol=1e-3)))
    kernel_s, baseline_s = _interleaved(lambda: kernel(a, b, block_size=MATMUL_BLOCK), lambda: np.matmul(a, b))
    return {"correct": same(correct), "kernel_s": same(kernel_s), "baseline_s": same(baseline_s),
            "work": same(2 * MATMUL_N**3)}


def gelu_chunked(ns, rng):
    x = np.random.default_rng(1).standard_normal(GELU_ELEMENTS).astype(np.float32)
    copy = np.empty_like(x)
    kernel = ns["gelu_chunked"]
    result = kernel(x, chunk_elems=GELU_CHUNK)
    exact = 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x.astype(np.float64) ** 3)))
    correct = (isinstance(result, np.ndarray) and result.shape == x.shape
               and bool(np.allclose(result, exact, rtol=1e-4, atol=1e-5)))
    kernel_s, baseline_s = _interleaved(lambda: kernel(x, chunk_elems=GELU_CHUNK), lambda: np.copyto(copy, x))
    return {"correct": same(correct), "kernel_s": same(kernel_s), "baseline_s": same(baseline_s),
            "work": same(2 * x.nbytes)}
