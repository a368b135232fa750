"""Hidden cases of 03_quantization: one check per test cell, named by its grade_id.

Each check runs in the check process after the given and student cells (``autograder/check``),
calls the student's functions (``ns``) on inputs drawn from ``rng`` and returns observations
(``observe``), compared outside with the reference solution's. Case names are what a student
reads when a case fails: they name the kind of case, never its inputs.

The strongest evidence here is exact integer results compared outside: cases whose codes are
unambiguous (scales of exactly 1 or a power of two, values away from rounding ties) show int8
codes, int32 accumulation and saturation by their values alone. Where correct solutions may
legitimately differ in the last bits (a scale computed in float32 or float64 moves a code that
sits on a rounding tie), the check applies the test's own rule to the student's values: codes
within one of the reference's and within half a step of the student's own scale, outputs
against the given cell's int8 engine (``integer_reference``) fed with the student's own codes,
and the given cell's ``error_bound``. Temporary memory is bounded twice: by ``tracemalloc`` in
the process and by the peak resident memory the grader reads from the kernel.
"""
import hashlib
import tracemalloc

import numpy as np
from observe import at_most, close, memory_evidence, peak_memory, raised, raises_naming, same

HALF_STEP = 0.5 + 1e-4  # rounding error bound in steps of the scale, as the tests take it


# -- reading what student code returned, without trusting its methods -----------------------
def _array(value):
    """``value`` as a plain numeric ndarray, or None (lists, objects, object arrays)."""
    if not isinstance(value, np.ndarray):
        return None
    array = value.view(np.ndarray)
    return array if array.dtype.kind in "biuf" and not array.dtype.hasobject else None


def _dtype(value):
    """The dtype name of an array (its real one, not a subclass's claim), else the type's name."""
    return str(np.ndarray.view(value, np.ndarray).dtype) if isinstance(value, np.ndarray) else type(value).__name__


def _shape(value):
    """The shape of an array (its real one) or of what np.shape makes of anything else."""
    return list(np.ndarray.view(value, np.ndarray).shape if isinstance(value, np.ndarray) else np.shape(value))


def _scalar(value):
    """A 0-d numeric scale as a Python float, or None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    array = _array(value)
    return float(array) if array is not None and array.ndim == 0 else None


def _number(value):
    """An int or float (not bool) returned by student code, as a plain Python number, or None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def _whole(value):
    """An array observed whole (dtype, shape, values), anything else by its type's name."""
    array = _array(value)
    return array if array is not None else _dtype(value)


def _float64(value):
    """A numeric array as float64 (its values, whatever float dtype), anything else by its type's name."""
    array = _array(value)
    return array.astype(np.float64) if array is not None else _dtype(value)


def _digest(value):
    """dtype, shape and a hash of the bytes of a large array (compared whole, sent small)."""
    array = _array(value)
    if array is None:
        return _dtype(value)
    array = np.ascontiguousarray(array)
    return [str(array.dtype), list(array.shape), hashlib.sha256(array.tobytes()).hexdigest()]


def _int8_codes(q, shape):
    """The codes of ``q`` as int64 if it is an int8 array of ``shape``, else None."""
    array = _array(q)
    return array.astype(np.int64) if array is not None and array.dtype == np.int8 and array.shape == shape else None


# -- Task 1: quantize_int8 ------------------------------------------------------------------
def _codes_and_scales(case, x, q, scale, axis=None, zero_channel=None):
    """The rules of a quantization of ``x``: int8 codes of x's shape within one of the
    reference's and within half a step of the student's own scale, the largest code of every
    nonzero channel +-127, scales (keepdims along ``axis``) as the reference's, and a finite
    positive scale for the all-zero channel ``zero_channel`` (its value is free)."""
    observed = {f"{case}: dtype and shape of q": same([_dtype(q), _shape(q)])}
    if axis is None:
        others, value = tuple(range(x.ndim)), _scalar(scale)
        scales = None if value is None else np.full([1] * x.ndim, value)
    else:
        others = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
        scales = _array(scale)
        observed[f"{case}: scale dtype and shape"] = same([_dtype(scale), _shape(scale)])
    codes = _int8_codes(q, x.shape)
    keep = tuple(1 if i in others else n for i, n in enumerate(x.shape))
    if codes is None or scales is None or scales.shape != keep:
        observed[f"{case}: scales"] = same(None)
        return observed
    scales = scales.astype(np.float64)
    live = np.ones(keep, dtype=bool)
    if zero_channel is not None:
        np.moveaxis(live, axis, 0)[zero_channel] = False
        zero_scale = np.moveaxis(scales, axis, 0)[zero_channel]
        observed[f"{case}: the all-zero channel's scale is finite and positive"] = same(
            bool(np.all(np.isfinite(zero_scale)) and np.all(zero_scale > 0)))
    observed[f"{case}: scales"] = close(scales[live], rtol=1e-6)
    observed[f"{case}: codes"] = close(codes.astype(np.float64), rtol=0.0, atol=1.0)  # a tie may go either way
    observed[f"{case}: largest code per channel"] = same(np.abs(codes).max(axis=others))
    with np.errstate(all="ignore"):
        steps = np.abs(codes - x.astype(np.float64) / scales)
        worst = float(steps.max()) if bool(np.all(np.isfinite(steps))) else None
    observed[f"{case}: rounding error in steps of the scale"] = at_most(worst, HALF_STEP)
    return observed


