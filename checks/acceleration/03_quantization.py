"""Outside checks for 03_quantization: one probe per test cell, named by its grade_id.

Each probe runs in the student's process (``autograder/verify_driver.py``), after the given and
student cells and never after a test cell. It calls the student's functions (``ns``) on inputs
drawn from ``rng``, which the grader seeds, plus the fixed cases of the visible and hidden
tests, and returns observations (``probekit``). The grader compares them with the reference
solution's observations outside that process.

Where correct solutions may legitimately differ in the last bits (a scale computed in float32
or float64 moves a code that sits on a rounding tie), the probe checks the test's own rule on
the student's values (error bounds from the student's own scales, outputs against an integer
engine fed with the student's own codes) and reports the verdict as a bool. The test cells'
helpers ``integer_reference`` and ``error_bound`` are reimplemented here.
"""
import tracemalloc

import numpy as np
from observe import close, raised, raises_naming, same


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


def _codes(q, shape):
    """Whether ``q`` is an int8 array of ``shape``; its codes as int64 (for comparisons) or None."""
    array = _array(q)
    if array is None or array.dtype != np.int8 or array.shape != tuple(shape):
        return False, None
    return True, array.astype(np.int64)


def _quantize_observations(name, x, q, scale, channel_axis=None):
    """The hidden tests' rules for codes q and scale of x, per tensor or per channel."""
    observed = {}
    ok, codes = _codes(q, x.shape)
    observed[f"{name} q int8 of x's shape"] = same(ok)
    if channel_axis is None:
        others, keep = tuple(range(x.ndim)), ()
        value = _scalar(scale)
        scale_array = None if value is None else np.asarray(value, dtype=np.float64)
    else:
        others = tuple(i for i in range(x.ndim) if i != channel_axis % x.ndim)
        keep = tuple(1 if i in others else n for i, n in enumerate(x.shape))
        scale_array = _array(scale)
        scale_array = None if scale_array is None else scale_array.astype(np.float64)
    observed[f"{name} scale shape"] = same(None if scale_array is None else list(scale_array.shape))
    if not ok or scale_array is None or scale_array.shape != keep:
        return observed
    max_abs = np.abs(x.astype(np.float64)).max(axis=others, keepdims=True)
    nonzero = max_abs > 0
    observed[f"{name} scales"] = close(np.where(nonzero, scale_array, 0.0), rtol=1e-6, atol=0.0)
    observed[f"{name} scales finite and positive"] = same(bool(np.all(np.isfinite(scale_array))
                                                               and np.all(scale_array > 0)))
    peak = np.abs(codes).max(axis=others, keepdims=True)
    observed[f"{name} nonzero channels reach 127"] = same(bool(np.all(peak[nonzero] == 127)))
    observed[f"{name} zero channels give code 0"] = same(bool(np.all(peak[~nonzero] == 0)))
    with np.errstate(all="ignore"):
        error = np.abs(codes * scale_array - x.astype(np.float64))
        within = bool(np.all(error <= scale_array * (0.5 + 1e-4)))
    observed[f"{name} error at most half a step"] = same(within)
    # any two codes within half a step (+1e-4) of x differ by at most 1 (a rounding tie)
    observed[f"{name} codes"] = close(codes.astype(np.float64), rtol=0.0, atol=1.0)
    return observed


