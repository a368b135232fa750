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
# # 01 — Loops and cache blocking
#
# Matrix multiplication is most of the arithmetic in a neural network: every dense layer, every
# attention projection and, after im2col, every convolution is one. This notebook takes one product
# C = A @ B from a Python triple loop to the BLAS call behind `np.matmul` and measures each step on
# the machine you run it on.
#
# **What you will build**
# 1. `matmul_naive(a, b)`: the textbook triple loop, the baseline.
# 2. `matmul_blocked(a, b, block_size)`: the same product, computed one tile at a time.
# 3. `cache_footprint(block_size, ...)`: how many bytes a tiling keeps busy, and whether they fit in cache.
# 4. `OptimizedBackend` and `matmul(a, b)`: one entry point that dispatches to the fast kernel.
#
# **How it is graded.** Each task's heading gives its points, earned by the test cells below it. The
# tests you see are the visible half; at grading, hidden tests in the same cells run on other inputs
# (other shapes, dtypes and block sizes), so code written only for the visible examples loses points.
# The tests check *how* you compute as well as the answer: they hand your functions instrumented
# arrays that count element reads and record the tiles you take (see "How the tests watch your code").
# No test reads a clock. Two reflection questions at the end are graded by hand.
#
# **How to run the tests.** Kernel > Restart Kernel and Run All Cells... runs the whole notebook
# from a clean kernel. A test cell that passes prints nothing; a failing one shows an
# `AssertionError` saying what was wrong, and the run goes on to the next cell, so you can check a
# later task while an earlier one is unfinished. A task you have not written yet shows
# `NotImplementedError` in its tests, and the measurements skip it with one line saying so.
#
# **Timings** are this machine's, measured when you run the cells: the median of several repeats
# after a warm-up (`benchmarking.time_call`). While the notebook is being graded the benchmarks
# shrink; the tests do not. Run the timing cells on an otherwise idle machine: when other programs
# compete for the cores, the BLAS library's worker threads wait for each other and its times jump
# erratically; a large printed spread is the sign.

# %%
import numpy as np

import benchmarking
import plotting

# %% [markdown]
# ## Why the triple loop is slow
#
# For A of shape (M, K) and B of shape (K, N), each of the M·N entries of C is a dot product of
# length K:
#
# $$C_{ij} = \sum_{p=0}^{K-1} A_{ip} B_{pj}$$
#
# That is M·N·K multiply-adds, counted as **2·M·N·K floating-point operations (FLOPs)**. A core's
# vector units apply one fused multiply-add instruction to 8 float32 values at once (AVX2's 256-bit
# registers) or 16 (AVX-512), and can start up to two such instructions per cycle (Skylake-SP and
# Zen 4, per the Intel and AMD optimization manuals cited in Task 3). A Python loop does one
# multiply-add per trip through the interpreter: a loop step, two indexing calls that each build a
# tuple and box a NumPy scalar, a multiply and an add, each a dispatched bytecode. Its speed is set
# by the interpreter, not by the arithmetic units nor by memory.
#
# The first measurement is the ceiling: how fast `np.matmul` multiplies two large float32 matrices
# here (1 GFLOP/s is one FLOP per nanosecond). Every rate later in the notebook is compared with it.

# %%
blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
peak_n = benchmarking.benchmark_size(1024, 128)
peak_gflops = benchmarking.measure_peak_gflops(n=peak_n)
print(f"this machine: np.matmul on {peak_n}x{peak_n} float32 runs at {peak_gflops:.3g} GFLOP/s "
      f"(BLAS library: {blas['name']} {blas.get('version', '')})")

# %% [markdown]
# ## Task 1 — Naive triple loop (4 points)
#
# Write `matmul_naive(a, b)` for A of shape (M, K) and B of shape (K, N):
#
# - Three nested loops: `i` over the rows of A, `j` over the columns of B, and innermost `p` over
#   the shared dimension K. The innermost loop reads `a[i, p]` and `b[p, j]` and does one
#   multiply-add. Sum into a local variable and store it in `c[i, j]` once per `(i, j)`.
# - The result dtype follows the inputs, as it does for `a @ b`: create C with
#   `np.zeros((M, N), dtype=np.result_type(a, b))` (float32 in, float32 out; int64 stays int64;
#   float32 with float64 gives float64).
# - Before looping, raise `ValueError` if an input is not 2-D or the inner dimensions differ. The
#   message must show both shapes, for example `got shapes (2, 3) and (4, 5)`.
#
# **What the tests observe.** They pass instrumented arrays that count every `a[i, p]` read. The
# textbook loop reads each `a[i, p]` N times and each `b[p, j]` M times, once per multiply-add; the
# test expects exactly those counts and no call of `@`, `np.matmul`, `np.dot`, `np.einsum` or the
# like. Index the inputs one element at a time (`a[i, p]`; `a[i][p]` works too) and don't convert or
# copy them: `np.asarray(a)`, `a.copy()`, `a.tolist()` or `a.T` hide your reads from the test. To
# also accept nested lists, use `np.asanyarray(a)`, which leaves arrays, instrumented ones included,
# as they are.

