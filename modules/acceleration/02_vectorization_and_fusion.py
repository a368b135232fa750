# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 — Vectorization, kernel fusion and the roofline
#
# A processor has two speed limits: how fast it does arithmetic (GFLOP/s) and how fast memory
# feeds it (GB/s). Element-wise work such as ReLU or GELU does a few operations per number it
# loads, so memory limits it; a large matrix product reuses every number it loads many times, so
# arithmetic limits it. The roofline model turns this into one picture. In this notebook you will:
#
# 1. call BLAS once for a whole batch of matrix products (Task 1);
# 2. split an element-wise kernel over threads and see what extra cores buy memory-bound work (Task 2);
# 3. write GELU four ways and measure the memory each one allocates and the time it takes (Task 3);
# 4. do the roofline arithmetic and place the kernels of notebooks 01 and 02 on this machine's
#    roofline (Task 4).
#
# **How it is graded.** Each task is followed by grade cells: visible tests you can run now, and
# hidden cases with other inputs that the grader runs in a separate process when your notebook is
# graded. The tests check how the work is done as well as the answer, without a clock: which chunks
# your threads processed and whether they ran at the same time, how much temporary memory a call
# allocates (`tracemalloc` here, the process's peak memory when graded), whether your counts match
# the formulas. Timings are printed for you and never graded; they are this machine's and change
# from run to run. Two written questions at the end are graded by hand.
#
# **How to run the visible tests.** Use *Kernel > Restart Kernel and Run All Cells...*. A grade
# cell that passes prints nothing; a failing one says what is wrong, and the run goes on to the
# next cell. A cell that measures a function you have not written yet prints one line saying which
# task to finish first.

# %%
import contextlib
import math
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import benchmarking
import plotting
from benchmarking import benchmark_size, format_seconds, time_call

# %% [markdown]
# ## This machine's two ceilings
# Every rate below is compared with two limits measured here, not taken from a datasheet:
# - **peak GFLOP/s**: a float32 matrix product through NumPy's BLAS on all cores,
#   counting 2·n³ FLOPs;
# - **memory bandwidth**: copying an array much larger than the caches, counting the bytes read
#   plus the bytes written.
#
# Both come from repeated runs after a warm-up (`benchmarking.measure_peak_gflops` and
# `benchmarking.measure_copy_bandwidth_gbs`). A ceiling is a measurement like any other: another
# program busy on the machine can make it come out low, and the roofline at the end says so when
# one of your kernels beats it. While the notebook is being graded both are measured on small
# arrays, so they are only meaningful in your own full run.

# %%
peak_gflops = benchmarking.measure_peak_gflops(n=benchmark_size(1024, 256))
bandwidth_gbs = benchmarking.measure_copy_bandwidth_gbs(nbytes=benchmark_size(256 * 2**20, 8 * 2**20))
print(f"this machine: float32 GEMM {peak_gflops:.0f} GFLOP/s, copy bandwidth {bandwidth_gbs:.1f} GB/s")

# %% [markdown]
# ## Helpers given to you
# The grade cells and the measurements use the helpers below; read them to see exactly what the
# tests record. `skipped_until_done` lets a measurement cell run before you have finished the task
# it measures: it prints which task to finish and the notebook goes on.

# %% nbgrader={"grade": false, "grade_id": "given_helpers", "locked": true, "schema_version": 3, "solution": false}
@contextlib.contextmanager
def skipped_until_done(task: str):
    """Run the with-block; if it calls a function that is still a stub (it raises
    NotImplementedError), print one line naming the task to finish and go on."""
    try:
        yield
    except NotImplementedError:
        print(f"skipped: finish {task} first (a function this cell calls still raises NotImplementedError)")


def traced_call(fn, *args, **kwargs):
    """Call fn(*args, **kwargs) under tracemalloc and with np.tanh counting its inputs.

    Returns (result, extra_bytes, tanh_sizes): the peak bytes NumPy and Python allocated during
    the call beyond the result's own bytes, and the element count of each np.tanh call made.
    """
    tanh_sizes, real_tanh = [], np.tanh

    def counting_tanh(*tanh_args, **tanh_kwargs):
        tanh_sizes.append(np.size(tanh_args[0]))
        return real_tanh(*tanh_args, **tanh_kwargs)

    np.tanh = counting_tanh
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        result = fn(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        np.tanh = real_tanh
    result_bytes = result.nbytes if isinstance(result, np.ndarray) else 0
    return result, peak - before - result_bytes, tanh_sizes


def record_relu_chunks(x, num_workers, barrier):
    """parallel_relu(x, num_workers) with vectorized_relu replaced by a recorder.

    Each call records (thread id, a copy of its chunk); the first barrier.parties calls then wait
    at `barrier` until all of them have arrived, so chunks run one after another never all arrive.
    Returns (result, calls, all_met): all_met is False if a wait gave up (the barrier timed out).
    """
    calls, gave_up, lock = [], [], threading.Lock()
    original = vectorized_relu

    def recording_relu(chunk, *args, **kwargs):
        with lock:
            calls.append((threading.get_ident(), np.array(chunk, copy=True)))
            waits = len(calls) <= barrier.parties
        if waits:
            try:
                met = barrier.wait() is not False
            except threading.BrokenBarrierError:
                met = False
            if not met:
                gave_up.append(threading.get_ident())
        return original(chunk, *args, **kwargs)

    globals()["vectorized_relu"] = recording_relu
    try:
        result = parallel_relu(x, num_workers=num_workers)
    finally:
        globals()["vectorized_relu"] = original
    return result, calls, not gave_up


def chunk_spans(x, chunks):
    """(start, length) of each chunk within x.reshape(-1), sorted; None for a chunk that is not a
    contiguous piece of it. x must hold consecutive values (flat[i] == flat[0] + i), so that a
    chunk's first value gives its position."""
    flat = x.reshape(-1)
    spans, strays = [], 0
    for chunk in chunks:
        values = np.reshape(chunk, -1)
        start = int(values[0] - flat[0]) if values.size and flat.size else -1
        if 0 <= start <= flat.size - values.size and values.size and np.array_equal(
                values, flat[start:start + values.size]):
            spans.append((start, values.size))
        else:
            strays += 1
    return sorted(spans) + [None] * strays


def gelu_float64(x):
    """GELU (tanh approximation) computed in float64: what the tests compare against."""
    x64 = np.asarray(x, dtype=np.float64)
    return 0.5 * x64 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x64 + 0.044715 * x64 * x64 * x64)))