# -- Task 1: quantize_int8 ------------------------------------------------------------------
def t03_quantize_int8_per_tensor(ns, rng):
    quantize = ns["quantize_int8"]
    observed = {}
    for name, x, expected_scale in [
            ("[2.54, -1, 0.5, 0]", np.array([2.54, -1.0, 0.5, 0.0]), 0.02),
            ("[[127, -63.4], [10.2, 0]]", np.array([[127.0, -63.4], [10.2, 0.0]], dtype=np.float32), 1.0),
            ("[-4, -3, -1]", np.array([-4.0, -3.0, -1.0]), 4 / 127)]:
        q, scale = quantize(x)
        value = _scalar(scale)
        observed[f"{name} codes"] = same(_array(q) if isinstance(q, np.ndarray) else _dtype(q))
        observed[f"{name} one scale"] = same(value is not None)
        tolerance = 0.0 if expected_scale == 1.0 else 1e-7
        observed[f"{name} scale"] = same(value is not None and abs(value - expected_scale) <= tolerance)
    # the largest magnitude negative, with random values
    x = -rng.uniform(0.5, 5.0, size=int(rng.integers(3, 9)))
    x[int(rng.integers(0, x.size))] = -6.0
    x[0] = 1.5
    observed.update(_quantize_observations("negative max", x, *quantize(x)))
    # all-zero tensors: no division by zero, codes 0, a finite positive scale
    for shape in [(3, 4), tuple(int(n) for n in rng.integers(1, 6, size=int(rng.integers(1, 4))))]:
        with np.errstate(all="raise"):
            error = raised(quantize, np.zeros(shape))
        observed[f"zeros {shape} no floating-point error"] = same(error)
        with np.errstate(all="ignore"):
            q, scale = quantize(np.zeros(shape))
        ok, codes = _codes(q, shape)
        value = _scalar(scale)
        observed[f"zeros {shape} codes"] = same(ok and not codes.any())
        observed[f"zeros {shape} scale"] = same(value is not None and bool(np.isfinite(value)) and value > 0)
    # random data: float64 as in the hidden test, float32, and a 3-D tensor
    for name, x in [("(37, 53) float64", np.random.default_rng(31).standard_normal((37, 53)) * 3.0),
                    ("random float64", rng.standard_normal((int(rng.integers(20, 60)), int(rng.integers(20, 60))))
                     * rng.uniform(0.01, 100.0)),
                    ("random float32", (rng.standard_normal((int(rng.integers(5, 40)), int(rng.integers(5, 40))))
                                        * rng.uniform(0.01, 100.0)).astype(np.float32)),
                    ("random 3-D", rng.standard_normal(tuple(int(n) for n in rng.integers(2, 8, size=3))) * 7.0)]:
        observed.update(_quantize_observations(name, x, *quantize(x)))
    return observed


def t03_quantize_int8_per_channel(ns, rng):
    quantize = ns["quantize_int8"]
    observed = {}
    w = np.array([[127.0, -254.0, 0.0], [-20.2, 100.6, 0.0], [3.0, 0.0, 0.0]], dtype=np.float32)
    with np.errstate(all="raise"):
        observed["hand case no floating-point error"] = same(raised(quantize, w, axis=1))
    with np.errstate(all="ignore"):
        q, scale = quantize(w, axis=1)
        q_t, scale_t = quantize(w.T, axis=0)
    scale_array = _array(scale)
    observed["hand case axis=1 codes"] = same(_array(q) if isinstance(q, np.ndarray) else _dtype(q))
    observed["hand case axis=1 scale dtype and shape"] = same([_dtype(scale), _shape(scale)])
    if scale_array is not None and scale_array.shape == (1, 3):
        observed["hand case column scales"] = close(scale_array[0, :2].astype(np.float64), rtol=1e-6)
        observed["hand case zero column scale"] = same(bool(np.isfinite(scale_array[0, 2]) and scale_array[0, 2] > 0))
    observed["hand case axis=0 scale shape"] = same(_shape(scale_t))
    observed["hand case axis=0 codes"] = same(_array(q_t) if isinstance(q_t, np.ndarray) else _dtype(q_t))
    # the hidden test's tensor, then random ones: a zero channel and a negative-only channel
    cases = [(np.random.default_rng(32), (4, 5, 6), 1, 2, 3)]
    for _ in range(2):
        shape = tuple(int(n) for n in rng.integers(3, 9, size=3))
        channel = int(rng.integers(0, 3))
        zero, negative = (int(i) for i in rng.choice(shape[channel], size=2, replace=False))
        cases.append((rng, shape, channel, zero, negative))
    for number, (source, shape, channel, zero, negative) in enumerate(cases):
        spread = [1, 1, 1]
        spread[channel] = shape[channel]
        x = source.standard_normal(shape) * source.uniform(0.01, 100.0, size=spread)
        x = np.moveaxis(x, channel, 0)
        x[zero] = 0.0
        x[negative] = -np.abs(x[negative])
        x = np.moveaxis(x, 0, channel)
        axes = [1, -1, 0] if number == 0 else [channel, channel - 3, *(a for a in range(3) if a != channel)]
        for axis in axes:
            name = f"case {number} {shape} axis={axis}"
            with np.errstate(all="raise"):
                observed[f"{name} no floating-point error"] = same(raised(quantize, x, axis=axis))
            with np.errstate(all="ignore"):
                q, scale = quantize(x, axis=axis)
            observed.update(_quantize_observations(name, x, q, scale, channel_axis=axis))
        with np.errstate(all="ignore"):
            q = quantize(x, axis=channel)[0]
        ok, codes = _codes(q, x.shape)
        observed[f"case {number} zero channel codes"] = same(ok and not np.take(codes, zero, axis=channel).any())
    return observed


