"""Hidden cases of 05_memory_hierarchy: one check per test cell, named by its grade_id.

Each check runs in the check process after the given and student cells (``autograder/check``),
calls the student's functions (``ns``) on inputs drawn from ``rng`` and returns observations
(``observe``), compared outside with the reference solution's: exact counts, exact traces, exact
choices. Nothing here simulates a cache or builds a trace; the reference run provides every
expected value. How ``transpose_blocked`` read its input is evidence the grader records itself:
the input is ``served``, ``evidence(a, "tiles")`` asks what tiles it handed out, and
``evidence(a, "transpose_misses", size_bytes, line_bytes, ways)`` replays those slices, with the
writes into B they imply, through a cache of that geometry (``autograder/check/evidence.py``).
"""
import numpy as np
from observe import evidence, raised, raises_naming, same, served

CACHE_LAB = {"size_bytes": 1024, "line_bytes": 32, "ways": 1}
# geometries of the hidden cases: direct-mapped, 2-way, 8-way, fully associative, odd ways and lines
GEOMETRIES = [(1024, 32, 1), (512, 16, 2), (2048, 32, 8), (256, 32, 8), (1024, 64, 4), (2048, 32, 2), (768, 64, 3),
              (480, 48, 2)]


def _counts(result):
    """(hits, misses, evictions) of simulate_cache's dict, as Python ints."""
    return [int(result[key]) for key in ("hits", "misses", "evictions")]


def _random_trace(rng, size_bytes, line_bytes, ways, length):
    """Byte addresses over a few more lines than each set holds; half the accesses go back to a
    line used a few accesses before, so that hits, LRU order and evictions all matter."""
    sets = size_bytes // (line_bytes * ways)
    pool = rng.choice(sets * (ways + 3) * 4, size=sets * (ways + int(rng.integers(1, 4))), replace=False)
    fresh = rng.choice(pool, size=length).tolist()
    back = rng.integers(1, ways + 3, size=length).tolist()
    again = (rng.random(length) < 0.5).tolist()
    lines = []
    for t in range(length):
        lines.append(lines[t - back[t]] if again[t] and t >= back[t] else fresh[t])
    return np.array(lines, dtype=np.int64) * line_bytes + rng.integers(0, line_bytes, size=length)


