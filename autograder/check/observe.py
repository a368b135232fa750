"""What a check uses, inside the check process, to call student code and report what it saw.

A check (``checks/<assignment>/<notebook>.py``) is a function named after a test cell's grade_id,
``def t01_x(ns, rng)``: it calls the student's functions (``ns``) on inputs drawn from ``rng`` and
returns a dict of observations made with the helpers below. Each case's name is written by the
instructor and is what a failing student reads in their feedback, so it must not give away a
hidden input. The grader compares each observation with the reference solution's, outside this
process, by the rule and tolerances of the reference's observation.

Evidence of *how* something was computed is recorded by the grader, not here:

- ``served(x)`` gives student code an array whose values stay with the grader. Each element read
  (``a[i, p]``), slice (``a[r0:r1, s0:s1]``) and use of values (a ufunc, ``a @ b``, ``np.dot``,
  ``.tolist()``, ...) asks the grader for them, and the grader records what it handed out. Values
  it never handed out are NaN here (or an integer sentinel), so code that goes around the
  requests computes garbage. ``evidence(a, summary, *args)`` is an observation that the grader
  computes from its own record.
- ``peak_memory(fn, *args)`` calls ``fn`` between two requests at which the grader reads the
  process's peak resident memory from the kernel, and ``memory_evidence(window, limit)`` is that
  peak, compared with ``limit``.
- ``rendezvous(group, count)`` blocks until ``count`` calls of the same group are waiting at the
  grader at once (a barrier the grader holds), and ``rendezvous_evidence(group)`` is how many
  the grader saw waiting together.

This module is sent into the check process as text and imported there as ``observe``; it needs
only the standard library, NumPy and the protocol module.
"""
from __future__ import annotations

import base64
import ctypes
import threading

import numpy as np

MAX_ITEMS = 10_000          # list, dict and string length kept
MAX_ARRAY_BYTES = 64 * 2**20
NUMERIC_KINDS = "biufc"
_type, _len, _str, _isinstance, _int = type, len, str, isinstance, int  # bound before student code runs
_ndarray_view, _asarray, _ascontiguous = np.ndarray.view, np.asarray, np.ascontiguousarray
_b64encode, _b64decode = base64.b64encode, base64.b64decode
_client = None  # the process's Client, set by the check process before any check runs
_malloc_trim = ctypes.CDLL(None).malloc_trim  # glibc; bound before student code runs


# -- plain data ---------------------------------------------------------------------------
def encode(value, depth: int = 0):
    """``value`` as JSON-safe plain data: None, bool, int, float, str, numeric arrays (dtype, shape,
    base64 bytes), and lists and str-keyed dicts of these; anything else never matches."""
    kind = _type(value)
    if value is None or kind is bool or kind is float:
        return value
    if kind is int:
        return value if -2**53 < value < 2**53 else {"bigint": _str(value)}
    if kind is str:
        return value[:MAX_ITEMS]
    if depth > 8:
        return {"unsupported": "nesting deeper than 8"}
    if _isinstance(value, np.generic) and value.dtype.kind in NUMERIC_KINDS:
        return encode(_asarray(value), depth + 1)
    if _isinstance(value, np.ndarray):
        array = _ndarray_view(value, np.ndarray)
        if array.dtype.kind not in NUMERIC_KINDS or array.dtype.hasobject:
            return {"unsupported": f"array of dtype {array.dtype}"}
        if array.nbytes > MAX_ARRAY_BYTES:
            return {"unsupported": f"array of {array.nbytes} bytes"}
        return {"dtype": array.dtype.str, "shape": [_int(n) for n in array.shape],
                "b64": _b64encode(_ascontiguous(array).tobytes()).decode("ascii")}
    if kind is list or kind is tuple:
        return {"list": [encode(item, depth + 1) for item in value[:MAX_ITEMS]]}
    if kind is dict and all(_type(key) is str for key in value):
        return {"dict": {key: encode(item, depth + 1) for key, item in list(value.items())[:MAX_ITEMS]}}
    return {"unsupported": getattr(kind, "__qualname__", "object")}


# -- observations ---------------------------------------------------------------------------
def same(value) -> dict:
    """Observation: must equal the reference's value exactly (arrays: dtype, shape and values)."""
    return {"rule": "same", "value": encode(value)}


def close(value, rtol: float = 1e-7, atol: float = 0.0) -> dict:
    """Observation: a number or numeric array of the reference's shape and dtype, within ``rtol``/``atol``."""
    return {"rule": "close", "value": encode(value), "rtol": float(rtol), "atol": float(atol)}