# -- Task 2: dequantize ---------------------------------------------------------------------
def _dequantized(x, expected_shape):
    """dtype and shape of a dequantized result, and its values as float64 if it is float32."""
    array = _array(x)
    ok = array is not None and array.dtype == np.float32 and array.shape == tuple(expected_shape)
    return same([_dtype(x), _shape(x)]), (close(array.astype(np.float64), rtol=1e-6) if ok else same(None))


def t03_dequantize_broadcast(ns, rng):
    dequantize = ns["dequantize"]
    observed = {}
    q = np.array([[127, -50], [0, 25]], dtype=np.int8)
    cases = [("hand case 0.02", q, 0.02), ("hand case row scales", q, np.array([[1.0], [10.0]], dtype=np.float32)),
             ("random float scale", rng.integers(-127, 128, size=(int(rng.integers(1, 6)), int(rng.integers(1, 6))))
              .astype(np.int8), float(rng.uniform(0.001, 2.0)))]
    shape = tuple(int(n) for n in rng.integers(2, 7, size=3))
    q3 = rng.integers(-127, 128, size=shape).astype(np.int8)
    for axis in range(3):
        scale_shape = tuple(n if i == axis else 1 for i, n in enumerate(shape))
        cases.append((f"{shape} scale {scale_shape}", q3, rng.uniform(0.001, 2.0, size=scale_shape).astype(np.float32)))
    m, n = int(rng.integers(2, 7)), int(rng.integers(2, 7))
    q2 = rng.integers(-127, 128, size=(m, n)).astype(np.int8)
    cases.append((f"({m}, {n}) row scales", q2, rng.uniform(0.001, 2.0, size=(m, 1)).astype(np.float32)))
    cases.append((f"({m}, {n}) column scales", q2, rng.uniform(0.001, 2.0, size=(1, n)).astype(np.float32)))
    for name, q, scale in cases:
        q_before = q.copy()
        observed[f"{name} dtype and shape"], observed[f"{name} values"] = _dequantized(dequantize(q, scale), q.shape)
        observed[f"{name} q unchanged"] = same(bool(np.array_equal(q, q_before)))
    x = dequantize(np.array([-127, 127], dtype=np.int8), 3.0)
    observed["+-127 with scale 3"] = same(_array(x) if isinstance(x, np.ndarray) else _dtype(x))
    return observed


# -- Task 3: quantized_matmul ---------------------------------------------------------------
def _exact_output(out):
    """An exact result: a float32 array is observed whole, anything else by its type."""
    return same(_array(out) if isinstance(out, np.ndarray) else _dtype(out))


