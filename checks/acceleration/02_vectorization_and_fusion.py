"""Hidden cases of 02_vectorization_and_fusion: one check per test cell, named by its grade_id.

Each check runs in the check process after the given and student cells (``autograder/check``),
calls the student's functions (``ns``) on inputs drawn from ``rng`` and returns observations
(``observe``), compared outside with the reference solution's. Case names are what a student
reads when a case fails: they name the kind of case, never its inputs.

What the tests record in-process comes from the notebook's given cell, used here through ``ns``:
``traced_call`` (tracemalloc peak beyond the result, element counts of ``np.tanh`` calls),
``record_relu_chunks`` (the chunks ``parallel_relu`` hands to ``vectorized_relu``) and
``chunk_spans``. The evidence the student's process cannot write is the grader's own: the peak
resident memory of a call (``peak_memory``, ``memory_evidence``; limits follow the input sizes,
large enough that a full-size array stands out of the page-granular measurement), and a barrier
the grader holds for the chunks of ``parallel_relu`` (``rendezvous``, ``rendezvous_evidence``).
The two memory measures see different things and both must pass: tracemalloc counts the bytes a
call allocates (even a full-size buffer of which only one chunk is ever written), resident memory
the pages it touches, read by the grader where student code cannot change it.
"""
import numpy as np
from observe import close, memory_evidence, peak_memory, raises_naming, rendezvous, rendezvous_evidence, same

MEMORY_SLACK_BYTES = 2 * 2**20   # page rounding, allocator and tracemalloc bookkeeping
DEFAULT_CHUNK_ELEMS = 262144     # gelu_chunked's documented default


# -- shared helpers ---------------------------------------------------------------------------
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


def _dims(rng, low=1, high=9, size=3):
    return [int(v) for v in rng.integers(low, high, size=size)]


# -- Task 1: vectorized_matmul ----------------------------------------------------------------
def t02_matmul_batched(ns, rng):
    matmul = ns["vectorized_matmul"]
    observed = {}
    hand = matmul(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[5.0, 6.0], [7.0, 8.0]]))
    observed["hand product"] = same(np.asarray(hand, dtype=np.float64) if _is_array(hand) else hand)
    m, k, n = _dims(rng)
    b1, b2 = _dims(rng, 2, 5, size=2)
    cases = [("2-D product", (2, 3), (3, 4), 1e-5), ("batched product", (5, 3, 4), (5, 4, 2), 1e-5),
             ("matrix times a batch", (3, 4), (6, 4, 5), 1e-5),
             ("random 2-D product", (m, k), (k, n), 1e-5), ("random batched product", (b1, m, k), (b1, k, n), 1e-5),
             ("random broadcast batch dimensions", (b1, 1, m, k), (b2, k, n), 1e-5),
             ("random matrix times a batch", (m, k), (b2, k, n), 1e-5),
             ("random batch times a matrix", (b1, m, k), (k, n), 1e-5),
             ("random batches broadcast both ways", (1, b2, m, k), (b1, 1, k, n), 1e-5),
             ("4-D times 3-D, broadcast", (3, 1, 4, 5), (2, 5, 6), 1e-4), ("row times column", (1, 7), (7, 1), 1e-4),
             ("4-D batch times a matrix", (2, 2, 33, 17), (17, 9), 1e-4),
             ("long inner dimension", (1, 300), (300, 1), 1e-4), ("unit dimensions", (4, 1, 1), (1, 1, 3), 1e-4)]
    for case, a_shape, b_shape, tolerance in cases:
        a = rng.standard_normal(a_shape).astype(np.float32)
        b = rng.standard_normal(b_shape).astype(np.float32)
        a_before, b_before = a.copy(), b.copy()
        got = matmul(a, b)
        observed[f"{case}: shape and dtype"] = same(_layout(got))
        observed[f"{case}: values"] = close(got if _is_array(got) else None, rtol=tolerance, atol=tolerance)
        observed[f"{case}: inputs unchanged"] = same(_unchanged(a, a_before) and _unchanged(b, b_before))
    batch, m, k, n = int(rng.integers(2, 7)), *_dims(rng, 5, 41)
    transposed = {"transposed float64 inputs": (rng.standard_normal((6, 40, 30)).transpose(0, 2, 1),
                                                rng.standard_normal((6, 20, 40)).transpose(0, 2, 1)),
                  "random transposed float64 inputs": (rng.standard_normal((batch, k, m)).transpose(0, 2, 1),
                                                       rng.standard_normal((batch, n, k)).transpose(0, 2, 1))}
    for case, (a, b) in transposed.items():
        got = matmul(a, b)
        observed[f"{case}: shape and dtype"] = same(_layout(got))
        observed[f"{case}: values"] = close(got if _is_array(got) else None, rtol=1e-12, atol=1e-12)
    return observed