def at_most(value, limit: float) -> dict:
    """Observation: a number that must not exceed ``limit`` (the reference run's limit counts)."""
    return {"rule": "at_most", "value": encode(value), "limit": float(limit)}


def raised(function, *args, **kwargs) -> str | None:
    """Name of the exception class ``function(*args, **kwargs)`` raises, or None if none."""
    try:
        function(*args, **kwargs)
    except Exception as exc:  # the name is the observation
        return _type(exc).__name__
    return None


def raises_naming(function, args: tuple, expected: type, words: list[str]) -> tuple[bool, bool]:
    """Whether calling ``function(*args)`` raises ``expected``, and whether its message has ``words``."""
    try:
        function(*args)
    except expected as exc:
        message = _str(exc)
        return True, all(word in message for word in words)
    except Exception:
        return False, False
    return False, False


def evidence(array: "ServedArray", summary: str, *args) -> dict:
    """Observation computed by the grader from its record of what it handed out of ``array``.

    ``summary`` names what the grader computes (``autograder/check/evidence.py``):
    ``element_reads``, ``slice_count``, ``matmul_calls``, ``tiles``, ``untouched``, and
    ``transpose_misses`` (with ``size_bytes, line_bytes, ways``: the cache misses of the slices read,
    and the writes of their transposes, replayed through an LRU cache). The handle and arguments
    of the reference's observation are the ones used.
    """
    served = getattr(array, "_served", None)
    handle = served.handle if served is not None else -1
    return {"rule": "same", "evidence": {"handle": handle, "summary": summary, "args": list(args)}}


def memory_evidence(window: int, limit_bytes: float, minus_bytes: float = 0.0) -> dict:
    """Observation: the peak resident memory the grader read for ``window`` (``peak_memory``),
    less ``minus_bytes`` (the result's own bytes), must not exceed ``limit_bytes``."""
    return {"rule": "at_most", "limit": float(limit_bytes),
            "evidence": {"memory": int(window), "minus": float(minus_bytes)}}


def rendezvous_evidence(group: int) -> dict:
    """Observation: how many ``rendezvous(group, ...)`` calls the grader saw waiting at once."""
    return {"rule": "same", "evidence": {"rendezvous": int(group)}}


# -- talking to the grader ------------------------------------------------------------------
class Client:
    """Requests to the grader and their replies, from any thread of the check process.

    Reports that need no reply (a read of a value already handed out, a slice or use of values
    already here) are batched and sent before the next request, or by ``flush``.
    """

    def __init__(self, send, read):
        self._send, self._read = send, read  # send(message); read() -> next frame from the grader
        self._cond = threading.Condition(threading.Lock())
        self._replies: dict[int, dict] = {}
        self._reading = False
        self._next = 0
        self._batch: list[dict] = []
        self._batch_lock = threading.Lock()

    def notify(self, **message) -> None:
        self.flush()
        self._send(message)

    def report(self, **entry) -> None:
        """Queue a report that needs no reply (sent with the next request or flush)."""
        with self._batch_lock:
            self._batch.append(entry)
            full = len(self._batch) >= 4096
        if full:
            self.flush()

    def flush(self) -> None:
        with self._batch_lock:
            batch, self._batch = self._batch, []
        if batch:
            self._send({"kind": "serve", "op": "batch", "reports": batch})

    def request(self, **message) -> dict:
        self.flush()
        with self._cond:
            self._next += 1
            number = self._next
        self._send(dict(message, request=number))
        with self._cond:
            while number not in self._replies:
                if self._reading:
                    self._cond.wait()
                    continue
                self._reading = True
                self._cond.release()
                try:
                    reply = self._read()
                finally:
                    self._cond.acquire()
                    self._reading = False
                    self._cond.notify_all()
                self._replies[reply.get("reply")] = reply
            return self._replies.pop(number)


def _connect(client: Client) -> None:
    global _client
    _client = client


def peak_memory(function, *args, **kwargs):
    """``(function(*args, **kwargs), window)``: the call runs between two requests at which the
    grader resets and then reads this process's peak resident memory (window's evidence)."""
    _malloc_trim(0)  # free heap pages go back first: else a large array can reuse them unseen
    window = _client.request(kind="memory", action="start")["window"]
    try:
        result = function(*args, **kwargs)
    finally:
        _client.request(kind="memory", action="stop", window=window)
    return result, window


def rendezvous(group: int, count: int) -> bool:
    """Wait at the grader until ``count`` calls of ``group`` wait together; False if they never did."""
    return bool(_client.request(kind="rendezvous", group=int(group), count=int(count)).get("filled"))