def _all_zero(quantize, case, shape):
    observed = {}
    with np.errstate(all="raise"):
        observed[f"{case}: no floating-point error"] = same(raised(quantize, np.zeros(shape)))
    with np.errstate(all="ignore"):
        q, scale = quantize(np.zeros(shape))
    value = _scalar(scale)
    observed[f"{case}: codes"] = same(_whole(q))
    observed[f"{case}: scale is finite and positive"] = same(value is not None and bool(np.isfinite(value))
                                                             and value > 0)
    return observed


def t03_quantize_int8_per_tensor(ns, rng):
    quantize = ns["quantize_int8"]
    observed = {}
    # cases checkable by hand: no code on a rounding tie, so the codes are exact
    for case, x, scale_rtol in [
            ("hand case, float64", np.array([2.54, -1.0, 0.5, 0.0]), 5e-6),
            ("hand case, float32, max|x| = 127", np.array([[127.0, -63.4], [10.2, 0.0]], dtype=np.float32), 0.0),
            ("largest magnitude negative", np.array([-4.0, -3.0, -1.0]), 5e-6)]:
        q, scale = quantize(x)
        observed[f"{case}: codes"] = same(_whole(q))
        observed[f"{case}: one scale"] = close(_scalar(scale), rtol=scale_rtol)
    x = -rng.uniform(0.5, 5.0, size=int(rng.integers(3, 9)))
    x[0] = float(rng.uniform(0.1, 0.5))
    observed.update(_codes_and_scales("random, largest magnitude negative", x, *quantize(x)))
    observed.update(_all_zero(quantize, "all-zero matrix", (3, 4)))
    shape = tuple(int(n) for n in rng.integers(1, 6, size=int(rng.integers(1, 4))))
    observed.update(_all_zero(quantize, "all-zero tensor", shape))
    for case, x in [("random float64 matrix", np.random.default_rng(31).standard_normal((37, 53)) * 3.0),
                    ("random float64 matrix, random scale", rng.standard_normal(
                        (int(rng.integers(20, 60)), int(rng.integers(20, 60)))) * rng.uniform(0.01, 100.0)),
                    ("random float32 matrix", (rng.standard_normal((int(rng.integers(5, 40)), int(rng.integers(5, 40))))
                                               * rng.uniform(0.01, 100.0)).astype(np.float32)),
                    ("random 3-D tensor", rng.standard_normal(tuple(int(n) for n in rng.integers(2, 8, size=3))) * 7.0)]:
        observed.update(_codes_and_scales(case, x, *quantize(x)))
    return observed