def t03_quantized_matmul_int32_accumulation(ns, rng):
    matmul = ns["quantized_matmul"]
    observed = {}
    observed["100*2 + 100*2"] = _exact_output(matmul(np.array([[100, 100]], dtype=np.int8),
                                                     np.array([[2], [2]], dtype=np.int8), 1.0, 1.0))
    observed["4 * 127 * -127"] = _exact_output(matmul(np.full((2, 4), 127, dtype=np.int8),
                                                      np.full((4, 3), -127, dtype=np.int8), 1.0, 1.0))
    k = int(rng.integers(3, 9))
    observed[f"{k} * 127 * 127 in a (3, {k}) @ ({k}, 2)"] = _exact_output(matmul(
        np.full((3, k), 127, dtype=np.int8), np.full((k, 2), 127, dtype=np.int8), 1.0, 1.0))
    fixed = np.random.default_rng(34)
    for name, source, (m, k, n) in [("(9, 300) @ (300, 7)", fixed, (9, 300, 7)),
                                    ("random", rng, (int(rng.integers(2, 12)), int(rng.integers(100, 600)),
                                                     int(rng.integers(2, 12))))]:
        a_q = source.integers(-127, 128, size=(m, k)).astype(np.int8)
        b_q = source.integers(-127, 128, size=(k, n)).astype(np.int8)
        observed[f"{name} {m}x{k}x{n}"] = _exact_output(matmul(a_q, b_q, 1.0, 1.0))
    # partial sums far beyond 2**24 that cancel: small exact results a float32 accumulator misses
    for name, source, (m, n) in [("hidden", fixed, (16, 16)),
                                 ("random", rng, (int(rng.integers(12, 24)), int(rng.integers(12, 24))))]:
        a_q = source.integers(118, 128, size=(m, 4096))
        a_q[:, 2048:] *= -1
        a_q = a_q.astype(np.int8)
        b_q = source.integers(118, 128, size=(4096, n)).astype(np.int8)
        exact = a_q.astype(np.int64) @ b_q.astype(np.int64)
        out = _array(matmul(a_q, b_q, 1.0, 1.0))
        observed[f"cancelling K=4096 {name} {m}x{n} exact"] = same(
            out is not None and out.shape == exact.shape and int(np.count_nonzero(out != exact)) == 0)
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
    m, k, n = int(rng.integers(2, 9)), int(rng.integers(20, 200)), int(rng.integers(2, 9))
    fixed = np.random.default_rng(35)
    a6, b5 = fixed.integers(-127, 128, size=(6, 40)).astype(np.int8), fixed.integers(-127, 128, size=(40, 5)).astype(np.int8)
    sa6, sb5 = fixed.uniform(1e-3, 1.0, size=(6, 1)).astype(np.float32), fixed.uniform(1e-3, 1.0, size=(1, 5)).astype(np.float32)
    a_r = rng.integers(-127, 128, size=(m, k)).astype(np.int8)
    b_r = rng.integers(-127, 128, size=(k, n)).astype(np.int8)
    cases = [("hand case 0.5, 0.25", a_q, b_q, 0.5, 0.25),
             ("hand case (2, 1) and (1, 2)", a_q, b_q, np.array([[1.0], [2.0]], dtype=np.float32),
              np.array([[1.0, 10.0]], dtype=np.float32)),
             ("hidden (6, 1) and (1, 5)", a6, b5, sa6, sb5),
             ("hidden float32 scalar and float", a6, b5, np.float32(0.3), 2.0),
             ("random per-row and per-column", a_r, b_r, rng.uniform(1e-3, 1.0, size=(m, 1)).astype(np.float32),
              rng.uniform(1e-3, 1.0, size=(1, n)).astype(np.float32)),
             ("random float and per-column", a_r, b_r, float(rng.uniform(1e-3, 1.0)),
              rng.uniform(1e-3, 1.0, size=(1, n)).astype(np.float32)),
             ("random per-row and float", a_r, b_r, rng.uniform(1e-3, 1.0, size=(m, 1)).astype(np.float32),
              float(rng.uniform(1e-3, 1.0))),
             ("random float64 scalar and float32 scalar", a_r, b_r, np.float64(rng.uniform(1e-3, 1.0)),
              np.float32(rng.uniform(1e-3, 1.0)))]
    for name, a, b, scale_a, scale_b in cases:
        out = matmul(a, b, scale_a, scale_b)
        array = _array(out)
        observed[f"{name} shape"] = same(_shape(out))
        if name.startswith("hand case 0.5"):
            observed[f"{name} dtype"] = same(_dtype(out))
        if array is not None and array.shape == (a.shape[0], b.shape[1]):
            observed[f"{name} values"] = close(array.astype(np.float64), rtol=1e-6)
    # a scale per index of the summed dimension K cannot be applied after the sum
    for size in (3, int(rng.integers(2, 7))):
        a_sq = rng.integers(-127, 128, size=(size, size)).astype(np.int8)
        for scale_a, scale_b in [(rng.uniform(0.5, 2.0, size=(1, size)).astype(np.float32), 1.0),
                                 (1.0, rng.uniform(0.5, 2.0, size=(size, 1)).astype(np.float32))]:
            observed[f"({size}, {size}) scales {np.shape(scale_a)}, {np.shape(scale_b)} raise ValueError"] = same(
                raises_naming(matmul, (a_sq, a_sq, scale_a, scale_b), ValueError, [])[0])
    return observed


