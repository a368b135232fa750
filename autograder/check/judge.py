"""Compare a check's outcome with the answer key, outside the check process.

The answer key holds, per check run, the reference solution's observations: how each is compared
(rule, tolerances, limit, which evidence) and its value. A student's observation contributes only
its value; evidence is computed from the grader's own record of the student's run, with the
handle and arguments the reference used. Every failure is described in words the instructor
wrote (the case's name) and the grader chose (how it failed): never the reference's values,
never a seed, never text the student's code produced in the check process.
"""
from __future__ import annotations

import base64
import builtins
from dataclasses import dataclass, field

import numpy as np

from autograder.check.evidence import EvidenceError, summary
from autograder.check.observe import encode
from autograder.check.runner import Outcome, StepResult, check_step_id

NUMERIC_KINDS = "biufc"
NOT_PLAIN = "returned an object that is not plain data (a number, string, list or NumPy array)"
EVIDENCE_WORDS = {
    "element_reads": "read the input's elements a different number of times than the algorithm does",
    "slice_count": "took a different number of slices of the input than the algorithm does",
    "matmul_calls": "made different matmul-like calls on the input than the algorithm does",
    "untouched": "read parts of the input, where the task hands the whole input to one call",
    "tiles": "did not read the input tile by tile as the task asks",
    "transpose_misses": "read the tiles in another order or number than the task asks (a different count of "
                        "cache misses)",
}
BUILTIN_ERRORS = {name for name, value in vars(builtins).items()
                  if isinstance(value, type) and issubclass(value, BaseException)}


class Unsupported:
    """A value that could not be plain data; it never matches."""

    def __init__(self, what: str):
        self.what = what


def decode(value, depth: int = 0):
    """Plain data from ``observe.encode`` back to Python and NumPy values, checked as it goes."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if depth > 10 or type(value) is not dict or len(value) not in (1, 3):
        return Unsupported("malformed value")
    if "b64" in value:
        try:
            dtype = np.dtype(str(value["dtype"]))
            shape = tuple(int(n) for n in value["shape"])
            data = base64.b64decode(value["b64"], validate=True)
        except (TypeError, ValueError, KeyError):
            return Unsupported("malformed array")
        if dtype.kind not in NUMERIC_KINDS or dtype.hasobject or len(shape) > 32 or any(n < 0 for n in shape):
            return Unsupported(f"array of dtype {dtype}")
        if len(data) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            return Unsupported("array whose bytes do not fit its shape")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if type(value.get("list")) is list:
        return [decode(item, depth + 1) for item in value["list"]]
    if type(value.get("dict")) is dict:
        return {str(key): decode(item, depth + 1) for key, item in value["dict"].items()}
    if type(value.get("bigint")) is str:
        try:
            return int(value["bigint"][:400])
        except ValueError:
            return Unsupported("malformed integer")
    return Unsupported("unsupported value")


def _unsupported(value) -> bool:
    if isinstance(value, Unsupported):
        return True
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return any(_unsupported(item) for item in items)


def _same(expected, actual) -> bool:
    if isinstance(expected, np.ndarray) or isinstance(actual, np.ndarray):
        return (isinstance(expected, np.ndarray) and isinstance(actual, np.ndarray)
                and expected.dtype == actual.dtype and expected.shape == actual.shape
                and bool(np.array_equal(expected, actual, equal_nan=expected.dtype.kind in "fc")))
    if type(expected) is not type(actual):
        return False
    if isinstance(expected, list):
        return len(expected) == len(actual) and all(_same(e, a) for e, a in zip(expected, actual))
    if isinstance(expected, dict):
        return expected.keys() == actual.keys() and all(_same(expected[k], actual[k]) for k in expected)
    if isinstance(expected, float) and expected != expected:
        return actual != actual
    return expected == actual


def _how_same_fails(expected, actual) -> str:
    """Which way ``actual`` differs from ``expected``, in words that reveal neither value."""
    if isinstance(expected, np.ndarray):
        if not isinstance(actual, np.ndarray):
            return "wrong type of result"
        if expected.shape != actual.shape:
            return "wrong shape"
        if expected.dtype != actual.dtype:
            return "wrong dtype"
        return "wrong values"
    if expected is None and isinstance(actual, str):
        return "raised an exception where none was expected"
    if isinstance(expected, str) and actual is None:
        return "did not raise the expected exception"
    if isinstance(expected, str) and isinstance(actual, str):
        return "a different result (or exception) than expected"
    if type(expected) is not type(actual):
        return "wrong type of result"
    return "wrong result"


def _numeric(value) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if type(value) in (bool, int, float):
        return np.asarray(value)
    if isinstance(value, list) and all(type(v) in (bool, int, float) for v in value):
        return np.asarray(value)
    return None


def compare(expected: dict, actual) -> str | None:
    """None if the value ``actual`` passes the reference's observation ``expected``, else how it failed."""
    if _unsupported(actual):
        return NOT_PLAIN
    rule = expected.get("rule")
    want = decode(expected.get("value"))
    if rule == "same":
        return None if _same(want, actual) else _how_same_fails(want, actual)
    if rule == "close":
        got, ref = _numeric(actual), _numeric(want)
        if got is None or ref is None:
            return "wrong type of result"
        if got.shape != ref.shape:
            return "wrong shape"
        if isinstance(want, np.ndarray) and isinstance(actual, np.ndarray) and want.dtype != actual.dtype:
            return "wrong dtype"
        with np.errstate(all="ignore"):
            ok = np.allclose(got.astype(np.complex128), ref.astype(np.complex128), rtol=float(expected["rtol"]),
                             atol=float(expected["atol"]), equal_nan=True)
        return None if ok else "values outside the tolerance"
    if rule == "at_most":
        got = _numeric(actual)
        if got is None or got.shape != () or got.dtype.kind == "c" or not np.isfinite(got):
            return "not a single finite number"
        return None if float(got) <= float(expected["limit"]) else "exceeded its bound"
    return "cannot be compared (unknown rule in the answer key)"