def t03_quantize_int8_per_channel(ns, rng):
    quantize = ns["quantize_int8"]
    observed = {}
    w = np.array([[127.0, -254.0, 0.0], [-20.2, 100.6, 0.0], [3.0, 0.0, 0.0]], dtype=np.float32)
    with np.errstate(all="raise"):
        observed["hand case: no floating-point error"] = same(raised(quantize, w, axis=1))
    with np.errstate(all="ignore"):
        q, scale = quantize(w, axis=1)
        q_t, scale_t = quantize(w.T, axis=0)
    observed["hand case, axis=1: codes"] = same(_whole(q))
    observed["hand case, axis=1: scale dtype and shape"] = same([_dtype(scale), _shape(scale)])
    scales = _array(scale)
    if scales is not None and scales.shape == (1, 3):
        observed["hand case, axis=1: scales of the nonzero columns"] = close(scales[0, :2].astype(np.float64), rtol=1e-6)
        observed["hand case, axis=1: the all-zero column's scale is finite and positive"] = same(
            bool(np.isfinite(scales[0, 2]) and scales[0, 2] > 0))
    observed["hand case, axis=0: scale shape"] = same(_shape(scale_t))
    observed["hand case, axis=0: codes"] = same(_whole(q_t))
    # 3-D tensors with channels of very different sizes, an all-zero one and a negative-only one
    cases = [(np.random.default_rng(32), (4, 5, 6), 1, 2, 3)]
    for _ in range(2):
        shape = tuple(int(n) for n in rng.integers(3, 9, size=3))
        channel = int(rng.integers(0, 3))
        zero, negative = (int(i) for i in rng.choice(shape[channel], size=2, replace=False))
        cases.append((rng, shape, channel, zero, negative))
    for number, (source, shape, channel, zero, negative) in enumerate(cases, 1):
        spread = [1, 1, 1]
        spread[channel] = shape[channel]
        x = source.standard_normal(shape) * source.uniform(0.01, 100.0, size=spread)
        along = np.moveaxis(x, channel, 0)  # a view: channel first
        along[zero] = 0.0
        along[negative] = -np.abs(along[negative])
        others = [a for a in range(3) if a != channel]
        for role, axis, zero_channel in [("channel axis", channel, zero),
                                         ("channel axis from the end", channel - 3, zero),
                                         ("another axis", others[0], None), ("a third axis", others[1], None)]:
            case = f"tensor {number}, {role}"
            with np.errstate(all="raise"):
                observed[f"{case}: no floating-point error"] = same(raised(quantize, x, axis=axis))
            with np.errstate(all="ignore"):
                q, scale = quantize(x, axis=axis)
            observed.update(_codes_and_scales(case, x, q, scale, axis=axis, zero_channel=zero_channel))
    return observed


# -- Task 2: dequantize ---------------------------------------------------------------------
def t03_dequantize_broadcast(ns, rng):
    dequantize = ns["dequantize"]
    observed = {}
    q = np.array([[127, -50], [0, 25]], dtype=np.int8)
    m, n = int(rng.integers(2, 7)), int(rng.integers(2, 7))
    q2 = rng.integers(-127, 128, size=(m, n)).astype(np.int8)
    shape = tuple(int(s) for s in rng.integers(2, 7, size=3))
    q3 = rng.integers(-127, 128, size=shape).astype(np.int8)
    cases = [("hand case, float scale", q, 0.02),
             ("hand case, row scales", q, np.array([[1.0], [10.0]], dtype=np.float32)),
             ("random codes, float scale", q2, float(rng.uniform(0.001, 2.0))),
             ("random codes, row scales", q2, rng.uniform(0.001, 2.0, size=(m, 1)).astype(np.float32)),
             ("random codes, column scales", q2, rng.uniform(0.001, 2.0, size=(1, n)).astype(np.float32))]
    for axis in range(3):
        scale_shape = tuple(s if i == axis else 1 for i, s in enumerate(shape))
        cases.append((f"3-D codes, scales along axis {axis}", q3,
                      rng.uniform(0.001, 2.0, size=scale_shape).astype(np.float32)))
    for case, codes, scale in cases:
        result = _array(dequantize(codes, scale))
        observed[f"{case}: dtype and shape"] = same([_dtype(result), _shape(result)])
        if result is not None and result.dtype == np.float32 and result.shape == codes.shape:
            observed[f"{case}: values"] = close(result.astype(np.float64), rtol=1e-6)
        observed[f"{case}: q unchanged"] = same(codes)
    observed["largest codes, integer scale"] = same(_whole(dequantize(np.array([-127, 127], dtype=np.int8), 3.0)))
    return observed