# %% [markdown]
# ## Task 1 — Vectorized matmul (2 points)
# A product of an (M, K) and a (K, N) matrix does 2·M·K·N FLOPs on M·K + K·N + M·N numbers, so
# each number loaded can be used about K, N or M times. Notebook 01 exploited that reuse by hand
# with blocking. BLAS (the linear-algebra library NumPy was built with, usually OpenBLAS) does the
# same with SIMD instructions, register tiles and all cores; `np.matmul` (the `@` operator) calls it.
#
# `np.matmul` also takes *stacks* of matrices: arrays of shape (..., M, K) and (..., K, N). The
# leading batch dimensions broadcast like an element-wise operation, and the loop over the batch
# runs in C:
#
# | a | b | result |
# | --- | --- | --- |
# | (M, K) | (K, N) | (M, N) |
# | (B, M, K) | (K, N) | (B, M, N) |
# | (3, 1, M, K) | (2, K, N) | (3, 2, M, N) |
#
# Write `vectorized_matmul(a, b)`:
# - one `np.matmul` call for the whole batch, with no Python loop over batch entries;
# - keep the dtype: float32 inputs give a float32 result;
# - raise `ValueError` when an input has fewer than 2 dimensions (NumPy would silently treat a
#   1-D array as a vector; we want shapes to be explicit), when the inner dimensions differ
#   (`a.shape[-1] != b.shape[-2]`), or when the batch dimensions do not broadcast. Each message
#   names the problem and both shapes, e.g. `"shape mismatch: (2, 3) @ (4, 5) ..."`; the
#   1-D message says the function needs `2D+` arrays.

# %% nbgrader={"grade": false, "grade_id": "vectorized_matmul", "locked": false, "schema_version": 3, "solution": true}
def vectorized_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., M, K) @ (..., K, N) -> (..., M, N) in one BLAS-backed call; batch dimensions broadcast."""
    ### BEGIN SOLUTION
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"vectorized_matmul needs 2D+ arrays, got shapes {a.shape} and {b.shape} "
                         f"({a.ndim}-D and {b.ndim}-D); reshape a vector to (1, n) or (n, 1)")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"shape mismatch: {a.shape} @ {b.shape}, inner dimensions "
                         f"a.shape[-1]={a.shape[-1]} and b.shape[-2]={b.shape[-2]} differ")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"batch dimensions do not broadcast: {a.shape} @ {b.shape}, "
                         f"batches {a.shape[:-2]} and {b.shape[:-2]}") from None
    return np.matmul(a, b)
    ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t02_matmul_batched", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""vectorized_matmul matches a float64 product on 2-D and broadcast batched shapes, keeping float32"""
rng = np.random.default_rng(2)
hand = vectorized_matmul(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[5.0, 6.0], [7.0, 8.0]]))
np.testing.assert_array_equal(hand, [[19.0, 22.0], [43.0, 50.0]],
                              err_msg="[[1, 2], [3, 4]] @ [[5, 6], [7, 8]] is [[19, 22], [43, 50]]")
for a_shape, b_shape in [((2, 3), (3, 4)), ((5, 3, 4), (5, 4, 2)), ((3, 4), (6, 4, 5))]:
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    got = vectorized_matmul(a, b)
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert got.shape == expected.shape, f"{a_shape} @ {b_shape}: got shape {got.shape}, expected {expected.shape}"
    assert got.dtype == np.float32, f"{a_shape} @ {b_shape}: float32 inputs gave a {got.dtype} result"
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=f"wrong values for {a_shape} @ {b_shape}")

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t02_matmul_errors", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""vectorized_matmul refuses 1-D inputs and mismatched inner dimensions, naming both shapes"""
def value_error_message(a, b):
    """The ValueError message vectorized_matmul(a, b) raises, or None if it returns."""
    try:
        vectorized_matmul(a, b)
    except ValueError as exc:
        return str(exc)
    return None

assert vectorized_matmul(np.ones((2, 3)), np.ones((3, 4))).shape == (2, 4), "(2, 3) @ (3, 4) must work"
for a, b in [(np.ones(3), np.ones((3, 2))), (np.ones((2, 3)), np.ones((4, 5)))]:
    message = value_error_message(a, b)
    assert message is not None, f"{a.shape} @ {b.shape} must raise ValueError"
    assert str(a.shape) in message and str(b.shape) in message, \
        f"the error for {a.shape} @ {b.shape} must name both shapes, got: {message!r}"

# %% [markdown]
# ### Measure: one batched call versus a Python loop
# The same products, the same BLAS kernel for each small matrix; the only difference is who runs
# the loop over the batch, C inside NumPy or the Python interpreter.

# %% tags=["raises-exception"]
batch, size = benchmark_size((2048, 32), (256, 32))
rng = np.random.default_rng(0)
a_batch = rng.standard_normal((batch, size, size)).astype(np.float32)
b_batch = rng.standard_normal((batch, size, size)).astype(np.float32)


def matmul_python_loop(a, b):
    """(B, M, K) @ (B, K, N) -> (B, M, N) with one np.matmul call per batch entry."""
    return np.stack([np.matmul(a_i, b_i) for a_i, b_i in zip(a, b)])


batch_flops = batch * 2 * size**3
with skipped_until_done("Task 1 (vectorized_matmul)"):
    t_batched = time_call(vectorized_matmul, a_batch, b_batch)
    t_loop = time_call(matmul_python_loop, a_batch, b_batch)
    print(f"{batch} x ({size}x{size} @ {size}x{size}) float32: one batched call {t_batched}, "
          f"{benchmarking.gflops(batch_flops, t_batched.median_s):.1f} GFLOP/s; Python loop {t_loop}, "
          f"{benchmarking.gflops(batch_flops, t_loop.median_s):.1f} GFLOP/s; "
          f"loop / batched {t_loop.median_s / t_batched.median_s:.1f}x")

# %% [markdown]
# ## Task 2 — ReLU, vectorized and on threads (3 points)
# ReLU reads each number once and writes it once: one comparison per 8 bytes of float32 traffic.
# Vectorizing it (one NumPy call, so the loop runs in C with SIMD instructions) removes the
# interpreter from the loop; what remains is memory traffic. Can more cores help? Only if a single
# core cannot keep the memory system busy. NumPy releases Python's global interpreter lock (GIL)
# inside its element-wise loops, so Python threads that call NumPy on different parts of an array
# really do run at the same time.
#
# **`vectorized_relu(x, out=None)`**: `max(x, 0)` element-wise in one NumPy call. Return a new
# array of x's shape and dtype and leave `x` unchanged; if an `out` array is given, write the
# result into it and return it (NumPy's ufuncs take the same `out=` argument). The tests measure
# the memory a call allocates: about the result's own bytes, where a Python loop would create an
# object per element.
#
# **`parallel_relu(x, num_workers=4)`**: the same result, computed by threads. The tests check
# this exact scheme:
# 1. Flatten with `x.reshape(-1)` (a view, not a copy, when x is C-contiguous).
# 2. Split the flat array into `n = max(1, min(num_workers, x.size))` contiguous chunks whose sizes
#    differ by at most one element: chunk `i` covers `[i * size // n, (i + 1) * size // n)`.
# 3. Allocate the output once, then run the chunks on a
#    `ThreadPoolExecutor(max_workers=num_workers)`: each task calls `vectorized_relu` on exactly
#    one chunk, writing straight into the matching slice of the output with `out=`, so nothing is
#    copied afterwards. The test runs your function through `record_relu_chunks` (given above),
#    which replaces `vectorized_relu` by a recording version that waits until all `n` chunks have
#    arrived, so the chunks must be able to run at the same time: run one after another, they
#    fail the test.
# 4. Return the output with x's shape and dtype. Raise `ValueError` if `num_workers < 1`.

