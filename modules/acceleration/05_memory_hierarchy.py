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
# # 05 — The memory hierarchy, counted
#
# Notebook 01 timed cache blocking and found two things: `matmul_blocked` is fast because each tile
# product is a BLAS call, and blocking a pure-Python loop gains nothing because the interpreter
# dominates. You were told *why* blocking works (each tile is reused while it sits in cache); you
# never saw a cache miss. This notebook counts them. You write a cache simulator, feed it the exact
# sequence of addresses a transpose touches, and watch the misses fall when the transpose goes tile
# by tile; then you check the count against the clock on this machine.
#
# The transpose is the example because machine learning is full of them: attention multiplies by
# `K.T`, and a convolution library may want images as NHWC (channels last) when the data loader
# gives NCHW. A transpose does no arithmetic at all: its speed is the memory system's.
# The method is that of the Cache Lab of CMU's 15-213 (Bryant and O'Hallaron, *Computer Systems:
# A Programmer's Perspective*, 3rd ed., section 6.4 and the lab that goes with it): simulate a cache,
# then write a transpose that causes few misses on it.
#
# **What you will build**
#
# | task | what | points |
# | --- | --- | --- |
# | 1 | `simulate_cache(addresses, size_bytes, line_bytes, ways)`: a set-associative LRU cache | 5 |
# | 2 | `transpose_trace(m, n, block_size, ...)`: the addresses a transpose touches, in order | 3 |
# | 3 | `transpose_blocked(a, block_size)`: a transpose computed one tile at a time | 4 |
# | 4 | `best_block_size(m, n, cache, ...)`: the block size with the fewest misses | 2 |
# | | two written answers (graded by hand) | 4 |
#
# **How it is graded.** Each task's test cells come right after it. The tests you see are the
# visible half; at grading, hidden cases of the same test cells run on other traces, shapes and
# cache geometries (set conflicts, ragged tiles, 1, 2 and 8 ways, caches smaller than one tile) and
# compare your exact counts with the reference solution's. No test reads a clock. `transpose_blocked`
# is watched while it runs: the grader records every slice it reads of its input, and replays them
# through small caches (see "What the tests observe" in Task 3).
#
# **How to run the tests.** Kernel > Restart Kernel and Run All Cells... runs the whole notebook
# from a clean kernel. A test cell that passes prints nothing; a failing one shows an
# `AssertionError` saying what was wrong, and the run goes on to the next cell. A task you have not
# written yet shows `NotImplementedError` in its tests, and the experiments that need it print one
# line saying which task to finish first.
#
# **Simulations and timings.** Your simulator is plain Python, roughly a microsecond per address, so
# the experiments keep their traces to a few hundred thousand addresses; the whole notebook runs in
# well under a minute with the reference solution. The timings are this machine's, measured when
# you run the cells (median of repeats after a warm-up, `benchmarking.time_call`). While the
# notebook is being graded the experiments shrink or are skipped; the tests do not.

# %%
from math import gcd
from pathlib import Path

import numpy as np

import benchmarking
import plotting

# %% [markdown]
# ## How a cache is organised
#
# A cache holds copies of memory in **lines** of `line_bytes` consecutive bytes (64 on most CPUs
# today), aligned: byte address `x` lies in line number `x // line_bytes`. The cache's `size_bytes`
# are split into **sets** of `ways` lines each, so there are `sets = size_bytes // (line_bytes * ways)`
# sets, and a line may live only in set `line % sets`:
#
# ```
#   address 4660, 64-byte lines, a 1 KiB cache with 2 ways: 1024 // (64 * 2) = 8 sets
#   line = 4660 // 64 = 72            set = 72 % 8 = 0
#
#   set 0: [ line 8  | line 72 ]      <- its 2 ways, least recently used first
#   set 1: [ line 1  |    -    ]
#   ...
#   set 7: [ line 15 | line 39 ]
# ```
#
# An access to a line already in its set is a **hit**. Otherwise it is a **miss**: the line is
# loaded into its set, and if the set is full, the line used least recently leaves it (an
# **eviction**; this rule is **LRU**, least recently used). A miss into a set with a free way
# evicts nothing. Writes behave like reads here (write-allocate: a write to a line not in the cache
# loads it too), which is what the caches of today's CPUs do for ordinary stores.
#
# Misses come in three kinds, Mark Hill's "three Cs" (PhD thesis, UC Berkeley, 1987):
#
# - **compulsory**: the first access to a line can only miss;
# - **capacity**: between two accesses to a line, more other lines were used than the whole cache holds;
# - **conflict**: the cache has room, but too many of the lines in use map to the same set.
#   `ways = 1` (**direct-mapped**) has the most conflicts; one set holding every line
#   (**fully associative**) has none.
#
# Linux reports the geometry of this machine's caches; the next cells read it.

# %%
TYPICAL_CACHES = {  # a recent server core (Intel Skylake-SP, per Intel's optimization manual)
    "L1d": {"size_bytes": 32 * 1024, "line_bytes": 64, "ways": 8},
    "L2": {"size_bytes": 1024 * 1024, "line_bytes": 64, "ways": 16},
}
CACHE_LAB = {"size_bytes": 1024, "line_bytes": 32, "ways": 1}  # the cache of CS:APP's Cache Lab