# -- Task 3: quantized_matmul ---------------------------------------------------------------
def t03_quantized_matmul_int32_accumulation(ns, rng):
    matmul = ns["quantized_matmul"]
    observed = {}
    # exact integer sums, compared whole: int8 or int16 accumulators wrap, float32 ones round
    k = int(rng.integers(3, 9))
    fixed = np.random.default_rng(34)
    cases = [("hand case, 100*2 + 100*2", np.array([[100, 100]], dtype=np.int8), np.array([[2], [2]], dtype=np.int8)),
             ("hand case, 4 * 127 * (-127)", np.full((2, 4), 127, dtype=np.int8), np.full((4, 3), -127, dtype=np.int8)),
             ("all codes 127", np.full((3, k), 127, dtype=np.int8), np.full((k, 2), 127, dtype=np.int8)),
             ("random codes, long K", fixed.integers(-127, 128, size=(9, 300)).astype(np.int8),
              fixed.integers(-127, 128, size=(300, 7)).astype(np.int8))]
    m, k, n = int(rng.integers(2, 12)), int(rng.integers(100, 600)), int(rng.integers(2, 12))
    cases.append(("random codes, random shape", rng.integers(-127, 128, size=(m, k)).astype(np.int8),
                  rng.integers(-127, 128, size=(k, n)).astype(np.int8)))
    # partial sums far beyond 2**24 that cancel: small exact results a float32 accumulator misses
    for case, source, (m, n) in [("cancelling partial sums beyond 2**24", fixed, (16, 16)),
                                 ("cancelling partial sums beyond 2**24, random shape", rng,
                                  (int(rng.integers(12, 24)), int(rng.integers(12, 24))))]:
        a_q = source.integers(118, 128, size=(m, 4096))
        a_q[:, 2048:] *= -1
        cases.append((case, a_q.astype(np.int8), source.integers(118, 128, size=(4096, n)).astype(np.int8)))
    for case, a_q, b_q in cases:
        observed[case] = same(_whole(matmul(a_q, b_q, 1.0, 1.0)))
    a_q = rng.integers(-127, 128, size=(3, 4)).astype(np.int8)
    b_q = rng.integers(-127, 128, size=(4, 2)).astype(np.int8)
    for a_bad, b_bad in [(a_q.astype(np.float32), b_q), (a_q, b_q.astype(np.int32)),
                         (a_q.astype(np.float64), b_q.astype(np.float64)), (a_q, b_q.astype(np.int16))]:
        observed[f"{a_bad.dtype} @ {b_bad.dtype} raises TypeError"] = same(
            raises_naming(matmul, (a_bad, b_bad, 1.0, 1.0), TypeError, [])[0])
    return observed


def t03_quantized_matmul_scales(ns, rng):
    matmul = ns["quantized_matmul"]
    observed = {}
    a_q = np.array([[1, 2], [3, 4]], dtype=np.int8)
    b_q = np.array([[5, 6], [7, 8]], dtype=np.int8)
    fixed = np.random.default_rng(35)
    a6 = fixed.integers(-127, 128, size=(6, 40)).astype(np.int8)
    b5 = fixed.integers(-127, 128, size=(40, 5)).astype(np.int8)
    sa6 = fixed.uniform(1e-3, 1.0, size=(6, 1)).astype(np.float32)
    sb5 = fixed.uniform(1e-3, 1.0, size=(1, 5)).astype(np.float32)
    m, k, n = int(rng.integers(2, 9)), int(rng.integers(20, 200)), int(rng.integers(2, 9))
    a_r = rng.integers(-127, 128, size=(m, k)).astype(np.int8)
    b_r = rng.integers(-127, 128, size=(k, n)).astype(np.int8)
    cases = [("hand case, float scales", a_q, b_q, 0.5, 0.25),
             ("hand case, row and column scales", a_q, b_q, np.array([[1.0], [2.0]], dtype=np.float32),
              np.array([[1.0, 10.0]], dtype=np.float32)),
             ("row and column scales", a6, b5, sa6, sb5),
             ("numpy float32 scalar and float scales", a6, b5, np.float32(0.3), 2.0),
             ("random codes, row and column scales", a_r, b_r, rng.uniform(1e-3, 1.0, size=(m, 1)).astype(np.float32),
              rng.uniform(1e-3, 1.0, size=(1, n)).astype(np.float32)),
             ("random codes, float and column scales", a_r, b_r, float(rng.uniform(1e-3, 1.0)),
              rng.uniform(1e-3, 1.0, size=(1, n)).astype(np.float32)),
             ("random codes, row and float scales", a_r, b_r, rng.uniform(1e-3, 1.0, size=(m, 1)).astype(np.float32),
              float(rng.uniform(1e-3, 1.0))),
             ("random codes, numpy float64 and float32 scalars", a_r, b_r, np.float64(rng.uniform(1e-3, 1.0)),
              np.float32(rng.uniform(1e-3, 1.0)))]
    for case, a, b, scale_a, scale_b in cases:
        out = matmul(a, b, scale_a, scale_b)
        observed[f"{case}: dtype and shape"] = same([_dtype(out), _shape(out)])
        array = _array(out)
        if array is not None and array.shape == (a.shape[0], b.shape[1]):
            observed[f"{case}: values"] = close(array.astype(np.float64), rtol=1e-6)
    # a scale per index of the summed dimension K cannot be applied after the sum
    for case, size in [("square codes", 3), ("square codes, random size", int(rng.integers(2, 7)))]:
        a_sq = rng.integers(-127, 128, size=(size, size)).astype(np.int8)
        for which, scale_a, scale_b in [("A", rng.uniform(0.5, 2.0, size=(1, size)).astype(np.float32), 1.0),
                                        ("B", 1.0, rng.uniform(0.5, 2.0, size=(size, 1)).astype(np.float32))]:
            observed[f"{case}: a scale of {which} along K raises ValueError"] = same(
                raises_naming(matmul, (a_sq, a_sq, scale_a, scale_b), ValueError, [])[0])
    return observed