# %% nbgrader={"grade": false, "grade_id": "matmul_naive", "locked": false, "schema_version": 3, "solution": true}
def matmul_naive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) @ (K, N) -> (M, N) with three Python loops, one multiply-add per innermost step.

    The result dtype is ``np.result_type(a, b)``. Raises ValueError, naming both shapes, if an
    input is not 2-D or the inner dimensions differ.
    """
    ### BEGIN SOLUTION
    a, b = np.asanyarray(a), np.asanyarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul_naive needs (M, K) @ (K, N) matrices, got shapes {a.shape} and {b.shape}")
    m, k = a.shape
    n = b.shape[1]
    c = np.zeros((m, n), dtype=np.result_type(a, b))
    for i in range(m):
        for j in range(n):
            total = 0
            for p in range(k):
                total += a[i, p] * b[p, j]
            c[i, j] = total
    return c
    ### END SOLUTION


# %% [markdown]
# ### How the tests watch your code
#
# The next cell is part of the tests; you may read it but not change it. `CountingArray.wrap(x)`
# returns a copy of the matrix `x` that logs how it is read:
#
# - `log.element_reads[r, s]`: how many times `x[r, s]` was read on its own;
# - `log.slices`: every slice taken, as the rectangle `(r0, r1, s0, s1)` of rows `r0:r1` and
#   columns `s0:s1` of the original matrix it spans, and `log.covered`, the elements inside any slice;
# - `log.matmul_calls`: every matmul-like call (`@`, `np.matmul`, `np.dot`, `np.einsum`,
#   `np.tensordot`, `ndarray.dot`, ...) with the shapes of its operands.
#
# A slice of a `CountingArray` is again one, sharing the log. Anything derived another way (`.T`,
# `.copy()`, `np.asarray`, arithmetic) is a plain array and is not watched, which is why the tasks
# ask you to index the inputs directly.

# %% nbgrader={"grade": false, "grade_id": "counting_array", "locked": true, "schema_version": 3, "solution": false}
MATMUL_UFUNCS = {f for f in (getattr(np, name, None) for name in ("matmul", "vecdot", "matvec", "vecmat"))
                 if f is not None}
MATMUL_FUNCTIONS = (
    {f for f in (getattr(np, name, None) for name in ("dot", "vdot", "inner", "outer", "tensordot", "einsum", "kron"))
     if f is not None}
    | {f for f in (getattr(np.linalg, name, None) for name in ("multi_dot", "matmul", "tensordot", "vecdot", "outer"))
       if f is not None})


class ReadLog:
    """How the code under test read one instrumented (R, S) matrix."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = shape
        self.element_reads = np.zeros(shape, dtype=np.int64)  # reads of x[r, s] on its own
        self.slices: list[tuple[int, int, int, int]] = []     # (r0, r1, s0, s1) spanned by each slice read
        self.covered = np.zeros(shape, dtype=bool)            # elements inside at least one slice read
        self.matmul_calls: list[tuple[str, tuple]] = []       # (function, operand shapes)

    def record_slice(self, where: np.ndarray) -> None:
        """Log a slice whose elements sit at flat positions ``where`` of the original matrix."""
        if where.size == 0:
            return
        rows, cols = np.divmod(where, self.shape[1])
        self.slices.append((int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1))
        self.covered.flat[where.ravel()] = True


def _plain(x):
    return x.view(np.ndarray) if isinstance(x, CountingArray) else x


def _unwrap(x):
    return type(x)(_unwrap(v) for v in x) if isinstance(x, (list, tuple)) else _plain(x)


def _record_matmul(name: str, args) -> None:
    """Log a matmul-like call in the log of every instrumented operand among ``args``."""
    def arrays(x):
        if isinstance(x, (list, tuple)):
            return [y for v in x for y in arrays(v)]
        return [x] if isinstance(x, np.ndarray) else []
    operands = arrays(list(args))
    shapes = tuple(x.shape for x in operands)
    logs = {id(x._log): x._log for x in operands if isinstance(x, CountingArray) and x._log is not None}
    for log in logs.values():
        log.matmul_calls.append((name, shapes))


class CountingArray(np.ndarray):
    """A matrix that logs element reads, slice reads and matmul-like calls in ``.log``."""

    _log = None    # the ReadLog, shared by a wrapped matrix and every slice taken from it
    _where = None  # flat position in the wrapped matrix of each element of this view

    @classmethod
    def wrap(cls, x) -> "CountingArray":
        """An instrumented copy of the 2-D array ``x`` with a fresh ReadLog."""
        x = np.array(x)
        if x.ndim != 2:
            raise ValueError(f"CountingArray.wrap needs a 2-D array, got shape {x.shape}")
        view = x.view(cls)
        view._log = ReadLog(x.shape)
        view._where = np.arange(x.size).reshape(x.shape)
        return view

    @property
    def log(self) -> ReadLog:
        return self._log

    def __getitem__(self, key):
        if self._log is None:
            return super().__getitem__(key)
        value = self.view(np.ndarray)[key]
        where = self._where[key]
        if np.ndim(where) == 0:
            self._log.element_reads.flat[where] += 1
            return value
        self._log.record_slice(where)
        part = value.view(CountingArray)
        part._log, part._where = self._log, where
        return part

    def __iter__(self):
        if self._log is None:
            return super().__iter__()
        return (self[i] for i in range(len(self)))

    def __repr__(self):
        return "CountingArray(" + repr(self.view(np.ndarray))[len("array("):]

    def __str__(self):
        return str(self.view(np.ndarray))

    def dot(self, other, out=None):
        _record_matmul("ndarray.dot", (self, other))
        return np.dot(_plain(self), _plain(other), out=out)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == "__call__" and ufunc in MATMUL_UFUNCS:
            _record_matmul(ufunc.__name__, inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(x) for x in kwargs["out"])
        return getattr(ufunc, method)(*(_plain(x) for x in inputs), **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if func in MATMUL_FUNCTIONS:
            _record_matmul(func.__name__, list(args) + list(kwargs.values()))
            return func(*_unwrap(args), **{key: _unwrap(value) for key, value in kwargs.items()})
        return super().__array_function__(func, types, args, kwargs)


def describe(args) -> str:
    """Arguments as a short string: arrays by shape and dtype, everything else by repr."""
    return ", ".join(f"array{x.shape} {x.dtype}" if isinstance(x, np.ndarray) else repr(x) for x in args)


def expect_value_error(fn, *args, **kwargs) -> str:
    """Call ``fn(*args, **kwargs)``, require a ValueError, and return its message."""
    try:
        fn(*args, **kwargs)
    except ValueError as err:
        return str(err)
    raise AssertionError(f"{fn.__name__}({describe(args)}, {kwargs}) returned instead of raising ValueError")


def assert_tiled(x: CountingArray, name: str, block_size: int) -> None:
    """Require that ``x`` was read only in tiles of at most block_size per dimension, covering it."""
    log, (rows, cols) = x.log, x.shape
    assert log.slices, (f"no slice of {name} {x.shape} was read: take each tile with one 2-D slice, "
                        f"{name}[r0:r1, s0:s1], of the input itself (not of a converted copy)")
    spans = [(r1 - r0, s1 - s0) for r0, r1, s0, s1 in log.slices]
    too_big = [span for span in spans if span[0] > block_size or span[1] > block_size]
    assert not too_big, (f"with block_size={block_size}, a slice of {name} {x.shape} spanned "
                         f"{too_big[0][0]} rows x {too_big[0][1]} columns; tiles span at most block_size "
                         f"in each dimension")
    largest = (max(r for r, _ in spans), max(s for _, s in spans))
    wanted = (min(block_size, rows), min(block_size, cols))
    assert largest == wanted, (f"with block_size={block_size}, the largest slices of {name} {x.shape} spanned "
                               f"{largest[0]} rows and {largest[1]} columns; real tiles span "
                               f"min(block_size, dimension) = {wanted}")
    missed = int((~log.covered).sum())
    assert missed == 0, (f"{missed} elements of {name} {x.shape} were never inside a tile you read "
                         f"(block_size={block_size}); do the tiles reach the last rows and columns?")
    for function, shapes in log.matmul_calls:
        assert all(max(shape, default=0) <= block_size for shape in shapes), (
            f"{function} was called on operands of shapes {shapes}, larger than a "
            f"{block_size}x{block_size} tile; multiply tiles, not whole matrices")


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t01_naive_matches_matmul", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""matmul_naive matches a @ b on rectangular shapes and keeps the inputs' dtype"""
rng = np.random.default_rng(1)
for (m, k, n), dtype in [((3, 4, 2), np.float64), ((5, 3, 6), np.float32)]:
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    c = matmul_naive(a, b)
    assert isinstance(c, np.ndarray) and c.shape == (m, n), \
        f"({m}, {k}) @ ({k}, {n}) should give an array of shape ({m}, {n}), got {type(c).__name__} {np.shape(c)}"
    assert c.dtype == dtype, f"{dtype.__name__} inputs should give a {dtype.__name__} result, got {c.dtype}"
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5, err_msg=f"wrong values for ({m}, {k}) @ ({k}, {n})")
ints = np.arange(6).reshape(2, 3)
c = matmul_naive(ints, ints.T + 1)
assert c.dtype == ints.dtype, f"integer inputs should give an {ints.dtype} result, got {c.dtype}"
assert (c == ints @ (ints.T + 1)).all(), f"integer product should be exact: got {c.tolist()}"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t01_naive_rejects_bad_shapes", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""matmul_naive raises ValueError naming both shapes for mismatched or non-2-D inputs"""
for a_shape, b_shape in [((2, 3), (4, 5)), ((3,), (3, 2))]:
    message = expect_value_error(matmul_naive, np.ones(a_shape), np.ones(b_shape))
    assert str(a_shape) in message and str(b_shape) in message, \
        f"the ValueError for shapes {a_shape} and {b_shape} should name both; it said {message!r}"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t01_naive_reads_every_element", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""matmul_naive reads each a[i, p] N times and each b[p, j] M times, and calls no matmul routine"""