# -- Task 4: quantized_relu -----------------------------------------------------------------
def _relu_case(relu, name, q, scale):
    observed = {}
    q_before = q.copy()
    out, new_scale = relu(q, scale)
    expected = np.where(q_before > 0, q_before, 0).astype(np.int8)
    array = _array(out)
    observed[f"{name} codes"] = same(array if isinstance(out, np.ndarray) else _dtype(out))
    observed[f"{name} codes are max(q, 0) in int8"] = same(array is not None and array.dtype == np.int8
                                                           and array.shape == q.shape and bool(np.array_equal(array, expected)))
    if isinstance(scale, np.ndarray):
        returned = _array(new_scale)
        kept = returned is not None and returned.shape == scale.shape and bool(np.array_equal(returned, scale))
    else:
        value = _scalar(new_scale)
        kept = value is not None and value == scale
    observed[f"{name} scale kept"] = same(kept)
    observed[f"{name} q unchanged"] = same(bool(np.array_equal(q, q_before)))
    return observed


def t03_quantized_relu_integer_domain(ns, rng):
    relu = ns["quantized_relu"]
    observed = {}
    observed.update(_relu_case(relu, "[-127, -3, 0, 5, 127]", np.array([-127, -3, 0, 5, 127], dtype=np.int8), 0.5))
    observed.update(_relu_case(relu, "per-channel (2, 3)", np.array([[-1, 2, -3], [4, -5, 6]], dtype=np.int8),
                               np.array([[0.1, 0.2, 0.4]], dtype=np.float32)))
    observed.update(_relu_case(relu, "negative largest", np.array([[-127, 10], [3, -50]], dtype=np.int8), 0.1))
    m, n = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    q = rng.integers(-127, 128, size=(m, n)).astype(np.int8)
    q[0, 0] = -127
    observed.update(_relu_case(relu, "random per-column", q, rng.uniform(0.01, 1.0, size=(1, n)).astype(np.float32)))
    observed.update(_relu_case(relu, "random 3-D", rng.integers(-127, 128, size=(3, m, n)).astype(np.int8),
                               float(rng.uniform(0.01, 1.0))))
    # temporary memory: the int8 result plus at most a boolean mask, no float copy
    q = rng.integers(-127, 128, size=(int(rng.integers(800, 1200)), int(rng.integers(1500, 2500)))).astype(np.int8)
    q_before = q.copy()
    scale = float(rng.uniform(0.01, 0.05))
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
    observed["large peak memory at most 2.5x q.nbytes"] = same(bool(still_tracing and peak_bytes <= 2.5 * q.nbytes))
    array = _array(out)
    observed["large q unchanged"] = same(bool(np.array_equal(q, q_before)))
    observed["large codes"] = same(array is not None and array.dtype == np.int8 and array.shape == q.shape
                                   and bool(np.array_equal(array, np.where(q_before > 0, q_before, 0))))
    value = _scalar(new_scale)
    observed["large scale kept"] = same(value is not None and value == scale)
    return observed


# -- Task 5: QuantizedLinear ----------------------------------------------------------------
def _integer_reference(x, q_weight, weight_scale, bias, x_scale):
    """What an int8 engine computes: x rounded to codes, exact integer sums, rescaled, + bias."""
    x_q = np.clip(np.round(x / x_scale), -127, 127)
    y = (x_q.astype(np.int64) @ q_weight.astype(np.int64)) * (x_scale * np.asarray(weight_scale, dtype=np.float64))
    return y if bias is None else y + bias