# %% nbgrader={"grade": false, "grade_id": "vectorized_relu", "locked": false, "schema_version": 3, "solution": true}
def vectorized_relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """max(x, 0) element-wise in one NumPy call: a new array with x's shape and dtype, or written into out."""
    ### BEGIN SOLUTION
    return np.maximum(x, 0, out=out)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "parallel_relu", "locked": false, "schema_version": 3, "solution": true}
def parallel_relu(x: np.ndarray, num_workers: int = 4) -> np.ndarray:
    """ReLU of x by num_workers threads, each calling vectorized_relu on one contiguous chunk of x."""
    ### BEGIN SOLUTION
    x = np.asarray(x)
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    flat = x.reshape(-1)
    flat_out = np.empty_like(flat)
    n_chunks = max(1, min(num_workers, flat.size))
    bounds = [i * flat.size // n_chunks for i in range(n_chunks + 1)]

    def relu_chunk(start: int, stop: int) -> None:
        vectorized_relu(flat[start:stop], out=flat_out[start:stop])

    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        futures = [pool.submit(relu_chunk, start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]
        for future in futures:
            future.result()
    return flat_out.reshape(x.shape)
    ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t02_relu_vectorized", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""vectorized_relu is max(x, 0): shape and dtype kept, out= honoured, x untouched, no per-element objects"""
rng = np.random.default_rng(3)
cases = [rng.standard_normal(7).astype(np.float32), rng.standard_normal((3, 4, 5)),
         rng.integers(-5, 5, size=(4, 6), dtype=np.int32)]
for x in cases:
    x_before = x.copy()
    got = vectorized_relu(x)
    assert isinstance(got, (np.ndarray, np.generic)), \
        f"vectorized_relu must return an array, got {type(got).__name__}"
    assert got.shape == x.shape and got.dtype == x.dtype, \
        f"input {x.shape} {x.dtype} gave {got.shape} {got.dtype}; shape and dtype must not change"
    np.testing.assert_array_equal(got, np.where(x > 0, x, 0), err_msg=f"wrong ReLU for a {x.shape} {x.dtype} input")
    np.testing.assert_array_equal(x, x_before, err_msg="vectorized_relu changed its input; return a new array")
    assert not np.shares_memory(got, x), "vectorized_relu must return a new array, not x itself"

x = rng.standard_normal(1_000_000).astype(np.float32)
got, extra_bytes, _ = traced_call(vectorized_relu, x)
np.testing.assert_array_equal(got, np.maximum(x, 0), err_msg="wrong ReLU for a large float32 input")
assert extra_bytes <= 1.5 * x.nbytes + 65536, \
    (f"vectorized_relu allocated {extra_bytes} bytes beyond its {got.nbytes}-byte result for a "
     f"{x.size}-element float32 input: a Python loop creates an object per element; use one NumPy call")
out_cases = [(rng.standard_normal((5, 6)).astype(np.float32), slice(None))]
for x, part in out_cases:
    x_before = x.copy()
    buffer = np.full_like(x, 7)
    returned = vectorized_relu(x[part], out=buffer[part])
    np.testing.assert_array_equal(buffer[part], np.maximum(x[part], 0),
                                  err_msg=f"vectorized_relu(x, out=buffer) must write max(x, 0) into buffer, {x.dtype}")
    assert np.shares_memory(returned, buffer), "vectorized_relu(x, out=buffer) must return buffer"
    np.testing.assert_array_equal(x, x_before, err_msg="vectorized_relu(x, out=...) changed x")
    untouched = np.ones(x.shape, dtype=bool)
    untouched[part] = False
    assert np.all(buffer[untouched] == 7), "vectorized_relu(x, out=...) wrote outside out"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t02_parallel_relu_values", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""parallel_relu equals vectorized ReLU for any shape, dtype and worker count, and leaves x alone"""
rng = np.random.default_rng(4)
cases = [(rng.standard_normal(10).astype(np.float32), 4), (rng.standard_normal((4, 257)), 3),
         (rng.standard_normal(3).astype(np.float32), 4), (rng.standard_normal(1001), 1)]
for x, workers in cases:
    x_before = x.copy()
    got = parallel_relu(x, num_workers=workers)
    assert got.shape == x.shape and got.dtype == x.dtype, \
        f"input {x.shape} {x.dtype} with {workers} workers gave {got.shape} {got.dtype}"
    np.testing.assert_array_equal(got, np.maximum(x, 0),
                                  err_msg=f"wrong ReLU for a {x.shape} {x.dtype} input with {workers} workers")
    np.testing.assert_array_equal(x, x_before, err_msg="parallel_relu changed its input")
try:
    parallel_relu(np.ones(4), num_workers=0)
except ValueError:
    pass
else:
    raise AssertionError("parallel_relu(x, num_workers=0) must raise ValueError")

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t02_parallel_relu_workers", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""parallel_relu runs min(num_workers, size) disjoint contiguous chunks concurrently, covering x exactly"""
def check_chunks(shape, num_workers):
    size = math.prod(shape)
    # value i - size // 2 at flat position i (exact in float32): a chunk's values give its position
    x = (np.arange(size) - size // 2).astype(np.float32).reshape(shape)
    expected = max(1, min(num_workers, size))
    # the timeout only stops chunks run one after another from hanging; passing needs no clock
    result, calls, all_met = record_relu_chunks(x, num_workers, threading.Barrier(expected, timeout=2))
    np.testing.assert_array_equal(result, np.maximum(x, 0), err_msg=f"wrong ReLU for shape {shape}")
    assert len(calls) == expected, (f"shape {shape}, num_workers={num_workers}: vectorized_relu called "
                                    f"{len(calls)} times, expected {expected} chunks")
    assert all_met, (f"shape {shape}, num_workers={num_workers}: the {expected} chunks never all ran at the "
                     f"same time; submit every chunk to the pool before waiting for any result")
    threads = {ident for ident, _ in calls}
    assert len(threads) == expected, f"{expected} chunks ran on {len(threads)} threads; each needs its own worker"
    spans = chunk_spans(x, [chunk for _, chunk in calls])
    assert None not in spans, f"shape {shape}: a chunk is not a contiguous piece of x.reshape(-1)"
    position = 0
    for start, length in spans:
        assert start == position, f"shape {shape}: chunks overlap or leave a gap at flat index {position}"
        position += length
    assert position == size, f"shape {shape}: chunks cover {position} of {size} elements"
    lengths = [length for _, length in spans]
    assert max(lengths) - min(lengths) <= 1, f"shape {shape}: chunk sizes {lengths} differ by more than one"


check_chunks((10_007,), 4)
check_chunks((10_007,), 3)

# %% [markdown]
# ### Measure: does a second core help a memory-bound kernel?
# ReLU on a large array (far bigger than the caches) and on a small one (which fits in them), with
# 1, 2 and 4 threads. GB/s counts one read and one write per element; compare it with the copy
# bandwidth measured at the top. Handing chunks to threads has a fixed cost per call, which
# matters only when the work per chunk is small: compare the two lines.

# %% tags=["raises-exception"]
with skipped_until_done("Task 2 (vectorized_relu and parallel_relu)"):
    for n_elems in benchmark_size((4096 * 4096, 64 * 1024), (512 * 512, 16 * 1024)):
        relu_input = np.random.default_rng(1).standard_normal(n_elems).astype(np.float32)
        moved_bytes = 2 * relu_input.nbytes
        t_serial = time_call(vectorized_relu, relu_input)
        parts = [f"vectorized {format_seconds(t_serial.median_s)} ({moved_bytes / t_serial.median_s / 1e9:.1f} GB/s)"]
        for workers in (1, 2, 4):
            t_threads = time_call(parallel_relu, relu_input, num_workers=workers)
            parts.append(f"{workers} threads {format_seconds(t_threads.median_s)} "
                         f"({moved_bytes / t_threads.median_s / 1e9:.1f} GB/s)")
        print(f"ReLU of {n_elems} float32 ({relu_input.nbytes / 2**20:.2f} MiB): " + ", ".join(parts)
              + f"; 4 threads run at {t_serial.median_s / t_threads.median_s:.2f}x the speed of one call"
              + f"; copy bandwidth {bandwidth_gbs:.1f} GB/s")

# %% [markdown]
# ## GELU and what "fusion" means in NumPy
# GELU, in its common tanh approximation, is
#
# $$\mathrm{GELU}(x) \approx \tfrac12\,x\,\Bigl(1 + \tanh\bigl(\sqrt{2/\pi}\,(x + 0.044715\,x^3)\bigr)\Bigr).$$
#
# That is about nine operations per element. A framework without fusion runs each operation as its
# own kernel: it reads its inputs from memory and writes a full-size result back. A **fused**
# kernel runs all nine on each element while it sits in a register, so memory sees one read of `x`
# and one write of the result. Compilers (XLA, `torch.compile`, Triton, Numba) generate such loops.
#
# NumPy does not: `0.5 * x * (1 + np.tanh(...))` is nine separate passes over the array, written on
# one line. Within NumPy, two things do reduce the cost:
# - **no new arrays**: `out=` arguments and in-place operators (`out *= x`) write into memory that
#   already exists, so nothing is allocated per step; every step is still a pass over the array;
# - **chunking**: run all the steps on one cache-sized chunk before moving to the next. The passes
#   then read and write the cache, and main memory sees about one read of `x` and one write of the
#   result, as in a fused kernel.
#
# The constants below are Python floats on purpose. NumPy 2 treats a Python number as "weak": it
# takes the array's dtype, so float32 stays float32. A NumPy scalar such as `np.sqrt(2 / np.pi)`
# (an `np.float64`) is not weak, and turns a float32 result into float64; the cell after Task 3
# measures what that costs.

# %%
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)  # Python float: takes the array's dtype
GELU_CUBIC = 0.044715

# %% [markdown]
# ## Task 3 — GELU four ways (5 points)
# Write the same GELU four times; each version changes how memory is used.
# - `gelu_unfused(x)`: one NumPy operation per line, each result kept in its own named variable,
#   the way a framework without fusion runs a graph of separate kernels. This is the baseline.
# - `fused_gelu(x)`: the whole formula as one expression. Fused in the source text only.
# - `gelu_inplace(x)`: allocate the output once (`np.empty`), then run every step inside it:
#   `np.multiply(x, x, out=out)`, `out *= x`, ..., `np.tanh(out, out=out)`. No full-size array is
#   allocated besides the output.
# - `gelu_chunked(x, chunk_elems=262144)`: allocate the output once and one scratch buffer of at
#   most `chunk_elems` elements. For each chunk of `x.reshape(-1)`, run the steps in the scratch
#   buffer, calling `np.tanh` once on it, and write the chunk's result into the output. The last
#   chunk may be shorter. Raise `ValueError` if `chunk_elems < 1`.
#
# All four must match a float64 GELU to 1e-5, return x's shape and dtype (float32 in, float32 out;
# float64 in, float64 out), accept any shape including 0-d and empty arrays, and leave `x`
# unchanged. Use `SQRT_2_OVER_PI` and `GELU_CUBIC`, and write x³ as `x * x * x` (the measurement
# after this task shows why not `x ** 3`).
#
# The tests measure memory with `traced_call` (given above), whose `tracemalloc` sees every array
# NumPy allocates, and when graded also by the process's peak memory: `gelu_inplace` may allocate
# no full-size array besides its output, and `gelu_chunked` at most a few chunks, the same amount
# for a small and a large input. `traced_call` also counts the elements each `np.tanh` call
# receives: at most `chunk_elems` per call in `gelu_chunked`.

# %% nbgrader={"grade": false, "grade_id": "gelu_unfused", "locked": false, "schema_version": 3, "solution": true}
def gelu_unfused(x: np.ndarray) -> np.ndarray:
    """GELU (tanh approximation), one NumPy operation per line, every intermediate kept; x's dtype."""
    ### BEGIN SOLUTION
    square = x * x
    cube = square * x
    scaled_cube = GELU_CUBIC * cube
    inner = x + scaled_cube
    tanh_arg = SQRT_2_OVER_PI * inner
    tanh_value = np.tanh(tanh_arg)
    gate = 1.0 + tanh_value
    half_x = 0.5 * x
    return half_x * gate
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "fused_gelu", "locked": false, "schema_version": 3, "solution": true}
def fused_gelu(x: np.ndarray) -> np.ndarray:
    """GELU (tanh approximation) as one NumPy expression; x's shape and dtype."""
    ### BEGIN SOLUTION
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)))
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "gelu_inplace", "locked": false, "schema_version": 3, "solution": true}
def gelu_inplace(x: np.ndarray) -> np.ndarray:
    """GELU computed inside one freshly allocated output array; no other full-size allocation."""
    ### BEGIN SOLUTION
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=np.result_type(x, 1.0))
    np.multiply(x, x, out=out)
    out *= x
    out *= GELU_CUBIC
    out += x
    out *= SQRT_2_OVER_PI
    np.tanh(out, out=out)
    out += 1.0
    out *= x
    out *= 0.5
    return out
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "gelu_chunked", "locked": false, "schema_version": 3, "solution": true}
def gelu_chunked(x: np.ndarray, chunk_elems: int = 262144) -> np.ndarray:
    """GELU over chunks of x.reshape(-1) of at most chunk_elems elements, in one reused scratch buffer."""
    ### BEGIN SOLUTION
    x = np.asarray(x)
    if chunk_elems < 1:
        raise ValueError(f"chunk_elems must be at least 1, got {chunk_elems}")
    out = np.empty(x.shape, dtype=np.result_type(x, 1.0))
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    step = max(1, min(chunk_elems, flat_x.size))
    scratch = np.empty(step, dtype=out.dtype)
    for start in range(0, flat_x.size, step):
        x_chunk = flat_x[start:start + step]
        work = scratch[:x_chunk.size]
        np.multiply(x_chunk, x_chunk, out=work)
        work *= x_chunk
        work *= GELU_CUBIC
        work += x_chunk
        work *= SQRT_2_OVER_PI
        np.tanh(work, out=work)
        work += 1.0
        work *= x_chunk
        np.multiply(work, 0.5, out=flat_out[start:start + step])
    return out
    ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t02_gelu_values_dtype", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""all four GELUs match a float64 GELU to 1e-5, keep float32 and float64, accept any shape, leave x alone"""