rng = np.random.default_rng(2)
for m, k, n in [(5, 7, 3), (4, 4, 4)]:
    a0, b0 = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    a, b = CountingArray.wrap(a0), CountingArray.wrap(b0)
    c = matmul_naive(a, b)
    np.testing.assert_allclose(c, a0 @ b0, rtol=1e-10, err_msg=f"wrong values for ({m}, {k}) @ ({k}, {n})")
    for x, name, times, letter in ((a, "a", n, "N"), (b, "b", m, "M")):
        calls = x.log.matmul_calls
        assert not calls, f"matmul_naive made matmul-like calls {calls} on {name}; do every multiply-add yourself"
        reads = x.log.element_reads
        assert (reads == times).all(), (
            f"for ({m}, {k}) @ ({k}, {n}) each element of {name} should be read {letter}={times} times, once per "
            f"multiply-add; counted {reads.min()} to {reads.max()} reads per element ({reads.sum()} in all) and "
            f"{len(x.log.slices)} slice reads. Index the inputs one element at a time, a[i, p] and b[p, j]")

# %% [markdown]
# ## What cache blocking does
#
# Memory reaches the core through a hierarchy of caches: small and fast close to the core (L1),
# larger and slower further out (L2, L3), then main memory. Data moves between them in whole
# **cache lines**, 64 bytes on most CPUs today (the cell below prints this machine's line size, as
# Linux reports it). Two consequences:
#
# - **Order matters.** Walking a row-major matrix along a row uses every byte of each line fetched.
#   Walking down a column uses 4 bytes (one float32) of each 64-byte line, and by the time the walk
#   comes back for the neighbouring column, that line may have been evicted.
# - **Reuse matters.** A value loaded into L1 is cheap to use again only while it is still there.
#
# The measurement below copies the same matrix twice: once in memory order, once transposed, so that
# one of the two arrays is walked down its columns. The same bytes move; only the order differs.

# %%
from pathlib import Path


def read_cache_sizes(cpu_dir: str = "/sys/devices/system/cpu/cpu0/cache") -> dict[str, int]:
    """This machine's data-cache sizes in bytes as Linux reports them, e.g. {"L1d": 49152, ...}.

    Also ``"line"``: the cache-line size in bytes. Returns {} where /sys is not available.
    """
    sizes = {}
    try:
        for index in sorted(Path(cpu_dir).glob("index*")):
            kind = (index / "type").read_text().strip()
            if kind == "Instruction":
                continue
            text = (index / "size").read_text().strip()  # "48K", "2048K", "260M"
            factor = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
            level = (index / "level").read_text().strip()
            sizes[f"L{level}d" if kind == "Data" else f"L{level}"] = int(text.rstrip("KMG")) * factor
            sizes["line"] = int((index / "coherency_line_size").read_text())
    except (OSError, ValueError):
        return {}
    return sizes


machine_caches = read_cache_sizes()
if machine_caches:
    print("this machine's caches (per /sys): " + ", ".join(
        f"{name} {size // 1024} KiB" for name, size in machine_caches.items() if name != "line")
        + f", cache line {machine_caches['line']} bytes")
else:
    print("cache sizes not available from /sys on this machine; the notebook uses typical values")

# %%
rng = np.random.default_rng(0)
copy_n = benchmarking.benchmark_size(2048, 256)
source = rng.standard_normal((copy_n, copy_n), dtype=np.float32)
destination = np.empty_like(source)
in_order = benchmarking.time_call(np.copyto, destination, source)
transposed = benchmarking.time_call(np.copyto, destination, source.T)
moved_bytes = 2 * source.nbytes  # each copy reads and writes the matrix once
print(f"copy {copy_n}x{copy_n} float32 ({source.nbytes / 2**20:.3g} MiB): in memory order "
      f"{moved_bytes / in_order.median_s / 1e9:.1f} GB/s, transposed "
      f"{moved_bytes / transposed.median_s / 1e9:.1f} GB/s ({transposed.median_s / in_order.median_s:.1f}x the time)")