def _error_bound(x, x_scale, q_weight, weight_scale):
    """Worst-case |quantized - float| per output from half-step rounding of x and W."""
    x_hat = np.clip(np.round(x / x_scale), -127, 127) * x_scale
    w_hat = q_weight * np.asarray(weight_scale, dtype=np.float64)
    k = x.shape[1]
    return (np.abs(x_hat) @ (np.ones_like(w_hat) * weight_scale / 2) + (x_scale / 2) * np.abs(w_hat).sum(axis=0)
            + k * x_scale * np.asarray(weight_scale) / 4)


def _layer_arrays(layer, k, n):
    """The layer's q_weight (int8 (K, N)) and weight_scale ((1, N)) as plain arrays, or Nones."""
    q_weight, weight_scale = _array(getattr(layer, "q_weight", None)), _array(getattr(layer, "weight_scale", None))
    if q_weight is None or q_weight.dtype != np.int8 or q_weight.shape != (k, n):
        q_weight = None
    if weight_scale is None or weight_scale.shape != (1, n):
        weight_scale = None
    return q_weight, weight_scale


def _matches_engine(y, x, q_weight, weight_scale, bias, scales, rtol=1e-5, atol=None):
    """Whether y is what an int8 engine computes with one of the candidate input scales."""
    for x_scale in scales:
        try:
            with np.errstate(all="ignore"):
                expected = _integer_reference(x, q_weight, weight_scale, bias, x_scale)
        except ValueError:  # the layer's arrays do not fit together
            return False
        limit = 1e-5 * np.abs(expected).max() if atol is None else atol
        if y.shape == expected.shape and np.allclose(y, expected, rtol=rtol, atol=limit):
            return True
    return False


def _engine_arrays(layer):
    """The layer's q_weight and weight_scale as plain numeric arrays (any shape), or Nones:
    the calibration test feeds them to its integer engine as they are."""
    q_weight, weight_scale = (getattr(layer, attr, None) for attr in ("q_weight", "weight_scale"))
    q_weight = _array(q_weight)
    weight_scale = None if _nbytes(weight_scale) is None else np.asarray(weight_scale)
    return (q_weight, weight_scale) if q_weight is not None and q_weight.ndim == 2 else (None, None)


def _dynamic_scales(x):
    """max|x| / 127 computed in float64 (as the tests do) and in float32 (as the reference does)."""
    max_abs = np.abs(x).max()
    return [float(max_abs) / 127, float(np.float32(max_abs) / np.float32(127))]


def _forward_case(layer_class, name, weight, bias, x):
    observed = {}
    k, n = weight.shape
    with np.errstate(all="raise"):
        observed[f"{name} construction no floating-point error"] = same(raised(layer_class, weight, bias))
    with np.errstate(all="ignore"):
        layer = layer_class(weight, bias)
    observed[f"{name} q_weight dtype and shape"] = same(
        [_dtype(getattr(layer, "q_weight", None)), _shape(getattr(layer, "q_weight", None))])
    observed[f"{name} weight_scale shape"] = same(_shape(getattr(layer, "weight_scale", None)))
    q_weight, weight_scale = _layer_arrays(layer, k, n)
    if q_weight is None or weight_scale is None:
        return observed
    max_abs = np.abs(weight.astype(np.float64)).max(axis=0, keepdims=True)
    live = max_abs > 0
    observed[f"{name} weight_scale"] = close(np.where(live, weight_scale.astype(np.float64), 0.0), rtol=1e-6)
    observed[f"{name} weight codes"] = close(q_weight.astype(np.float64), rtol=0.0, atol=1.0)
    with np.errstate(all="raise"):
        observed[f"{name} forward no floating-point error"] = same(raised(layer, x))
    with np.errstate(all="ignore"):
        y = layer(x)
    observed[f"{name} output dtype and shape"] = same([_dtype(y), _shape(y)])
    y = _array(y)
    if y is None or y.shape != (x.shape[0], n):
        return observed
    observed[f"{name} output is the int8 engine's"] = same(_matches_engine(y, x, q_weight, weight_scale, bias,
                                                                           _dynamic_scales(x)))
    x_scale = _dynamic_scales(x)[0]
    bound = _error_bound(x, x_scale, q_weight, weight_scale)
    exact = x @ weight if bias is None else x @ weight + bias
    observed[f"{name} error within the rounding bound"] = same(bool(np.all(np.abs(y - exact) <= bound * 1.001 + 1e-6)))
    if bias is None:
        observed[f"{name} dead columns give zeros"] = same(bool(not y[:, ~live[0]].any()))
    return observed