def t02_matmul_errors(ns, rng):
    matmul = ns["vectorized_matmul"]
    observed = {}
    m, k, n = _dims(rng, 1, 9)
    bad = [("1-D left operand", (3,), (3, 2)), ("mismatched inner dimensions", (2, 3), (4, 5)),
           ("1-D right operand", (2, 3), (3,)), ("both operands 1-D", (4,), (4,)),
           ("batched, mismatched inner dimensions", (2, 3, 4), (2, 5, 6)), ("operands swapped", (5, 3), (2, 5)),
           ("random 1-D left operand", (k,), (k, n)), ("random 1-D right operand", (m, k), (k,)),
           ("random mismatched inner dimensions", (m, k), (k + int(rng.integers(1, 4)), n)),
           ("random batch, mismatched inner dimensions", (int(rng.integers(2, 5)), m, k), (k + 1, n)),
           ("random batches, mismatched inner dimensions", (k + 1, m, k), (k + 1, k + 2, n))]
    for case, a_shape, b_shape in bad:
        observed[f"{case}: ValueError naming both shapes"] = same(raises_naming(
            matmul, (np.ones(a_shape), np.ones(b_shape)), ValueError, [str(a_shape), str(b_shape)]))
    b1, b2 = int(rng.integers(2, 5)), int(rng.integers(5, 8))
    for number, (a_shape, b_shape) in enumerate([((4, 2, 3), (5, 3, 2)), ((b1, m, k), (b2, k, n)),
                                                 ((b1, 1, m, k), (b2, 3, k, n))], 1):
        observed[f"batches that do not broadcast {number}: ValueError"] = same(
            _value_error(matmul, np.ones(a_shape), np.ones(b_shape)))
    for case, a_shape, b_shape in [("2-D product", (2, 3), (3, 4)), ("row times column", (1, 5), (5, 1)),
                                   ("random 2-D product", (m, k), (k, n))]:  # batched: t02_matmul_batched
        observed[f"{case} works"] = same(_layout(matmul(np.ones(a_shape), np.ones(b_shape))))
    return observed


# -- Task 2: vectorized_relu and parallel_relu ------------------------------------------------
def _relu_cases(rng):
    shape = tuple(_dims(rng, 1, 7, size=int(rng.integers(1, 4))))
    return [("float32 vector", rng.standard_normal(7).astype(np.float32)),
            ("float64 3-D array", rng.standard_normal((3, 4, 5))),
            ("int32 matrix", rng.integers(-5, 5, size=(4, 6), dtype=np.int32)),
            ("float32 0-d array", np.array(-1.5, dtype=np.float32)), ("float64 0-d array", np.array(2.25)),
            ("empty vector", np.zeros((0,), dtype=np.float32)), ("empty matrix", np.zeros((2, 0))),
            ("transposed view", rng.standard_normal((8, 9)).T),
            ("strided view", rng.standard_normal(41).astype(np.float32)[::3]),
            ("int64 vector", rng.integers(-9, 9, size=17)),
            ("random float array",
             rng.standard_normal(shape).astype((np.float32, np.float64)[int(rng.integers(0, 2))])),
            ("random integer array",
             rng.integers(-100, 100, size=shape).astype((np.int16, np.int32, np.int64)[int(rng.integers(0, 3))])),
            ("random strided transposed view",
             rng.standard_normal((int(rng.integers(3, 9)), int(rng.integers(3, 9)))).T[::2])]


