"""Leaderboard benchmarks, run in a student's check process in the grading sandbox; the grader times them.

Each benchmark calls the student's kernel and then the machine's own baseline for that kind of work
(``np.matmul`` for the tiled matmul, a copy of the same bytes for the fused GELU), WARMUP + REPEATS
times, each call on new inputs from its own generator (``call_generators``: from the run's secret
seed, so the same inputs for every student of one run and unknown before it). Nothing here reads a
clock. At three moments per call the check asks the grader to read its own clock and this process's
CPU time (a ``clock`` request, ``autograder/check/runner.py``):

    kernel    the kernel's inputs are ready; it runs, then its result is checked: exactly a
              numpy.ndarray of the right shape and dtype, and its values at positions drawn with
              the inputs (never shown to student code) are sent with the next request
    baseline  the baseline runs on this check's own copy of the inputs
    between   the next call's inputs are drawn

The grader makes the same inputs from the run's seed, computes the expected values itself
(``*_expected``) and compares: what the result held when the kernel's time stopped is what counts,
and nothing this process sends can make a wrong result right. Everything used after student code
has run is bound here, before it runs, and is C code it cannot replace (ufuncs, ndarray methods).
The grader loads this file too, for the inputs and expected values; it has no channel there.
"""
import binascii
import gc
import time

import numpy as np
import observe
from observe import same

WARMUP, REPEATS = 2, 41     # calls not scored, then scored calls
SLOW_S = 2.0                # a first call slower than this is not repeated
BUDGET_S = 20.0             # no new call starts after this long
MATMUL_N, MATMUL_BLOCK = 256, 64
GELU_ELEMENTS = 2**22       # 16 MiB of float32: larger than the caches
GELU_CHUNK = 2**16
MATMUL_SAMPLES, GELU_SAMPLES = 64, 512   # result values checked per call (matmul adds a projection of all)
SQRT_2_OVER_PI, GELU_CUBIC = float(np.sqrt(2.0 / np.pi)), 0.044715

_request = getattr(observe._client, "request", None)  # the channel (None where the grader loads this file)
_type, _isinstance, _str, _int = type, isinstance, str, int
_ndarray, _float32, _float64 = np.ndarray, np.dtype(np.float32), np.dtype(np.float64)
_matmul, _copyto, _concatenate = np.matmul, np.copyto, np.concatenate
_multiply, _subtract, _default_rng = np.multiply, np.subtract, np.random.default_rng
_b2a, _perf, _gc_disable, _gc_enable = binascii.b2a_base64, time.perf_counter, gc.disable, gc.enable
_PLAIN = {list: "list", tuple: "tuple", float: "float", int: "int", type(None): "None",
          np.float32: "numpy scalar", np.float64: "numpy scalar"}


def call_generators(rng):
    """One generator per call, from the check run's ``rng``; the grader makes the same ones."""
    root = _int(rng.integers(2**63))
    call = 0
    while True:
        yield _default_rng([root, call])
        call += 1


# -- the kernels' inputs, what is sampled from a result, and what the samples must be ------------
def matmul_inputs(rng):
    """((A, B) float32, where the result is sampled: (rows, cols, probe))."""
    a = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=_float32)
    b = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=_float32)
    where = rng.integers(0, MATMUL_N, MATMUL_SAMPLES), rng.integers(0, MATMUL_N, MATMUL_SAMPLES), \
        rng.standard_normal(MATMUL_N, dtype=_float32)
    return (a, b), where


def matmul_sample(c, inputs, where):
    """Entries of C at (rows, cols), C @ probe (every entry counts), and the inputs there, float64."""
    rows, cols, probe = where
    a, b = inputs
    return _concatenate([c[rows, cols], _matmul(c, probe), a[rows, cols], b[rows, cols]]).astype(_float64)


def matmul_expected(inputs, where):
    """What ``matmul_sample`` must give, computed in float64 (by the grader)."""
    rows, cols, probe = where
    a, b = (x.astype(_float64) for x in inputs)
    return _concatenate([(a[rows] * b[:, cols].T).sum(axis=1), a @ (b @ probe.astype(_float64)), a[rows, cols],
                         b[rows, cols]])