# %% [markdown]
# The ratio printed above is what the access order costs this copy on this machine.
#
# Matrix multiplication has far more reuse available than a copy: each element of A is used N times
# and each element of B M times. A compiled triple loop with N large enough that B does not fit in
# cache wastes it: for every row of A it streams all of B through the cache again, down its columns.
# **Cache blocking** reorders the same multiply-adds so that reuse happens while the data is cached.
# Cut A, B and C into tiles of at most b × b and compute
#
# $$C[i_0{:}i_1,\ j_0{:}j_1] \mathrel{+}= A[i_0{:}i_1,\ p_0{:}p_1]\ @\ B[p_0{:}p_1,\ j_0{:}j_1]$$
#
# for every tile triple. One tile product does 2·b³ FLOPs on 3·b² elements, so each element brought
# into cache is used about b times before it leaves, provided the three tiles fit in the cache
# together (Task 3 computes when they do).
#
# ```
#              A (M x K)                 B (K x N)                 C (M x N)
#         +-----+-----+-----+       +-----+-----+-----+       +-----+-----+-----+
#         |     |     |     | p0:p1 |     |  B  |     |       |     |     |     |
#         +-----+-----+-----+       +-----+-----+-----+       +-----+-----+-----+
#   i0:i1 |  A  |     |     |   @   |     |     |     |  +=>  |     |  C  |     | i0:i1
#         +-----+-----+-----+       +-----+-----+-----+       +-----+-----+-----+
#          p0:p1                           j0:j1                     j0:j1
# ```
#
# Blocking helps when the inner work is compiled and fast enough for memory traffic to be the limit,
# and the matrices are larger than the cache; Lam, Rothberg and Wolf measured it for compiled matrix
# multiplication ("The Cache Performance and Optimizations of Blocked Algorithms", ASPLOS 1991).
# It cannot help a loop whose every step is slowed by the interpreter: you will measure that after
# Task 3, together with what blocking does when each tile product is a BLAS call.

# %% [markdown]
# ## Task 2 — Blocked matmul (5 points)
#
# Write `matmul_blocked(a, b, block_size=64)`:
#
# - Loop over tile starts `i0`, `j0`, `p0` in steps of `block_size` (rows of A, columns of B, and the
#   shared dimension). For each triple, multiply the A tile `a[i0:i1, p0:p1]` by the B tile
#   `b[p0:p1, j0:j1]` with `@` and add the product into `c[i0:i1, j0:j1]`.
# - Edge tiles are smaller: `i1 = min(i0 + block_size, M)`, and likewise for `j1`, `p1`. Any shapes
#   must work, including matrices smaller than one block (then there is a single tile).
# - Same dtype rule and the same shape `ValueError` (naming both shapes) as Task 1. Also raise
#   `ValueError` with a message that mentions `block_size` if `block_size < 1`.
#
# **What the tests observe.** Every slice you take of `a` or `b` (as the rectangle of rows and columns
# it spans) and every matmul-like call with its operand shapes. They require that every slice spans
# at most `block_size` rows and columns; that the largest span exactly `min(block_size, dimension)`,
# so the tiles are real tiles of the requested size; that the slices together cover both matrices;
# and that no matmul-like call receives more than a tile. Take each tile with one two-dimensional
# slice of the input, `a[i0:i1, p0:p1]` (not `a[i0:i1][:, p0:p1]`, whose first slice spans all
# columns), and don't convert the inputs.

# %% nbgrader={"grade": false, "grade_id": "matmul_blocked", "locked": false, "schema_version": 3, "solution": true}
def matmul_blocked(a: np.ndarray, b: np.ndarray, block_size: int = 64) -> np.ndarray:
    """(M, K) @ (K, N) -> (M, N), one tile of at most block_size x block_size per operand at a time.

    Edge tiles are smaller when a dimension is not a multiple of block_size. The result dtype is
    ``np.result_type(a, b)``. Raises ValueError for block_size < 1 or incompatible shapes.
    """
    ### BEGIN SOLUTION
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    a, b = np.asanyarray(a), np.asanyarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul_blocked needs (M, K) @ (K, N) matrices, got shapes {a.shape} and {b.shape}")
    m, k = a.shape
    n = b.shape[1]
    c = np.zeros((m, n), dtype=np.result_type(a, b))
    for i0 in range(0, m, block_size):
        i1 = min(i0 + block_size, m)
        for j0 in range(0, n, block_size):
            j1 = min(j0 + block_size, n)
            for p0 in range(0, k, block_size):
                p1 = min(p0 + block_size, k)
                # (i1-i0, p1-p0) @ (p1-p0, j1-j0) accumulates into C's (i1-i0, j1-j0) tile
                c[i0:i1, j0:j1] += a[i0:i1, p0:p1] @ b[p0:p1, j0:j1]
    return c
    ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t01_blocked_matches_matmul", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""matmul_blocked matches a @ b on shapes that are not multiples of the block, keeping the dtype"""
rng = np.random.default_rng(3)
for (m, k, n), block_size, dtype in [((70, 33, 45), 16, np.float64), ((64, 64, 64), 32, np.float32),
                                     ((20, 50, 9), 8, np.float32)]:
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    c = matmul_blocked(a, b, block_size=block_size)
    assert isinstance(c, np.ndarray) and c.shape == (m, n), \
        f"({m}, {k}) @ ({k}, {n}) should give shape ({m}, {n}), got {type(c).__name__} {np.shape(c)}"
    assert c.dtype == dtype, f"{dtype.__name__} inputs should give a {dtype.__name__} result, got {c.dtype}"
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(c, a @ b, rtol=tolerance, atol=tolerance,
                               err_msg=f"wrong values for ({m}, {k}) @ ({k}, {n}), block_size={block_size}")
ints = np.arange(30).reshape(5, 6)
c = matmul_blocked(ints, ints.T, block_size=4)
assert c.dtype == ints.dtype and (c == ints @ ints.T).all(), f"integer product should be exact: {c.dtype} {c.tolist()}"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t01_blocked_uses_tiles", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""matmul_blocked reads real tiles of block_size that cover both matrices, and multiplies only tiles"""
rng = np.random.default_rng(4)
for (m, k, n), block_size in [((20, 12, 28), 4), ((20, 12, 28), 8), ((19, 10, 23), 6)]:
    a0, b0 = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    a, b = CountingArray.wrap(a0), CountingArray.wrap(b0)
    c = matmul_blocked(a, b, block_size=block_size)
    np.testing.assert_allclose(c, a0 @ b0, rtol=1e-10, err_msg=f"wrong values, block_size={block_size}")
    assert_tiled(a, "a", block_size)
    assert_tiled(b, "b", block_size)

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t01_blocked_rejects_bad_arguments", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""matmul_blocked raises ValueError for block_size < 1 and for incompatible shapes"""
message = expect_value_error(matmul_blocked, np.ones((4, 4)), np.ones((4, 4)), block_size=0)
assert "block_size" in message, f"the ValueError for block_size=0 should mention block_size; it said {message!r}"
message = expect_value_error(matmul_blocked, np.ones((2, 3)), np.ones((4, 5)), block_size=2)
assert "(2, 3)" in message and "(4, 5)" in message, f"the ValueError should name both shapes; it said {message!r}"