# -- Task 4: quantized_relu -----------------------------------------------------------------
def _relu_case(relu, case, q, scale):
    q_before = q.copy()
    out, new_scale = relu(q, scale)
    kept = _array(new_scale) if isinstance(scale, np.ndarray) else _scalar(new_scale)
    return {f"{case}: codes": same(_whole(out)), f"{case}: scale": same(kept),
            f"{case}: q unchanged": same(bool(np.array_equal(q, q_before)))}


def t03_quantized_relu_integer_domain(ns, rng):
    relu = ns["quantized_relu"]
    observed = {}
    observed.update(_relu_case(relu, "hand case, float scale", np.array([-127, -3, 0, 5, 127], dtype=np.int8), 0.5))
    observed.update(_relu_case(relu, "hand case, column scales", np.array([[-1, 2, -3], [4, -5, 6]], dtype=np.int8),
                               np.array([[0.1, 0.2, 0.4]], dtype=np.float32)))
    observed.update(_relu_case(relu, "largest magnitude negative", np.array([[-127, 10], [3, -50]], dtype=np.int8), 0.1))
    m, n = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    q = rng.integers(-127, 128, size=(m, n)).astype(np.int8)
    q[0, 0] = -127
    observed.update(_relu_case(relu, "random codes, column scales", q,
                               rng.uniform(0.01, 1.0, size=(1, n)).astype(np.float32)))
    observed.update(_relu_case(relu, "random 3-D codes", rng.integers(-127, 128, size=(3, m, n)).astype(np.int8),
                               float(rng.uniform(0.01, 1.0))))
    # temporary memory: the int8 result plus at most a boolean mask, no float copy (4x the bytes)
    q = rng.integers(-127, 128, size=(int(rng.integers(800, 1200)), int(rng.integers(1500, 2500)))).astype(np.int8)
    q_before = q.copy()
    scale = float(rng.uniform(0.01, 0.05))
    limit = 2.5 * q.nbytes
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        out, new_scale = relu(q, scale)
        still_tracing = tracemalloc.is_tracing()
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    del out, new_scale
    observed["large codes: peak temporary memory (tracemalloc)"] = at_most(
        float(peak_bytes) if still_tracing else None, limit)
    (out, new_scale), window = peak_memory(relu, q, scale)
    observed["large codes: peak memory (measured outside)"] = memory_evidence(window, limit)
    observed["large codes: codes"] = same(_digest(out))
    observed["large codes: scale"] = same(_scalar(new_scale))
    observed["large codes: q unchanged"] = same(bool(np.array_equal(q, q_before)))
    return observed


# -- Task 5: QuantizedLinear ----------------------------------------------------------------
def _weight_arrays(layer, k, n):
    """The layer's q_weight (int8 (K, N)) and weight_scale ((1, N)) as plain arrays, or Nones."""
    q_weight, weight_scale = _array(getattr(layer, "q_weight", None)), _array(getattr(layer, "weight_scale", None))
    if q_weight is None or q_weight.dtype != np.int8 or q_weight.shape != (k, n):
        q_weight = None
    if weight_scale is None or weight_scale.shape != (1, n):
        weight_scale = None
    return q_weight, weight_scale


def _is_engine_output(ns, y, x, q_weight, weight_scale, bias, x_scale, atol=None):
    """Whether y is what the given cell's int8 engine computes from the layer's own codes and
    scales, within the test's tolerance."""
    try:
        with np.errstate(all="ignore"):
            expected = ns["integer_reference"](x, q_weight, weight_scale, bias, x_scale)
    except ValueError:  # the layer's arrays do not fit together
        return False
    limit = 1e-5 * np.abs(expected).max() if atol is None else atol
    return bool(y.shape == expected.shape and np.allclose(y, expected, rtol=1e-5, atol=limit))