def check_gelu(name, fn, x, **kwargs):
    x_before = x.copy()
    got = fn(x, **kwargs)
    assert isinstance(got, (np.ndarray, np.generic)), f"{name} must return an array, got {type(got).__name__}"
    assert got.shape == x.shape, f"{name}: input shape {x.shape} gave shape {got.shape}"
    assert got.dtype == x.dtype, f"{name}: a {x.dtype} input gave a {got.dtype} result (silent promotion?)"
    np.testing.assert_allclose(got, gelu_float64(x), rtol=1e-5, atol=1e-5,
                               err_msg=f"{name}: wrong values for a {x.shape} {x.dtype} input")
    np.testing.assert_array_equal(x, x_before, err_msg=f"{name} changed its input")


rng = np.random.default_rng(5)
gelus = {"gelu_unfused": gelu_unfused, "fused_gelu": fused_gelu, "gelu_inplace": gelu_inplace,
         "gelu_chunked": gelu_chunked}
inputs = [np.array([-3.0, -1.0, 0.0, 1.0, 3.0], dtype=np.float32), rng.standard_normal(1000).astype(np.float32),
          rng.standard_normal((3, 5, 7)).astype(np.float32), rng.standard_normal((4, 6))]
for name, fn in gelus.items():
    for x in inputs:
        check_gelu(name, fn, x)
    assert fn(np.zeros(3, dtype=np.float32))[1] == 0.0, f"{name}: GELU(0) must be exactly 0"