def t03_quantized_linear_forward(ns, rng):
    layer_class = ns["QuantizedLinear"]
    observed = {}
    fixed = np.random.default_rng(37)
    weight = fixed.standard_normal((6, 4)).astype(np.float32)
    bias = fixed.standard_normal(4).astype(np.float32)
    observed.update(_forward_case(layer_class, "visible", weight, bias, fixed.standard_normal((5, 6)).astype(np.float32)))
    weight = fixed.standard_normal((48, 24)).astype(np.float32) * 0.05
    weight[:, 3] *= 100.0
    weight[:, 7] = 0.0
    observed.update(_forward_case(layer_class, "hidden no bias", weight, None,
                                  fixed.standard_normal((10, 48)).astype(np.float32) * 4))
    for number in range(2):
        k, n, batch = int(rng.integers(4, 64)), int(rng.integers(3, 32)), int(rng.integers(1, 12))
        weight = (rng.standard_normal((k, n)) * rng.uniform(0.01, 1.0, size=(1, n))).astype(np.float32)
        weight[:, int(rng.integers(0, n))] *= 100.0
        weight[:, int(rng.integers(0, n))] = 0.0
        bias = None if number else rng.standard_normal(n).astype(np.float32)
        x = (rng.standard_normal((batch, k)) * rng.uniform(0.1, 10.0)).astype(np.float32)
        observed.update(_forward_case(layer_class, f"random {k}x{n} batch {batch}", weight, bias, x))
    return observed


def _nbytes(value):
    """nbytes of a numeric array (or number) the layer holds, as the tests take it, or None."""
    if value is None:
        return None
    array = np.asarray(value)
    return int(array.nbytes) if array.dtype.kind in "biuf" and not array.dtype.hasobject else None


def _memory_observations(name, layer, k, n, with_bias):
    """memory_usage() by the tests' rules: with bias, quantized_bytes are the nbytes of the
    stored arrays and the ratio is original over quantized; without bias, K*N one-byte codes
    plus the scales."""
    observed = {}
    usage = layer.memory_usage()
    if type(usage) is not dict:
        observed[f"{name} memory_usage is a dict"] = same(False)
        return observed
    original, quantized, ratio = (_number(usage.get(key)) for key in
                                  ("original_bytes", "quantized_bytes", "compression_ratio"))
    observed[f"{name} original_bytes"] = same(original is not None and original == 4 * (k * n + (n if with_bias else 0)))
    scale_bytes = _nbytes(getattr(layer, "weight_scale", None))
    if with_bias:
        parts = [_nbytes(getattr(layer, attr, None)) for attr in ("q_weight", "weight_scale", "bias")]
        stored = None if None in parts else sum(parts)
        observed[f"{name} quantized_bytes are those of q_weight, weight_scale and bias"] = same(
            stored is not None and quantized is not None and quantized == stored)
        observed[f"{name} compression_ratio"] = same(
            stored is not None and ratio is not None and original is not None
            and bool(np.isclose(ratio, original / stored, rtol=1e-9, atol=0.0)))
    else:
        observed[f"{name} quantized_bytes are K*N codes plus the scales"] = same(
            scale_bytes is not None and quantized is not None and quantized == k * n + scale_bytes)
    return observed