# -- served arrays ------------------------------------------------------------------------
MATMUL_UFUNCS = {f for f in (getattr(np, name, None) for name in ("matmul", "vecdot", "matvec", "vecmat")) if f}
MATMUL_FUNCTIONS = (
    {f for f in (getattr(np, name, None) for name in ("dot", "vdot", "inner", "outer", "tensordot", "einsum", "kron"))
     if f is not None}
    | {f for f in (getattr(np.linalg, name, None) for name in ("multi_dot", "matmul", "tensordot", "vecdot", "outer"))
       if f is not None})
SHAPE_ONLY = {f for f in (getattr(np, name, None) for name in (
    "shape", "ndim", "size", "result_type", "can_cast", "zeros_like", "empty_like", "ones_like", "full_like",
    "iscomplexobj", "isrealobj", "min_scalar_type")) if f is not None}
VIEWS = {f for f in (getattr(np, name, None) for name in (
    "transpose", "reshape", "squeeze", "swapaxes", "moveaxis", "expand_dims", "atleast_1d", "atleast_2d",
    "atleast_3d", "broadcast_to", "diagonal", "matrix_transpose", "permute_dims")) if f is not None}
DATA_METHODS = ("copy", "astype", "tolist", "tobytes", "item", "flatten", "round", "argmax", "argmin", "argsort",
                "nonzero", "take", "repeat", "searchsorted", "compress", "trace", "tofile", "dump", "dumps",
                "__reduce__", "__reduce_ex__", "__copy__", "__deepcopy__", "__contains__", "__format__",
                "__float__", "__int__", "__complex__", "__bool__", "__index__", "__repr__", "__str__")


def _poison(dtype: np.dtype):
    if dtype.kind in "fc":
        return np.nan
    if dtype.kind == "i":
        return np.iinfo(dtype).min
    if dtype.kind == "u":
        return np.iinfo(dtype).max
    return True


class _Served:
    """What a served array and its views share: the grader's handle and the local buffer of
    values handed out so far (the rest is poison)."""

    def __init__(self, handle: int, dtype: np.dtype, shape: tuple):
        self.handle = handle
        self.buffer = np.full(shape, _poison(dtype), dtype=dtype)
        self.root = self.buffer.view(ServedArray)
        self.root.flags.writeable = False
        self.root._served = self
        self.filled = np.zeros(self.buffer.size, dtype=bool)
        self.positions = np.arange(self.buffer.size, dtype=np.int64)

    def _fill(self, where: np.ndarray, reply: dict) -> None:
        data = reply.get("data")
        if data is None:
            return
        values = np.frombuffer(_b64decode(data), dtype=self.buffer.dtype)
        flat = where.reshape(-1)
        if values.size == flat.size:
            self.buffer.reshape(-1)[flat] = values
            self.filled[flat] = True

    def element(self, position: int):
        if self.filled[position]:
            _client.report(op="element", handle=self.handle, position=position)
        else:
            self._fill(np.array([position]), _client.request(kind="serve", op="element", handle=self.handle,
                                                             position=position))
        return self.buffer.reshape(-1)[position]

    def slice(self, view: dict, where: np.ndarray) -> None:
        if self.filled[where.reshape(-1)].all():
            _client.report(op="slice", handle=self.handle, view=view)
        else:
            self._fill(where, _client.request(kind="serve", op="slice", handle=self.handle, view=view, want=True))

    def use(self, view: dict, where: np.ndarray, purpose: str, call: list | None) -> None:
        if self.filled[where.reshape(-1)].all():
            _client.report(op="use", handle=self.handle, view=view, purpose=purpose, call=call)
        else:
            self._fill(where, _client.request(kind="serve", op="use", handle=self.handle, view=view, purpose=purpose,
                                              call=call, want=True))


def served(array, barrier: int = 0) -> "ServedArray":
    """A copy of ``array`` whose values stay with the grader (see the module docstring)."""
    array = np.ascontiguousarray(np.asarray(array))
    if array.dtype.kind not in NUMERIC_KINDS:
        raise TypeError(f"served arrays hold numbers, not {array.dtype}")
    reply = _client.request(kind="serve", op="register", dtype=array.dtype.str, shape=[int(n) for n in array.shape],
                            data=_b64encode(array.tobytes()).decode("ascii"))
    return _Served(int(reply["handle"]), array.dtype, array.shape).root