def _power_of_two_range(x, exponent):
    """``x`` as float32 rescaled so that max|x| is 127 * 2**exponent, and its input scale
    2**exponent: max|x| / 127 is then exact in float32 and float64, and so are the codes."""
    x_scale = 2.0 ** exponent
    flat = x.reshape(-1)
    peak = int(np.argmax(np.abs(flat)))
    x = x * (127 * x_scale / abs(flat[peak]))
    x.reshape(-1)[peak] = np.copysign(127 * x_scale, flat[peak])
    return x.astype(np.float32), x_scale


def _forward_case(ns, case, weight, bias, x, x_scale):
    observed = {}
    layer_class = ns["QuantizedLinear"]
    k, n = weight.shape
    with np.errstate(all="raise"):
        observed[f"{case}: construction raises no floating-point error"] = same(raised(layer_class, weight, bias))
    with np.errstate(all="ignore"):
        layer = layer_class(weight, bias)
    q_weight, weight_scale = getattr(layer, "q_weight", None), getattr(layer, "weight_scale", None)
    observed[f"{case}: q_weight dtype and shape"] = same([_dtype(q_weight), _shape(q_weight)])
    observed[f"{case}: weight_scale shape"] = same(_shape(weight_scale))
    q_weight, weight_scale = _weight_arrays(layer, k, n)
    if q_weight is None or weight_scale is None:
        return observed
    live = np.abs(weight).max(axis=0, keepdims=True) > 0
    observed[f"{case}: weight_scale of the nonzero columns"] = close(weight_scale[live].astype(np.float64), rtol=1e-6)
    observed[f"{case}: weight codes"] = close(q_weight.astype(np.float64), rtol=0.0, atol=1.0)
    with np.errstate(all="raise"):
        observed[f"{case}: forward raises no floating-point error"] = same(raised(layer, x))
    with np.errstate(all="ignore"):
        y = layer(x)
    observed[f"{case}: output dtype and shape"] = same([_dtype(y), _shape(y)])
    y = _array(y)
    if y is None or y.shape != (x.shape[0], n):
        return observed
    observed[f"{case}: output is the int8 engine's"] = same(_is_engine_output(ns, y, x, q_weight, weight_scale, bias,
                                                                              x_scale))
    with np.errstate(all="ignore"):
        bound = ns["error_bound"](x, x_scale, q_weight, weight_scale)
        exact = x @ weight if bias is None else x @ weight + bias
        within = bool(np.all(np.abs(y - exact) <= bound * 1.001 + 1e-6))
    observed[f"{case}: error within the rounding bound"] = same(within)
    if bias is None:
        observed[f"{case}: the all-zero column gives zeros"] = same(bool(not y[:, ~live[0]].any()))
    return observed


def _integer_layer(rng, k, n):
    """Integer weights in [-127, 127] with every column reaching +-127 (scale exactly 1, codes
    equal to the weights, no rounding tie), one column all 127 so that sums pass 16 bits, and a
    bias in quarters (exact in float32)."""
    weight = rng.integers(-127, 128, size=(k, n)).astype(np.float32)
    weight[rng.integers(0, k, size=n), np.arange(n)] = 127.0 * rng.choice([-1.0, 1.0], size=n)
    weight[:, int(rng.integers(0, n))] = 127.0
    bias = rng.integers(-400, 400, size=n).astype(np.float32) / 4
    return weight, bias