def gelu_inputs(rng):
    """((x,) float32 uniform on [-5, 5), the sampled positions)."""
    x = rng.random(GELU_ELEMENTS, dtype=_float32)
    _multiply(x, 10.0, out=x)
    _subtract(x, 5.0, out=x)
    return (x,), rng.integers(0, GELU_ELEMENTS, GELU_SAMPLES)


def gelu_sample(y, inputs, positions):
    """GELU values at the positions, and the input there, float64."""
    return _concatenate([y[positions].astype(_float64), inputs[0][positions].astype(_float64)])


def gelu_expected(inputs, positions):
    """What ``gelu_sample`` must give, computed in float64 (by the grader)."""
    x = inputs[0][positions].astype(_float64)
    return _concatenate([0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x))), x])


# -- the benchmark loop ------------------------------------------------------------------------
def _mark(label: str, data: str = "") -> None:
    _request(kind="clock", label=label, data=data)


def _inspect(result, shape: tuple, sample) -> str:
    """What the grader gets about a result: 'ok:' and the sampled values, or why it cannot be checked."""
    if _type(result) is not _ndarray:
        kind = _PLAIN.get(_type(result))
        return "type:" + (kind or ("ndarray subclass" if _isinstance(result, _ndarray) else "other"))
    if result.shape != shape:
        return "shape:" + "x".join(_str(n) for n in result.shape)[:40]
    if result.dtype != _float32:
        return "dtype:" + result.dtype.str
    return "ok:" + _b2a(sample(result).tobytes(), newline=False).decode("ascii")


def _benchmark(kernel, rng, make_inputs, sample, arguments, baseline) -> dict:
    """Call ``kernel`` and ``baseline`` alternately, between clock requests (see above).

    ``make_inputs(generator)`` draws a call's inputs and sample positions, ``sample(result,
    inputs, where)`` takes the sample, ``arguments`` are the kernel's keywords, ``baseline(inputs)``
    runs the baseline on this check's copy.
    """
    start = _perf()
    calls = 0
    generators = call_generators(rng)
    inputs, where = make_inputs(next(generators))
    _gc_disable()  # no collection pauses inside the timed calls (as timeit does)
    try:
        while True:
            given = tuple(x.copy() for x in inputs)  # the kernel's own copy: it must leave it alone
            shape = inputs[0].shape if len(inputs) == 1 else (inputs[0].shape[0], inputs[1].shape[1])
            _mark("kernel")
            try:
                result = kernel(*given, **arguments)
            except BaseException as exc:  # SystemExit and KeyboardInterrupt from student code too
                verdict = "raised:" + _str(_type(exc).__name__)[:60]
            else:
                verdict = _inspect(result, shape, lambda r: sample(r, given, where))
            result = given = None  # freed inside the kernel's time, not the baseline's
            _mark("baseline", verdict)
            baseline(inputs)
            _mark("between")
            calls += 1
            elapsed = _perf() - start
            if (not verdict.startswith("ok:") or calls >= WARMUP + REPEATS or elapsed > BUDGET_S
                    or (calls == 1 and elapsed > SLOW_S)):
                return {"calls": same(calls)}
            inputs, where = make_inputs(next(generators))
    finally:
        _gc_enable()


def matmul_blocked(ns, rng):
    out = np.empty((MATMUL_N, MATMUL_N), dtype=_float32)
    return _benchmark(ns["matmul_blocked"], rng, matmul_inputs, matmul_sample, {"block_size": MATMUL_BLOCK},
                      lambda inputs: _matmul(inputs[0], inputs[1], out=out))


def gelu_chunked(ns, rng):
    copy = np.empty(GELU_ELEMENTS, dtype=_float32)
    return _benchmark(ns["gelu_chunked"], rng, gelu_inputs, gelu_sample, {"chunk_elems": GELU_CHUNK},
                      lambda inputs: _copyto(copy, inputs[0]))