check_gelu("gelu_chunked(chunk_elems=64)", gelu_chunked, inputs[1], chunk_elems=64)

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t02_gelu_inplace_memory", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""gelu_inplace allocates its output and no other full-size array (tracemalloc peak)"""
rng = np.random.default_rng(6)
x = rng.standard_normal(1_000_000).astype(np.float32)
x_before = x.copy()
got, extra_bytes, _ = traced_call(gelu_inplace, x)
assert got.shape == x.shape and got.dtype == x.dtype, \
    f"gelu_inplace: a {x.shape} {x.dtype} input gave {got.shape} {got.dtype}"
np.testing.assert_array_equal(x, x_before, err_msg="gelu_inplace changed its input")
assert not np.shares_memory(got, x), "gelu_inplace must write a new output array, not overwrite x"
assert extra_bytes < 0.5 * x.nbytes, \
    (f"gelu_inplace allocated {extra_bytes} bytes beyond its {got.nbytes}-byte output for a "
     f"{x.shape} {x.dtype} input ({extra_bytes / x.nbytes:.2f} x the input), a full-size temporary: "
     f"use out= and in-place operators")
np.testing.assert_allclose(got[:1000], gelu_float64(x[:1000]), rtol=1e-5, atol=1e-5,
                           err_msg=f"gelu_inplace: wrong values for a {x.shape} {x.dtype} input")

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t02_gelu_chunked_memory", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""gelu_chunked works chunk by chunk: tanh sees at most chunk_elems per call, extra memory a few chunks at any size"""
def check_chunked(x, chunk):
    got, extra_bytes, tanh_sizes = traced_call(gelu_chunked, x, chunk_elems=chunk)
    assert got.shape == x.shape and got.dtype == x.dtype, f"a {x.shape} {x.dtype} input gave {got.shape} {got.dtype}"
    for part in (slice(0, 1000), slice(x.size - 1000, x.size)):
        np.testing.assert_allclose(got[part], gelu_float64(x[part]), rtol=1e-5, atol=1e-5,
                                   err_msg=f"wrong values for {x.size} elements, chunk_elems={chunk}")
    expected_calls = -(-x.size // chunk)
    assert tanh_sizes, "gelu_chunked made no np.tanh call; call np.tanh (as np.tanh) once per chunk"
    assert max(tanh_sizes) <= chunk, \
        f"chunk_elems={chunk}: np.tanh saw {max(tanh_sizes)} elements in one call; at most one chunk at a time"
    assert sum(tanh_sizes) == x.size and len(tanh_sizes) == expected_calls, \
        (f"{x.size} elements in chunks of {chunk}: expected {expected_calls} np.tanh calls covering every element "
         f"once, got {len(tanh_sizes)} calls on {sum(tanh_sizes)} elements")
    budget = 3 * chunk * x.itemsize + 65536
    assert extra_bytes <= budget, \
        (f"{x.size} elements, chunk_elems={chunk}: {extra_bytes} bytes allocated beyond the output, "
         f"more than 3 chunks ({3 * chunk * x.itemsize} bytes); reuse one small scratch buffer")
    return extra_bytes


rng = np.random.default_rng(7)
chunk = 16_384
extra_small = check_chunked(rng.standard_normal(1_000_003).astype(np.float32), chunk)
extra_large = check_chunked(rng.standard_normal(4_000_037).astype(np.float32), chunk)
assert abs(extra_large - extra_small) <= chunk * 4, \
    (f"extra memory grew from {extra_small} to {extra_large} bytes when the input grew 4x; "
     f"it must depend on chunk_elems only")
try:
    gelu_chunked(np.ones(4, dtype=np.float32), chunk_elems=0)
except ValueError:
    pass
else:
    raise AssertionError("gelu_chunked(x, chunk_elems=0) must raise ValueError")

# %% [markdown]
# ### Measure: four GELUs, time and temporary memory
# One large float32 matrix, every version timed the same way (median of 3 repeats after a warm-up).
# - **effective GB/s** counts one read of `x` and one write of the result, the traffic a truly fused
#   kernel needs; a version that makes more passes over memory shows a lower figure;
# - **speedup** is relative to `gelu_unfused`;
# - **temporaries** is the peak memory `tracemalloc` saw during one call beyond the output, in
#   multiples of the input size;
# - the floor is a plain copy of the same array (`np.copyto`): no GELU that reads `x` and writes a
#   result can be faster. `np.tanh` alone is one of GELU's nine passes, shown for scale.

# %% tags=["raises-exception"]
side = benchmark_size(4096, 512)
gelu_input = np.random.default_rng(0).standard_normal((side, side)).astype(np.float32)
scratch_out = np.empty_like(gelu_input)
gelu_variants = {"gelu_unfused": gelu_unfused, "fused_gelu": fused_gelu,
                 "gelu_inplace": gelu_inplace, "gelu_chunked": gelu_chunked}
copy_timing = time_call(np.copyto, scratch_out, gelu_input)
tanh_timing = time_call(np.tanh, gelu_input, out=scratch_out)
gelu_timings, temporaries, unfinished = {}, {}, []  # the versions you have written so far
for name, fn in gelu_variants.items():
    try:
        gelu_timings[name] = time_call(fn, gelu_input, repeats=3)
        temporaries[name] = traced_call(fn, gelu_input)[1] / gelu_input.nbytes
    except NotImplementedError:
        unfinished.append(name)
if unfinished:
    print(f"skipped: finish Task 3 ({', '.join(unfinished)}) to see {'it' if len(unfinished) == 1 else 'them'} here")

print(f"GELU of a {side}x{side} float32 array ({gelu_input.nbytes / 2**20:.0f} MiB), this machine:")
print(f"{'plain copy (floor)':<20}{format_seconds(copy_timing.median_s):>10}"
      f"{2 * gelu_input.nbytes / copy_timing.median_s / 1e9:>8.1f} GB/s")
print(f"{'np.tanh alone':<20}{format_seconds(tanh_timing.median_s):>10}"
      f"{2 * gelu_input.nbytes / tanh_timing.median_s / 1e9:>8.1f} GB/s")
baseline = gelu_timings.get("gelu_unfused")
for name, timing in gelu_timings.items():
    speedup = f"{baseline.median_s / timing.median_s:>8.2f}x speedup" if baseline else ""
    print(f"{name:<20}{format_seconds(timing.median_s):>10}"
          f"{2 * gelu_input.nbytes / timing.median_s / 1e9:>8.1f} GB/s{speedup}"
          f"{temporaries[name]:>6.1f} x input in temporaries")
if gelu_timings:
    fastest = min(gelu_timings, key=lambda name: gelu_timings[name].median_s)
    print(f"fastest in this run: {fastest}, {gelu_timings[fastest].median_s / copy_timing.median_s:.1f}x the "
          f"copy's time and {gelu_timings[fastest].median_s / tanh_timing.median_s:.1f}x np.tanh's alone")
    if {"gelu_inplace", "gelu_chunked"} <= gelu_timings.keys():
        ratio = gelu_timings["gelu_inplace"].median_s / gelu_timings["gelu_chunked"].median_s
        print(f"gelu_chunked ran at {ratio:.2f}x the speed of gelu_inplace in this run")
    fig, ax = plotting.plot_bars(
        ["np.tanh alone", *gelu_timings],
        [tanh_timing.median_s * 1e3] + [t.median_s * 1e3 for t in gelu_timings.values()],
        ylabel="median time per call (ms)", title=f"GELU of {side}x{side} float32, this machine",
        reference=(copy_timing.median_s * 1e3, "plain copy (floor)"))

# %% [markdown]
# Reading the table: the temporaries column is NumPy's allocation pattern, measured; unlike the
# times, it is the same in every run. The one-line `fused_gelu` still allocates full-size
# intermediate arrays (fewer than `gelu_unfused`, because each is freed as soon as the next
# operator has consumed it), so "one expression" is not fusion. `gelu_inplace` should allocate
# none, and `gelu_chunked` only its scratch chunk, a small fraction of a large input. The times are
# this run's: `gelu_inplace` and `gelu_chunked` allocate about the same, so the gap between them is
# the cost of streaming every pass through main memory against the Python overhead of many small
# chunks. The lines under the table say which won here; the gap to the copy floor is the price of
# the passes themselves.
#
# How big should a chunk be? Small enough that the chunk of `x`, the scratch buffer and the
# output chunk stay in the cache through all nine passes, large enough that Python's per-chunk
# overhead (a dozen NumPy calls) is small. The last size is the whole array, i.e. no chunking.

# %% tags=["raises-exception"]
chunk_sizes = [2**14, 2**16, 2**18, 2**20, gelu_input.size]
with skipped_until_done("Task 3 (gelu_chunked)"):
    chunk_timings = [time_call(gelu_chunked, gelu_input, chunk_elems=c, repeats=3) for c in chunk_sizes]
    chunk_line = ", ".join(f"{c // 1024}K {format_seconds(t.median_s)}" for c, t in zip(chunk_sizes, chunk_timings))
    best_chunk = chunk_sizes[int(np.argmin([t.median_s for t in chunk_timings]))]
    print(f"gelu_chunked on {side}x{side} float32 by chunk_elems (elements): {chunk_line}; "
          f"fastest here: {best_chunk // 1024}K")

# %% [markdown]
# ### Pitfalls, measured
# Two ways to lose speed without any visible bug. First, `x * x * x` is two plain multiplications,
# while `x ** 3` goes through the general power function for every element (NumPy rewrites only a
# few exponents, such as `x ** 2`, into cheaper operations). Second,
# a NumPy float64 scalar promotes a float32 array to float64: twice the bytes to write, and a
# result that no longer has the dtype you started with.

# %% tags=["raises-exception"]
side_small = benchmark_size(1024, 256)
x_small = np.random.default_rng(0).standard_normal((side_small, side_small)).astype(np.float32)
t_pow = time_call(lambda v: v**3, x_small, repeats=3)
t_mul = time_call(lambda v: v * v * v, x_small)
print(f"{side_small}x{side_small} float32: x**3 {t_pow}, x*x*x {t_mul}, "
      f"x**3 / x*x*x {t_pow.median_s / t_mul.median_s:.1f}x")
with skipped_until_done("Task 3 (fused_gelu)"):
    print(f"your whole fused_gelu on the same array: {time_call(fused_gelu, x_small)}")

# %%
sqrt_2_over_pi_numpy = np.sqrt(2.0 / np.pi)  # np.float64 scalar, not a Python float
promoted = sqrt_2_over_pi_numpy * x_small
kept = SQRT_2_OVER_PI * x_small
t_promoted = time_call(np.multiply, sqrt_2_over_pi_numpy, x_small)
t_kept = time_call(np.multiply, SQRT_2_OVER_PI, x_small)
print(f"float32 array times np.float64 scalar -> {promoted.dtype}, {promoted.nbytes / 2**20:.0f} MiB, {t_promoted}; "
      f"times Python float -> {kept.dtype}, {kept.nbytes / 2**20:.0f} MiB, {t_kept}")

# %% [markdown]
# ## Task 4 — Roofline arithmetic (4 points)
# A kernel does some number of FLOPs and must move some number of bytes between memory and the
# processor. Its **arithmetic intensity** is their ratio, in FLOP/byte. At a bandwidth of B GB/s,
# memory can deliver at most AI × B GFLOP/s of work; the processor can do at most its peak P. So
#
# $$\text{attainable GFLOP/s} = \min(P,\ \mathrm{AI} \times B).$$
#
# The two limits meet at the **ridge point** AI = P / B. A kernel left of it is **memory-bound**
# (faster arithmetic would not help, fewer bytes would); at or right of it, **compute-bound**. On
# a log-log plot the two limits draw a roof: a slope of bandwidth, then a flat line at peak.
#
# Counting conventions (the tests use them):
# - `matmul_flops(m, k, n)`: one multiply and one add per term, 2·M·K·N.
# - `bytes_moved(kernel, *dims, itemsize=4)`: the least traffic the kernel needs, each input read
#   once and each output written once, in bytes of `itemsize`:
#
#   | call | arrays | bytes |
#   | --- | --- | --- |
#   | `bytes_moved("matmul", m, k, n)` | read A (M, K) and B (K, N), write C (M, N) | itemsize·(MK + KN + MN) |
#   | `bytes_moved("add", n)` | read two n-element arrays, write one | 3·n·itemsize |
#   | `bytes_moved("copy", n)`, `("relu", n)`, `("gelu", n)` | read one, write one | 2·n·itemsize |
#
#   Any other kernel name, or the wrong number of dimensions for the kernel, raises `ValueError`.
# - `arithmetic_intensity(flops, bytes_moved)`: FLOP per byte; `ValueError` unless
#   `bytes_moved > 0`.
# - `attainable_gflops(ai, peak_gflops, bandwidth_gbs)`: the formula above; `ValueError` unless
#   peak and bandwidth are positive.
# - `bound(ai, peak_gflops, bandwidth_gbs)`: `"memory"` if `ai` is below the ridge point, else
#   `"compute"` (exactly at the ridge both limits are equal; call it `"compute"`).
#
# Worked example: adding two float32 arrays does n FLOPs on 12n bytes, 1/12 FLOP/byte. An
# n × n × n float32 matmul does 2n³ FLOPs on 12n² bytes, n/6 FLOP/byte: about 171 at n = 1024.

# %% nbgrader={"grade": false, "grade_id": "matmul_flops", "locked": false, "schema_version": 3, "solution": true}
def matmul_flops(m: int, k: int, n: int) -> int:
    """FLOPs of an (M, K) @ (K, N) product: a multiply and an add per term, 2*M*K*N."""
    ### BEGIN SOLUTION
    return 2 * m * k * n
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "bytes_moved", "locked": false, "schema_version": 3, "solution": true}
def bytes_moved(kernel: str, *dims: int, itemsize: int = 4) -> int:
    """Least bytes `kernel` moves: "matmul" (m, k, n), or "add"/"copy"/"relu"/"gelu" (n elements)."""
    ### BEGIN SOLUTION
    arrays_per_element = {"add": 3, "copy": 2, "relu": 2, "gelu": 2}
    if kernel == "matmul":
        if len(dims) != 3:
            raise ValueError(f"bytes_moved('matmul', m, k, n) needs 3 dimensions, got {dims}")
        m, k, n = dims
        return itemsize * (m * k + k * n + m * n)
    if kernel in arrays_per_element:
        if len(dims) != 1:
            raise ValueError(f"bytes_moved({kernel!r}, n) needs one element count, got {dims}")
        return arrays_per_element[kernel] * dims[0] * itemsize
    raise ValueError(f"unknown kernel {kernel!r}; known: 'matmul', " + ", ".join(map(repr, arrays_per_element)))
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "arithmetic_intensity", "locked": false, "schema_version": 3, "solution": true}
def arithmetic_intensity(flops: float, bytes_moved: float) -> float:
    """FLOPs per byte moved (FLOP/byte)."""
    ### BEGIN SOLUTION
    if bytes_moved <= 0:
        raise ValueError(f"bytes_moved must be positive, got {bytes_moved}")
    return flops / bytes_moved
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "attainable_gflops", "locked": false, "schema_version": 3, "solution": true}
def attainable_gflops(ai: float, peak_gflops: float, bandwidth_gbs: float) -> float:
    """Roofline bound in GFLOP/s: min(peak_gflops, ai * bandwidth_gbs), ai in FLOP/byte, bandwidth in GB/s."""
    ### BEGIN SOLUTION
    if peak_gflops <= 0 or bandwidth_gbs <= 0:
        raise ValueError(f"peak and bandwidth must be positive, got peak_gflops={peak_gflops}, "
                         f"bandwidth_gbs={bandwidth_gbs}")
    return min(peak_gflops, ai * bandwidth_gbs)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "bound", "locked": false, "schema_version": 3, "solution": true}