# %% [markdown]
# ## Task 3 — Cache footprint of a tiling (2 points)
#
# A tile product keeps three tiles busy at once: one of A, one of B and the one of C it adds into.
# Write `cache_footprint(block_size, itemsize=4, l1_bytes=32 * 1024, l2_bytes=1024 * 1024)`
# returning a dict with
#
# - `"tile_bytes"`: bytes of one block_size × block_size tile, `block_size**2 * itemsize`;
# - `"working_set_bytes"`: the three tiles together, `3 * tile_bytes`;
# - `"fits_l1"`, `"fits_l2"`: whether `working_set_bytes <= l1_bytes` (respectively `l2_bytes`).
#   A working set that exactly fills the cache counts as fitting.
#
# Raise `ValueError` if `block_size` or `itemsize` is below 1.
#
# The defaults, a 32 KiB L1 data cache and a 1 MiB L2 per core, are typical of recent server cores:
# Intel Skylake-SP (Intel 64 and IA-32 Architectures Optimization Reference Manual, Skylake Server
# microarchitecture) and AMD Zen 4 (AMD, Software Optimization Guide for the AMD Zen4
# Microarchitecture, publication 57647). The cell after the tests passes in this machine's own
# sizes, printed earlier. It is a model: it ignores everything else competing for the cache and the
# cache's associativity, which is why practical block sizes leave headroom.

# %% nbgrader={"grade": false, "grade_id": "cache_footprint", "locked": false, "schema_version": 3, "solution": true}
def cache_footprint(block_size: int, itemsize: int = 4, l1_bytes: int = 32 * 1024,
                    l2_bytes: int = 1024 * 1024) -> dict:
    """Bytes kept busy by one tile product with (block_size x block_size) tiles, and where they fit.

    itemsize is bytes per element (4 for float32). Returns ``{"tile_bytes": int,
    "working_set_bytes": int, "fits_l1": bool, "fits_l2": bool}``; the working set is the A, B and
    C tiles. Raises ValueError if block_size or itemsize is below 1.
    """
    ### BEGIN SOLUTION
    if block_size < 1 or itemsize < 1:
        raise ValueError(f"need block_size >= 1 and itemsize >= 1, got block_size={block_size}, itemsize={itemsize}")
    tile_bytes = block_size * block_size * itemsize
    working_set_bytes = 3 * tile_bytes
    return {"tile_bytes": tile_bytes, "working_set_bytes": working_set_bytes,
            "fits_l1": working_set_bytes <= l1_bytes, "fits_l2": working_set_bytes <= l2_bytes}
    ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t01_footprint_bytes", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""cache_footprint counts one tile and the three-tile working set, and rejects block_size < 1"""
for block_size, itemsize, tile in [(64, 4, 16384), (32, 4, 4096), (10, 8, 800), (1, 2, 2)]:
    footprint = cache_footprint(block_size, itemsize=itemsize)
    assert isinstance(footprint, dict), f"cache_footprint should return a dict, got {type(footprint).__name__}"
    missing = {"tile_bytes", "working_set_bytes", "fits_l1", "fits_l2"} - set(footprint)
    assert not missing, f"cache_footprint's dict lacks the keys {sorted(missing)}"
    assert footprint["tile_bytes"] == tile, \
        f"block_size={block_size}, itemsize={itemsize}: a tile is {tile} bytes, got {footprint['tile_bytes']}"
    assert footprint["working_set_bytes"] == 3 * tile, \
        f"block_size={block_size}: three tiles are {3 * tile} bytes, got {footprint['working_set_bytes']}"
message = expect_value_error(cache_footprint, 0)
assert "block_size" in message, f"the ValueError for block_size=0 should mention block_size; it said {message!r}"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t01_footprint_fits", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""cache_footprint compares the three-tile working set with L1 and L2, counting an exact fill as fitting"""
for block_size, kwargs, fits_l1, fits_l2 in [
        (32, {}, True, True),                                    # 12 KiB in 32 KiB / 1 MiB
        (64, {}, False, True),                                   # 48 KiB
        (512, {}, False, False),                                 # 3 MiB
        (16, dict(itemsize=8, l1_bytes=6144), True, True),       # exactly fills L1
        (16, dict(itemsize=8, l1_bytes=6143, l2_bytes=6143), False, False)]:
    footprint = cache_footprint(block_size, **kwargs)
    assert (bool(footprint["fits_l1"]), bool(footprint["fits_l2"])) == (fits_l1, fits_l2), (
        f"cache_footprint({block_size}, {kwargs}): working set {footprint['working_set_bytes']} bytes should give "
        f"fits_l1={fits_l1}, fits_l2={fits_l2}; got {footprint['fits_l1']}, {footprint['fits_l2']}")

# %% tags=["raises-exception"]
l1_bytes = machine_caches.get("L1d", 32 * 1024)
l2_bytes = machine_caches.get("L2", 1024 * 1024)
for block_size in (16, 32, 64, 128, 256, 512):
    footprint = cache_footprint(block_size, itemsize=4, l1_bytes=l1_bytes, l2_bytes=l2_bytes)
    print(f"block {block_size:>3}: float32 tile {footprint['tile_bytes'] / 1024:g} KiB, three tiles "
          f"{footprint['working_set_bytes'] / 1024:g} KiB, fit in L1 ({l1_bytes // 1024} KiB): "
          f"{'yes' if footprint['fits_l1'] else 'no'}, in L2 ({l2_bytes // 1024} KiB): "
          f"{'yes' if footprint['fits_l2'] else 'no'}")

# %% [markdown]
# ## Measuring the three kernels
#
# Now the three ways to compute the same product, timed over matrix sizes on float32 N × N
# matrices: your naive loop (only up to small N: it is slow), your blocked version with 64 × 64
# tiles, and `np.matmul`, which calls BLAS. Each line prints the rate in FLOP/s (2·N³ FLOPs over
# the median time); compare them with the `np.matmul` ceiling measured at the top.

