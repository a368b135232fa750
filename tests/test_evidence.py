"""The grader's evidence summaries, computed from a served array's record (autograder/check/evidence.py)."""
from __future__ import annotations

import numpy as np
import pytest

from autograder.check.evidence import MAX_REPLAYED_ACCESSES, EvidenceError, register, summary

CACHE_LAB = (1024, 32, 1)  # CS:APP's Cache Lab cache: 32 sets of one 32-byte line


def matrix(m: int, n: int, dtype=np.float32):
    """A served (m, n) matrix's record, nothing read yet."""
    return register(np.dtype(dtype).str, [m, n], np.zeros((m, n), dtype=dtype).tobytes())


def read(record, rows: slice, cols: slice) -> None:
    """Record the slice ``[rows, cols]`` as the check process reports it."""
    record.slice(np.arange(record.values.size).reshape(record.values.shape)[rows, cols])


def read_tiles(record, block: int, column_major: bool = False) -> None:
    m, n = record.values.shape
    starts = [(i0, j0) for i0 in range(0, m, block) for j0 in range(0, n, block)]
    for i0, j0 in sorted(starts, key=lambda s: s[::-1]) if column_major else starts:
        read(record, slice(i0, i0 + block), slice(j0, j0 + block))


def misses(record, size_bytes: int, line_bytes: int, ways: int):
    return summary([record], {"handle": 0, "summary": "transpose_misses", "args": [size_bytes, line_bytes, ways]})


def test_rows_replay_the_row_by_row_transpose():
    # Cache Lab's 32 x 32 transpose: row by row, every write to B conflicts; 1180 misses in this model
    record = matrix(32, 32)
    for i in range(32):
        read(record, slice(i, i + 1), slice(None))
    assert misses(record, *CACHE_LAB) == 1180


def test_tiles_replay_the_blocked_transpose_in_their_order():
    record = matrix(32, 32)
    read_tiles(record, 8)
    assert misses(record, *CACHE_LAB) == 340  # 8 x 8 tiles: only A and B's diagonal tiles conflict
    assert misses(record, 32 * 32 * 4 * 2, 32, 1) == 2 * 32 * 32 * 4 // 32  # both fit: each line missed once
    by_columns = matrix(61, 67)
    read_tiles(by_columns, 8, column_major=True)
    by_rows = matrix(61, 67)
    read_tiles(by_rows, 8)
    assert misses(by_columns, 512, 16, 2) != misses(by_rows, 512, 16, 2)


def test_lru_not_fifo_and_the_ways_count():
    # a 2 x 16 float32 A (lines 0, 1) and its B (lines 2, 3) in a cache of one set of 64-byte lines:
    # one way misses on every access; two ways miss 6 times with LRU (FIFO would miss 8 times);
    # four ways hold all four lines, so only the cold misses remain
    record = matrix(2, 16)
    read(record, slice(0, 2), slice(0, 16))
    assert [misses(record, 64 * ways, 64, ways) for ways in (1, 2, 3, 4)] == [64, 6, 5, 4]


def test_the_matrix_dtype_sets_the_addresses():
    narrow, wide = matrix(16, 16, np.float32), matrix(16, 16, np.float64)
    for record in (narrow, wide):
        read_tiles(record, 16)
    assert misses(narrow, 4096, 64, 4) == 2 * 16 * 16 * 4 // 64
    assert misses(wide, 4096, 64, 4) > misses(narrow, 4096, 64, 4)


@pytest.mark.parametrize("args", [(1000, 64, 1), (1024, 0, 1), (1024, 64, -1), (1024.0, 64, 1), ("1024", 64, 1)])
def test_a_cache_that_is_not_whole_sets_is_refused(args):
    record = matrix(4, 4)
    read_tiles(record, 2)
    with pytest.raises(EvidenceError):
        misses(record, *args)


def test_only_matrices_and_bounded_replays():
    vector = register(np.dtype(np.float32).str, [8], np.zeros(8, np.float32).tobytes())
    vector.slice(np.arange(4))
    with pytest.raises(EvidenceError):
        misses(vector, *CACHE_LAB)
    record = matrix(64, 64)
    for _ in range(MAX_REPLAYED_ACCESSES // (2 * 64 * 64) + 1):  # the whole matrix, read over and over
        read(record, slice(None), slice(None))
    with pytest.raises(EvidenceError, match="too many"):
        misses(record, *CACHE_LAB)


def test_nothing_read_nothing_missed():
    assert misses(matrix(8, 8), *CACHE_LAB) == 0
