"""Outside checks for 02_vectorization_and_fusion: one probe per test cell, named by its grade_id.

Each probe runs in the student's process (``autograder/verify_driver.py``), after the given and
student cells and never after a test cell. It calls the student's functions (``ns``) on inputs
drawn from ``rng``, which the grader seeds, and returns observations (``probekit``). The grader
compares them with the reference solution's observations outside that process.

What the test cells define themselves (the recording ``vectorized_relu`` with its barrier, the
recording ``np.tanh``, the tracemalloc helpers) is reimplemented here. Memory peaks and thread
ids differ from run to run, so they are reduced to bools (within the test's budget, one thread
per chunk) before being observed.

The given cell defining ``SQRT_2_OVER_PI`` and ``GELU_CUBIC`` calls ``math.sqrt``, so the check
process does not run it (only definitions-only instructor cells run); ``_given_constants`` puts
the notebook's values in ``ns`` when no cell defined them.
"""
import math
import threading
import tracemalloc

import numpy as np
from observe import close, raises_naming, same


# -- shared helpers ---------------------------------------------------------------------------
def _given_constants(ns):
    ns.setdefault("SQRT_2_OVER_PI", math.sqrt(2.0 / math.pi))
    ns.setdefault("GELU_CUBIC", 0.044715)


def _unchanged(x, x_before):
    return bool(np.array_equal(x, x_before))


def _is_array(value):
    return isinstance(value, (np.ndarray, np.generic))


def _layout(value):
    """Shape and dtype name of an array result, or None for anything else."""
    if not _is_array(value):
        return None
    return [list(np.shape(value)), str(value.dtype)]


def _sample(flat, rng, count=1000):
    """Indices of the first, last and ``count`` random elements of a flat array of ``flat`` elements."""
    if flat <= 3 * count:
        return np.arange(flat)
    return np.concatenate([np.arange(count), np.arange(flat - count, flat), rng.integers(0, flat, size=count)])


def _uniform(rng, shape, dtype=np.float32, scale=4.0):
    """Values uniform in [-scale, scale) of ``dtype``: large test inputs, drawn faster than normals."""
    x = rng.random(shape, dtype=dtype)
    x *= 2 * scale
    x -= scale
    return x


def _value_error(function, *args, **kwargs):
    """Whether ``function(*args, **kwargs)`` raises ValueError (or a subclass), as the tests check."""
    return raises_naming(lambda: function(*args, **kwargs), (), ValueError, [])[0]