def t02_relu_vectorized(ns, rng):
    relu = ns["vectorized_relu"]
    observed = {}
    for case, x in _relu_cases(rng):
        x_before = x.copy()
        got = relu(x)
        observed[f"{case}: is an array"] = same(_is_array(got))
        observed[f"{case}: values"] = same(np.asarray(got) if _is_array(got) else None)
        observed[f"{case}: x unchanged"] = same(_unchanged(x, x_before))
        observed[f"{case}: new array"] = same(_is_array(got) and not np.shares_memory(got, x))

    # several MB: the result's own pages are measured exactly, per-element objects take many times more
    x = _uniform(rng, int(rng.integers(1_000_000, 1_250_001)))
    (got, extra_bytes, _), window = peak_memory(ns["traced_call"], relu, x)
    observed["large input: values"] = same(np.asarray(got)[_sample(x.size, rng)] if _is_array(got) else None)
    observed["large input: at most 1.5 x input traced beyond the result"] = same(
        bool(extra_bytes <= 1.5 * x.nbytes + 65536))
    observed["large input: peak memory beyond the result under half the input"] = memory_evidence(
        window, 0.5 * x.nbytes, minus_bytes=x.nbytes)

    part = slice(int(rng.integers(0, 20)), int(rng.integers(30, 80)))
    out_cases = [("whole float32 buffer", rng.standard_normal((5, 6)).astype(np.float32), slice(None)),
                 ("slice of a float64 buffer", rng.standard_normal(100), slice(10, 60)),
                 ("rows of an integer buffer", rng.integers(-3, 3, size=(4, 4)), slice(1, 3)),
                 ("random slice of a float32 buffer", rng.standard_normal(80).astype(np.float32), part),
                 ("strided window of an int32 buffer", rng.integers(-50, 50, size=(6, 5), dtype=np.int32),
                  (slice(1, 5), slice(None, None, 2)))]
    for case, x, where_part in out_cases:
        x_before = x.copy()
        buffer = np.full_like(x, 7)
        returned = relu(x[where_part], out=buffer[where_part])
        observed[f"out= {case}: buffer"] = same(buffer)
        observed[f"out= {case}: returns out"] = same(_is_array(returned) and bool(np.shares_memory(returned, buffer)))
        observed[f"out= {case}: x unchanged"] = same(_unchanged(x, x_before))
    return observed


def t02_parallel_relu_values(ns, rng):
    parallel = ns["parallel_relu"]
    observed = {}
    cases = [("float32 vector", rng.standard_normal(10).astype(np.float32), 4),
             ("float64 matrix", rng.standard_normal((4, 257)), 3),
             ("fewer elements than workers", rng.standard_normal(3).astype(np.float32), 4),
             ("one worker", rng.standard_normal(1001), 1),
             ("float64 0-d array", np.array(2.5), 4), ("float32 0-d array", np.array(-2.5, dtype=np.float32), 2),
             ("empty vector", np.zeros((0,)), 4), ("empty matrix", np.zeros((2, 0)), 3),
             ("one element", rng.standard_normal(1).astype(np.float32), 8),
             ("many more workers than elements", rng.standard_normal(5), 8),
             ("ragged float32 vector", rng.standard_normal(1001).astype(np.float32), 7),
             ("integer matrix", rng.integers(-50, 50, size=(6, 7)), 5),
             ("transposed view", rng.standard_normal((30, 12)).T, 4),
             ("strided view", rng.standard_normal((5, 40))[:, ::3], 2),
             ("float32 4-D array", rng.standard_normal((2, 3, 5, 7)).astype(np.float32), 6)]
    # all positive, sizes not divisible by the worker count: an element left out cannot pass as a 0
    for number in range(1, 4):
        workers = int(rng.integers(2, 9))
        size = workers * int(rng.integers(1, 200)) + int(rng.integers(1, workers))
        cases.append((f"positive ragged vector {number}", 1.0 + rng.random(size), workers))
    shape = tuple(_dims(rng, 1, 12, size=int(rng.integers(1, 4))))
    cases += [("random float32 array", rng.standard_normal(shape).astype(np.float32), int(rng.integers(1, 10))),
              ("random integer array", rng.integers(-9, 9, size=shape), int(rng.integers(1, 10)))]
    for case, x, workers in cases:
        x_before = x.copy()
        got = parallel(x, num_workers=workers)
        observed[f"{case}: values"] = same(np.asarray(got) if _is_array(got) else None)
        observed[f"{case}: shape and dtype"] = same(_layout(got))
        observed[f"{case}: x unchanged"] = same(_unchanged(x, x_before))
    observed["num_workers=0: ValueError"] = same(_value_error(parallel, np.ones(4), num_workers=0))
    observed["negative num_workers: ValueError"] = same(_value_error(parallel, np.ones(4),
                                                                     num_workers=-int(rng.integers(1, 5))))
    return observed