# -- resolving evidence -----------------------------------------------------------------------
def evidence_value(spec: dict, result: StepResult):
    """The value of an evidence observation, from the grader's record of ``result``'s run."""
    if "memory" in spec:
        peak = result.memory.get(spec["memory"])
        return None if peak is None else float(peak) - float(spec.get("minus", 0.0))
    if "rendezvous" in spec:
        return int(result.rendezvous.get(spec["rendezvous"], 0))
    return summary(result.served, spec)


def evidence_words(spec: dict) -> str:
    if "memory" in spec:
        return "used more memory than the task allows (peak resident memory, measured outside)"
    if "rendezvous" in spec:
        return "did not run its pieces at the same time"
    return EVIDENCE_WORDS.get(spec.get("summary"), "computed its result another way than the task asks")


def resolve_reference(result: StepResult) -> dict:
    """A reference run's observations with every evidence value filled in: one answer-key entry."""
    observations = {}
    for name, observation in (result.observations or {}).items():
        observation = dict(observation)
        if "evidence" in observation:
            observation["value"] = encode(evidence_value(observation["evidence"], result))
        observations[name] = observation
    return {"observations": observations, "inputs": [record.digest for record in result.served]}


# -- verdicts -----------------------------------------------------------------------------------
@dataclass
class CellVerdict:
    """The outside verdict on one test cell: passed, and what failed (feedback-safe lines) plus
    the instructor's detail (the check process's own error texts)."""

    grade_id: str
    passed: bool
    cases: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)


def _error_kind(text: str | None) -> str:
    """The exception's class name if it is a built-in one; never student-chosen words."""
    name = (text or "").split(":", 1)[0].strip()
    return name if name in BUILTIN_ERRORS else "an exception"


def _step_failure(result: StepResult) -> str:
    if result.failure and not result.error:
        return result.failure
    return f"your code raised {_error_kind(result.error)}"


def judge_visible(outcome: Outcome, grade_id: str) -> tuple[list[str], list[str]]:
    """(failures, detail) of a test cell's visible test run in the check process."""
    visible = outcome.steps.get(f"visible {grade_id}")
    if visible is not None and visible.ok:
        return [], []
    case = "the visible test, run apart from your notebook: " + (
        "not run" if visible is None else "failed" if visible.error else _step_failure(visible))
    return [case], [f"visible test: {visible.error}"] if visible is not None and visible.error else []


def judge_run(entry: dict, result: StepResult | None) -> tuple[list[str], list[str]]:
    """(failures, detail) of one check run against its answer-key entry."""
    if result is None or not result.ok:
        failures = ["check could not finish: " + ("not run" if result is None else _step_failure(result))]
        return failures, [f"check: {result.error}"] if result is not None and result.error else []
    if [record.digest for record in result.served] != entry.get("inputs", []):
        return ["check could not finish: its inputs were changed"], ["served inputs differ from the answer key's"]
    failures = []
    for name, expected in entry["observations"].items():
        how = _judge_one(expected, (result.observations or {}).get(name), result)
        if how is not None:
            failures.append(f"{name}: {how}")
    return failures, []


def judge_cells(key: dict, outcome: Outcome, grade_ids: list[str], runs: int = 1) -> dict[str, CellVerdict]:
    """One verdict per test cell in ``grade_ids``; ``key`` maps grade_id -> [entry per run]."""
    verdicts = {}
    for grade_id in grade_ids:
        cases, detail = judge_visible(outcome, grade_id)
        entries = key.get(grade_id)
        if entries is None:
            cases.append("no check: the answer key has none for this test cell")
        for run, entry in enumerate((entries or [])[:runs]):
            failures, notes = judge_run(entry, outcome.steps.get(check_step_id(grade_id, run)))
            cases += failures
            detail += [f"check run {run}: {note}" for note in notes]
        verdicts[grade_id] = CellVerdict(grade_id, not cases, list(dict.fromkeys(cases))[:12], detail)
    return verdicts


def _judge_one(expected: dict, actual: dict | None, result: StepResult) -> str | None:
    if "evidence" in expected:
        try:
            value = evidence_value(expected["evidence"], result)
        except (EvidenceError, KeyError, TypeError, ValueError, IndexError):
            return evidence_words(expected["evidence"])
        if value is None:
            return "could not be measured"
        how = compare(expected, decode(encode(value)))
        return None if how is None else evidence_words(expected["evidence"])
    if type(actual) is not dict or "value" not in actual:
        return "no result was observed"
    return compare(expected, decode(actual["value"]))