def _column_walk(rows, cols, itemsize=4, repeats=2):
    """Addresses of reading a row-major (rows, cols) matrix column by column, ``repeats`` times."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="xy")
    return np.tile(((r * cols + c) * itemsize).reshape(-1), repeats)


HAND_TRACES = [([0, 4, 8, 15], 64, 16, 1), ([0, 64, 0, 64], 64, 16, 1), ([0, 16, 32, 48, 0], 64, 16, 1),
               ([0, 64, 0, 64], 128, 16, 2), ([100, 36, 164, 100], 64, 16, 1), ([], 64, 16, 1),
               ([0, 63, 64, 127, 128], 256, 64, 1)]


def t05_cache_counts_by_hand(ns, rng):
    simulate = ns["simulate_cache"]
    observed = {}
    for number, (trace, size_bytes, line_bytes, ways) in enumerate(HAND_TRACES, 1):
        observed[f"hand trace {number}"] = same(_counts(simulate(trace, size_bytes, line_bytes, ways)))
    for number, line_bytes in enumerate([16, 32, 64, 128, int(rng.choice([16, 32, 64, 128]))], 1):
        size_bytes = line_bytes * int(rng.choice([1, 2, 4, 8, 16]))
        trace = _random_trace(rng, size_bytes, line_bytes, 1, int(rng.integers(200, 400)))
        observed[f"direct-mapped random trace {number}"] = same(_counts(simulate(trace, size_bytes, line_bytes, 1)))
    trace = _random_trace(rng, 512, 32, 1, 300)
    for kind, given in (("a list", trace.tolist()), ("a tuple", tuple(trace.tolist())),
                        ("an int32 array", trace.astype(np.int32)), ("a uint64 array", trace.astype(np.uint64))):
        observed[f"trace given as {kind}"] = same(_counts(simulate(given, 512, 32, 1)))
    addresses = np.tile(np.arange(0, 2048, 8), 2)
    for line_bytes in (16, 64, 128):
        observed[f"same addresses, line size case {line_bytes // 16}"] = same(
            _counts(simulate(addresses, 512, line_bytes, 1)))
    observed["cold misses only"] = same(_counts(simulate(np.arange(8) * 32 + int(rng.integers(0, 32)), 256, 32, 1)))
    return observed


def t05_cache_lru_and_ways(ns, rng):
    simulate = ns["simulate_cache"]
    observed = {"LRU order in a 2-way set": same(_counts(simulate([0, 64, 0, 128, 0], 128, 64, 2))),
                "LRU order in an 8-way set": same(_counts(simulate(
                    [line * 64 for line in [*range(8), 0, 8, 0, 1, 9, 2, 0]], 512, 64, 8)))}
    for ways in (1, 2, 8):
        for extra in (0, 1, 2):
            k = ways + extra
            observed[f"lines cycling through one set, {ways} way(s), case {extra + 1}"] = same(_counts(simulate(
                np.tile(np.arange(k) * 4 * 64, 10), 4 * 64 * ways, 64, ways)))
    for number, (size_bytes, line_bytes, ways) in enumerate(GEOMETRIES, 1):
        trace = _random_trace(rng, size_bytes, line_bytes, ways, int(rng.integers(400, 700)))
        observed[f"random trace, geometry {number}"] = same(_counts(simulate(trace, size_bytes, line_bytes, ways)))
    for ways in (1, 2, 8):
        size_bytes = 32 * ways * int(rng.choice([2, 4, 8]))
        trace = _random_trace(rng, size_bytes, 32, ways, 400)
        observed[f"fully associative against {ways}-way"] = same(
            [_counts(simulate(trace, size_bytes, 32, ways)), _counts(simulate(trace, size_bytes, 32, size_bytes // 32))])
    for number, (cols, ways) in enumerate([(64, 2), (64, 8), (int(rng.integers(40, 90)), 2), (int(rng.integers(40, 90)), 8)], 1):
        observed[f"column walk {number}"] = same(_counts(simulate(_column_walk(24, cols), 2048, 64, ways)))
    return observed


def t05_cache_rejects_bad_geometry(ns, rng):
    simulate = ns["simulate_cache"]
    observed = {}
    line_bytes, ways = int(rng.choice([16, 32, 64])), int(rng.integers(2, 6))
    bad = [(1000, 64, 3), (4096, 0, 2), (4096, 64, -2), (0, 64, 1), (96, 64, 1), (4096, 64, 0), (-1024, 32, 1),
           (line_bytes * ways * int(rng.integers(2, 9)) + int(rng.integers(1, line_bytes * ways)), line_bytes, ways)]
    for number, (size_bytes, line, how_many) in enumerate(bad, 1):
        observed[f"inconsistent geometry {number}: ValueError showing the values"] = same(raises_naming(
            simulate, ([0, 64], size_bytes, line, how_many), ValueError, [str(size_bytes), str(line), str(how_many)]))
    for number, (size_bytes, line, how_many) in enumerate([(64, 64, 1), (192, 64, 3), (480, 48, 2), (4096, 4096, 1)], 1):
        trace = _random_trace(rng, size_bytes, line, how_many, 200)
        observed[f"consistent geometry {number}"] = same([raised(simulate, trace, size_bytes, line, how_many),
                                                          _counts(simulate(trace, size_bytes, line, how_many))])
    return observed


def _shape(rng, low, high):
    return int(rng.integers(low, high)), int(rng.integers(low, high))


def t05_trace_row_by_row(ns, rng):
    trace = ns["transpose_trace"]
    observed = {"2x3 float32": same(trace(2, 3)), "visible odd shape": same(trace(17, 11))}
    for number in range(1, 5):
        (m, n), itemsize = _shape(rng, 2, 25), int(rng.choice([1, 2, 4, 8]))
        observed[f"random shape {number}"] = same(trace(m, n, itemsize=itemsize))
    observed["one row"] = same(trace(1, int(rng.integers(2, 30))))
    observed["one column"] = same(trace(int(rng.integers(2, 30)), 1))
    observed["one element"] = same(trace(1, 1))
    return observed


def t05_trace_tiles(ns, rng):
    trace = ns["transpose_trace"]
    observed = {"visible tiles": same(trace(3, 4, block_size=2, itemsize=1)),
                "visible ragged tiles": same(trace(7, 5, block_size=3)),
                "block larger than the matrix": same(trace(4, 6, block_size=8))}
    for number in range(1, 5):
        (m, n), block_size = _shape(rng, 5, 40), int(rng.integers(2, 10))
        observed[f"ragged tiles {number}"] = same(trace(m, n, block_size=block_size))
    m, n = _shape(rng, 3, 15)
    observed["block_size 1"] = same(trace(m, n, block_size=1))
    observed["block equal to the rows"] = same(trace(m, n + 3, block_size=m))
    observed["one row of tiles"] = same(trace(1, int(rng.integers(5, 30)), block_size=int(rng.integers(2, 5))))
    observed["tiles of float64"] = same(trace(*_shape(rng, 5, 20), block_size=4, itemsize=8))
    observed["whole tiles only"] = same(trace(12, 8, block_size=4))
    return observed


def t05_trace_bases_and_errors(ns, rng):
    trace = ns["transpose_trace"]
    observed = {"A elsewhere, B after it": same(trace(2, 2, itemsize=8, a_base=1000)),
                "B placed explicitly": same(trace(2, 2, b_base=4096))}
    for number in range(1, 4):
        (m, n), itemsize = _shape(rng, 2, 12), int(rng.choice([1, 2, 4, 8, 16]))
        a_base = int(rng.integers(0, 100)) * 64 + int(rng.choice([0, 4, 28]))
        observed[f"bases case {number}: default B"] = same(trace(m, n, itemsize=itemsize, a_base=a_base))
        observed[f"bases case {number}: B placed"] = same(trace(m, n, itemsize=itemsize, a_base=a_base,
                                                                b_base=int(rng.integers(0, 2**20))))
        observed[f"bases case {number}: tiles, default B"] = same(trace(m, n, block_size=int(rng.integers(2, 5)),
                                                                        itemsize=itemsize, a_base=a_base))
    for block_size in (0, -1, -8):
        observed[f"block_size {block_size}: ValueError naming block_size"] = same(raises_naming(
            lambda bs: trace(4, 4, block_size=bs), (block_size,), ValueError, ["block_size"]))
    return observed


def _transposed(function, a, *args):
    """What function(a, *args) returned, and what it says about the result's layout and the input."""
    before = a.copy()
    result = function(a, *args)
    layout = [isinstance(result, np.ndarray) and bool(result.flags.c_contiguous),
              isinstance(result, np.ndarray) and bool(np.shares_memory(result, a)), bool(np.array_equal(a, before))]
    return result, layout