class _GraderBarrier:
    """A barrier the grader holds, for ``record_relu_chunks``: ``wait()`` returns True once
    ``parties`` calls of ``group`` wait at the grader together, False if they never do."""

    def __init__(self, group: int, parties: int):
        self.group, self.parties = group, parties

    def wait(self) -> bool:
        return rendezvous(self.group, self.parties)


def t02_parallel_relu_workers(ns, rng):
    observed = {}
    cases = [("vector, 4 workers", (10_007,), 4), ("vector, 3 workers", (10_007,), 3),
             ("matrix", (37, 41), 4), ("more workers than elements", (5,), 8), ("long vector", (100_003,), 2),
             ("one worker", (9, 11), 1), ("3-D array", (2, 3, 7), 5),
             ("random short vector", (int(rng.integers(1, 9)),), int(rng.integers(5, 12))),
             ("random matrix", tuple(_dims(rng, 2, 40, size=2)), int(rng.integers(2, 9))),
             ("random long vector", (int(rng.integers(1000, 30000)),), int(rng.integers(1, 9)))]
    for group, (case, shape, workers) in enumerate(cases):
        size = int(np.prod(shape))
        # consecutive values (exact in float32): a chunk's first value gives its position
        x = (np.arange(size) - int(rng.integers(0, size + 1))).astype(np.float32).reshape(shape)
        parties = max(1, min(workers, size))
        result, calls, all_met = ns["record_relu_chunks"](x, workers, _GraderBarrier(group, parties))
        spans = ns["chunk_spans"](x, [chunk for _, chunk in calls])
        pieces = [span for span in spans if span is not None]
        observed[f"{case}: values"] = same(np.asarray(result) if _is_array(result) else None)
        observed[f"{case}: number of chunks"] = same(len(calls))
        observed[f"{case}: one thread per chunk"] = same(len({ident for ident, _ in calls}))
        observed[f"{case}: chunks waited together at the grader"] = rendezvous_evidence(group)
        observed[f"{case}: chunks are contiguous pieces of x"] = same(len(pieces) == len(spans))
        observed[f"{case}: chunks cover x exactly once"] = same(
            [start for start, _ in pieces] == list(np.cumsum([0] + [length for _, length in pieces])[:-1])
            and sum(length for _, length in pieces) == size)
        observed[f"{case}: chunk boundaries"] = same([[int(start), int(length)] for start, length in pieces])
        if not all_met:  # chunks run one after another: the other cases would each wait out the grader's timeout
            break
    return observed


# -- Task 3: GELU four ways -------------------------------------------------------------------
GELUS = ("gelu_unfused", "fused_gelu", "gelu_inplace", "gelu_chunked")


def _gelu_observations(case, function, x, **kwargs):
    x_before = x.copy()
    got = function(x, **kwargs)
    return {f"{case}: is an array": same(_is_array(got)),
            f"{case}: shape and dtype": same(_layout(got)),
            f"{case}: values": close(np.asarray(got) if _is_array(got) else None, rtol=1e-5, atol=1e-5),
            f"{case}: x unchanged": same(_unchanged(x, x_before))}