def _layout(array: np.ndarray, served: _Served) -> dict | None:
    """Offset and strides, in elements of the served array, of ``array``'s view of its buffer;
    None if ``array`` is not such a view (a copy numpy made: it holds poison)."""
    buffer = served.buffer
    if array.dtype != buffer.dtype:
        return None
    start = array.__array_interface__["data"][0] - buffer.__array_interface__["data"][0]
    item = buffer.itemsize
    if start % item or any(step % item for step in array.strides):
        return None
    offset, steps = start // item, [step // item for step in array.strides]
    if array.size:
        low = offset + sum(min(0, step * (n - 1)) for step, n in zip(steps, array.shape))
        high = offset + sum(max(0, step * (n - 1)) for step, n in zip(steps, array.shape))
        if low < 0 or high >= buffer.size:
            return None
    return {"offset": offset, "shape": [int(n) for n in array.shape], "strides": steps}


def _positions(served: _Served, view: dict) -> np.ndarray:
    if not all(view["shape"]):
        return np.zeros(view["shape"], dtype=np.int64)
    return np.lib.stride_tricks.as_strided(served.positions[view["offset"]:], shape=view["shape"],
                                           strides=[8 * step for step in view["strides"]], writeable=False)


class ServedArray(np.ndarray):
    """An input whose values the grader hands out on request and records (see ``served``)."""

    _served = None

    def __array_finalize__(self, obj):
        self._served = getattr(obj, "_served", None)

    def _view(self):
        """(layout, positions) of this array in the served buffer, or None."""
        served = self._served
        if served is None:
            return None
        layout = _layout(self, served)
        return None if layout is None else (layout, _positions(served, layout))

    def _plain(self, purpose: str, call: list | None = None) -> np.ndarray:
        """This array's values as a plain array, handed out by the grader for ``purpose``."""
        found = self._view()
        if found is not None:
            self._served.use(found[0], found[1], purpose, call)
        return _ndarray_view(self, np.ndarray)

    def __getitem__(self, key):
        found = self._view()
        if found is None:
            return super().__getitem__(key)
        picked = found[1][key]
        if np.ndim(picked) == 0:
            return self._served.element(int(picked))
        result = super().__getitem__(key)
        if picked.size == 0:
            return result
        layout = _layout(result, self._served) if isinstance(result, ServedArray) else None
        if layout is None:  # advanced indexing made a copy: hand out its values and return them plainly
            self._served.slice({"positions": [int(p) for p in picked.reshape(-1)[:MAX_ITEMS * 10]],
                                "shape": [int(n) for n in picked.shape]}, picked)
            return self._served.buffer.reshape(-1)[picked]
        self._served.slice(layout, picked)
        return result

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self)))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        call = [list(np.shape(x)) for x in inputs] if method == "__call__" and ufunc in MATMUL_UFUNCS else None
        plain = [x._plain(name, call) if isinstance(x, ServedArray) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(_ndarray_view(x, np.ndarray) if isinstance(x, np.ndarray) else x
                                  for x in kwargs["out"])
        return getattr(ufunc, method)(*plain, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if func in VIEWS:
            return super().__array_function__(func, types, args, kwargs)
        if func in SHAPE_ONLY:
            return func(*_replace(args, lambda x: _ndarray_view(x, np.ndarray)),
                        **_replace(kwargs, lambda x: _ndarray_view(x, np.ndarray)))
        call = [list(np.shape(x)) for x in _arrays(list(args) + list(kwargs.values()))] if func in MATMUL_FUNCTIONS \
            else None
        name = getattr(func, "__name__", "function")
        return func(*_replace(args, lambda x: x._plain(name, call)),
                    **_replace(kwargs, lambda x: x._plain(name, call)))

    def dot(self, other, out=None):
        call = [list(self.shape), list(np.shape(other))]
        other = other._plain("ndarray.dot", call) if isinstance(other, ServedArray) else other
        return np.dot(self._plain("ndarray.dot", call), other, out=out)


def _arrays(values) -> list:
    found = []
    for value in values:
        if isinstance(value, (list, tuple)):
            found += _arrays(value)
        elif isinstance(value, np.ndarray):
            found.append(value)
    return found


def _replace(values, convert):
    """``values`` (args tuple, kwargs dict, nested lists) with each ServedArray converted."""
    if isinstance(values, ServedArray):
        return convert(values)
    if isinstance(values, dict):
        return {key: _replace(value, convert) for key, value in values.items()}
    if isinstance(values, (list, tuple)):
        return type(values)(_replace(value, convert) for value in values)
    return values


def _data_method(name: str):
    def method(self, *args, **kwargs):
        return getattr(self._plain(f"ndarray.{name}"), name)(*args, **kwargs)
    method.__name__ = name
    return method


for _name in DATA_METHODS:
    setattr(ServedArray, _name, _data_method(_name))