def bound(ai: float, peak_gflops: float, bandwidth_gbs: float) -> str:
    """Which ceiling limits a kernel of intensity ai (FLOP/byte): "memory" below the ridge point, else "compute"."""
    ### BEGIN SOLUTION
    if peak_gflops <= 0 or bandwidth_gbs <= 0:
        raise ValueError(f"peak and bandwidth must be positive, got peak_gflops={peak_gflops}, "
                         f"bandwidth_gbs={bandwidth_gbs}")
    ridge = peak_gflops / bandwidth_gbs
    return "memory" if ai < ridge else "compute"
    ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t02_roofline_counts", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""matmul_flops, bytes_moved and arithmetic_intensity agree with hand-computed cases"""
def raises_value_error(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ValueError:
        return True
    return False


assert matmul_flops(2, 3, 4) == 48, f"matmul_flops(2, 3, 4): 2*2*3*4 = 48, got {matmul_flops(2, 3, 4)}"
assert matmul_flops(1, 1, 1) == 2, f"matmul_flops(1, 1, 1) is one multiply and one add, got {matmul_flops(1, 1, 1)}"
# (2, 3) @ (3, 4): 6 + 12 + 8 = 26 numbers
assert bytes_moved("matmul", 2, 3, 4) == 104, \
    f"float32 (2, 3) @ (3, 4) moves 26 * 4 = 104 bytes, got {bytes_moved('matmul', 2, 3, 4)}"
assert bytes_moved("matmul", 2, 3, 4, itemsize=8) == 208, "float64 (2, 3) @ (3, 4) moves 26 * 8 = 208 bytes"
assert bytes_moved("add", 1000) == 12_000, \
    f"adding 1000 float32 moves 3 * 1000 * 4 bytes, got {bytes_moved('add', 1000)}"
assert bytes_moved("gelu", 10) == 80, f"GELU of 10 float32 reads 40 and writes 40 bytes, got {bytes_moved('gelu', 10)}"
ai_square = arithmetic_intensity(matmul_flops(1200, 1200, 1200), bytes_moved("matmul", 1200, 1200, 1200))
assert math.isclose(ai_square, 200.0), f"a float32 n^3 matmul has intensity n/6 = 200 at n=1200, got {ai_square}"
ai_add = arithmetic_intensity(1000, bytes_moved("add", 1000))
assert math.isclose(ai_add, 1 / 12), f"float32 add has intensity 1/12 FLOP/byte, got {ai_add}"
assert raises_value_error(bytes_moved, "conv", 10), "bytes_moved('conv', 10) must raise ValueError (unknown kernel)"
assert raises_value_error(arithmetic_intensity, 10, 0), "arithmetic_intensity(10, 0) must raise ValueError"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t02_roofline_bounds", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""attainable_gflops is min(peak, AI x bandwidth) and bound() switches at the ridge point peak / bandwidth"""
peak, bandwidth = 100.0, 25.0  # ridge point at 4 FLOP/byte
assert attainable_gflops(1.0, peak, bandwidth) == 25.0, "AI 1 at 25 GB/s: memory allows 25 GFLOP/s"
assert attainable_gflops(4.0, peak, bandwidth) == 100.0, "at the ridge point (AI 4) both limits give 100 GFLOP/s"
assert attainable_gflops(10.0, peak, bandwidth) == 100.0, "AI 10 is right of the ridge: the peak, 100 GFLOP/s"
assert bound(1.0, peak, bandwidth) == "memory", "AI 1 < ridge 4 is memory-bound"
assert bound(3.99, peak, bandwidth) == "memory", "AI 3.99 < ridge 4 is memory-bound"
assert bound(4.0, peak, bandwidth) == "compute", "exactly at the ridge point counts as compute-bound"
assert bound(50.0, peak, bandwidth) == "compute", "AI 50 > ridge 4 is compute-bound"

# %% [markdown]
# ### Measure: this machine's roofline
# Each kernel becomes a point: x is its arithmetic intensity from your counts, y the GFLOP/s it
# achieved in this run (counted FLOPs divided by measured time). The roof uses the two ceilings
# measured at the top. Notebook 01's naive, blocked and BLAS matmuls come from the measurements it
# saved; run notebook 01 first to see them. For GELU we count 9 FLOPs per element (8 multiplies
# and adds, and the tanh counted as one, a convention: a tanh really costs several instructions).
# All four GELU versions do the same work on the same bytes, so they share one x position; the
# distance from each point up to the roof is what that version leaves unused on this machine.
#
# The ceilings are measurements too. If a kernel beats one of them in this run (another program
# slowed the ceiling's measurement, or the kernel's data stayed in cache), the cell says so in one
# line and draws the roof at the best rate measured, with the measured ceiling dashed, so that no
# point sits above its roof unexplained.

# %% tags=["raises-exception"]
GELU_FLOPS_PER_ELEMENT = 9
measured = {}  # kernel -> (FLOPs, bytes, seconds)
try:
    for record in benchmarking.load_measurements("01_loops_and_blocking"):
        label = f"01 {record['kernel']} {record['m']}x{record['k']}x{record['n']}"
        measured[label] = (record["flops"], record["bytes"], record["time_s"])
except FileNotFoundError:
    print("notebook 01 has not saved its measurements on this machine: its matmuls are left out")

gelu_other = np.random.default_rng(1).standard_normal(gelu_input.shape).astype(np.float32)
add_s = time_call(np.add, gelu_input, gelu_other, out=scratch_out).median_s
n_mm = benchmark_size(1024, 256)
a_mm = np.random.default_rng(2).standard_normal((n_mm, n_mm)).astype(np.float32)
b_mm = np.random.default_rng(3).standard_normal((n_mm, n_mm)).astype(np.float32)
matmul_s = None
with skipped_until_done("Task 1 (vectorized_matmul)"):
    matmul_s = time_call(vectorized_matmul, a_mm, b_mm).median_s

with skipped_until_done("Task 4 (matmul_flops, bytes_moved, arithmetic_intensity, attainable_gflops, bound)"):
    n_elems = gelu_input.size
    measured["add"] = (n_elems, bytes_moved("add", n_elems), add_s)
    for name, timing in gelu_timings.items():
        measured[name] = (GELU_FLOPS_PER_ELEMENT * n_elems, bytes_moved("gelu", n_elems), timing.median_s)
    if matmul_s is not None:
        measured[f"vectorized_matmul {n_mm}^3"] = (matmul_flops(n_mm, n_mm, n_mm),
                                                  bytes_moved("matmul", n_mm, n_mm, n_mm), matmul_s)
    points = {}
    for name, (flops, nbytes, seconds) in measured.items():
        ai = arithmetic_intensity(flops, nbytes)
        achieved = flops / seconds / 1e9
        roof = attainable_gflops(ai, peak_gflops, bandwidth_gbs)
        points[name] = (ai, achieved)
        print(f"{name:<30}{ai:>9.3f} FLOP/byte{achieved:>9.2f} GFLOP/s  roof {roof:>7.1f}  "
              f"{bound(ai, peak_gflops, bandwidth_gbs)}-bound, {achieved / roof:.0%} of its roof")

    fastest = max(points, key=lambda name: points[name][1])
    if points[fastest][1] > peak_gflops:
        best = points[fastest][1]
        print(f"{fastest} ran at {best:.1f} GFLOP/s, above the {peak_gflops:.1f} GFLOP/s GEMM peak measured at "
              f"the top: that ceiling measured {best - peak_gflops:.1f} GFLOP/s ({1 - peak_gflops / best:.0%}) low "
              f"this run, so the plot draws the roof at {best:.1f} GFLOP/s and the measured one dashed")
    busiest = max(points, key=lambda name: points[name][1] / points[name][0])
    if points[busiest][1] / points[busiest][0] > bandwidth_gbs:
        best = points[busiest][1] / points[busiest][0]
        print(f"{busiest} moved its counted bytes at {best:.1f} GB/s, above the {bandwidth_gbs:.1f} GB/s copy "
              f"bandwidth measured at the top: that ceiling measured {best - bandwidth_gbs:.1f} GB/s "
              f"({1 - bandwidth_gbs / best:.0%}) low this run, so the plot draws the memory roof at {best:.1f} GB/s "
              f"and the measured one dashed")
    fig, ax = plotting.plot_roofline(peak_gflops, bandwidth_gbs, points, title="this machine's roofline, measured")

# %% [markdown]
# ## Questions (graded by hand)
# Answer from your own measurements above; quote the numbers your run printed.

# %% [markdown]
# **Q1. Fusion in NumPy.** `fused_gelu` is one line, yet NumPy did not fuse it. Using your GELU
# table, explain what `gelu_inplace` and `gelu_chunked` each changed (memory allocated, traffic to
# main memory). Which of the four was fastest in your run, and why that one? What keeps even the
# fastest far from the copy time?

# %% [markdown] nbgrader={"grade": true, "grade_id": "q02_numpy_fusion", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# Model answer. NumPy evaluates the expression one operator at a time; each operator is a loop over
# the whole array that writes a full-size result, so the one-liner still makes about nine passes
# over memory. It allocates fewer arrays than `gelu_unfused` (compare their temporaries columns:
# NumPy frees, and for large arrays can reuse, a temporary as soon as nothing refers to it, while
# `gelu_unfused` keeps every intermediate alive until it returns), but the passes remain.
# `gelu_inplace` removes the allocations (its temporaries column is about zero), so no fresh memory
# has to be requested and touched for each step; each of its nine steps still streams the whole
# array through main memory. `gelu_chunked` runs all nine steps on a chunk that fits in the cache,
# so main memory sees about one read of `x` and one write of the result, the traffic of a fused
# kernel; on an idle machine that usually makes it the fastest of the four. Where `gelu_inplace`
# won instead, the answer should say why from the run: a busy machine, a chunk size whose Python
# overhead outweighed the saved traffic (the chunk-size line shows it), or caches large enough
# for the passes. Even the fastest stays far from the copy time because the nine passes still
# happen, in the cache instead of main memory, each a separate NumPy call with its own loads and
# stores, and one of them is `np.tanh`, whose own line in the table is slower than the copy. A
# compiled fused kernel would keep each element in a register through all nine operations.

# %% [markdown]
# **Q2. Reading the roofline.** Which kernels are memory-bound and which compute-bound? Would a
# processor with twice the peak GFLOP/s and the same memory speed up element-wise add, GELU and
# the BLAS matmul? Use the same reasoning to explain what extra threads did for ReLU in Task 2.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q02_roofline_reading", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# Model answer. Add (1/12 FLOP/byte), ReLU (1/8) and GELU (9/8 by our count) sit far left of the
# ridge point: memory-bound. Their roof is AI x bandwidth, so doubling the peak would not speed them
# up at all; only moving fewer bytes (fusion, chunking, smaller dtypes) or more bandwidth would. The
# BLAS matmul (n/6 FLOP/byte, about 171 at n = 1024) sits right of the ridge and near the peak (it
# is what the peak measures; if it ran above the measured peak, the cell said the ceiling measured
# low): compute-bound, so a faster processor would speed it up. Notebook 01's naive and blocked
# matmuls have high intensity too but sit far below the roof, because Python's interpreter overhead,
# not a hardware ceiling, limits them. ReLU is memory-bound, so threads can help only while one core
# cannot keep the memory system busy: on the large array any gain stops at the number of cores and
# at the copy bandwidth (compare the GB/s of 1, 2 and 4 threads with it), and on the small array the
# cost of handing out chunks is usually larger than the work saved (the answer quotes what this run
# measured).