def t02_gelu_values_dtype(ns, rng):
    observed = {}
    shape = tuple(_dims(rng, 1, 12, size=int(rng.integers(1, 4))))
    inputs = {"hand values": np.array([-3.0, -1.0, 0.0, 1.0, 3.0], dtype=np.float32),
              "float32 vector": rng.standard_normal(1000).astype(np.float32),
              "float32 3-D array": rng.standard_normal((3, 5, 7)).astype(np.float32),
              "float64 matrix": rng.standard_normal((4, 6)),
              "float32 0-d array": np.array(0.5, dtype=np.float32), "float64 0-d array": np.array(-1.25),
              "empty vector": np.zeros((0,), dtype=np.float32), "empty matrix": np.zeros((2, 0)),
              "wide range of values": np.linspace(-20, 20, 401).astype(np.float32),
              "transposed view": rng.standard_normal((33, 17)).astype(np.float32).T,
              "float32 4-D array": (4 * rng.standard_normal((2, 3, 4, 5))).astype(np.float32),
              "strided view": rng.standard_normal(257)[::2],
              "random float32 array": (3 * rng.standard_normal(shape)).astype(np.float32),
              "random float64 array": 3 * rng.standard_normal(shape)}
    for name in GELUS:
        function = ns[name]
        for case, x in inputs.items():
            observed.update(_gelu_observations(f"{name}, {case}", function, x))
        zero = function(np.zeros(3, dtype=np.float32))
        observed[f"{name}: GELU(0) is exactly 0"] = same(
            _is_array(zero) and bool(np.asarray(zero).reshape(-1)[1] == 0.0))
    chunk_cases = [("float32 vector", 64), ("wide range of values", 1), ("wide range of values", 7),
                   ("wide range of values", 100), ("wide range of values", 1000),
                   ("wide range of values", 10**6), ("transposed view", 50), ("float64 0-d array", 3),
                   ("float32 4-D array", int(rng.integers(1, 130))), ("random float64 array", int(rng.integers(1, 40)))]
    for number, (case, chunk) in enumerate(chunk_cases, 1):
        observed.update(_gelu_observations(f"gelu_chunked chunk case {number}, {case}", ns["gelu_chunked"],
                                           inputs[case], chunk_elems=chunk))
    return observed


def t02_gelu_inplace_memory(ns, rng):
    inplace, traced = ns["gelu_inplace"], ns["traced_call"]
    observed = {}
    # several MB each: a full-size temporary stands out of the page-granular peak memory
    large = [("large float32 vector", _uniform(rng, int(rng.integers(1_000_000, 1_250_001)))),
             ("large float64 vector", _uniform(rng, int(rng.integers(500_000, 625_001)), np.float64))]
    rows, cols = int(rng.integers(100, 500)), int(rng.integers(100, 500))
    small = [("float64 matrix", _uniform(rng, (600, 700), np.float64)),
             ("float32 3-D array", _uniform(rng, (3, 500, 333))),
             ("random float32 matrix", _uniform(rng, (rows, cols)))]
    for number, (case, x) in enumerate(large + small):
        x_before = x.copy()
        if number < len(large):
            (got, extra_bytes, _), window = peak_memory(traced, inplace, x)
            observed[f"{case}: peak memory beyond the output under half the input"] = memory_evidence(
                window, 0.5 * x.nbytes, minus_bytes=x.nbytes)
        else:
            got, extra_bytes, _ = traced(inplace, x)
        observed[f"{case}: shape and dtype"] = same(_layout(got))
        observed[f"{case}: x unchanged"] = same(_unchanged(x, x_before))
        observed[f"{case}: new array"] = same(_is_array(got) and not np.shares_memory(got, x))
        observed[f"{case}: less than half the input traced beyond the output"] = same(
            bool(extra_bytes < 0.5 * x.nbytes))
        observed[f"{case}: values"] = close(
            np.asarray(got).reshape(-1)[_sample(x.size, rng)] if _is_array(got) else None, rtol=1e-5, atol=1e-5)
    return observed