# %%
def rate(flop_count: float, seconds: float) -> str:
    """A FLOP rate as short text: '3.9 MFLOP/s', '41.0 GFLOP/s'; '-' when not measured."""
    if not np.isfinite(seconds):
        return "-"
    per_second = flop_count / seconds
    return f"{per_second / 1e9:.1f} GFLOP/s" if per_second >= 1e9 else f"{per_second / 1e6:.1f} MFLOP/s"


def median_or_nan(function, *args, **kwargs) -> float:
    """Median seconds of ``function(*args)``; NaN while the task is not written yet."""
    try:
        return benchmarking.time_call(function, *args, **kwargs).median_s
    except NotImplementedError:
        return float("nan")


rng = np.random.default_rng(0)
naive_sizes = benchmarking.benchmark_size([16, 32, 64, 96], [8, 16])
sizes = benchmarking.benchmark_size([16, 32, 64, 96, 128, 256, 512, 1024], [8, 16, 32])
measured_s = {"naive": [], "blocked(64)": [], "BLAS (np.matmul)": []}
for n in sizes:
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    # The interpreted loop has nothing to warm up; time_call's calibration call runs it once anyway.
    naive_s = median_or_nan(matmul_naive, a, b, repeats=3, warmup=0) if n in naive_sizes else float("nan")
    blocked_s = median_or_nan(matmul_blocked, a, b, 64)
    blas_s = benchmarking.time_call(np.matmul, a, b).median_s
    for name, seconds in zip(measured_s, (naive_s, blocked_s, blas_s)):
        measured_s[name].append(seconds)
    flop_count = 2.0 * n**3
    print(f"N={n:<5d} naive {rate(flop_count, naive_s):>14}   blocked(64) {rate(flop_count, blocked_s):>14}   "
          f"BLAS {rate(flop_count, blas_s):>14}")
times_s = measured_s  # complete: the plots and the saved measurements below use it
unfinished = [task for task, name in (("matmul_naive", "naive"), ("matmul_blocked", "blocked(64)"))
              if np.isnan(measured_s[name]).all()]
if unfinished:
    print(f"not implemented yet, so not measured: {', '.join(unfinished)} (their lines are missing below)")

fig, ax = plotting.plot_lines(sizes, times_s, xlabel="matrix size N (N x N float32)",
                              ylabel="time per product (s)", title="C = A @ B: time on this machine")
gflops_by_kernel = {name: [2.0 * n**3 / s / 1e9 for n, s in zip(sizes, seconds)]
                    for name, seconds in times_s.items()}
fig, ax = plotting.plot_lines(sizes, gflops_by_kernel, xlabel="matrix size N (N x N float32)",
                              ylabel="rate (GFLOP/s)", title="C = A @ B: rate on this machine")
ax.axhline(peak_gflops, color="gray", linestyle="--", label=f"np.matmul at N={peak_n}")
ax.legend()
fig.tight_layout()

# %% [markdown]
# Reading the two plots: the naive loop's time grows as N³ and its rate stays flat, pinned by the
# interpreter at a tiny fraction of the ceiling. `np.matmul`'s rate is lowest on the smallest
# matrices, where the fixed cost of a call outweighs its few FLOPs, and rises with N. Blocking with
# NumPy tiles sits in between: its tile products run in BLAS, but each of the (N/64)³ of them costs
# a Python loop step, a call and a temporary array.
#
# ### Blocking a pure-Python loop
#
# Is the blocked version fast because of the cache or because its inner work left Python? Block the
# Python loop itself and see. `matmul_blocked_python` below visits the same tiles as your
# `matmul_blocked` but multiplies each tile pair with scalar Python loops.

# %% tags=["raises-exception"]
def matmul_blocked_python(a: np.ndarray, b: np.ndarray, block_size: int) -> np.ndarray:
    """(M, K) @ (K, N) -> (M, N): cache-blocked loop order, every multiply-add in Python."""
    m, k = a.shape
    n = b.shape[1]
    c = np.zeros((m, n), dtype=np.result_type(a, b))
    for i0 in range(0, m, block_size):
        for j0 in range(0, n, block_size):
            for p0 in range(0, k, block_size):
                for i in range(i0, min(i0 + block_size, m)):
                    for j in range(j0, min(j0 + block_size, n)):
                        total = c[i, j]
                        for p in range(p0, min(p0 + block_size, k)):
                            total += a[i, p] * b[p, j]
                        c[i, j] = total
    return c


python_n = max(naive_sizes)
a = rng.standard_normal((python_n, python_n), dtype=np.float32)
b = rng.standard_normal((python_n, python_n), dtype=np.float32)
np.testing.assert_allclose(matmul_blocked_python(a, b, 8), a @ b, rtol=1e-3, atol=1e-3)
naive_time = benchmarking.time_call(matmul_naive, a, b, repeats=3, warmup=0)
python_blocks = (8, 32)
python_blocked_times = [benchmarking.time_call(matmul_blocked_python, a, b, block, repeats=3, warmup=0)
                        for block in python_blocks]
print(f"N={python_n} float32, pure Python: naive {naive_time}; " + "; ".join(
    f"blocked({block}) {timing} = {timing.median_s / naive_time.median_s:.2f}x the naive time"
    for block, timing in zip(python_blocks, python_blocked_times)))
step_ns = naive_time.median_s / python_n**3 * 1e9
strided_ns = transposed.median_s / source.size * 1e9
print(f"cost per step: {step_ns:.0f} ns per multiply-add in the naive Python loop, "
      f"{strided_ns:.1f} ns per element in the transposed copy above")

# %% [markdown]
# The first line compares the same multiply-adds in two orders, both executed by the interpreter:
# blocking does not make the Python loop faster. The second line says why. One multiply-add in the
# interpreter costs far more than one element costs the memory system even in the worst order this
# notebook measured, the transposed copy. Reordering the loop for the cache would save part of that
# small memory cost, and leaves the large interpreter cost untouched. What made `matmul_blocked`
# fast in the sweep is that its inner loops left Python.
#
# ### The block-size sweep
#
# With NumPy tiles, how does the block size matter? The sweep times `matmul_blocked` for several
# block sizes at one N against `np.matmul` on the same matrices, and prints Task 3's cache verdict
# for each block beside it.