def _away_from_ties(rng, shape, high):
    """Values in (-high, high) whose distance to the nearest integer is between 0.1 and 0.4."""
    whole = rng.integers(-high + 1, high, size=shape)
    part = rng.uniform(0.1, 0.4, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return (whole + part).astype(np.float32)


def t03_quantized_linear_forward(ns, rng):
    observed = {}
    fixed = np.random.default_rng(37)
    weight = fixed.standard_normal((6, 4)).astype(np.float32)
    bias = fixed.standard_normal(4).astype(np.float32)
    x, x_scale = _power_of_two_range(fixed.standard_normal((5, 6)), int(rng.integers(-3, 4)))
    observed.update(_forward_case(ns, "small layer with bias", weight, bias, x, x_scale))
    weight = fixed.standard_normal((48, 24)).astype(np.float32) * 0.05
    weight[:, 3] *= 100.0
    weight[:, 7] = 0.0
    x, x_scale = _power_of_two_range(fixed.standard_normal((10, 48)) * 4, int(rng.integers(-3, 4)))
    observed.update(_forward_case(ns, "no bias, a large and an all-zero column", weight, None, x, x_scale))
    for number in range(2):
        k, n, batch = int(rng.integers(4, 64)), int(rng.integers(3, 32)), int(rng.integers(1, 12))
        weight = (rng.standard_normal((k, n)) * rng.uniform(0.01, 1.0, size=(1, n))).astype(np.float32)
        weight[:, int(rng.integers(0, n))] *= 100.0
        weight[:, int(rng.integers(0, n))] = 0.0
        bias = None if number else rng.standard_normal(n).astype(np.float32)
        x, x_scale = _power_of_two_range(rng.standard_normal((batch, k)), int(rng.integers(-4, 5)))
        observed.update(_forward_case(ns, f"random layer {number + 1}" + (", no bias" if bias is None else ""),
                                      weight, bias, x, x_scale))
    # exact integer results, compared whole: int8 codes, int32 sums, one rescale by exactly 1
    k, n, batch = int(rng.integers(4, 40)), int(rng.integers(2, 16)), int(rng.integers(1, 8))
    weight, bias = _integer_layer(rng, k, n)
    x = _away_from_ties(rng, (batch, k), 127)
    x[0, :] = 127.0  # max|x| = 127: input scale exactly 1; with the all-127 column, sums pass 16 bits
    layer = ns["QuantizedLinear"](weight, bias)
    observed["integer weights: q_weight"] = same(_whole(getattr(layer, "q_weight", None)))
    observed["integer weights: output"] = close(_whole(layer(x)), rtol=1e-6)
    return observed


def _memory_observations(case, layer, with_bias):
    """memory_usage() by the tests' rules: original_bytes as the reference's; with bias,
    quantized_bytes are the nbytes of the layer's stored arrays and the ratio is original over
    quantized; without bias, one byte per weight plus the scales."""
    observed = {}
    usage = layer.memory_usage()
    if type(usage) is not dict:
        observed[f"{case}: memory_usage returns a dict"] = same(False)
        return observed
    original, quantized, ratio = (_number(usage.get(key)) for key in
                                  ("original_bytes", "quantized_bytes", "compression_ratio"))
    observed[f"{case}: original_bytes"] = close(original, rtol=0.0)
    parts = [getattr(layer, attr, None) for attr in ("q_weight", "weight_scale", "bias")]
    sizes = [int(np.asarray(p).nbytes) if _array(p) is not None or _number(p) is not None else None for p in parts]
    if with_bias:
        stored = None if None in sizes else sum(sizes)
        observed[f"{case}: quantized_bytes are those of q_weight, weight_scale and bias"] = same(
            stored is not None and quantized == stored)
        observed[f"{case}: compression_ratio is original over quantized"] = same(
            stored is not None and ratio is not None and original is not None
            and bool(np.isclose(ratio, original / stored, rtol=1e-9, atol=0.0)))
    else:
        codes = _array(parts[0])
        observed[f"{case}: quantized_bytes are one byte per weight plus the scales"] = same(
            codes is not None and sizes[1] is not None and quantized == codes.size + sizes[1])
    return observed


def t03_quantized_linear_storage(ns, rng):
    layer_class = ns["QuantizedLinear"]
    observed = {}
    fixed = np.random.default_rng(38)
    for case, source, (k, n) in [("layer with bias", fixed, (256, 64)),
                                 ("random layer with bias", rng, (int(rng.integers(64, 300)), int(rng.integers(8, 80))))]:
        weight = source.standard_normal((k, n)).astype(np.float32)
        layer = layer_class(weight, source.standard_normal(n).astype(np.float32))
        observed.update(_memory_observations(case, layer, True))
        array_bytes = sum(v.nbytes for v in vars(layer).values() if isinstance(v, np.ndarray))
        observed[f"{case}: no float copy of the weights"] = same(bool(array_bytes <= k * n + 16 * n))
    # forward uses the stored int8 codes: changing the float matrix afterwards changes nothing
    shape = (int(rng.integers(4, 40)), int(rng.integers(2, 20)), int(rng.integers(1, 8)))
    for case, source, (k, n, batch) in [("layer without bias", fixed, (20, 12, 3)),
                                        ("random layer without bias", rng, shape)]:
        weight = source.standard_normal((k, n)).astype(np.float32)
        layer = layer_class(weight, None)
        x = source.standard_normal((batch, k)).astype(np.float32)
        y_before = _array(layer(x))
        y_before = None if y_before is None else y_before.copy()
        weight *= -3.0
        y_after = _array(layer(x))
        observed[f"{case}: forward unchanged after the float weights change"] = same(
            y_before is not None and y_after is not None and bool(np.array_equal(y_after, y_before)))
        observed.update(_memory_observations(case, layer, False))
    # the int8 codes themselves, compared whole, where no code sits on a rounding tie
    weight, bias = _integer_layer(rng, int(rng.integers(4, 40)), int(rng.integers(2, 16)))
    layer = layer_class(weight, bias)
    observed["integer weights: q_weight"] = same(_whole(getattr(layer, "q_weight", None)))
    observed["integer weights: weight_scale"] = close(_float64(getattr(layer, "weight_scale", None)), rtol=0.0)
    return observed


def t03_quantized_linear_calibration(ns, rng):
    layer_class = ns["QuantizedLinear"]
    observed = {}
    weight = np.array([[1.0, -2.0], [0.5, 4.0], [-1.0, 1.0]], dtype=np.float32)
    bias = np.array([0.25, -0.5], dtype=np.float32)
    layer = layer_class(weight, bias)
    calibration = np.array([[1.0, -0.5, 0.25], [-2.0, 0.5, 1.5]], dtype=np.float32)
    observed["hand case: calibrate returns the layer"] = same(layer.calibrate(calibration) is layer)
    observed["hand case: input_scale"] = close(_scalar(getattr(layer, "input_scale", None)), rtol=5e-6)
    q_weight, weight_scale = _weight_arrays(layer, 3, 2)
    y = _array(layer(np.array([[6.0, -1.1, 0.0]], dtype=np.float32)))
    observed["hand case: an input beyond the range saturates"] = same(
        y is not None and q_weight is not None and weight_scale is not None and y.shape == (1, 2)
        and _is_engine_output(ns, y, np.array([[2.0, -1.1, 0.0]], dtype=np.float32), q_weight, weight_scale, bias,
                              2 / 127, atol=1e-6))
    fixed = np.random.default_rng(39)
    k, n = int(rng.integers(4, 40)), int(rng.integers(2, 16))
    cases = [("zero bias", fixed, (16, 8, 50, 6), 0.5, 3.0),
             ("random layer", rng, (k, n, int(rng.integers(10, 80)), int(rng.integers(2, 12))),
              float(rng.uniform(0.1, 2.0)), float(rng.uniform(2.0, 6.0)))]
    for case, source, (k, n, count, batch), half_range, spread in cases:
        weight = source.standard_normal((k, n)).astype(np.float32)
        bias = np.zeros(n, dtype=np.float32) if source is fixed else source.standard_normal(n).astype(np.float32)
        layer = layer_class(weight, bias).calibrate(source.uniform(-half_range, half_range, size=(count, k)))
        value = _scalar(getattr(layer, "input_scale", None))
        observed[f"{case}: input_scale"] = close(value, rtol=1e-6)
        x = source.standard_normal((batch, k)).astype(np.float32) * spread  # mostly beyond the range, both signs
        y = _array(layer(x))
        q_weight, weight_scale = _weight_arrays(layer, k, n)
        observed[f"{case}: static scale, inputs beyond the range saturate"] = same(
            y is not None and value is not None and q_weight is not None and weight_scale is not None
            and _is_engine_output(ns, y, x, q_weight, weight_scale, bias, value))
    # exact integer results, compared whole: calibrated scale exactly 1, inputs far beyond +-127
    k, n, batch = int(rng.integers(4, 40)), int(rng.integers(2, 16)), int(rng.integers(2, 8))
    weight, bias = _integer_layer(rng, k, n)
    calibration = _away_from_ties(rng, (int(rng.integers(5, 30)), k), 127)
    calibration[0, 0] = -127.0  # max|x| = 127: input_scale exactly 1
    layer = layer_class(weight, bias).calibrate(calibration)
    x = _away_from_ties(rng, (batch, k), 127)
    beyond = rng.random((batch, k)) < 0.4
    x[beyond] = (rng.uniform(130, 2000, size=int(beyond.sum())) * rng.choice([-1.0, 1.0], size=int(beyond.sum()))
                 ).astype(np.float32)
    x[0, :] = 1000.0  # with the all-127 column, saturated sums pass 16 bits
    observed["integer weights: input_scale"] = close(_scalar(getattr(layer, "input_scale", None)), rtol=0.0)
    observed["integer weights: inputs beyond the range saturate"] = close(_whole(layer(x)), rtol=1e-6)
    return observed