def _check_chunked(ns, case, x, chunk, rng, observed, measure_memory=False):
    """Observations of one gelu_chunked call (``chunk`` None: the default); its traced extra bytes."""
    kwargs = {} if chunk is None else {"chunk_elems": chunk}
    chunk = DEFAULT_CHUNK_ELEMS if chunk is None else chunk
    x_before = x.copy()
    if measure_memory:
        (got, extra_bytes, tanh_sizes), window = peak_memory(ns["traced_call"], ns["gelu_chunked"], x, **kwargs)
        observed[f"{case}: peak memory beyond the output a few chunks"] = memory_evidence(
            window, 3 * chunk * x.itemsize + MEMORY_SLACK_BYTES, minus_bytes=x.nbytes)
    else:
        got, extra_bytes, tanh_sizes = ns["traced_call"](ns["gelu_chunked"], x, **kwargs)
    observed[f"{case}: shape and dtype"] = same(_layout(got))
    observed[f"{case}: x unchanged"] = same(_unchanged(x, x_before))
    observed[f"{case}: values"] = close(np.asarray(got).reshape(-1)[_sample(x.size, rng)] if _is_array(got) else None,
                                        rtol=1e-5, atol=1e-5)
    observed[f"{case}: np.tanh calls"] = same(len(tanh_sizes))
    observed[f"{case}: elements through np.tanh"] = same(int(sum(tanh_sizes)))
    observed[f"{case}: at most one chunk per np.tanh call"] = same(bool(tanh_sizes) and max(tanh_sizes) <= chunk)
    observed[f"{case}: at most 3 chunks traced beyond the output"] = same(
        bool(extra_bytes <= 3 * chunk * x.itemsize + 65536))
    return extra_bytes


def t02_gelu_chunked_memory(ns, rng):
    observed = {}
    chunk = 16_384
    small = int(rng.integers(300_000, 450_000))
    extra_small = _check_chunked(ns, "small input", _uniform(rng, small), chunk, rng, observed)
    extra_large = _check_chunked(ns, "input 4 times larger", _uniform(rng, 4 * small + int(rng.integers(1, chunk))),
                                 chunk, rng, observed, measure_memory=True)
    observed["traced memory independent of the input size"] = same(bool(abs(extra_large - extra_small) <= chunk * 4))
    _check_chunked(ns, "default chunk size", _uniform(rng, int(rng.integers(2_000_000, 2_200_000))), None, rng,
                   observed, measure_memory=True)
    observed["chunk_elems=0: ValueError"] = same(_value_error(ns["gelu_chunked"], np.ones(4, dtype=np.float32),
                                                              chunk_elems=0))
    observed["negative chunk_elems: ValueError"] = same(_value_error(ns["gelu_chunked"], np.ones(4, dtype=np.float32),
                                                                     chunk_elems=-int(rng.integers(1, 100))))
    cases = [("float64 matrix", _uniform(rng, (300, 701), np.float64), 1000),
             ("float32 matrix in one chunk", rng.standard_normal((64, 64)).astype(np.float32), 4096),
             ("chunk larger than the input", rng.standard_normal(5000).astype(np.float32), 10**6),
             ("random float64 matrix", rng.standard_normal((int(rng.integers(100, 400)), int(rng.integers(100, 400)))),
              int(rng.integers(500, 5000))),
             ("random float32 vector", (4 * rng.standard_normal(int(rng.integers(2000, 9000)))).astype(np.float32),
              int(rng.integers(64, 2048)))]
    for case, x, chunk_elems in cases:
        _check_chunked(ns, case, x, chunk_elems, rng, observed)
    return observed