def t03_quantized_linear_storage(ns, rng):
    layer_class = ns["QuantizedLinear"]
    observed = {}
    fixed = np.random.default_rng(38)
    for name, source, (k, n) in [("(256, 64)", fixed, (256, 64)),
                                 ("random", rng, (int(rng.integers(64, 300)), int(rng.integers(8, 80))))]:
        weight = source.standard_normal((k, n)).astype(np.float32)
        bias = source.standard_normal(n).astype(np.float32)
        layer = layer_class(weight, bias)
        observed.update(_memory_observations(f"{name} {k}x{n}", layer, k, n, True))
        array_bytes = sum(v.nbytes for v in vars(layer).values() if isinstance(v, np.ndarray))
        observed[f"{name} {k}x{n} no float copy of the weights"] = same(bool(array_bytes <= k * n + 16 * n))
    # forward uses the stored int8 codes: changing the float matrix afterwards changes nothing
    for name, source, (k, n, batch) in [("hidden", fixed, (20, 12, 3)),
                                        ("random", rng, (int(rng.integers(4, 40)), int(rng.integers(2, 20)),
                                                         int(rng.integers(1, 8))))]:
        weight = source.standard_normal((k, n)).astype(np.float32)
        layer = layer_class(weight, None)
        x = source.standard_normal((batch, k)).astype(np.float32)
        y_before = _array(layer(x))
        y_before = None if y_before is None else y_before.copy()
        weight *= -3.0
        y_after = _array(layer(x))
        observed[f"{name} {k}x{n} forward unchanged after the float weights change"] = same(
            y_before is not None and y_after is not None and bool(np.array_equal(y_after, y_before)))
        observed.update(_memory_observations(f"{name} {k}x{n} without bias", layer, k, n, False))
    return observed


def t03_quantized_linear_calibration(ns, rng):
    layer_class = ns["QuantizedLinear"]
    observed = {}
    weight = np.array([[1.0, -2.0], [0.5, 4.0], [-1.0, 1.0]], dtype=np.float32)
    bias = np.array([0.25, -0.5], dtype=np.float32)
    layer = layer_class(weight, bias)
    calibration = np.array([[1.0, -0.5, 0.25], [-2.0, 0.5, 1.5]], dtype=np.float32)
    observed["hand case calibrate returns the layer"] = same(layer.calibrate(calibration) is layer)
    value = _scalar(getattr(layer, "input_scale", None))
    observed["hand case input_scale 2 / 127"] = same(value is not None and abs(value - 2 / 127) < 1e-7)
    q_weight, weight_scale = _engine_arrays(layer)
    y = _array(layer(np.array([[6.0, -1.1, 0.0]], dtype=np.float32)))
    observed["hand case saturates at 127"] = same(
        y is not None and q_weight is not None and weight_scale is not None and y.shape == (1, 2)
        and _matches_engine(y, np.array([[2.0, -1.1, 0.0]], dtype=np.float32), q_weight, weight_scale, bias,
                            [2 / 127], atol=1e-6))
    fixed = np.random.default_rng(39)
    cases = [("hidden", fixed, (16, 8, 50, 6), 0.5, 3.0, fixed)]
    k, n = int(rng.integers(4, 40)), int(rng.integers(2, 16))
    cases.append(("random", rng, (k, n, int(rng.integers(10, 80)), int(rng.integers(2, 12))),
                  float(rng.uniform(0.1, 2.0)), float(rng.uniform(2.0, 6.0)), rng))
    for name, source, (k, n, count, batch), half_range, spread, _ in cases:
        weight = source.standard_normal((k, n)).astype(np.float32)
        bias = np.zeros(n, dtype=np.float32) if name == "hidden" else source.standard_normal(n).astype(np.float32)
        layer = layer_class(weight, bias).calibrate(source.uniform(-half_range, half_range, size=(count, k)))
        value = _scalar(getattr(layer, "input_scale", None))
        observed[f"{name} input_scale"] = close(value, rtol=1e-6) if value is not None else same(None)
        x = source.standard_normal((batch, k)).astype(np.float32) * spread  # mostly beyond the range, both signs
        y = _array(layer(x))
        q_weight, weight_scale = _engine_arrays(layer)
        observed[f"{name} {k}x{n} static scale, clipped inputs"] = same(
            y is not None and value is not None and q_weight is not None and weight_scale is not None
            and _matches_engine(y, x, q_weight, weight_scale, bias, [value]))
    return observed