def read_cache_geometry(cpu_dir: str = "/sys/devices/system/cpu/cpu0/cache") -> dict[str, dict]:
    """This machine's data caches as Linux reports them, e.g. {"L1d": {"size_bytes": 49152,
    "line_bytes": 64, "ways": 12}, "L2": {...}}; {} where /sys is not available."""
    caches = {}
    try:
        for index in sorted(Path(cpu_dir).glob("index*")):
            kind = (index / "type").read_text().strip()
            if kind == "Instruction":
                continue
            text = (index / "size").read_text().strip()  # "48K", "2048K"
            size = int(text.rstrip("KMG")) * {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
            line = int((index / "coherency_line_size").read_text())
            ways = int((index / "ways_of_associativity").read_text()) or size // line  # 0: fully associative
            level = (index / "level").read_text().strip()
            if line > 0 and size % (line * ways) == 0:
                caches[f"L{level}d" if kind == "Data" else f"L{level}"] = {"size_bytes": size, "line_bytes": line,
                                                                           "ways": ways}
    except (OSError, ValueError, ZeroDivisionError):
        return {}
    return caches


def describe_cache(cache: dict) -> str:
    """'32 KiB, 8-way, 64-byte lines (64 sets)'."""
    sets = cache["size_bytes"] // (cache["line_bytes"] * cache["ways"])
    return (f"{cache['size_bytes'] / 1024:g} KiB, {cache['ways']}-way, {cache['line_bytes']}-byte lines "
            f"({sets} sets)")


# %%
machine_caches = read_cache_geometry()
if "L1d" in machine_caches and "L2" in machine_caches:
    L1, L2 = machine_caches["L1d"], machine_caches["L2"]
    print(f"this machine (per /sys): L1d {describe_cache(L1)}; L2 {describe_cache(L2)}")
else:
    L1, L2 = TYPICAL_CACHES["L1d"], TYPICAL_CACHES["L2"]
    print(f"cache geometry not available from /sys here; the notebook uses a typical server core's: "
          f"L1d {describe_cache(L1)}; L2 {describe_cache(L2)}")

# %% [markdown]
# ## Task 1 — A set-associative LRU cache (5 points)
#
# Write `simulate_cache(addresses, size_bytes, line_bytes=64, ways=1)`:
#
# - `addresses` is a 1-D sequence of byte addresses (a NumPy integer array, a list or a tuple),
#   accessed in order.
# - The cache has `sets = size_bytes // (line_bytes * ways)` sets of `ways` lines each. Address `x`
#   is in line `x // line_bytes`, which lives in set `(x // line_bytes) % sets`. All sets start empty.
# - LRU replacement: on a miss into a full set, evict the line of that set used least recently
#   (a hit counts as a use).
# - Return `{"hits": ..., "misses": ..., "evictions": ...}` as Python ints. Every access is a hit
#   or a miss; an eviction is a miss that removed a line.
# - Raise `ValueError` when the geometry is inconsistent: `size_bytes`, `line_bytes` or `ways` below
#   1, or `size_bytes` not a multiple of `line_bytes * ways`. The message must show all three
#   values, for example `size_bytes=1000, line_bytes=64, ways=3: size_bytes must be a multiple of
#   line_bytes * ways`.
#
# *Hint.* A list per set, ordered from least to most recently used, is all the state you need: a
# hit moves the line to the end, a miss appends it (after removing the first one if the set is
# full). Compute the line numbers and set indices for the whole array with NumPy first, then loop
# over `.tolist()`: Python ints are faster to loop over than NumPy scalars.

# %% nbgrader={"grade": false, "grade_id": "simulate_cache", "locked": false, "schema_version": 3, "solution": true}
def simulate_cache(addresses, size_bytes: int, line_bytes: int = 64, ways: int = 1) -> dict:
    """Hits, misses and evictions of an LRU set-associative cache on a sequence of byte addresses.

    ``sets = size_bytes // (line_bytes * ways)``; address x is in line x // line_bytes, in set
    line % sets. Returns {"hits": int, "misses": int, "evictions": int}. Raises ValueError,
    showing the three values, if the geometry is inconsistent.
    """
    ### BEGIN SOLUTION
    if min(size_bytes, line_bytes, ways) < 1 or size_bytes % (line_bytes * ways):
        raise ValueError(f"size_bytes={size_bytes}, line_bytes={line_bytes}, ways={ways}: all must be positive "
                         f"and size_bytes a multiple of line_bytes * ways")
    sets = size_bytes // (line_bytes * ways)
    lines = np.asarray(addresses, dtype=np.int64).reshape(-1) // line_bytes
    resident = [[] for _ in range(sets)]  # per set: its lines, least recently used first
    hits = misses = evictions = 0
    for line, index in zip(lines.tolist(), (lines % sets).tolist()):
        in_set = resident[index]
        if line in in_set:
            hits += 1
            in_set.remove(line)  # a hit makes it the most recently used line
            in_set.append(line)
        else:
            misses += 1
            if len(in_set) == ways:
                del in_set[0]  # evict the least recently used line
                evictions += 1
            in_set.append(line)
    return {"hits": hits, "misses": misses, "evictions": evictions}
    ### END SOLUTION


# %% [markdown]
# The tests use the helpers in the next cell; you may read it but not change it.

# %% nbgrader={"grade": false, "grade_id": "given_test_helpers", "locked": true, "schema_version": 3, "solution": false}
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


def assert_counts(addresses, size_bytes, line_bytes, ways, expected, why=""):
    """Require simulate_cache(...) to give exactly ``expected`` = (hits, misses, evictions)."""
    result = simulate_cache(addresses, size_bytes, line_bytes, ways)
    assert isinstance(result, dict) and {"hits", "misses", "evictions"} <= set(result), \
        f"simulate_cache should return a dict with keys hits, misses, evictions; got {result!r}"
    got = tuple(result[key] for key in ("hits", "misses", "evictions"))
    shown = addresses if len(addresses) <= 12 else f"{describe([np.asarray(addresses)])} (see the test)"
    assert got == tuple(expected), (
        f"simulate_cache({shown}, size_bytes={size_bytes}, line_bytes={line_bytes}, ways={ways}) should give "
        f"hits, misses, evictions = {tuple(expected)}; got {got}" + (f". {why}" if why else ""))


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t05_cache_counts_by_hand", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""simulate_cache counts hits, misses and evictions on short traces worked out by hand"""
# 64 bytes in lines of 16, direct-mapped: 4 sets of one line; line = address // 16, set = line % 4
assert_counts([0, 4, 8, 15], 64, 16, 1, (3, 1, 0), "all four bytes are in line 0: one cold miss, then hits")
assert_counts([0, 64, 0, 64], 64, 16, 1, (0, 4, 3), "lines 0 and 4 share set 0 and evict each other")
assert_counts([0, 16, 32, 48, 0], 64, 16, 1, (1, 4, 0), "lines 0 to 3 go to four different sets")
assert_counts([0, 64, 0, 64], 128, 16, 2, (2, 2, 0), "with two ways, set 0 holds lines 0 and 4 together")
assert_counts(np.array([100, 36, 164, 100]), 64, 16, 1, (0, 4, 3),
              "a NumPy array works as well as a list; lines 6, 2, 10 and 6 all map to set 2")
assert_counts([], 64, 16, 1, (0, 0, 0), "no addresses, nothing counted")
assert_counts([0, 63, 64, 127, 128], 256, 64, 1, (2, 3, 0), "line_bytes sets which bytes share a line")

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t05_cache_lru_and_ways", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""simulate_cache evicts the least recently used line, and more ways hold more lines of one set"""
# one set of two 64-byte lines: after 0, 64, 0 the least recently used line is 64's, so 128 evicts
# it and the last access to 0 hits (first in, first out would evict line 0 and miss there)
assert_counts([0, 64, 0, 128, 0], 128, 64, 2, (2, 3, 1), "LRU evicts the line used least recently")
# k lines 4 sets apart all map to set 0 of a 4-set cache; cycling through them ten times
for ways in (1, 2, 8):
    for k in (ways, ways + 1):
        trace = np.tile(np.arange(k) * 4 * 64, 10)
        expected = (9 * k, k, 0) if k <= ways else (0, 10 * k, 10 * k - ways)
        assert_counts(trace, 4 * 64 * ways, 64, ways, expected,
                      f"{k} lines cycling through one set of {ways} ways: " +
                      ("they all fit, only the first round misses" if k <= ways else
                       "one too many, and LRU always evicts the line needed next"))
# one set holding all eight lines (fully associative): only cold misses
assert_counts(np.arange(0, 8 * 64, 32), 8 * 64, 64, 8, (8, 8, 0), "two accesses per line, eight lines, one set")

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t05_cache_rejects_bad_geometry", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""simulate_cache raises ValueError showing size_bytes, line_bytes and ways when they do not make whole sets"""
for size_bytes, line_bytes, ways in [(1000, 64, 3), (4096, 0, 2), (4096, 64, -2)]:
    message = expect_value_error(simulate_cache, [0, 64], size_bytes, line_bytes, ways)
    assert all(str(value) in message for value in (size_bytes, line_bytes, ways)), (
        f"the ValueError for size_bytes={size_bytes}, line_bytes={line_bytes}, ways={ways} should show all three "
        f"values; it said {message!r}")

# %% [markdown]
# ### Rows and columns, counted
#
# Notebook 01 timed a copy in memory order against a transposed one. Here is the same difference
# as the simulator sees it: reading a 128 × 128 float32 matrix (64 KiB) row by row and column by
# column, through Cache Lab's 1 KiB direct-mapped cache and through this machine's L1 geometry.

# %% tags=["raises-exception"]
walk_n = 128
rows, cols = np.divmod(np.arange(walk_n * walk_n), walk_n)
by_rows = (rows * walk_n + cols) * 4            # float32 A[i, j] at 4 * (i * N + j), i outer
by_columns = (cols * walk_n + rows) * 4         # the same elements, j outer
try:
    for name, cache in (("Cache Lab's", CACHE_LAB), ("L1", L1)):
        row_misses = simulate_cache(by_rows, **cache)["misses"]
        column_misses = simulate_cache(by_columns, **cache)["misses"]
        print(f"{walk_n}x{walk_n} float32 through {name} cache ({describe_cache(cache)}): by rows {row_misses} "
              f"misses ({row_misses / walk_n**2:.3f} per element), by columns {column_misses} "
              f"({column_misses / walk_n**2:.3f} per element)")
except NotImplementedError:
    print("skipped: counting misses needs simulate_cache; finish Task 1 first")

# %% [markdown]
# By rows, each line brings `line_bytes / 4` consecutive elements, so at most one access in that
# many misses. By columns, consecutive accesses are a whole row (512 bytes) apart: each touches
# another line, and whether that line is still cached when the walk comes back for the next
# column depends on whether the 128 lines of one column fit in the cache together. The two lines
# above say whether they did, for each cache.
#
# ## Task 2 — The address trace of a transpose (3 points)
#
# A transpose B = A.T of a row-major (M, N) matrix A reads every element of A once and writes it
# once into B, of shape (N, M), also row-major. With `itemsize` bytes per element:
#
# - `A[i, j]` is at byte `a_base + (i * N + j) * itemsize`;
# - `B[j, i]` is at byte `b_base + (j * M + i) * itemsize`, and `b_base` defaults to just past A,
#   `a_base + M * N * itemsize`.
#
# Write `transpose_trace(m, n, block_size=None, itemsize=4, a_base=0, b_base=None)` returning a 1-D
# `np.int64` array of the byte addresses, two per element and in order: the read of `A[i, j]`, then
# the write of `B[j, i]`. The order of A's elements:
#
# - `block_size=None`: row by row, the naive transpose (`for i: for j: B[j, i] = A[i, j]`).
# - `block_size=b`: tile by tile. The tiles are at most b × b; the last tile row and tile column
#   are smaller when b does not divide M or N (**ragged** edges). The tiles go in row-major order
#   over A, and inside each tile A's elements go row by row:
#
# ```
#   A (5 x 7), block_size=3: six tiles, visited in the order numbered
#        cols 0-2  cols 3-5  col 6
#       +--------+--------+----+
#       |   1    |   2    | 3  |   rows 0-2
#       +--------+--------+----+
#       |   4    |   5    | 6  |   rows 3-4
#       +--------+--------+----+
#   tile 1 visits A[0,0] A[0,1] A[0,2] A[1,0] A[1,1] ... A[2,2]; then tile 2 starts at A[0,3]
# ```
#
# - Raise `ValueError` mentioning `block_size` if `block_size` is below 1.
#
# *Hint.* The experiments build traces of up to 300,000 addresses, so compute them with NumPy
# rather than appending one address at a time: for each tile, the row indices as a column
# `np.arange(i0, i1)[:, None]` and the column indices as a row `np.arange(j0, j1)` broadcast to the
# whole tile. Faster still: list A's elements row by row, `i, j = np.divmod(np.arange(m * n), n)`,
# and reorder them with a stable sort by tile (`np.lexsort` sorts by its *last* key first).

# %% nbgrader={"grade": false, "grade_id": "transpose_trace", "locked": false, "schema_version": 3, "solution": true}
def transpose_trace(m: int, n: int, block_size: int | None = None, itemsize: int = 4, a_base: int = 0,
                    b_base: int | None = None) -> np.ndarray:
    """Byte addresses of B = A.T for a row-major (m, n) A: read A[i, j], then write B[j, i], per element.

    Row by row when block_size is None, else tile by tile (tiles of at most block_size square, in
    row-major order over A, row by row inside). b_base defaults to just past A. Returns 1-D int64.
    """
    ### BEGIN SOLUTION
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be None or at least 1, got {block_size}")
    if b_base is None:
        b_base = a_base + m * n * itemsize
    i, j = np.divmod(np.arange(m * n, dtype=np.int64), n)  # A's elements row by row
    if block_size is not None:
        # sort by tile row, then tile column; the sort is stable, so each tile keeps A's row-by-row order
        order = np.lexsort((j // block_size, i // block_size))
        i, j = i[order], j[order]
    trace = np.empty((i.size, 2), dtype=np.int64)
    trace[:, 0] = a_base + (i * n + j) * itemsize  # read A[i, j]
    trace[:, 1] = b_base + (j * m + i) * itemsize  # then write B[j, i]
    return trace.reshape(-1)
    ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t05_trace_row_by_row", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""transpose_trace without a block size reads A row by row and writes each element's place in B"""
trace = transpose_trace(2, 3)
assert isinstance(trace, np.ndarray) and trace.dtype == np.int64 and trace.ndim == 1, \
    f"transpose_trace should return a 1-D int64 array; got {type(trace).__name__} {getattr(trace, 'dtype', '')}"
# A (2, 3) float32 at bytes 0-23, B (3, 2) just past it at 24-47: (read A[i, j], write B[j, i])
expected = [(0, 24), (4, 32), (8, 40), (12, 28), (16, 36), (20, 44)]
assert trace.reshape(-1, 2).tolist() == [list(pair) for pair in expected], \
    f"transpose_trace(2, 3) as (read, write) pairs should be {expected}; got {trace.reshape(-1, 2).tolist()}"
m, n = 17, 11
trace = transpose_trace(m, n)
assert trace.shape == (2 * m * n,), f"a ({m}, {n}) transpose touches {2 * m * n} addresses; got {trace.shape}"
assert np.array_equal(trace[0::2], np.arange(m * n) * 4), \
    f"the reads of a ({m}, {n}) float32 A, row by row, are the consecutive bytes 0, 4, 8, ... of A"
assert np.array_equal(np.sort(trace[1::2]), m * n * 4 + np.arange(m * n) * 4), \
    f"the writes should cover B = A.T, the {m * n} float32 elements just past A, once each"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t05_trace_tiles", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""transpose_trace with a block size goes tile by tile in row-major order, ragged edge tiles included"""
# A (3, 4), one byte per element, block 2: tiles rows 0-1 x cols 0-1, rows 0-1 x cols 2-3, row 2 x cols 0-1,
# row 2 x cols 2-3. A[i, j] is at 4i + j; B (4, 3) starts at 12, B[j, i] at 12 + 3j + i
trace = transpose_trace(3, 4, block_size=2, itemsize=1)
expected = [(0, 12), (1, 15), (4, 13), (5, 16), (2, 18), (3, 21), (6, 19), (7, 22),
            (8, 14), (9, 17), (10, 20), (11, 23)]
assert isinstance(trace, np.ndarray) and trace.dtype == np.int64, "transpose_trace should return an int64 array"
assert trace.reshape(-1, 2).tolist() == [list(pair) for pair in expected], (
    f"transpose_trace(3, 4, block_size=2, itemsize=1) as (read, write) pairs should be {expected}; "
    f"got {trace.reshape(-1, 2).tolist()}")
m, n, block_size = 7, 5, 3
trace = transpose_trace(m, n, block_size=block_size)
first_tile = [(i * n + j) * 4 for i in range(3) for j in range(3)]
assert trace[0:18:2].tolist() == first_tile, \
    f"({m}, {n}) with block_size=3: the first 9 reads are tile rows 0-2 x cols 0-2, row by row: {first_tile}"
assert sorted(trace[0::2].tolist()) == list(range(0, m * n * 4, 4)), \
    f"({m}, {n}) with block_size=3: every element of A, ragged edge tiles included, is read exactly once"
assert np.array_equal(transpose_trace(4, 6, block_size=8), transpose_trace(4, 6)), \
    "a block larger than the matrix is one tile: the same trace as block_size=None"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t05_trace_bases_and_errors", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""transpose_trace places A at a_base and B at b_base (default just past A) with itemsize bytes per element"""
trace = transpose_trace(2, 2, itemsize=8, a_base=1000)
expected = [1000, 1032, 1008, 1048, 1016, 1040, 1024, 1056]  # A at 1000-1031, B just past it at 1032
assert trace.tolist() == expected, f"transpose_trace(2, 2, itemsize=8, a_base=1000) should be {expected}; got {trace.tolist()}"
trace = transpose_trace(2, 2, b_base=4096)
expected = [0, 4096, 4, 4104, 8, 4100, 12, 4108]
assert trace.tolist() == expected, f"transpose_trace(2, 2, b_base=4096) should be {expected}; got {trace.tolist()}"
message = expect_value_error(transpose_trace, 4, 4, block_size=0)
assert "block_size" in message, f"the ValueError for block_size=0 should mention block_size; it said {message!r}"

# %% [markdown]
# ## Counting the misses of a transpose
#
# First Cache Lab's setting: a 1 KiB direct-mapped cache of 32-byte lines, and the three matrix
# shapes the lab grades (32 × 32, 64 × 64, 61 × 67; float32 here, 4 bytes like the lab's ints). For
# each, the naive transpose and the blocked one for every block size, against the minimum: every
# line of A and of B missed once (compulsory misses only).

# %% [markdown]
# The experiments count misses with this helper, and `compulsory_misses` is the floor: each line
# of A and B loaded once.

# %%
BLOCK_SIZES = (1, 2, 4, 8, 16, 32, 64)


def count_misses(trace: np.ndarray, cache: dict) -> int:
    """Misses of your simulate_cache on ``trace`` for a cache given as a dict."""
    return simulate_cache(trace, cache["size_bytes"], cache["line_bytes"], cache["ways"])["misses"]


def compulsory_misses(m: int, n: int, line_bytes: int, itemsize: int = 4) -> int:
    """Lines spanned by A (m, n) and B = A.T stored one after the other from byte 0."""
    return -(-2 * m * n * itemsize // line_bytes)


# %% tags=["raises-exception"]
lab_shapes = benchmarking.benchmark_size([(32, 32), (64, 64), (61, 67)], [(32, 32)])
lab_misses = {}
try:
    for m, n in lab_shapes:
        naive = count_misses(transpose_trace(m, n), CACHE_LAB)
        blocked = [count_misses(transpose_trace(m, n, block_size), CACHE_LAB) for block_size in BLOCK_SIZES]
        best = BLOCK_SIZES[int(np.argmin(blocked))]
        lab_misses[m, n] = (naive, blocked)
        print(f"{m}x{n}: naive {naive} misses; blocked " + " ".join(
            f"{b}:{count}" for b, count in zip(BLOCK_SIZES, blocked)) + f"; fewest at block {best} "
            f"({min(blocked)}, {naive / min(blocked):.1f}x fewer than naive); minimum {compulsory_misses(m, n, 32)}")
except NotImplementedError:
    print("skipped: the miss counts need simulate_cache and transpose_trace; finish Tasks 1 and 2 first")

if lab_misses:
    fig, ax = plotting.plot_lines(list(BLOCK_SIZES), {f"{m}x{n} blocked": blocked
                                                      for (m, n), (_, blocked) in lab_misses.items()},
                                  xlabel="block_size (elements per tile side)", ylabel="cache misses",
                                  title="Transpose on Cache Lab's 1 KiB direct-mapped cache")
    ax.set_xscale("log", base=2)
    for (m, n), (naive, _) in lab_misses.items():
        ax.axhline(naive, linestyle="--", linewidth=1, color="gray")
        ax.annotate(f"{m}x{n} naive", (BLOCK_SIZES[-1], naive), fontsize=8, va="bottom", ha="right")
    fig.tight_layout()

# %% [markdown]
# Read the lines above for each shape: how far blocking got below the naive transpose, which block
# size did best, and how close that came to the minimum. The cache has only 32 lines, so a tile
# whose rows of A and columns of B need more lines than that cannot stay, and large blocks fall
# back to the naive count. A tile of 8 × 8 float32 touches 8 lines of A and 8 of B (32 bytes = 8
# elements per line), which fits. Two effects keep the blocked count above the minimum: A and B
# are laid out one after the other, so on the diagonal tiles an A line and a B line can map to the
# same set and evict each other; and for a width like 64, rows of A (and of B) 4 apart map to the
# same set (64 × 4 bytes × 4 rows = 1 KiB, the cache's whole size). Cache Lab's best solutions
# handle the diagonal and that 64 × 64 case with extra tricks; the next sections measure the
# second effect, conflicts, directly.
#
# ### This machine's L1 and L2
#
# The same experiment for a larger matrix, with this machine's L1 and L2 geometry (each simulated
# on its own, as if it were the only cache). N = 384 is not a power of two, on purpose (the next
# section shows why it matters).

# %% tags=["raises-exception"]
machine_n = benchmarking.benchmark_size(384, 96)
machine_blocks = (4, 8, 16, 32, 64)
machine_misses = {}
try:
    for name, cache in (("L1", L1), ("L2", L2)):
        naive = count_misses(transpose_trace(machine_n, machine_n), cache)
        blocked = [count_misses(transpose_trace(machine_n, machine_n, b), cache) for b in machine_blocks]
        machine_misses[name] = (naive, blocked)
        floor = compulsory_misses(machine_n, machine_n, cache["line_bytes"])
        best = machine_blocks[int(np.argmin(blocked))]
        print(f"N={machine_n} float32 on {name} ({describe_cache(cache)}): naive {naive} misses "
              f"({naive / floor:.2f}x the minimum {floor}); blocked " +
              " ".join(f"{b}:{count}" for b, count in zip(machine_blocks, blocked)) +
              f"; fewest at block {best}, {naive / min(blocked):.1f}x fewer than naive")
except NotImplementedError:
    print("skipped: the miss counts need simulate_cache and transpose_trace; finish Tasks 1 and 2 first")

if machine_misses:
    fig, ax = plotting.plot_lines(list(machine_blocks), {f"{name} blocked": blocked
                                                         for name, (_, blocked) in machine_misses.items()},
                                  xlabel="block_size (elements per tile side)", ylabel="cache misses",
                                  title=f"Transpose of {machine_n}x{machine_n} float32, this machine's caches")
    ax.set_xscale("log", base=2)
    for name, (naive, _) in machine_misses.items():
        ax.axhline(naive, linestyle="--", linewidth=1, color="gray")
        ax.annotate(f"{name} naive", (machine_blocks[-1], naive), fontsize=8, va="bottom", ha="right")
    ax.axhline(compulsory_misses(machine_n, machine_n, L1["line_bytes"]), color="black", linewidth=1,
               label="minimum (each line once)")
    ax.legend()
    fig.tight_layout()

# %% [markdown]
# Whether blocking pays at a given level depends on whether the naive transpose's working set fits
# there. Walking down a column of B, the naive transpose touches N lines of B (one per row) before
# it comes back to the first of them for the next element of the line; they stay only if the
# cache keeps N lines of B plus the current line of A. The printed ratios to the minimum say, for
# each level, whether that happened at this N: a ratio near 1 means the level held the working set
# and blocking had nothing to save there; a large one means every write to B missed. Blocks that
# are too large bring the problem back inside the tile (their b lines of B and b lines of A no
# longer fit together, or conflict), and blocks that are too small use only b × 4 bytes of each
# line of B before moving on; the rest of the line is used only if it survives until the next
# tile row comes back to it.
#
# ## Conflict misses and padding
#
# The cache is big enough, but the lines in use all land in a few sets. For the naive transpose of
# an (M, 64) A, the writes go down a column of B, whose rows are M × 4 bytes apart: consecutive
# writes land `M * 4 / line_bytes` lines apart, and if that stride shares a large power of two
# with the number of sets, only a few sets are ever used. The sweep below counts the naive
# transpose's misses per element on this machine's L1 geometry for widths M around powers of two.

# %% tags=["raises-exception"]
widths = benchmarking.benchmark_size([224, 240, 255, 256, 257, 272, 384, 511, 512, 513, 528], [255, 256, 257])
width_misses = {"naive": [], "blocked(16)": []}
try:
    for width in widths:
        width_misses["naive"].append(count_misses(transpose_trace(width, 64), L1) / (width * 64))
        width_misses["blocked(16)"].append(count_misses(transpose_trace(width, 64, 16), L1) / (width * 64))
except NotImplementedError:
    width_misses = None
    print("skipped: the sweep needs simulate_cache and transpose_trace; finish Tasks 1 and 2 first")

if width_misses is not None:
    l1_sets = L1["size_bytes"] // (L1["line_bytes"] * L1["ways"])
    for width, naive, blocked in zip(widths, width_misses["naive"], width_misses["blocked(16)"]):
        stride = width * 4 / L1["line_bytes"]
        reached = l1_sets // gcd(width * 4 // L1["line_bytes"], l1_sets) if stride == int(stride) else l1_sets
        print(f"M={width:<4d} rows of B {width * 4} bytes apart: naive {naive:.3f} misses per element, "
              f"blocked(16) {blocked:.3f}; a column of B reaches {reached} of L1's {l1_sets} sets "
              f"({reached * L1['ways']} lines)")
    fig, ax = plotting.plot_lines(widths, width_misses, xlabel="M (rows of A = elements per row of B)",
                                  ylabel="L1 misses per element", logx=False, logy=False,
                                  title="Naive transpose of an (M, 64) float32 A, this machine's L1")
    fig.tight_layout()

# %% [markdown]
# A column of 64 elements of B needs 64 lines. When the row length is a multiple of the line, a
# column reaches only `sets / gcd(stride in lines, sets)` of the sets, each with `ways` lines; the
# lines above print that number. Where it is below 64, the column cannot stay in L1 although L1 has
# room for hundreds of lines: conflict misses. A width that is not a multiple of the line size
# spreads the column over all sets. A 16-row tile needs only 16 lines of B at a time, which is why
# the blocked counts suffer less from the power-of-two widths; the printed blocked column shows at
# which widths it still lost something.
#
# The cure used in practice is **padding**: allocate each row a little longer than it needs,
# `np.empty((M, N + pad))[:, :N]`, so that the row stride is no longer a power of two. The helper
# below rewrites a transpose trace as if A's and B's rows had `pad` unused elements at their ends,
# and the next cell counts the effect for the naive 256-wide transpose on L1 and for Cache Lab's
# 64 × 64 case blocked by 8.

# %%
def with_padded_rows(trace: np.ndarray, m: int, n: int, pad: int, itemsize: int = 4) -> np.ndarray:
    """``transpose_trace(m, n, ...)``'s addresses (default bases) with every row of A and B
    ``pad`` elements longer: A's rows n + pad apart, B's m + pad apart, B just past A."""
    element = trace // itemsize
    in_b = element >= m * n
    row, col = np.divmod(np.where(in_b, element - m * n, element), np.where(in_b, m, n))
    padded_a = row * (n + pad) + col
    padded_b = m * (n + pad) + row * (m + pad) + col
    return np.where(in_b, padded_b, padded_a) * itemsize


# %% tags=["raises-exception"]
try:
    for pad in (0, 1, 4, 16):
        naive = count_misses(with_padded_rows(transpose_trace(256, 64), 256, 64, pad), L1)
        lab = count_misses(with_padded_rows(transpose_trace(64, 64, 8), 64, 64, pad), CACHE_LAB)
        print(f"pad {pad:>2} elements per row: naive (256, 64) on L1 {naive / (256 * 64):.3f} misses per element; "
              f"Cache Lab 64x64 blocked(8) {lab} misses")
except NotImplementedError:
    print("skipped: padding needs simulate_cache and transpose_trace; finish Tasks 1 and 2 first")

# %% [markdown]
# Compare the rows: the padded layouts differ from the unpadded one only in where the rows start,
# never in how much data moves. Libraries give the same advice: Intel's oneMKL Developer Guide
# ("Coding Techniques") asks that the leading dimension of a matrix passed to its BLAS not be a
# multiple of a large power of two such as 4096 bytes, and notes that growing it slightly (4096 to
# 4096 + 64 bytes) can improve performance.
#
# ## Task 3 — A blocked transpose (4 points)
#
# Write `transpose_blocked(a, block_size=32)` returning `a.T` as a **new C-contiguous array** of
# the same dtype, computed tile by tile:
#
# - Create the result with `np.empty((n, m), dtype=a.dtype)`.
# - Visit the tiles of A in the order `transpose_trace` does (row-major over A; at most
#   `block_size` × `block_size`, ragged at the edges). Read each tile with **one two-dimensional
#   slice**, `a[i0:i1, j0:j1]`, and write its transpose into the result,
#   `out[j0:j1, i0:i1] = a[i0:i1, j0:j1].T`.
# - Raise `ValueError` mentioning `block_size` if `block_size < 1`, and `ValueError` showing the
#   shape if `a` is not 2-D.
#
# **What the tests observe.** The tests hand your function a matrix that records every slice read
# from it, as the rectangle of rows and columns it spans (`WatchedMatrix` below; the grader uses
# its own version, which it keeps outside your process). They require one slice per tile, in
# row-major tile order, spanning at most `block_size` rows and columns and exactly
# `min(block_size, dimension)` for full tiles, and together covering A once. The grader then
# replays the slices you read, with the writes into B they imply, through small caches (direct
# mapped, a few ways, smaller than one tile) and requires the same number of misses as the
# reference solution's tiles: Cache Lab's miss budget, computed from what you read rather than from
# a clock. So read the input itself (not `np.asarray(a)`, `a.copy()` or `a.T`, which hide your
# reads), take each tile with one slice and don't index the tile further.

# %% nbgrader={"grade": false, "grade_id": "transpose_blocked", "locked": false, "schema_version": 3, "solution": true}
def transpose_blocked(a: np.ndarray, block_size: int = 32) -> np.ndarray:
    """(M, N) -> (N, M): a.T as a new C-contiguous array, one tile of at most block_size square at a time.

    Tiles in row-major order over A, each read with one slice a[i0:i1, j0:j1]. Raises ValueError
    for block_size < 1 or an input that is not 2-D.
    """
    ### BEGIN SOLUTION
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    a = np.asanyarray(a)  # keeps a watched matrix as it is
    if a.ndim != 2:
        raise ValueError(f"transpose_blocked needs a 2-D matrix, got shape {a.shape}")
    m, n = a.shape
    out = np.empty((n, m), dtype=a.dtype)
    for i0 in range(0, m, block_size):
        i1 = min(i0 + block_size, m)
        for j0 in range(0, n, block_size):
            j1 = min(j0 + block_size, n)
            out[j0:j1, i0:i1] = a[i0:i1, j0:j1].T  # read one (i1-i0, j1-j0) tile, write its transpose
    return out
    ### END SOLUTION


# %% [markdown]
# The next cell is part of the tests; you may read it but not change it. `WatchedMatrix.wrap(x)`
# returns a copy of the matrix `x` whose `.slices` lists every slice read from it as
# `(r0, r1, c0, c1)`, rows `r0:r1` and columns `c0:c1` of the original, and `.element_reads` counts
# single elements read. Anything derived from it another way (`.T`, `.copy()`, `np.asarray`) is a
# plain array and is not watched.

# %% nbgrader={"grade": false, "grade_id": "watched_matrix", "locked": true, "schema_version": 3, "solution": false}
class WatchedMatrix(np.ndarray):
    """A matrix that records the slices and single elements read from it (``.slices``, ``.element_reads``)."""

    _log = None    # {"slices": [...], "element_reads": int}, shared with every slice taken from it
    _where = None  # flat position in the wrapped matrix of each element of this view

    @classmethod
    def wrap(cls, x) -> "WatchedMatrix":
        x = np.array(x)
        if x.ndim != 2:
            raise ValueError(f"WatchedMatrix.wrap needs a 2-D array, got shape {x.shape}")
        view = x.view(cls)
        view._log = {"slices": [], "element_reads": 0, "columns": x.shape[1]}
        view._where = np.arange(x.size).reshape(x.shape)
        return view

    @property
    def slices(self) -> list:
        return self._log["slices"]

    @property
    def element_reads(self) -> int:
        return self._log["element_reads"]

    def __getitem__(self, key):
        if self._log is None:
            return super().__getitem__(key)
        value = self.view(np.ndarray)[key]
        where = self._where[key]
        if np.ndim(where) == 0:
            self._log["element_reads"] += 1
            return value
        if where.size:
            rows, cols = np.divmod(where, self._log["columns"])
            self._log["slices"].append((int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1))
        part = value.view(WatchedMatrix)
        part._log, part._where = self._log, where
        return part

    def __iter__(self):
        if self._log is None:
            return super().__iter__()
        return (self[i] for i in range(len(self)))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [x.view(np.ndarray) if isinstance(x, WatchedMatrix) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(x.view(np.ndarray) if isinstance(x, WatchedMatrix) else x for x in kwargs["out"])
        return getattr(ufunc, method)(*plain, **kwargs)


def assert_tiles_in_order(x: WatchedMatrix, block_size: int) -> None:
    """Require that ``x`` was read in tiles of block_size, one slice each, in row-major tile order."""
    (m, n), slices = x.shape, x.slices
    tiles = -(-m // block_size) * -(-n // block_size)
    shown = f"{len(slices)} slices ({slices[:3]}{' ...' if len(slices) > 3 else ''})"
    assert slices, (f"no slice of the ({m}, {n}) input was read: take each tile with one 2-D slice "
                    f"a[i0:i1, j0:j1] of the input itself (not of a converted copy)")
    assert x.element_reads == 0, f"read {x.element_reads} single elements; read whole tiles with slices"
    too_big = [s for s in slices if s[1] - s[0] > block_size or s[3] - s[2] > block_size]
    assert not too_big, f"with block_size={block_size}, the slice {too_big[0]} is larger than a tile"
    largest = (max(s[1] - s[0] for s in slices), max(s[3] - s[2] for s in slices))
    wanted = (min(block_size, m), min(block_size, n))
    assert largest == wanted, (f"with block_size={block_size}, the largest slices of the ({m}, {n}) input span "
                               f"{largest} rows and columns; real tiles span min(block_size, dimension) = {wanted}")
    assert len(slices) == tiles, (f"a ({m}, {n}) input has {tiles} tiles of block_size={block_size}; read one slice "
                                  f"per tile, not {shown}")
    covered = np.zeros((m, n), dtype=np.int64)
    for r0, r1, c0, c1 in slices:
        covered[r0:r1, c0:c1] += 1
    assert (covered == 1).all(), (f"the tiles should cover the ({m}, {n}) input once each; {(covered == 0).sum()} "
                                  f"elements were never read and {(covered > 1).sum()} more than once")
    assert slices == sorted(slices), (f"visit the tiles in row-major order (as transpose_trace does): all tiles of "
                                      f"the first rows left to right, then the next rows; got {shown}")


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t05_blocked_transposes", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""transpose_blocked returns a.T as a new C-contiguous array of the same dtype, for any shape and block size"""
rng = np.random.default_rng(7)
for (m, n), block_size, dtype in [((5, 7), 3, np.float32), ((64, 48), 16, np.float64), ((3, 130), 32, np.int32),
                                  ((9, 4), 64, np.float32), ((1, 1), 1, np.float64)]:
    a = (rng.standard_normal((m, n)) * 100).astype(dtype)
    before = a.copy()
    b = transpose_blocked(a, block_size)
    assert isinstance(b, np.ndarray) and b.shape == (n, m) and b.dtype == dtype, (
        f"transpose_blocked of a ({m}, {n}) {np.dtype(dtype).name} matrix should give ({n}, {m}) "
        f"{np.dtype(dtype).name}; got {type(b).__name__} {np.shape(b)} {getattr(b, 'dtype', '')}")
    assert np.array_equal(b, a.T), f"wrong values for ({m}, {n}) with block_size={block_size}"
    assert b.flags.c_contiguous and not np.shares_memory(b, a), \
        "return a new C-contiguous array (np.empty((n, m), dtype=a.dtype), then fill it), not a view of a"
    assert np.array_equal(a, before), "transpose_blocked changed its input"
a = rng.standard_normal((70, 45))
assert np.array_equal(transpose_blocked(a), a.T), "wrong values with the default block_size"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t05_blocked_reads_tiles", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""transpose_blocked reads one slice per tile, in row-major tile order, covering the input once"""
values = np.arange(35.0).reshape(5, 7)
a = WatchedMatrix.wrap(values)
b = transpose_blocked(a, block_size=3)
assert np.array_equal(b, values.T), "wrong values for a watched (5, 7) matrix with block_size=3"
expected = [(0, 3, 0, 3), (0, 3, 3, 6), (0, 3, 6, 7), (3, 5, 0, 3), (3, 5, 3, 6), (3, 5, 6, 7)]
assert a.slices == expected, (f"(5, 7) with block_size=3: the slices read, as (r0, r1, c0, c1), should be the six "
                              f"tiles {expected}; got {a.slices}")
rng = np.random.default_rng(8)
for (m, n), block_size in [((20, 28), 8), ((19, 23), 6), ((4, 6), 16), ((12, 9), 1)]:
    values = rng.standard_normal((m, n))
    a = WatchedMatrix.wrap(values)
    b = transpose_blocked(a, block_size)
    assert np.array_equal(b, values.T), f"wrong values for a watched ({m}, {n}) matrix, block_size={block_size}"
    assert_tiles_in_order(a, block_size)

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t05_blocked_rejects_bad_arguments", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""transpose_blocked raises ValueError for block_size < 1 and for an input that is not 2-D"""
message = expect_value_error(transpose_blocked, np.ones((4, 4)), block_size=0)
assert "block_size" in message, f"the ValueError for block_size=0 should mention block_size; it said {message!r}"
message = expect_value_error(transpose_blocked, np.ones(5), 2)
assert "(5,)" in message, f"the ValueError for a 1-D input should show its shape (5,); it said {message!r}"

# %% [markdown]
# ## Task 4 — Choosing the block size (2 points)
#
# Write `best_block_size(m, n, cache, itemsize=4, candidates=(1, 2, 4, 8, 16, 32, 64))`: the
# candidate whose tiled `transpose_trace(m, n, block_size, itemsize)` (default bases) causes the
# fewest misses in `simulate_cache` on the geometry `cache`, a dict with `"size_bytes"`,
# `"line_bytes"` and `"ways"`. When several candidates tie, return the smallest of them. Use your
# two functions from Tasks 1 and 2.

# %% nbgrader={"grade": false, "grade_id": "best_block_size", "locked": false, "schema_version": 3, "solution": true}
def best_block_size(m: int, n: int, cache: dict, itemsize: int = 4,
                    candidates: tuple = (1, 2, 4, 8, 16, 32, 64)) -> int:
    """The candidate block size whose tiled transpose of an (m, n) matrix misses least in ``cache``.

    ``cache`` = {"size_bytes", "line_bytes", "ways"}; ties go to the smallest candidate.
    """
    ### BEGIN SOLUTION
    misses = {}
    for block_size in sorted(candidates):
        trace = transpose_trace(m, n, block_size, itemsize=itemsize)
        misses[block_size] = simulate_cache(trace, cache["size_bytes"], cache["line_bytes"], cache["ways"])["misses"]
    return min(misses, key=misses.get)  # the first of the fewest, so the smallest on a tie
    ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t05_best_block_size", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""best_block_size picks the candidate with the fewest misses, the smallest one on a tie"""
cache_lab = {"size_bytes": 1024, "line_bytes": 32, "ways": 1}
best = best_block_size(32, 32, cache_lab)
assert best == 8, (f"32x32 float32 on a 1 KiB direct-mapped cache of 32-byte lines: block 8 misses least (340 times; "
                   f"4 misses 484, 16 and up 1180); got {best}")
best = best_block_size(32, 32, cache_lab, candidates=(32, 4, 16))
assert best == 4, f"among the candidates (32, 4, 16), block 4 misses least there; got {best}"
roomy = {"size_bytes": 16384, "line_bytes": 64, "ways": 4}  # holds all of A and B: only cold misses for every block
best = best_block_size(32, 32, roomy)
assert best == 1, f"when every block size misses equally often, return the smallest candidate (1); got {best}"
best = best_block_size(32, 32, roomy, candidates=(16, 4, 8))
assert best == 4, f"a tie among the candidates (16, 4, 8) goes to the smallest, 4; got {best}"

# %% [markdown]
# What your `best_block_size` chooses for a few shapes on each cache of this notebook:

# %% tags=["raises-exception"]
choice_shapes = benchmarking.benchmark_size([(64, 64), (96, 80), (128, 128)], [(32, 32)])
try:
    for name, cache in (("Cache Lab's", CACHE_LAB), ("L1", L1), ("L2", L2)):
        choices = [best_block_size(m, n, cache, candidates=(4, 8, 16, 32, 64)) for m, n in choice_shapes]
        print(f"{name} cache ({describe_cache(cache)}): best block " +
              ", ".join(f"{m}x{n}: {choice}" for (m, n), choice in zip(choice_shapes, choices)))
except NotImplementedError:
    print("skipped: choosing needs best_block_size, simulate_cache and transpose_trace; finish Tasks 1, 2 and 4 first")

# %% [markdown]
# When both matrices fit in a cache without conflicts, every block size misses equally often (each
# line once) and `best_block_size` returns the smallest candidate: that is likely what the L2 line
# shows. The choice matters only where they do not fit, and there it depends on the geometry: the
# lines of one tile of A and one tile of B must stay cached together.
#
# ## Loop orders of a matrix product, counted
#
# Notebook 01 blocked C = A @ B. The same simulator shows why loop order and blocking matter for a
# *compiled* loop, where memory is what limits the speed. `matmul_trace` below lists the addresses
# of a compiled triple loop on N × N float32 matrices (A, B and C one after the other):
#
# - **ijk** (the textbook order of notebook 01's `matmul_naive`): for each C[i, j], read A[i, p] and
#   B[p, j] for every p (B walked down a column), then store C[i, j] once;
# - **ikj**: for each A[i, p], read it once, then for every j read B[p, j] and update C[i, j]
#   (B and C walked along rows);
# - **blocked(b)**: ikj inside each b × b tile triple, tile triples in the order of notebook 01's
#   `matmul_blocked`.
#
# The cache is Cache Lab's, and one with L1's lines and ways but a sixteenth of its sets: three
# 9 KiB matrices are to it roughly what a layer's megabytes of weights and activations are to L1.
#
# (An update of C[i, j] counts as one access: the read and the write that follows hit the same line.)

# %%
def matmul_trace(n: int, order: str, block_size: int = 8, itemsize: int = 4) -> np.ndarray:
    """Byte addresses of a compiled C = A @ B on (n, n) row-major matrices: order "ijk", "ikj" or
    "blocked" (ikj inside tiles of block_size, which must divide n). A, B, C from byte 0, one after another."""
    b_base, c_base = n * n * itemsize, 2 * n * n * itemsize

    def ikj(rows, inner, cols):  # per (i, p): A[i, p], then (B[p, j], C[i, j]) for every j
        i, p, j = rows[:, None, None], inner[None, :, None], cols[None, None, :]
        out = np.empty((rows.size, inner.size, 1 + 2 * cols.size), dtype=np.int64)
        out[:, :, 0] = ((i * n + p) * itemsize)[:, :, 0]
        out[:, :, 1::2] = b_base + (p * n + j) * itemsize
        out[:, :, 2::2] = c_base + (i * n + j) * itemsize
        return out.reshape(-1)

    index = np.arange(n)
    if order == "ijk":  # per (i, j): (A[i, p], B[p, j]) for every p, then C[i, j]
        i, j, p = index[:, None, None], index[None, :, None], index[None, None, :]
        out = np.empty((n, n, 2 * n + 1), dtype=np.int64)
        out[:, :, 0:2 * n:2] = (i * n + p) * itemsize
        out[:, :, 1:2 * n:2] = b_base + (p * n + j) * itemsize
        out[:, :, 2 * n] = (c_base + (i * n + j) * itemsize)[:, :, 0]
        return out.reshape(-1)
    if order == "ikj":
        return ikj(index, index, index)
    if order == "blocked":
        tiles = [index[start:start + block_size] for start in range(0, n, block_size)]
        return np.concatenate([ikj(rows, inner, cols) for rows in tiles for cols in tiles for inner in tiles])
    raise ValueError(f"order must be 'ijk', 'ikj' or 'blocked', got {order!r}")


# %% tags=["raises-exception"]
matmul_n = benchmarking.benchmark_size(48, 16)
small_l1 = dict(L1, size_bytes=L1["size_bytes"] // 16)  # L1's lines and ways, a sixteenth of its sets
if small_l1["size_bytes"] % (small_l1["line_bytes"] * small_l1["ways"]):
    small_l1 = dict(L1)
try:
    for name, cache in (("Cache Lab's", CACHE_LAB), ("L1 / 16", small_l1)):
        counts = {f"{order}({block_size})" if order == "blocked" else order:
                  count_misses(matmul_trace(matmul_n, order, block_size), cache) / matmul_n**3
                  for order, block_size in (("ijk", 8), ("ikj", 8), ("blocked", 8), ("blocked", 16))}
        print(f"N={matmul_n} matmul on {name} cache ({describe_cache(cache)}): misses per multiply-add " +
              "  ".join(f"{label} {per_step:.3f}" for label, per_step in counts.items()))
except NotImplementedError:
    print("skipped: counting needs simulate_cache; finish Task 1 first")

# %% [markdown]
# Per multiply-add, ijk reads a new line of B at every step once a column of B no longer stays in
# the cache; ikj reads B and C along rows, so it misses at most about once per line of each; the
# blocked order keeps a tile of each matrix cached while the tile product reuses it b times. The
# printed counts say how large the gaps were here. Notebook 01 printed the cost of one multiply-add
# in its Python loop beside the cost per element of a transposed copy; where the first is far
# larger, as an interpreted step usually is, reordering the Python loop cannot change its speed.
# In compiled code a multiply-add takes a fraction of a nanosecond and a miss that goes to main
# memory on the order of a hundred (the exact latency depends on the machine), so there the order
# of the loop sets the speed.
#
# ## The clock: tile by tile against `a.T.copy()`
#
# Now real time on this machine: `a.T.copy()` (NumPy's own copy of the transposed view) against
# your `transpose_blocked`, for a large float32 matrix, with the ratios the simulator predicted for
# the L1 and L2 geometries (from the N = 384 experiment above) beside them. An in-order copy of the
# same bytes gives the floor.

# %% tags=["raises-exception"]
clock_n = benchmarking.benchmark_size(2048, 256)
clock_blocks = (16, 32, 64, 128)
a = np.random.default_rng(0).standard_normal((clock_n, clock_n), dtype=np.float32)
numpy_time = benchmarking.time_call(lambda x: x.T.copy(), a, repeats=3)
in_order = benchmarking.time_call(np.copyto, np.empty_like(a), a, repeats=3)
print(f"N={clock_n} float32 ({a.nbytes / 2**20:.0f} MiB): a.T.copy() {numpy_time}; in-order copy {in_order} "
      f"({in_order.median_s / numpy_time.median_s:.2f}x a.T.copy()'s time)")
clock_ratios = {}
try:
    for block_size in clock_blocks:
        timing = benchmarking.time_call(transpose_blocked, a, block_size, repeats=3)
        clock_ratios[block_size] = timing.median_s / numpy_time.median_s
        predicted = "; ".join(
            f"{name} misses {blocked[machine_blocks.index(block_size)] / naive:.2f}x naive"
            for name, (naive, blocked) in machine_misses.items() if block_size in machine_blocks)
        print(f"  blocked({block_size:>3}) {timing}: {clock_ratios[block_size]:.2f}x a.T.copy()'s time"
              + (f"   simulated at N={machine_n}: {predicted}" if predicted else ""))
except NotImplementedError:
    print("skipped: the blocked timings need transpose_blocked; finish Task 3 first")
if clock_ratios:
    fastest = min(clock_ratios, key=clock_ratios.get)
    print(f"this run: the fastest tile size was {fastest}, at {clock_ratios[fastest]:.2f}x a.T.copy()'s time; "
          f"tile by tile was {'faster' if clock_ratios[fastest] < 1 else 'not faster'} than NumPy's transposed copy")

# %% [markdown]
# Compare the measured time ratios with the simulated miss ratios beside them. They are different
# quantities and need not agree: the simulator counts misses of one cache level on its own, and the
# clock pays for all levels together, with hardware prefetchers that fetch whole streams ahead of a
# regular access pattern, a TLB that must map every 4 KiB page a column walk touches, and, for
# `transpose_blocked`, a Python loop step and a small NumPy copy per tile, a cost the simulator does
# not see at all (tiles of 16 pay it 16 times as often as tiles of 64).
# The first printed line shows how far NumPy's transposed copy is from the in-order copy of the same
# bytes on this machine.
#
# ## Transposes in machine learning
#
# **`K.T` in attention.** The attention scores are `Q @ K.T` for Q of shape (T, d) and K of shape
# (T, d). `K.T` is a view: NumPy does not copy it, and the BLAS routine it calls takes "transposed"
# as a flag and reads K in the order that suits it. A transpose costs memory traffic only when it is
# made real: `.copy()` here, `.contiguous()` in PyTorch, or a kernel that demands a layout (splitting
# heads, (B, T, H, d) to (B, H, T, d), is such a copy in many implementations).

# %%
rng = np.random.default_rng(1)
attention_t, head_d = benchmarking.benchmark_size((2048, 64), (256, 64))
q = rng.standard_normal((attention_t, head_d), dtype=np.float32)
k = rng.standard_normal((attention_t, head_d), dtype=np.float32)
scores_view = benchmarking.time_call(lambda: q @ k.T)
copy_kt = benchmarking.time_call(lambda: k.T.copy())
print(f"T={attention_t}, d={head_d}: K.T shares K's memory: {np.shares_memory(k.T, k)}; Q @ K.T takes {scores_view}; "
      f"making K.T real (k.T.copy()) takes {copy_kt}, {copy_kt.median_s / scores_view.median_s:.1%} of the product's time")

# %% [markdown]
# **NCHW to NHWC.** An image batch stored as (N, C, H, W) holds each channel's H × W plane
# contiguously; channels-last (N, H, W, C) holds each pixel's C channels contiguously, the layout
# many convolution kernels prefer. Per image, converting is the transpose of a (C, H·W) matrix into
# an (H·W, C) one. The cell converts one 128-channel 28 × 28 image both ways and counts the misses
# of the two orders on L1.

# %% tags=["raises-exception"]
channels, height, width = benchmarking.benchmark_size((128, 28, 28), (32, 14, 14))
image = np.random.default_rng(2).standard_normal((channels, height, width), dtype=np.float32)
plane = image.reshape(channels, height * width)  # (C, H*W): row c is channel c's plane
numpy_nhwc = benchmarking.time_call(lambda: np.ascontiguousarray(image.transpose(1, 2, 0)))
try:
    blocked_nhwc = benchmarking.time_call(transpose_blocked, plane, 32)
    assert np.array_equal(transpose_blocked(plane, 32).reshape(height, width, channels), image.transpose(1, 2, 0)), \
        "transpose_blocked(plane, 32) is not the channels-last image: check Task 3's tests"
    naive_misses = count_misses(transpose_trace(channels, height * width), L1)
    blocked_misses = count_misses(transpose_trace(channels, height * width, 16), L1)
    print(f"one ({channels}, {height}, {width}) float32 image ({image.nbytes // 1024} KiB) to ({height}, {width}, "
          f"{channels}): NumPy {numpy_nhwc}, transpose_blocked(32) {blocked_nhwc} "
          f"({blocked_nhwc.median_s / numpy_nhwc.median_s:.2f}x NumPy's time, {plane.size // 32**2} tiles); "
          f"simulated L1 misses naive {naive_misses}, blocked(16) {blocked_misses} "
          f"({naive_misses / blocked_misses:.1f}x fewer)")
except NotImplementedError:
    print("skipped: this needs transpose_blocked, transpose_trace and simulate_cache; finish Tasks 1 to 3 first")

# %% [markdown]
# The naive order writes down a column of the (H·W, C) result: 784 rows, 512 bytes apart, so 784
# lines per column, and a line of the result is reused for the next 15 channels only if it is
# still cached when the walk comes back to it. The printed counts show how many of those writes
# missed L1, and how many the tiles saved. Whether that showed on the clock depends on what else
# each version pays: NumPy's conversion is one call, while `transpose_blocked` pays a Python loop
# step and a NumPy call per tile (the printed number of tiles), and an image this small may fit in
# L2, where a miss in L1 costs only a few nanoseconds. Deep learning libraries convert layouts with
# tiled compiled kernels, or avoid converting by keeping one layout throughout the network.
#
# ## Reflection (4 points, graded by hand)
#
# Answer in the cell below each question, from the numbers this notebook printed on your machine;
# quote them.
#
# **Q1. Conflict misses.** In the width sweep, how many L1 misses per element did the naive
# transpose cause for M = 255, 256 and 257, and how many sets did a column of B reach for each?
# Which of the three kinds of miss explains the difference, and why does padding each row by a
# few elements remove it while moving exactly the same data? Would an L1 with twice the ways and
# the same size remove it?

# %% [markdown] nbgrader={"grade": true, "grade_id": "q05_conflicts", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# On my machine's L1 (32 KiB, 8-way, 64 sets) the naive transpose of a (256, 64) A missed 1.062
# times per element against 0.129 for M = 255 and for M = 257. With M = 256, rows of B are 1024
# bytes apart, 16 lines, so a column of B reaches only 64 / gcd(16, 64) = 4 sets, 32 lines; the 64
# lines of one column cannot stay, and every write to B misses. With 255 or 257 the stride is not a
# multiple of the line and the column spreads over all 64 sets (512 lines): only compulsory misses
# remain, about one per 16 elements of A and of B. These are conflict misses: the cache had room
# for hundreds of lines, but the lines in use mapped to 4 sets. Padding changes only where the rows
# start (a stride of 257 or 272 floats), not the data moved, so the column spreads over the sets:
# one element of padding brought the count to 0.130 per element. Doubling the ways at the same size
# halves the sets: the column would reach 2 sets of 16 ways, still 32 lines, so it would not help;
# a stride that is not a multiple of a large power of two does.

# %% [markdown]
# **Q2. Misses and time.** For the N = 384 experiment, quote the simulated misses of the naive and
# the best blocked transpose on L1 and L2. Then quote the measured time of `transpose_blocked` for
# each tile size relative to `a.T.copy()`. Did the clock follow the simulator's prediction? Name
# two things the simulator leaves out that the clock includes, and say which tile size you would
# choose for a compiled (C or Numba) transpose kernel on this machine, and why.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q05_misses_and_time", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# In my run, the naive 384 x 384 transpose missed L1 156,672 times, 8.5x the 18,432 of the best
# blocked ones (blocks 16 and 32, which reached the compulsory minimum); on L2 every order stayed at
# that minimum, because the 384 lines of a column of B fit in L2. On the clock (2048 x 2048),
# transpose_blocked took 1.20x, 0.56x, 0.58x and 0.51x the time of a.T.copy() with tiles of 16, 32,
# 64 and 128. For tiles of 32 and more the direction agreed, but not the size: the simulator
# predicted 0.12x the L1 misses for tiles of 16 and 32, and tiles of 16 were even slower than
# a.T.copy(). The simulator leaves out the interpreter's cost per tile and NumPy's per-call
# overhead (tiles of 16 make 16 times as many calls as tiles of 64), the hardware prefetcher, which
# hides part of the latency of regular strided misses, the other levels (an L1 miss that hits L2
# costs a few nanoseconds, one that goes to memory around a hundred), and the TLB, which a column
# walk thrashes with one page per row. For
# a compiled kernel, where the per-tile cost is a few instructions, I would pick the block whose
# lines of A and B fit L1 with room to spare and that best_block_size ranks first on this L1:
# 16 x 16 float32 (16 lines of A and 16 of B), then confirm it with the clock.

# %% [markdown]
# ## What you measured
#
# - A cache keeps lines, in sets; your simulator counts what an access order costs it, exactly and
#   without a clock.
# - The naive transpose misses on every write to B once a column of B stops fitting in a level;
#   tiles keep a block of A and of B in cache, and the counts above show by how much that helped
#   at each level and block size on this machine's geometry.
# - Power-of-two row lengths put a column's lines into a few sets (conflict misses); padding the
#   rows removes them without moving less data.
# - The same simulator counted a compiled matmul's misses in three loop orders: the printed counts
#   show what loop order and blocking change when memory, not the interpreter, sets the pace.
# - The clock follows the misses only roughly: prefetchers, the TLB, several cache levels and the
#   interpreter are all in the measured ratios printed above.
