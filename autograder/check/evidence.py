"""What the grader records while a check runs, and the evidence it computes from that record.

The check process holds only values the grader handed out. For each served array the grader
keeps, in its own process, which single elements it handed out and how often, which slices
(and so which elements inside one), for which uses whole values went out, and the operand
shapes of matmul-like calls. The same fields as the notebooks' in-kernel ``ReadLog``, so a check
can ask outside for what the visible test asks inside. Student code cannot write this record:
it can only ask for values, and every ask is recorded.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

MAX_SERVED_ELEMENTS = 64 * 2**20 // 8   # one served array, and one requested view
MAX_SERVED_ARRAYS = 256                 # per check run


class EvidenceError(ValueError):
    """A request about a served array that cannot be honest (out of range, wrong shape)."""


@dataclass
class ServedRecord:
    """One served array: its values, and what was handed out of it."""

    values: np.ndarray
    digest: str
    element_reads: np.ndarray = field(init=False)
    covered: np.ndarray = field(init=False)
    slices: list[list[int]] = field(default_factory=list)   # per slice: [lo0, hi0, lo1, hi1, ...]
    uses: list[str] = field(default_factory=list)           # purposes whole values went out for
    matmul_calls: list[list[list[int]]] = field(default_factory=list)

    def __post_init__(self):
        self.element_reads = np.zeros(self.values.shape, dtype=np.int64)
        self.covered = np.zeros(self.values.shape, dtype=bool)

    def positions(self, view: dict) -> np.ndarray:
        """Flat positions of a view described by the check process; ``EvidenceError`` if the
        description is malformed or reaches outside the array."""
        size = self.values.size
        if "positions" in view:
            flat = np.asarray(view.get("positions"), dtype=np.int64)
            shape = [int(n) for n in view.get("shape", [flat.size])]
            if flat.ndim != 1 or flat.size > MAX_SERVED_ELEMENTS or int(np.prod(shape)) != flat.size:
                raise EvidenceError("malformed list of positions")
            if flat.size and (flat.min() < 0 or flat.max() >= size):
                raise EvidenceError("positions outside the served array")
            return flat.reshape(shape)
        offset, shape, steps = view.get("offset"), view.get("shape"), view.get("strides")
        if not (type(offset) is int and type(shape) is list and type(steps) is list and len(shape) == len(steps)
                and all(type(n) is int and n >= 0 for n in shape) and all(type(s) is int for s in steps)):
            raise EvidenceError("malformed view")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count > MAX_SERVED_ELEMENTS:
            raise EvidenceError("view larger than allowed")
        if count == 0:
            return np.zeros(shape, dtype=np.int64)
        low = offset + sum(min(0, s * (n - 1)) for s, n in zip(steps, shape))
        high = offset + sum(max(0, s * (n - 1)) for s, n in zip(steps, shape))
        if low < 0 or high >= size:
            raise EvidenceError("view outside the served array")
        index = np.full(shape, offset, dtype=np.int64)
        for axis, (n, step) in enumerate(zip(shape, steps)):
            along = np.arange(n, dtype=np.int64) * step
            index += along.reshape([n if a == axis else 1 for a in range(len(shape))])
        return index

    def element(self, position) -> np.ndarray:
        if type(position) is not int or not 0 <= position < self.values.size:
            raise EvidenceError("element position outside the served array")
        self.element_reads.flat[position] += 1
        return self.values.reshape(-1)[position:position + 1]

    def slice(self, where: np.ndarray) -> np.ndarray:
        if where.size:
            index = np.unravel_index(where.reshape(-1), self.values.shape)
            bounds = [[int(axis.min()), int(axis.max()) + 1] for axis in index]
            self.slices.append([edge for pair in bounds for edge in pair])
            self.covered.flat[where.reshape(-1)] = True
        return self.values.reshape(-1)[where.reshape(-1)]

    def use(self, where: np.ndarray, purpose: str, call) -> np.ndarray:
        if len(self.uses) < 10_000:
            self.uses.append(str(purpose)[:60])
        if call is not None and len(self.matmul_calls) < 100_000:
            if not (type(call) is list and len(call) <= 8 and all(
                    type(shape) is list and len(shape) <= 8 and all(type(n) is int for n in shape) for shape in call)):
                raise EvidenceError("malformed matmul call shapes")
            self.matmul_calls.append(call)
        return self.values.reshape(-1)[where.reshape(-1)]


def register(dtype: str, shape, data: bytes) -> ServedRecord:
    """A new served array from the check's registration; ``EvidenceError`` if malformed."""
    kind = np.dtype(dtype)
    if kind.kind not in "biufc" or kind.hasobject:
        raise EvidenceError(f"cannot serve an array of dtype {kind}")
    if not (type(shape) is list and all(type(n) is int and n >= 0 for n in shape) and len(shape) <= 8):
        raise EvidenceError("malformed shape")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count > MAX_SERVED_ELEMENTS or len(data) != count * kind.itemsize:
        raise EvidenceError("served data does not fit its shape")
    values = np.frombuffer(data, dtype=kind).reshape(shape).copy()
    digest = hashlib.sha256(f"{kind.str}{shape}".encode() + data).hexdigest()
    return ServedRecord(values, digest)