def t05_blocked_transposes(ns, rng):
    blocked = ns["transpose_blocked"]
    observed = {}
    cases = [((5, 7), 3, np.float32), ((64, 48), 16, np.float64), ((3, 130), 32, np.int32), ((9, 4), 64, np.float32),
             ((1, 1), 1, np.float64), (_shape(rng, 20, 70), int(rng.integers(3, 20)), np.float64),
             (_shape(rng, 20, 70), int(rng.integers(3, 20)), np.float32), (_shape(rng, 2, 9), 1, np.int64),
             ((1, int(rng.integers(30, 90))), 8, np.int8), ((int(rng.integers(30, 90)), 1), 8, np.float64)]
    for number, ((m, n), block_size, dtype) in enumerate(cases, 1):
        a = (rng.standard_normal((m, n)) * 50).astype(dtype)
        result, layout = _transposed(blocked, a, block_size)
        observed[f"transpose {number}: values"] = same(result)
        observed[f"transpose {number}: new C-contiguous array, input unchanged"] = same(layout)
    a = rng.standard_normal(_shape(rng, 40, 90))
    observed["default block_size"] = same(_transposed(blocked, a))
    return observed


MISS_GEOMETRIES = [(1024, 32, 1), (512, 16, 2), (128, 16, 8), (2048, 32, 8)]  # the third: smaller than a tile


