"""Known-wrong variants of notebook 05's solutions; each must lose points in the selftest."""
from autograder.mutation import Mutant

MUTANTS = [
    # Task 1: simulate_cache
    Mutant(name="cache_fifo", cell="simulate_cache",
           find="""            in_set.remove(line)  # a hit makes it the most recently used line
            in_set.append(line)
""", replace="",
           why="FIFO instead of LRU: a hit does not make the line the most recently used"),
    Mutant(name="cache_evicts_most_recent", cell="simulate_cache",
           find="del in_set[0]", replace="del in_set[-1]",
           why="evicts the most recently used line of the set instead of the least recently used"),
    Mutant(name="cache_ignores_ways", cell="simulate_cache",
           find="sets = size_bytes // (line_bytes * ways)\n", replace="ways = 1\n    sets = size_bytes // line_bytes\n",
           why="ways ignored: every cache simulated as direct-mapped"),
    Mutant(name="cache_sets_ignore_ways", cell="simulate_cache",
           find="sets = size_bytes // (line_bytes * ways)\n", replace="sets = size_bytes // line_bytes\n",
           why="counts sets as size / line, forgetting to divide by the ways: a cache `ways` times too large"),
    Mutant(name="cache_ignores_line_size", cell="simulate_cache",
           find=".reshape(-1) // line_bytes", replace=".reshape(-1)",
           why="line size ignored: each byte address is its own line"),
    Mutant(name="cache_evicts_on_cold_misses", cell="simulate_cache",
           find="""            if len(in_set) == ways:
                del in_set[0]  # evict the least recently used line
                evictions += 1""",
           replace="""            evictions += 1
            if len(in_set) == ways:
                del in_set[0]  # evict the least recently used line""",
           why="counts an eviction on every miss, cold misses into a free way included"),
    Mutant(name="cache_accepts_partial_sets", cell="simulate_cache",
           find=" or size_bytes % (line_bytes * ways)", replace="",
           why="no ValueError when size_bytes is not a multiple of line_bytes * ways"),
    Mutant(name="cache_error_hides_values", cell="simulate_cache",
           find='f"size_bytes={size_bytes}, line_bytes={line_bytes}, ways={ways}: all must be positive "',
           replace='"the cache geometry is inconsistent: all must be positive "',
           why="the ValueError does not show the values that are wrong"),
    # Task 2: transpose_trace
    Mutant(name="trace_drops_ragged_edge", cell="transpose_trace",
           find="        i, j = i[order], j[order]",
           replace="""        i, j = i[order], j[order]
        whole = (i < m - m % block_size) & (j < n - n % block_size)  # only whole tiles
        i, j = i[whole], j[whole]""",
           why="ragged tile edge dropped: only whole block_size x block_size tiles are visited"),
    Mutant(name="trace_tiles_column_major", cell="transpose_trace",
           find="np.lexsort((j // block_size, i // block_size))", replace="np.lexsort((i // block_size, j // block_size))",
           why="tiles visited column by column over A instead of row by row"),
    Mutant(name="trace_columns_inside_tile", cell="transpose_trace",
           find="np.lexsort((j // block_size, i // block_size))", replace="np.lexsort((i, j, j // block_size, i // block_size))",
           why="inside each tile, A's elements go column by column"),
    Mutant(name="trace_b_rows_of_n", cell="transpose_trace",
           find="b_base + (j * m + i) * itemsize", replace="b_base + (j * n + i) * itemsize",
           why="B's rows taken to be n elements long (A's), wrong whenever the matrix is not square"),
    Mutant(name="trace_b_base_ignores_a_base", cell="transpose_trace",
           find="b_base = a_base + m * n * itemsize", replace="b_base = m * n * itemsize",
           why="the default b_base is A's size, not just past A when a_base is not 0"),
    Mutant(name="trace_float32_writes", cell="transpose_trace",
           find="b_base + (j * m + i) * itemsize", replace="b_base + (j * m + i) * 4",
           why="the writes to B assume 4-byte elements whatever itemsize says"),
    Mutant(name="trace_write_before_read", cell="transpose_trace",
           find="""    trace[:, 0] = a_base + (i * n + j) * itemsize  # read A[i, j]
    trace[:, 1] = b_base + (j * m + i) * itemsize  # then write B[j, i]""",
           replace="""    trace[:, 1] = a_base + (i * n + j) * itemsize
    trace[:, 0] = b_base + (j * m + i) * itemsize""",
           why="lists the write of B[j, i] before the read of A[i, j]"),
    # Task 3: transpose_blocked
    Mutant(name="blocked_ignores_block_size", cell="transpose_blocked",
           find="    m, n = a.shape\n", replace="    m, n = a.shape\n    block_size = 32\n",
           why="tile size fixed at 32 whatever block_size says"),
    Mutant(name="blocked_drops_ragged_edge", cell="transpose_blocked",
           find="for j0 in range(0, n, block_size):", replace="for j0 in range(0, n - block_size + 1, block_size):",
           why="only whole tiles: the columns past the last multiple of block_size are never transposed"),
    Mutant(name="blocked_tiles_column_major", cell="transpose_blocked",
           find="""    for i0 in range(0, m, block_size):
        i1 = min(i0 + block_size, m)
        for j0 in range(0, n, block_size):
            j1 = min(j0 + block_size, n)
""", replace="""    for j0 in range(0, n, block_size):
        j1 = min(j0 + block_size, n)
        for i0 in range(0, m, block_size):
            i1 = min(i0 + block_size, m)
""",
           why="visits the tiles column by column over A: a different access order, other cache misses"),
    Mutant(name="blocked_reads_tiles_twice", cell="transpose_blocked",
           find="out[j0:j1, i0:i1] = a[i0:i1, j0:j1].T", replace="out[j0:j1, i0:i1] = a[i0:i1, j0:j1].T\n            a[i0:i1, j0:j1]",
           why="reads every tile a second time, doubling its reads of A"),
    Mutant(name="blocked_rows_then_columns", cell="transpose_blocked",
           find="out[j0:j1, i0:i1] = a[i0:i1, j0:j1].T", replace="out[j0:j1, i0:i1] = a[i0:i1][:, j0:j1].T",
           why="two slices per tile, the first spanning whole rows of A"),
    Mutant(name="blocked_whole_input", cell="transpose_blocked",
           find="    m, n = a.shape\n", replace="    return np.ascontiguousarray(np.asarray(a).T)\n    m, n = a.shape\n",
           why="after the argument checks, transposes the whole input with NumPy and skips the tiles"),
    Mutant(name="blocked_returns_view", cell="transpose_blocked",
           find="    return out", replace="    return a.T",
           why="reads the tiles but returns a.T, a view of the input, not a new C-contiguous array"),
    Mutant(name="blocked_float64_result", cell="transpose_blocked",
           find="np.empty((n, m), dtype=a.dtype)", replace="np.empty((n, m))",
           why="the result is float64 whatever the input's dtype"),
    # Task 4: best_block_size
    Mutant(name="best_picks_largest", cell="best_block_size",
           find="return min(misses, key=misses.get)", replace="return max(candidates)",
           why="picks the largest candidate, assuming bigger tiles are always better"),
    Mutant(name="best_ties_to_largest", cell="best_block_size",
           find="for block_size in sorted(candidates):", replace="for block_size in sorted(candidates, reverse=True):",
           why="on a tie, returns the largest of the best candidates"),
    Mutant(name="best_first_candidate_on_tie", cell="best_block_size",
           find="for block_size in sorted(candidates):", replace="for block_size in candidates:",
           why="on a tie, returns the first best candidate in the order given, not the smallest"),
    Mutant(name="best_ignores_ways", cell="best_block_size",
           find='cache["line_bytes"], cache["ways"])', replace='cache["line_bytes"], 1)',
           why="simulates every cache as direct-mapped"),
    Mutant(name="best_ignores_itemsize", cell="best_block_size",
           find="transpose_trace(m, n, block_size, itemsize=itemsize)", replace="transpose_trace(m, n, block_size)",
           why="traces 4-byte elements whatever itemsize says"),
]