# %% tags=["raises-exception"]
sweep_n = benchmarking.benchmark_size(1024, 64)
sweep_blocks = benchmarking.benchmark_size([32, 64, 128, 256, 512], [8, 16, 32, 64])
a = rng.standard_normal((sweep_n, sweep_n), dtype=np.float32)
b = rng.standard_normal((sweep_n, sweep_n), dtype=np.float32)
sweep_flops = 2.0 * sweep_n**3
matmul_time = benchmarking.time_call(np.matmul, a, b)
sweep_gflops = []
for block_size in sweep_blocks:
    timing = benchmarking.time_call(matmul_blocked, a, b, block_size, repeats=3)
    footprint = cache_footprint(block_size, itemsize=4, l1_bytes=l1_bytes, l2_bytes=l2_bytes)
    fits = "L1" if footprint["fits_l1"] else "L2" if footprint["fits_l2"] else "neither L1 nor L2"
    sweep_gflops.append(sweep_flops / timing.median_s / 1e9)
    print(f"N={sweep_n} block={block_size:<4d} blocked {timing}  {timing.median_s / matmul_time.median_s:5.2f}x "
          f"np.matmul's {benchmarking.format_seconds(matmul_time.median_s)}  three tiles "
          f"{footprint['working_set_bytes'] / 1024:g} KiB fit {fits}")

fastest = sweep_blocks[int(np.argmax(sweep_gflops))]
fitting = [block for block in sweep_blocks
           if cache_footprint(block, itemsize=4, l1_bytes=l1_bytes, l2_bytes=l2_bytes)["fits_l1"]]
rising = all(later >= earlier for earlier, later in zip(sweep_gflops, sweep_gflops[1:]))
print(f"this run: the fastest block was {fastest} ({max(sweep_gflops) / (sweep_flops / matmul_time.median_s / 1e9):.0%} "
      f"of np.matmul's rate); the rate {'rose with every larger block' if rising else 'did not rise steadily with the block size'}; "
      f"blocks whose three tiles fit in L1: {fitting or 'none'}"
      f"{'' if fastest in fitting else ' (the fastest was not one of them)'}")

fig, ax = plotting.plot_bars([str(block) for block in sweep_blocks], sweep_gflops, ylabel="rate (GFLOP/s)",
                             title=f"matmul_blocked, N={sweep_n} float32, by block size on this machine",
                             reference=(sweep_flops / matmul_time.median_s / 1e9, "np.matmul, same matrices"))
ax.set_xlabel("block_size (elements per tile side)")
fig.tight_layout()

# %% [markdown]
# Read the ratio column and the line under it: which block was fastest on your machine, and did
# it fit in L1? Each tile product here is itself a BLAS call that already blocks for L1, L2 and
# the registers internally; what our outer tiles add is (N/b)³ Python-level calls and temporaries,
# which larger blocks amortise, so the L1 verdict is not what decides the speed. On most machines
# the rate therefore climbs with the block size until the tile products are large enough for BLAS
# to run near its peak; where the cores are busy with other work, the largest blocks can lose
# again, and your run shows which happened. Choosing a block size by the cache matters when the
# tile product is a compiled loop without blocking of its own, which is what BLAS does inside.
#
# The next cell saves one measurement per kernel, at the largest size the naive loop ran, for the
# roofline in notebook 02.

# %%
record_n = max(naive_sizes)
record_index = sizes.index(record_n)
itemsize = np.dtype(np.float32).itemsize
records = [{"kernel": kernel, "m": record_n, "k": record_n, "n": record_n, "flops": 2 * record_n**3,
            "bytes": 3 * record_n * record_n * itemsize,  # read A and B, write C once: the minimum
            "time_s": times_s[name][record_index]}
           for kernel, name in (("naive", "naive"), ("blocked(64)", "blocked(64)"), ("BLAS", "BLAS (np.matmul)"))
           if np.isfinite(times_s[name][record_index])]  # a task not written yet has nothing to save
saved = benchmarking.save_measurements("01_loops_and_blocking", records)
print(f"saved {len(records)} kernels at N={record_n} to {saved}")

# %% [markdown]
# ## Why BLAS wins
#
# `np.matmul` on float32 or float64 matrices hands the work to the BLAS library NumPy was built with
# (printed at the top). Its GEMM routine is cache blocking done all the way down (Goto and van de
# Geijn, "Anatomy of High-Performance Matrix Multiplication", ACM TOMS 34(3), 2008):
#
# - a **microkernel**, written in assembly for each CPU family, keeps a small block of C in vector
#   registers and streams slivers of A and B through fused multiply-add instructions;
# - **packing** copies each tile of A and B into a contiguous buffer in exactly the order the
#   microkernel reads it, so every cache line fetched is used in full;
# - **blocking at every level**: the packed tiles are sized for L1, L2 and L3, the same idea as your
#   `matmul_blocked` applied three times with sizes tuned per CPU;
# - **threads**: independent blocks of C are computed on different cores.
#
# Your blocked version gets all four inside each tile product, and pays Python for the loop around
# them. The practical lesson is the one frameworks follow: keep one entry point and send each call to
# the fastest kernel available.
#
# ## Task 4 — A backend that dispatches to the fast path (3 points)
#
# Frameworks expose a single `matmul` and route each call to the best kernel for the device and
# dtype. Build the smallest version of that:
#
# - `OptimizedBackend.dispatch(op, *args)`: if `op` is one of the names in `OptimizedBackend.ops`,
#   call the method of that name with `args` and return its result; otherwise raise `ValueError`
#   whose message names the unknown op and the known ones.
# - `OptimizedBackend.matmul(a, b)`: the fast path. Raise the same shape `ValueError` as before (an
#   input that is not 2-D or mismatched inner dimensions, both shapes named), then return
#   `np.matmul(a, b)` (or `a @ b`) on the whole matrices.
# - the module-level `matmul(a, b)`: send the call through `default_backend.dispatch("matmul", a, b)`.
#
# **What the tests observe.** With instrumented inputs, `dispatch("matmul", a, b)` must make exactly
# one matmul-like call, on the full matrices, and read no single elements or slices (a naive or
# blocked fallback would); `matmul(a, b)` must go through `OptimizedBackend.dispatch`.