# -- Task 4: roofline arithmetic --------------------------------------------------------------
def t02_roofline_counts(ns, rng):
    flops, moved, intensity = ns["matmul_flops"], ns["bytes_moved"], ns["arithmetic_intensity"]
    observed = {}
    # random dimensions keep 2mkn < 2**53, as the test's 10**6 does: a float count is exact there too
    dims = [(2, 3, 4), (1, 1, 1), (128, 64, 32), (10**6, 10**6, 10**6), (1200, 1200, 1200), (64, 1, 64),
            (1, 1000, 1), tuple(_dims(rng, 1, 5000)), tuple(_dims(rng, 10**4, 10**5))]
    for number, (m, k, n) in enumerate(dims, 1):
        case = f"matmul case {number}"
        observed[f"{case}: FLOPs"] = same(_exact(flops(m, k, n)))
        for label, kwargs in (("default itemsize", {}), ("itemsize 2", {"itemsize": 2}),
                              ("itemsize 8", {"itemsize": 8})):
            observed[f"{case}: bytes moved, {label}"] = same(_exact(moved("matmul", m, k, n, **kwargs)))
        observed[f"{case}: intensity"] = close(_real(intensity(flops(m, k, n), moved("matmul", m, k, n))), rtol=1e-9)
    elementwise = [("add", 1000, None), ("gelu", 10, None), ("relu", 7, 8), ("copy", 5, 2), ("add", 1, 8)]
    for kernel in ("add", "copy", "relu", "gelu"):
        elementwise += [(kernel, int(rng.integers(1, 10**6)), None),
                        (kernel, int(rng.integers(1, 10**6)), int(rng.choice([1, 2, 8, 16])))]
    for number, (kernel, n, itemsize) in enumerate(elementwise, 1):
        kwargs = {} if itemsize is None else {"itemsize": itemsize}
        case = f"{kernel} case {number}"
        observed[f"{case}: bytes moved"] = same(_exact(moved(kernel, n, **kwargs)))
        observed[f"{case}: intensity"] = close(_real(intensity(n, moved(kernel, n, **kwargs))), rtol=1e-9)
    ratios = [(3.0, 4.0), (10, 3), (float(rng.random() * 100), float(rng.random() * 100 + 1e-3))]
    for number, (a, b) in enumerate(ratios, 1):
        observed[f"arithmetic_intensity case {number}"] = close(_real(intensity(a, b)), rtol=1e-9)
    bad = [("unknown kernel", ("conv", 10)), ("matmul with 2 dimensions", ("matmul", 4, 4)),
           ("add with 2 dimensions", ("add", 4, 4)), ("matmul with 4 dimensions", ("matmul", 1, 2, 3, 4)),
           ("relu without a size", ("relu",)), ("copy with 2 dimensions", ("copy", 3, 3)),
           ("another unknown kernel", ("softmax", int(rng.integers(1, 100))))]
    for case, args in bad:
        observed[f"bytes_moved, {case}: ValueError"] = same(_value_error(moved, *args))
    for case, args in [("zero bytes", (10, 0)), ("negative bytes", (10, -5)),
                       ("random negative bytes", (1.0, -float(rng.random() * 10 + 0.1)))]:
        observed[f"arithmetic_intensity, {case}: ValueError"] = same(_value_error(intensity, *args))
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
    for number, (ai, p, b) in enumerate(exact_cases, 1):
        observed[f"attainable_gflops exact case {number}"] = same(_real(attainable(ai, p, b)))
    close_cases = [(12.4, 200.0, 16.0)]
    close_cases += [(float(ai), 200.0, 16.0) for ai in np.geomspace(1e-3, 1e4, 29)]
    close_cases += [(float(ai), peak, bandwidth) for ai in ridge * np.geomspace(1e-3, 1e3, 15)]
    p2, b2 = float(rng.uniform(10, 5000)), float(rng.uniform(1, 200))
    close_cases += [(float(ai), p2, b2) for ai in rng.uniform(0, 3 * p2 / b2, size=8)]
    for number, (ai, p, b) in enumerate(close_cases, 1):
        observed[f"attainable_gflops case {number}"] = close(_real(attainable(ai, p, b)), rtol=1e-9)
    bound_cases = [(1.0, 100.0, 25.0), (3.99, 100.0, 25.0), (4.0, 100.0, 25.0), (50.0, 100.0, 25.0),
                   (12.5, 200.0, 16.0), (12.49, 200.0, 16.0), (1 / 12, 2000.0, 50.0), (1024 / 6, 200.0, 20.0)]
    bound_cases += exact_cases + [(ai, p, b) for ai, p, b in close_cases[1:] if abs(ai * b - p) > 1e-6 * p]
    for number, (ai, p, b) in enumerate(bound_cases, 1):
        kind = bound(ai, p, b)
        observed[f"bound case {number}"] = same(str(kind) if isinstance(kind, str) else kind)
    for case, bad in [("zero peak", (1.0, 0.0, 10.0)), ("zero bandwidth", (1.0, 10.0, 0.0)),
                      ("negative peak", (1.0, -5.0, 10.0)),
                      ("negative bandwidth", (1.0, 10.0, -float(rng.integers(1, 50))))]:
        observed[f"attainable_gflops, {case}: ValueError"] = same(_value_error(attainable, *bad))
    return observed