def _exact(value):
    """A count as the tests compare it (``==`` with an int): integral numbers as int, others as float."""
    if isinstance(value, (bool, np.bool_)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return int(value) if value.is_integer() else value
    return value


def _real(value):
    """A number as a Python float (an np.float64 compares equal in the tests), others unchanged."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    return value


# -- Task 1: vectorized_matmul ----------------------------------------------------------------
def _dims(rng, low=1, high=9, size=3):
    return [int(v) for v in rng.integers(low, high, size=size)]


def _random_matmul_shapes(rng):
    m, k, n = _dims(rng)
    b1, b2 = _dims(rng, 2, 5, size=2)
    return [((m, k), (k, n)), ((b1, m, k), (b1, k, n)), ((b1, 1, m, k), (b2, k, n)),
            ((m, k), (b2, k, n)), ((b1, m, k), (k, n)), ((1, b2, m, k), (b1, 1, k, n))]


def t02_matmul_batched(ns, rng):
    matmul = ns["vectorized_matmul"]
    observed = {}
    hand = matmul(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[5.0, 6.0], [7.0, 8.0]]))
    observed["hand product"] = same(np.asarray(hand, dtype=np.float64) if _is_array(hand) else hand)
    visible = [((2, 3), (3, 4)), ((5, 3, 4), (5, 4, 2)), ((3, 4), (6, 4, 5))]
    hidden = [((3, 1, 4, 5), (2, 5, 6)), ((1, 7), (7, 1)), ((2, 2, 33, 17), (17, 9)),
              ((1, 300), (300, 1)), ((4, 1, 1), (1, 1, 3))]
    cases = [(shapes, 1e-5) for shapes in visible + _random_matmul_shapes(rng)] + [(shapes, 1e-4) for shapes in hidden]
    for (a_shape, b_shape), tolerance in cases:
        a = rng.standard_normal(a_shape).astype(np.float32)
        b = rng.standard_normal(b_shape).astype(np.float32)
        a_before, b_before = a.copy(), b.copy()
        got = matmul(a, b)
        where = f"{a_shape} @ {b_shape}"
        observed[f"{where} shape and dtype"] = same(_layout(got))
        observed[f"{where} values"] = close(got if _is_array(got) else None, rtol=tolerance, atol=tolerance)
        observed[f"{where} inputs unchanged"] = same(_unchanged(a, a_before) and _unchanged(b, b_before))
    batch, m, k, n = int(rng.integers(2, 7)), *_dims(rng, 5, 41)
    a_t = rng.standard_normal((batch, k, m)).transpose(0, 2, 1)    # non-contiguous (batch, m, k)
    b_t = rng.standard_normal((batch, n, k)).transpose(0, 2, 1)    # non-contiguous (batch, k, n)
    for label, (a, b) in {"transposed fixed": (rng.standard_normal((6, 40, 30)).transpose(0, 2, 1),
                                               rng.standard_normal((6, 20, 40)).transpose(0, 2, 1)),
                          "transposed random": (a_t, b_t)}.items():
        got = matmul(a, b)
        observed[f"{label} shape and dtype"] = same(_layout(got))
        observed[f"{label} values"] = close(got if _is_array(got) else None, rtol=1e-12, atol=1e-12)
    return observed


def t02_matmul_errors(ns, rng):
    matmul = ns["vectorized_matmul"]
    observed = {}
    m, k, n = _dims(rng, 1, 9)
    bad = [((3,), (3, 2)), ((2, 3), (4, 5)), ((2, 3), (3,)), ((4,), (4,)), ((2, 3, 4), (2, 5, 6)), ((5, 3), (2, 5)),
           ((k,), (k, n)), ((m, k), (k,)), ((m, k), (k + int(rng.integers(1, 4)), n)),
           ((int(rng.integers(2, 5)), m, k), (k + 1, n)), ((k + 1, m, k), (k + 1, k + 2, n))]
    for a_shape, b_shape in bad:
        observed[f"{a_shape} @ {b_shape} ValueError naming both"] = same(raises_naming(
            matmul, (np.ones(a_shape), np.ones(b_shape)), ValueError, [str(a_shape), str(b_shape)]))
    b1, b2 = int(rng.integers(2, 5)), int(rng.integers(5, 8))
    for a_shape, b_shape in [((4, 2, 3), (5, 3, 2)), ((b1, m, k), (b2, k, n)), ((b1, 1, m, k), (b2, 3, k, n))]:
        observed[f"{a_shape} @ {b_shape} batch ValueError"] = same(_value_error(matmul, np.ones(a_shape),
                                                                               np.ones(b_shape)))
    for a_shape, b_shape in [((2, 3), (3, 4)), ((1, 5), (5, 1)), ((m, k), (k, n))]:  # batched: t02_matmul_batched
        observed[f"{a_shape} @ {b_shape} works"] = same(_layout(matmul(np.ones(a_shape), np.ones(b_shape))))
    return observed


# -- Task 2: vectorized_relu and parallel_relu ------------------------------------------------
def _relu_cases(rng):
    cases = [rng.standard_normal(7).astype(np.float32), rng.standard_normal((3, 4, 5)),
             rng.integers(-5, 5, size=(4, 6), dtype=np.int32),
             np.array(-1.5, dtype=np.float32), np.array(2.25), np.zeros((0,), dtype=np.float32), np.zeros((2, 0)),
             rng.standard_normal((8, 9)).T, rng.standard_normal(41).astype(np.float32)[::3],
             rng.integers(-9, 9, size=17)]
    shape = tuple(_dims(rng, 1, 7, size=int(rng.integers(1, 4))))
    cases += [rng.standard_normal(shape).astype((np.float32, np.float64)[int(rng.integers(0, 2))]),
              rng.integers(-100, 100, size=shape).astype((np.int16, np.int32, np.int64)[int(rng.integers(0, 3))]),
              rng.standard_normal((int(rng.integers(3, 9)), int(rng.integers(3, 9)))).T[::2]]
    return cases


def t02_relu_vectorized(ns, rng):
    relu = ns["vectorized_relu"]
    observed = {}
    for number, x in enumerate(_relu_cases(rng)):
        x_before = x.copy()
        got = relu(x)
        where = f"case {number} {x.shape} {x.dtype}"
        observed[f"{where} is an array"] = same(_is_array(got))
        observed[f"{where} values"] = same(np.asarray(got) if _is_array(got) else None)
        observed[f"{where} x unchanged"] = same(_unchanged(x, x_before))
        observed[f"{where} new array"] = same(_is_array(got) and not np.shares_memory(got, x))

    x = _uniform(rng, int(rng.integers(300_000, 1_000_001)))
    tracemalloc.start()
    try:
        got = relu(x)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result_bytes = got.nbytes if isinstance(got, np.ndarray) else 0
    observed["large input: values"] = same(np.asarray(got)[_sample(x.size, rng)] if _is_array(got) else None)
    observed["large input: at most 1.5 x input allocated beyond the result"] = same(
        bool(peak_bytes - result_bytes <= 1.5 * x.nbytes + 65536))

    part = slice(int(rng.integers(0, 20)), int(rng.integers(30, 80)))
    out_cases = [(rng.standard_normal((5, 6)).astype(np.float32), slice(None)),
                 (rng.standard_normal(100), slice(10, 60)), (rng.integers(-3, 3, size=(4, 4)), slice(1, 3)),
                 (rng.standard_normal(80).astype(np.float32), part),
                 (rng.integers(-50, 50, size=(6, 5), dtype=np.int32), (slice(1, 5), slice(None, None, 2)))]
    for number, (x, where_part) in enumerate(out_cases):
        x_before = x.copy()
        buffer = np.full_like(x, 7)
        returned = relu(x[where_part], out=buffer[where_part])
        where = f"out case {number} {x.shape} {x.dtype}"
        observed[f"{where} buffer"] = same(buffer)
        observed[f"{where} returns out"] = same(_is_array(returned) and bool(np.shares_memory(returned, buffer)))
        observed[f"{where} x unchanged"] = same(_unchanged(x, x_before))
    return observed


def t02_parallel_relu_values(ns, rng):
    parallel = ns["parallel_relu"]
    observed = {}
    cases = [(rng.standard_normal(10).astype(np.float32), 4), (rng.standard_normal((4, 257)), 3),
             (rng.standard_normal(3).astype(np.float32), 4), (rng.standard_normal(1001), 1),
             (np.array(2.5), 4), (np.array(-2.5, dtype=np.float32), 2), (np.zeros((0,)), 4), (np.zeros((2, 0)), 3),
             (rng.standard_normal(1).astype(np.float32), 8), (rng.standard_normal(5), 8),
             (rng.standard_normal(1001).astype(np.float32), 7), (rng.integers(-50, 50, size=(6, 7)), 5),
             (rng.standard_normal((30, 12)).T, 4), (rng.standard_normal((5, 40))[:, ::3], 2),
             (rng.standard_normal((2, 3, 5, 7)).astype(np.float32), 6)]
    # all positive, sizes not divisible by the worker count: an element left out cannot pass as a 0
    for _ in range(3):
        workers = int(rng.integers(2, 9))
        size = workers * int(rng.integers(1, 200)) + int(rng.integers(1, workers))
        cases.append((1.0 + rng.random(size), workers))
    shape = tuple(_dims(rng, 1, 12, size=int(rng.integers(1, 4))))
    cases += [(rng.standard_normal(shape).astype(np.float32), int(rng.integers(1, 10))),
              (rng.integers(-9, 9, size=shape), int(rng.integers(1, 10)))]
    for number, (x, workers) in enumerate(cases):
        x_before = x.copy()
        got = parallel(x, num_workers=workers)
        where = f"case {number} {x.shape} {x.dtype} {workers} workers"
        observed[f"{where} values"] = same(np.asarray(got) if _is_array(got) else None)
        observed[f"{where} shape and dtype"] = same(_layout(got))
        observed[f"{where} x unchanged"] = same(_unchanged(x, x_before))
    observed["num_workers=0 ValueError"] = same(_value_error(parallel, np.ones(4), num_workers=0))
    observed["num_workers<0 ValueError"] = same(_value_error(parallel, np.ones(4),
                                                             num_workers=-int(rng.integers(1, 5))))
    return observed


def _record_relu_chunks(ns, x, num_workers):
    """parallel_relu(x, num_workers) with ns' vectorized_relu recording (thread id, chunk copy) per call,
    each call waiting at a barrier until all expected chunks have arrived (as the test's recorder)."""
    expected = max(1, min(num_workers, x.size))
    barrier = threading.Barrier(expected, timeout=10)
    calls, lock = [], threading.Lock()
    original = ns["vectorized_relu"]

    def recording_relu(chunk, *args, **kwargs):
        with lock:
            calls.append((threading.get_ident(), np.array(chunk, copy=True)))
        barrier.wait()
        return original(chunk, *args, **kwargs)

    ns["vectorized_relu"] = recording_relu
    try:
        result = ns["parallel_relu"](x, num_workers=num_workers)
    finally:
        ns["vectorized_relu"] = original
    return result, calls, expected, barrier.broken


def t02_parallel_relu_workers(ns, rng):
    observed = {}
    cases = [((10_007,), 4), ((10_007,), 3), ((37, 41), 4), ((5,), 8), ((100_003,), 2), ((9, 11), 1), ((2, 3, 7), 5)]
    cases += [((int(rng.integers(1, 9)),), int(rng.integers(5, 12))),
              (tuple(_dims(rng, 2, 40, size=2)), int(rng.integers(2, 9))),
              ((int(rng.integers(1000, 30000)),), int(rng.integers(1, 9)))]
    for shape, workers in cases:
        size = math.prod(shape)
        offset = int(rng.integers(0, size + 1))
        # value i - offset at flat position i (exact in float32): a chunk's values give its position
        x = (np.arange(size) - offset).astype(np.float32).reshape(shape)
        result, calls, expected, broken = _record_relu_chunks(ns, x, workers)
        where = f"{shape} {workers} workers"
        observed[f"{where} values"] = same(np.asarray(result) if _is_array(result) else None)
        observed[f"{where} calls"] = same(len(calls))
        observed[f"{where} one thread per chunk"] = same(len({ident for ident, _ in calls}) == expected)
        flat, spans, contiguous = x.reshape(-1), [], True
        for _, chunk in calls:
            values = chunk.reshape(-1)
            start = int(values[0]) + offset if values.size else -1
            if not (values.size > 0 and 0 <= start and np.array_equal(values, flat[start:start + values.size])):
                contiguous = False
                continue
            spans.append((start, values.size))
        spans.sort()
        position, tiled = 0, contiguous
        for start, length in spans:
            tiled = tiled and start == position
            position += length
        lengths = [length for _, length in spans]
        observed[f"{where} contiguous chunks"] = same(contiguous)
        observed[f"{where} chunks tile x exactly"] = same(bool(tiled and position == size))
        observed[f"{where} chunk sizes differ by at most one"] = same(
            bool(lengths) and max(lengths) - min(lengths) <= 1)
        observed[f"{where} chunk sizes"] = same(sorted(lengths))
        if broken:  # chunks ran one after another: the rest would each wait out the barrier's timeout
            break
    return observed


# -- Task 3: GELU four ways -------------------------------------------------------------------
GELUS = ("gelu_unfused", "fused_gelu", "gelu_inplace", "gelu_chunked")


def _gelu_observations(name, function, x, rng, **kwargs):
    x_before = x.copy()
    got = function(x, **kwargs)
    where = f"{name}{kwargs or ''} {x.shape} {x.dtype}"
    return {f"{where} is an array": same(_is_array(got)),
            f"{where} shape and dtype": same(_layout(got)),
            f"{where} values": close(np.asarray(got) if _is_array(got) else None, rtol=1e-5, atol=1e-5),
            f"{where} x unchanged": same(_unchanged(x, x_before))}


def t02_gelu_values_dtype(ns, rng):
    _given_constants(ns)
    observed = {}
    inputs = [np.array([-3.0, -1.0, 0.0, 1.0, 3.0], dtype=np.float32), rng.standard_normal(1000).astype(np.float32),
              rng.standard_normal((3, 5, 7)).astype(np.float32), rng.standard_normal((4, 6)),
              np.array(0.5, dtype=np.float32), np.array(-1.25), np.zeros((0,), dtype=np.float32), np.zeros((2, 0)),
              np.linspace(-20, 20, 401).astype(np.float32), rng.standard_normal((33, 17)).astype(np.float32).T,
              (4 * rng.standard_normal((2, 3, 4, 5))).astype(np.float32), rng.standard_normal(257)[::2]]
    shape = tuple(_dims(rng, 1, 12, size=int(rng.integers(1, 4))))
    inputs += [(3 * rng.standard_normal(shape)).astype(np.float32), 3 * rng.standard_normal(shape)]
    for name in GELUS:
        function = ns[name]
        for x in inputs:
            observed.update(_gelu_observations(name, function, x, rng))
        zero = function(np.zeros(3, dtype=np.float32))
        observed[f"{name} GELU(0) is exactly 0"] = same(
            _is_array(zero) and bool(np.asarray(zero).reshape(-1)[1] == 0.0))
    chunked = ns["gelu_chunked"]
    chunk_cases = [(inputs[1], 64), (inputs[8], 1), (inputs[8], 7), (inputs[8], 100), (inputs[8], 1000),
                   (inputs[8], 10**6), (inputs[9], 50), (np.array(-1.25), 3), (inputs[10], int(rng.integers(1, 130))),
                   (inputs[13], int(rng.integers(1, 40)))]
    for x, chunk in chunk_cases:
        observed.update(_gelu_observations("gelu_chunked", chunked, x, rng, chunk_elems=chunk))
    return observed


def _peak_beyond_result(function, *args, **kwargs):
    """function's result and the peak bytes tracemalloc saw during the call beyond the result's bytes."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        result = function(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak - before - (result.nbytes if isinstance(result, np.ndarray) else 0)


def t02_gelu_inplace_memory(ns, rng):
    _given_constants(ns)
    inplace = ns["gelu_inplace"]
    observed = {}
    rows, cols = int(rng.integers(300, 700)), int(rng.integers(300, 700))
    inputs = [_uniform(rng, 1_000_000), _uniform(rng, (600, 700), np.float64), _uniform(rng, (3, 500, 333)),
              _uniform(rng, (rows, cols)), _uniform(rng, int(rng.integers(200_000, 600_000)), np.float64)]
    for x in inputs:
        x_before = x.copy()
        got, extra_bytes = _peak_beyond_result(inplace, x)
        where = f"{x.shape} {x.dtype}"
        observed[f"{where} shape and dtype"] = same(_layout(got))
        observed[f"{where} x unchanged"] = same(_unchanged(x, x_before))
        observed[f"{where} new array"] = same(_is_array(got) and not np.shares_memory(got, x))
        observed[f"{where} less than half the input allocated beyond the output"] = same(
            bool(extra_bytes < 0.5 * x.nbytes))
        observed[f"{where} values"] = close(
            np.asarray(got).reshape(-1)[_sample(x.size, rng)] if _is_array(got) else None, rtol=1e-5, atol=1e-5)
    return observed


def _chunked_call(ns, x, **kwargs):
    """gelu_chunked(x, **kwargs), the element count of each np.tanh call it made, its extra peak bytes."""
    tanh_sizes, real_tanh = [], np.tanh

    def recording_tanh(*args, **kw):
        tanh_sizes.append(np.size(args[0]))
        return real_tanh(*args, **kw)

    np.tanh = recording_tanh
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        result = ns["gelu_chunked"](x, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        np.tanh = real_tanh
    return result, tanh_sizes, peak - before - (result.nbytes if isinstance(result, np.ndarray) else 0)


def _check_chunked(ns, x, chunk, rng, observed):
    kwargs = {} if chunk is None else {"chunk_elems": chunk}
    chunk = 262144 if chunk is None else chunk
    x_before = x.copy()
    got, tanh_sizes, extra_bytes = _chunked_call(ns, x, **kwargs)
    where = f"{x.shape} {x.dtype} chunk_elems={kwargs.get('chunk_elems', 'default')}"
    observed[f"{where} shape and dtype"] = same(_layout(got))
    observed[f"{where} x unchanged"] = same(_unchanged(x, x_before))
    observed[f"{where} values"] = close(np.asarray(got).reshape(-1)[_sample(x.size, rng)] if _is_array(got) else None,
                                        rtol=1e-5, atol=1e-5)
    observed[f"{where} np.tanh calls"] = same(len(tanh_sizes))
    observed[f"{where} elements through np.tanh"] = same(int(sum(tanh_sizes)))
    observed[f"{where} at most one chunk per np.tanh call"] = same(bool(tanh_sizes) and max(tanh_sizes) <= chunk)
    observed[f"{where} at most 3 chunks allocated beyond the output"] = same(
        bool(extra_bytes <= 3 * chunk * x.itemsize + 65536))
    return extra_bytes


def t02_gelu_chunked_memory(ns, rng):
    _given_constants(ns)
    observed = {}
    chunk = 16_384
    small = int(rng.integers(400_000, 700_000))
    extra_small = _check_chunked(ns, _uniform(rng, small), chunk, rng, observed)
    extra_large = _check_chunked(ns, _uniform(rng, 4 * small + int(rng.integers(1, chunk))),
                                 chunk, rng, observed)
    observed["extra memory independent of the input size"] = same(bool(abs(extra_large - extra_small) <= chunk * 4))
    observed["chunk_elems=0 ValueError"] = same(_value_error(ns["gelu_chunked"], np.ones(4, dtype=np.float32),
                                                             chunk_elems=0))
    observed["chunk_elems<0 ValueError"] = same(_value_error(ns["gelu_chunked"], np.ones(4, dtype=np.float32),
                                                             chunk_elems=-int(rng.integers(1, 100))))
    cases = [(_uniform(rng, (300, 701), np.float64), 1000), (rng.standard_normal((64, 64)).astype(np.float32), 4096),
             (rng.standard_normal(5000).astype(np.float32), 10**6),
             (_uniform(rng, 2_000_000), None),
             (rng.standard_normal((int(rng.integers(100, 400)), int(rng.integers(100, 400)))),
              int(rng.integers(500, 5000))),
             ((4 * rng.standard_normal(int(rng.integers(2000, 9000)))).astype(np.float32), int(rng.integers(64, 2048)))]
    for x, chunk_elems in cases:
        _check_chunked(ns, x, chunk_elems, rng, observed)
    return observed


# -- Task 4: roofline arithmetic --------------------------------------------------------------
def t02_roofline_counts(ns, rng):
    flops, moved, intensity = ns["matmul_flops"], ns["bytes_moved"], ns["arithmetic_intensity"]
    observed = {}
    # random dimensions keep 2mkn < 2**53, as the test's 10**6 does: a float count is exact there too
    dims = [(2, 3, 4), (1, 1, 1), (128, 64, 32), (10**6, 10**6, 10**6), (1200, 1200, 1200), (64, 1, 64),
            (1, 1000, 1), tuple(_dims(rng, 1, 5000)), tuple(_dims(rng, 10**4, 10**5))]
    for m, k, n in dims:
        observed[f"matmul_flops{(m, k, n)}"] = same(_exact(flops(m, k, n)))
        for itemsize in (None, 2, 8):
            kwargs = {} if itemsize is None else {"itemsize": itemsize}
            observed[f"bytes_moved matmul {(m, k, n)} {kwargs}"] = same(_exact(moved("matmul", m, k, n, **kwargs)))
        observed[f"intensity of {(m, k, n)} float32"] = close(
            _real(intensity(flops(m, k, n), moved("matmul", m, k, n))), rtol=1e-9)
    elementwise = [("add", 1000, None), ("gelu", 10, None), ("relu", 7, 8), ("copy", 5, 2), ("add", 1, 8)]
    for kernel in ("add", "copy", "relu", "gelu"):
        elementwise += [(kernel, int(rng.integers(1, 10**6)), None),
                        (kernel, int(rng.integers(1, 10**6)), int(rng.choice([1, 2, 8, 16])))]
    for kernel, n, itemsize in elementwise:
        kwargs = {} if itemsize is None else {"itemsize": itemsize}
        observed[f"bytes_moved({kernel!r}, {n}, {kwargs})"] = same(_exact(moved(kernel, n, **kwargs)))
        observed[f"intensity of {kernel} {n} {kwargs}"] = close(_real(intensity(n, moved(kernel, n, **kwargs))),
                                                                rtol=1e-9)
    for a, b in [(3.0, 4.0), (10, 3), (float(rng.random() * 100), float(rng.random() * 100 + 1e-3))]:
        observed[f"arithmetic_intensity({a}, {b})"] = close(_real(intensity(a, b)), rtol=1e-9)
    for args in [("conv", 10), ("matmul", 4, 4), ("add", 4, 4), ("matmul", 1, 2, 3, 4), ("relu",), ("copy", 3, 3),
                 ("softmax", int(rng.integers(1, 100)))]:
        observed[f"bytes_moved{args} ValueError"] = same(_value_error(moved, *args))
    for args in [(10, 0), (10, -5), (1.0, -float(rng.random() * 10 + 0.1))]:
        observed[f"arithmetic_intensity{args} ValueError"] = same(_value_error(intensity, *args))
    return observed


def t02_roofline_bounds(ns, rng):
    attainable, bound = ns["attainable_gflops"], ns["bound"]
    observed = {}
    exact_cases = [(1.0, 100.0, 25.0), (4.0, 100.0, 25.0), (10.0, 100.0, 25.0), (12.5, 200.0, 16.0), (0.0, 200.0, 16.0)]
    # ridge r and bandwidth a power of two: peak / bandwidth and r * bandwidth are both exact
    ridge, bandwidth = float(rng.integers(1, 400)) / 4, float(2.0 ** int(rng.integers(0, 8)))
    peak = ridge * bandwidth
    for ai in (ridge, ridge * (1 - 2.0**-12), ridge * (1 + 2.0**-12), 0.0):
        exact_cases.append((ai, peak, bandwidth))
    for ai, p, b in exact_cases:
        observed[f"attainable_gflops({ai}, {p}, {b})"] = same(_real(attainable(ai, p, b)))
    close_cases = [(12.4, 200.0, 16.0)]
    close_cases += [(float(ai), 200.0, 16.0) for ai in np.geomspace(1e-3, 1e4, 29)]
    close_cases += [(float(ai), peak, bandwidth) for ai in ridge * np.geomspace(1e-3, 1e3, 15)]
    p2, b2 = float(rng.uniform(10, 5000)), float(rng.uniform(1, 200))
    close_cases += [(float(ai), p2, b2) for ai in rng.uniform(0, 3 * p2 / b2, size=8)]
    for ai, p, b in close_cases:
        observed[f"attainable_gflops({ai}, {p}, {b})"] = close(_real(attainable(ai, p, b)), rtol=1e-9)
    bound_cases = [(1.0, 100.0, 25.0), (3.99, 100.0, 25.0), (4.0, 100.0, 25.0), (50.0, 100.0, 25.0),
                   (12.5, 200.0, 16.0), (12.49, 200.0, 16.0), (1 / 12, 2000.0, 50.0), (1024 / 6, 200.0, 20.0)]
    bound_cases += [(ai, p, b) for ai, p, b in exact_cases] + [(ai, p, b) for ai, p, b in close_cases[1:]
                                                               if abs(ai * b - p) > 1e-6 * p]
    for ai, p, b in bound_cases:
        kind = bound(ai, p, b)
        observed[f"bound({ai}, {p}, {b})"] = same(str(kind) if isinstance(kind, str) else kind)
    for bad in [(1.0, 0.0, 10.0), (1.0, 10.0, 0.0), (1.0, -5.0, 10.0), (1.0, 10.0, -float(rng.integers(1, 50)))]:
        observed[f"attainable_gflops{bad} ValueError"] = same(_value_error(attainable, *bad))
    return observed