# %% nbgrader={"grade": false, "grade_id": "OptimizedBackend", "locked": false, "schema_version": 3, "solution": true}
class OptimizedBackend:
    """Runs named operations on the fastest kernel available here: matmul goes to BLAS."""

    ops = ("matmul",)  # the operation names dispatch() accepts

    def dispatch(self, op: str, *args, **kwargs):
        """Run the operation named ``op`` on ``args``; ValueError naming the known ops otherwise."""
        ### BEGIN SOLUTION
        if op not in self.ops:
            raise ValueError(f"unknown op {op!r}: OptimizedBackend runs {', '.join(self.ops)}")
        return getattr(self, op)(*args, **kwargs)
        ### END SOLUTION

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(M, K) @ (K, N) -> (M, N) in one np.matmul call on the whole matrices (BLAS)."""
        ### BEGIN SOLUTION
        a, b = np.asanyarray(a), np.asanyarray(b)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"matmul needs (M, K) @ (K, N) matrices, got shapes {a.shape} and {b.shape}")
        return np.matmul(a, b)
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "matmul", "locked": false, "schema_version": 3, "solution": true}
default_backend = OptimizedBackend()


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) @ (K, N) -> (M, N) through ``default_backend``."""
    ### BEGIN SOLUTION
    return default_backend.dispatch("matmul", a, b)
    ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t01_backend_dispatches_to_blas", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""OptimizedBackend.dispatch('matmul', a, b) makes one matmul call on the whole matrices and nothing else"""
rng = np.random.default_rng(5)
backend = OptimizedBackend()
for (m, k, n), dtype in [((6, 9, 4), np.float32), ((5, 5, 5), np.float64)]:
    a0, b0 = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    a, b = CountingArray.wrap(a0), CountingArray.wrap(b0)
    c = backend.dispatch("matmul", a, b)
    assert np.shape(c) == (m, n) and c.dtype == dtype, \
        f"dispatch('matmul') on ({m}, {k}) @ ({k}, {n}) {dtype.__name__} gave {np.shape(c)} {getattr(c, 'dtype', None)}"
    np.testing.assert_allclose(c, a0 @ b0, rtol=1e-5, err_msg="dispatch('matmul') gave wrong values")
    for x, name in ((a, "a"), (b, "b")):
        assert x.log.element_reads.sum() == 0 and not x.log.slices, (
            f"dispatch('matmul') read {x.log.element_reads.sum()} single elements and {len(x.log.slices)} "
            f"slices of {name}: the fast path hands the whole matrices to np.matmul")
        assert [shapes for _, shapes in x.log.matmul_calls] == [((m, k), (k, n))], (
            f"dispatch('matmul') should make one matmul call on shapes ({m}, {k}) and ({k}, {n}); "
            f"saw {x.log.matmul_calls}")

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t01_backend_rejects_unknown_op", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""OptimizedBackend.dispatch raises ValueError naming an unknown op and the known ones"""
backend = OptimizedBackend()
message = expect_value_error(backend.dispatch, "conv2d", np.ones((2, 2)), np.ones((2, 2)))
assert "conv2d" in message and "matmul" in message, \
    f"the ValueError for op 'conv2d' should name it and the known op 'matmul'; it said {message!r}"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t01_matmul_uses_backend", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""the module-level matmul goes through OptimizedBackend.dispatch with op 'matmul'"""
rng = np.random.default_rng(6)
dispatched = []
original_dispatch = OptimizedBackend.dispatch


def recording_dispatch(self, op, *args, **kwargs):
    dispatched.append(op)
    return original_dispatch(self, op, *args, **kwargs)


OptimizedBackend.dispatch = recording_dispatch
try:
    a, b = rng.standard_normal((4, 6)), rng.standard_normal((6, 3))
    c = matmul(a, b)
finally:
    OptimizedBackend.dispatch = original_dispatch
assert dispatched == ["matmul"], f"matmul(a, b) should call OptimizedBackend.dispatch('matmul', ...) once; saw {dispatched}"
np.testing.assert_allclose(c, a @ b, rtol=1e-10, err_msg="matmul(a, b) gave wrong values")

# %% [markdown]
# ## Reflection (4 points, graded by hand)
#
# Answer in the cell below each question, from the numbers this notebook printed on your machine;
# quote them.
#
# **Q1. Blocking a pure-Python loop.** Compare the time of the pure-Python blocked loop with the
# naive loop's, and both with `matmul_blocked` on NumPy tiles at the same N. Using the printed rates
# and ratios, explain what limits each of the three, and why the cache blocking that speeds up
# compiled code does nothing for the Python loop.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q01_python_blocking", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# The naive loop's rate is flat in N and a tiny fraction of the `np.matmul` ceiling printed at the
# top: every multiply-add pays the interpreter for a loop step, two indexing calls that box NumPy
# scalars, a multiply and an add. The printed cost per step is far above the cost per element of even
# the transposed copy, so there is little memory time to save and the interpreter time stays. The
# pure-Python blocked loop does the same M·N·K interpreted steps plus extra loop bookkeeping, hence a
# printed ratio near (or slightly above) 1. `matmul_blocked` is fast for another reason: it replaces
# M·N·K interpreted steps by (N/b)³ calls of compiled BLAS code on b × b tiles, so the interpreter
# overhead per FLOP drops by roughly b³. Its gain comes from leaving Python, not from the cache.
# Blocking pays only once the inner loop is compiled and memory traffic is what limits it.

# %% [markdown]
# **Q2. Choosing the block size.** In the block-size sweep, how did the blocked time change with the
# block size, and how close did it get to `np.matmul` (quote the ratios)? Compare with the cache
# verdict printed beside each block. Why is the fastest block for `matmul_blocked` not one whose
# three tiles fit in L1, and how would the choice change if each tile product were a compiled triple
# loop (C or Numba) instead of a BLAS call?

# %% [markdown] nbgrader={"grade": true, "grade_id": "q01_block_size", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# The time falls as the blocks grow and the ratio to `np.matmul` approaches 1 at the largest blocks,
# although those tiles no longer fit in L1 (the largest not even in L2). Two effects dominate: the
# number of Python-level tile products, (N/b)³, each with call overhead and a temporary array for the
# product; and the efficiency of each BLAS call, which is poor on small tiles because packing and
# microkernel setup are amortised over few FLOPs. Neither depends on our tiles fitting in cache,
# because BLAS blocks for L1, L2 and the registers inside every call. With a compiled tile kernel that
# does no blocking of its own, the cache becomes the criterion: tiles too small waste loop overhead
# and reuse (about b FLOPs per element loaded), while tiles whose three-tile working set exceeds L1
# (or L2) are evicted mid-product and memory traffic rises. The best size is then near the largest
# block whose working set fits the target cache with some headroom, confirmed by a sweep like this one.