# -- the evidence a check can ask for ---------------------------------------------------------
def _tiles(record: ServedRecord) -> dict:
    """Whether reading went tile by tile: the largest slice span per dimension, whether the tiles
    covered every element, and the largest operand dimension of a matmul-like call."""
    spans = [[hi - lo for lo, hi in zip(s[::2], s[1::2])] for s in record.slices]
    largest = [max(span[axis] for span in spans) for axis in range(record.values.ndim)] if spans else []
    calls = [n for call in record.matmul_calls for shape in call for n in shape]
    return {"largest_slice": largest, "all_covered": bool(record.covered.all()),
            "element_reads": int(record.element_reads.sum()),
            "largest_call_dimension": max(calls, default=0)}


MAX_REPLAYED_ACCESSES = 2**18  # transpose_misses: about 0.2 s of replay


def _transpose_misses(record: ServedRecord, size_bytes, line_bytes, ways) -> int:
    """Misses of an LRU cache of ``size_bytes`` in lines of ``line_bytes``, ``ways`` per set, on the
    accesses that the slices read of an (M, N) matrix A imply for writing B = A.T: slice after
    slice as recorded, each element of its rectangle row by row, read A[i, j] then write B[j, i]
    (A from byte 0, B just past A, row-major). Single-element reads and whole uses are not replayed."""
    if record.values.ndim != 2:
        raise EvidenceError("transpose_misses needs a served matrix")
    if not all(type(v) is int and v > 0 for v in (size_bytes, line_bytes, ways)) or size_bytes % (line_bytes * ways):
        raise EvidenceError("transpose_misses needs a cache of whole sets")
    if 2 * sum((s[1] - s[0]) * (s[3] - s[2]) for s in record.slices) > MAX_REPLAYED_ACCESSES:
        raise EvidenceError("too many slice reads to replay")
    (m, n), item = record.values.shape, record.values.itemsize
    sets = size_bytes // (line_bytes * ways)
    resident: dict[int, list[int]] = {}  # per set, its lines from least to most recently used
    misses = 0
    for r0, r1, c0, c1 in record.slices:
        i, j = np.arange(r0, r1)[:, None], np.arange(c0, c1)[None, :]
        trace = np.stack(np.broadcast_arrays((i * n + j) * item, (m * n + j * m + i) * item), axis=-1)
        for line in (trace.reshape(-1) // line_bytes).tolist():
            lines = resident.setdefault(line % sets, [])
            if line in lines:
                lines.remove(line)
            else:
                misses += 1
                if len(lines) == ways:
                    del lines[0]
            lines.append(line)
    return misses


SUMMARIES = {
    "element_reads": lambda record: record.element_reads.copy(),
    "slice_count": lambda record: len(record.slices),
    "matmul_calls": lambda record: [[list(shape) for shape in call] for call in record.matmul_calls],
    "untouched": lambda record: [int(record.element_reads.sum()), len(record.slices)],
    "tiles": _tiles,
    # (size_bytes, line_bytes, ways): cache misses of the transpose the slices of a matrix imply
    "transpose_misses": _transpose_misses,
}


def summary(records: list[ServedRecord], spec: dict):
    """The evidence ``spec`` (from the reference's observation) asks for, from ``records``."""
    handle, name, args = spec.get("handle"), spec.get("summary"), spec.get("args", [])
    if name not in SUMMARIES:
        raise EvidenceError(f"unknown evidence {name!r}")
    if type(handle) is not int or not 0 <= handle < len(records):
        raise EvidenceError("no such served array")
    return SUMMARIES[name](records[handle], *args)
