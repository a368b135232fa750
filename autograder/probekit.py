"""What an outside check's probe uses to report observations as plain data.

A probe (``autograder/checks/<assignment>/<notebook>.py``) runs inside the student's process,
calls the student's functions on inputs it draws from the grader's seed, and returns a dict of
observations made with the helpers below. Each observation carries how it is to be compared
(``same``, ``close``, ``at_most``); the grader compares a student's observations with the
reference solution's *outside* that process, and takes the rule and its tolerances from the
reference's observation, never from the student's.

Values are encoded to JSON-safe plain data: ``None``, ``bool``, ``int``, ``float``, ``str``,
numeric NumPy arrays and scalars (as dtype, shape and base64 bytes), and lists and str-keyed
dicts of these. Anything else (an object with a clever ``__eq__``, an object array) becomes
``{"unsupported": <type name>}``, which never matches. This module is sent into the sandbox as
text and imported there as ``probekit``; it needs only the standard library and NumPy.
"""
from __future__ import annotations

import base64

import numpy as np

MAX_ITEMS = 10_000          # list, dict and string length kept
MAX_ARRAY_BYTES = 64 * 2**20
NUMERIC_KINDS = "biufc"
_type, _len, _str, _isinstance = type, len, str, isinstance  # bound before student code runs
_ndarray_view, _asarray = np.ndarray.view, np.asarray


def encode(value, depth: int = 0):
    """``value`` as JSON-safe plain data (see the module docstring)."""
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
        data = np.ascontiguousarray(array).tobytes()
        return {"dtype": array.dtype.str, "shape": [int(n) for n in array.shape],
                "b64": base64.b64encode(data).decode("ascii")}
    if kind is list or kind is tuple:
        return {"list": [encode(item, depth + 1) for item in value[:MAX_ITEMS]]}
    if kind is dict and all(_type(key) is str for key in value):
        return {"dict": {key: encode(item, depth + 1) for key, item in list(value.items())[:MAX_ITEMS]}}
    return {"unsupported": getattr(kind, "__qualname__", "object")}


def same(value) -> dict:
    """Observation: must equal the reference's value exactly (arrays: dtype, shape and values)."""
    return {"rule": "same", "value": encode(value)}


def close(value, rtol: float = 1e-7, atol: float = 0.0) -> dict:
    """Observation: a number or numeric array of the reference's shape, within ``rtol``/``atol``."""
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