def t05_blocked_reads_tiles(ns, rng):
    blocked = ns["transpose_blocked"]
    observed = {}
    cases = [((5, 7), 3), ((20, 28), 8), ((4, 6), 16), ((5, 4), 1), ((32, 32), 8),
             (_shape(rng, 10, 31), int(rng.integers(5, 11))), (_shape(rng, 10, 31), int(rng.integers(5, 11)))]
    for number, ((m, n), block_size) in enumerate(cases, 1):
        a = served(rng.standard_normal((m, n)).astype(rng.choice([np.float32, np.float64])))
        result = blocked(a, block_size)
        observed[f"tiling {number}: values"] = same(result)
        observed[f"tiling {number}: tiles read"] = evidence(a, "tiles")
        for which, geometry in enumerate(MISS_GEOMETRIES, 1):
            observed[f"tiling {number}: cache misses of the tiles read, cache {which}"] = evidence(
                a, "transpose_misses", *geometry)
    return observed


def t05_blocked_rejects_bad_arguments(ns, rng):
    blocked = ns["transpose_blocked"]
    observed = {}
    for block_size in (0, -1, -32):
        observed[f"block_size {block_size}: ValueError naming block_size"] = same(raises_naming(
            lambda a, bs: blocked(a, bs), (np.ones((4, 4)), block_size), ValueError, ["block_size"]))
    for number, shape in enumerate([(5,), (2, 3, 4), (int(rng.integers(2, 9)),)], 1):
        observed[f"input not 2-D {number}: ValueError showing its shape"] = same(raises_naming(
            lambda a: blocked(a, 2), (np.ones(shape),), ValueError, [str(shape)]))
    return observed


def t05_best_block_size(ns, rng):
    best = ns["best_block_size"]
    roomy = {"size_bytes": 16384, "line_bytes": 64, "ways": 4}
    observed = {"visible case 1": same(int(best(32, 32, CACHE_LAB))),
                "visible case 2": same(int(best(32, 32, CACHE_LAB, candidates=(32, 4, 16)))),
                "a tie, default candidates": same(int(best(32, 32, roomy))),
                "a tie, candidates out of order": same(int(best(32, 32, roomy, candidates=(16, 4, 8)))),
                "a 4-way cache": same(int(best(32, 32, {"size_bytes": 1024, "line_bytes": 64, "ways": 4}))),
                "float64 elements": same(int(best(32, 32, CACHE_LAB, itemsize=8))),
                "a cache smaller than a tile": same(int(best(30, 30, {"size_bytes": 256, "line_bytes": 32, "ways": 8})))}
    for number in range(1, 4):
        size_bytes, line_bytes, ways = GEOMETRIES[int(rng.integers(0, len(GEOMETRIES)))]
        cache = {"size_bytes": size_bytes, "line_bytes": line_bytes, "ways": ways}
        candidates = tuple(int(c) for c in rng.permutation([1, 2, 3, 4, 6, 8, 12, 16, 32])[:int(rng.integers(3, 6))])
        observed[f"random case {number}"] = same(int(best(*_shape(rng, 12, 33), cache, itemsize=int(rng.choice([4, 8])),
                                                          candidates=candidates)))
    return observed
