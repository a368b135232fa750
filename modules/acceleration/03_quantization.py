# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.0
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 — int8 quantization with real integer arithmetic
#
# A trained network's weights do not need 32-bit floats. Stored as 8-bit integers plus one
# float scale per tensor or per channel, they take a quarter of the bytes, so a layer that is
# limited by memory traffic has a quarter of the bytes to read (how much time that saves on
# this machine is measured below). On hardware with int8 dot-product instructions the
# multiply-adds get cheaper too: for example x86's AVX-512 VNNI instruction `VPDPBUSD`
# multiplies four pairs of 8-bit integers and adds them into each 32-bit lane in a single
# instruction (Intel 64 and IA-32 Architectures Software Developer's Manual, Vol. 2). numpy
# cannot use such instructions, so that part is not measured here.
# The price is rounding error, and this notebook measures how much.
#
# **What you will build**, with real int8 storage and int32 accumulation (not floats that
# merely hold integer values):
#
# | task | function | points |
# | --- | --- | --- |
# | 1 | `quantize_int8(x, axis=None)` -> `(q, scale)`: symmetric, per tensor or per channel | 3 |
# | 2 | `dequantize(q, scale)` | 1 |
# | 3 | `quantized_matmul(a_q, b_q, scale_a, scale_b)`: int8 x int8, int32 sums, float32 out | 3 |
# | 4 | `quantized_relu(q, scale)`: ReLU on the integer codes | 1 |
# | 5 | `QuantizedLinear(weight, bias)`: a linear layer that computes in int8/int32 | 3 |
# | | two written answers (graded by hand) | 4 |
#
# Then you use them to measure the quantization error (of a matmul, a weight matrix with one
# large channel, and a small trained MLP), the memory saved, and, honestly, the speed: numpy has
# no fast integer matmul, and you will see what that costs and how to work around it exactly.
#
# **How it is graded.** Each task is followed by test cells. The visible tests are the ones you
# see. When your work is graded, each test cell runs again in a separate process, apart from
# your notebook, together with hidden cases that check the same rules on other inputs (other
# shapes, axes, signs, zero channels) chosen at grading time; a test cell earns its points
# only if both pass. The tests check how you compute, not only the result: exact integer
# results on cases you can check by hand, dtypes (int8 storage, int32 accumulation), error
# bounds derived from the scale, saturation, and peak temporary memory. No test reads a clock.
#
# **How to run the visible tests.** Use *Kernel > Restart Kernel and Run All Cells...*. A test
# cell that prints nothing has passed; a failing one shows an `AssertionError` that says what
# is wrong. Until you implement a function, the test cells that call it show
# `NotImplementedError` and the measurements that need it print one line saying which task to
# finish first; that is expected, and the run goes on to the end. Timings and plots are for
# you and are never graded; every number they print is this machine's, measured by the cell
# that prints it.

# %%
import contextlib

import numpy as np

import benchmarking
import plotting


@contextlib.contextmanager
def skip_unless_done(tasks):
    """Run a measurement; if it reaches a task that is not done yet (NotImplementedError),
    print one line saying which tasks it needs instead of stopping with an error."""
    try:
        yield
    except NotImplementedError:
        print(f"skipped: this measurement needs {tasks} done first; rerun this cell when they are")

# %% [markdown]
# ## This machine's limits
# The speed measurements below are compared against what this machine can do: its float32
# matrix-multiply rate (numpy's BLAS) and its memory bandwidth, both measured now.

# %%
peak_gflops = benchmarking.measure_peak_gflops(n=benchmarking.benchmark_size(1024, 256))
bandwidth_gbs = benchmarking.measure_copy_bandwidth_gbs(
    nbytes=benchmarking.benchmark_size(256 * 2**20, 32 * 2**20))
print(f"this machine: float32 GEMM {peak_gflops:.0f} GFLOP/s, copy bandwidth {bandwidth_gbs:.1f} GB/s")

# %% [markdown]
# ## Why fewer bytes matter
# When a layer processes one input at a time (batch 1 inference), each weight is read once
# and used for one multiply-add, far too little work per byte to keep the arithmetic units
# busy: the layer runs at the speed of memory. Storing the same weights in 1 byte instead of
# 4 then cuts the bytes to stream by four. The cell below copies the same number of values as
# float32 and as int8; a copy does no arithmetic, so it shows how much time fewer bytes save
# on this machine, the memory-traffic effect alone.

# %%
n_values = benchmarking.benchmark_size(32 * 2**20, 4 * 2**20)
t_f32, t_i8 = (benchmarking.time_copy(n_values, dtype) for dtype in (np.float32, np.int8))
bytes_f32, bytes_i8 = 4 * n_values, n_values
ratio = t_f32.median_s / t_i8.median_s
print(f"copy {n_values / 1e6:.1f}M values: float32 {bytes_f32 / 1e6:.0f} MB in {t_f32}, "
      f"int8 {bytes_i8 / 1e6:.0f} MB in {t_i8}: int8 "
      + (f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower")
      + f" (copy bandwidth {bandwidth_gbs:.1f} GB/s)")

# %% [markdown]
# ## Task 1 — Symmetric int8 quantization (3 points)
#
# Symmetric quantization approximates every element of a float tensor by an integer code
# times one float scale:
#
# $$x \approx s\,q, \qquad q = \mathrm{clip}\big(\mathrm{round}(x / s),\,-127,\,127\big), \qquad s = \max|x| / 127 .$$
#
# The largest magnitude lands exactly on $\pm127$ and zero stays exactly zero. Rounding to
# the nearest code makes the error of each element at most half a step: $|s\,q - x| \le s/2$.
# The range is $[-127, 127]$, not int8's full $[-128, 127]$, so that it is symmetric and
# negating a code can never overflow. Take the scale from $\max|x|$, not $\max x$: for a
# tensor whose largest magnitude is negative, $\max x$ gives a scale that is too small (its
# most negative values get clipped) or even negative (every code flips sign). With the
# tensor's own $\max|x|$ nothing exceeds 127 and the clip changes nothing; it matters once the
# scale is fixed in advance, as in Task 5.
#
# **Per channel.** One scale for a whole weight matrix is set by its largest element; a
# column (an output channel) with small weights then uses only a few of the 255 codes. With
# `axis=k`, compute one scale per index along axis `k` (for a `(K, N)` weight matrix,
# `axis=1` gives one scale per output column) from the largest magnitude in that slice.
#
# **Contract.**
# - Return `(q, scale)`. `q` is `int8` with `x`'s shape.
# - `axis=None`: `scale` is a Python `float`.
# - `axis=k` (negative allowed): `scale` is a `float32` array shaped like `x` but with size 1
#   on every axis except `k`, e.g. `(1, N)` for a `(K, N)` matrix and `axis=1`, so that
#   `q * scale` broadcasts back to `x.shape`.
# - An all-zero tensor or channel has $\max|x| = 0$: every code is 0 whatever the scale, so use
#   scale 1.0 there; never divide by zero (no warnings).
#
# Hints: `np.max(np.abs(x), axis=..., keepdims=True)` with a tuple of all the other axes;
# `np.where` to replace zero maxima; `np.round`, `np.clip`, `.astype(np.int8)`.

# %% nbgrader={"grade": false, "grade_id": "quantize_int8", "locked": false, "schema_version": 3, "solution": true}
def quantize_int8(x, axis=None):
    """Symmetric int8 quantization: x ~= q * scale, q in [-127, 127], scale = max|x| / 127.

    x     float array, any shape
    axis  None: one scale for the tensor; int: one scale per index along that axis
    Returns q (int8, x.shape) and scale: a float if axis is None, else a float32 array with
    x's shape but size 1 on every other axis, so that q * scale broadcasts to x.shape.
    """
    ### BEGIN SOLUTION
    x = np.asarray(x, dtype=np.float32)
    if axis is None:
        max_abs = np.max(np.abs(x))
    else:
        channel_axis = np.lib.array_utils.normalize_axis_index(axis, x.ndim)
        others = tuple(i for i in range(x.ndim) if i != channel_axis)
        max_abs = np.max(np.abs(x), axis=others, keepdims=True)
    # an all-zero tensor or channel has code 0 under any scale; 1.0 avoids 0 / 0
    scale = np.where(max_abs > 0, max_abs / 127, np.float32(1.0)).astype(np.float32)
    q = np.clip(np.round(x / scale), -127, 127).astype(np.int8)
    return q, (float(scale) if axis is None else scale)
    ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t03_quantize_int8_per_tensor", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""quantize_int8 per tensor: int8 codes and scale = max|x| / 127 on cases checkable by hand"""
q, scale = quantize_int8(np.array([2.54, -1.0, 0.5, 0.0]))
assert isinstance(q, np.ndarray) and q.dtype == np.int8, \
    f"q must be an int8 array, got {type(q).__name__} of dtype {getattr(q, 'dtype', None)}"
assert np.ndim(scale) == 0, f"axis=None must give one scale (a float), got shape {np.shape(scale)}"
assert abs(float(scale) - 0.02) < 1e-7, f"scale of [2.54, -1, 0.5, 0] must be 2.54 / 127 = 0.02, got {scale}"
assert q.tolist() == [127, -50, 25, 0], f"codes of [2.54, -1, 0.5, 0] with scale 0.02 must be [127, -50, 25, 0], got {q.tolist()}"

q, scale = quantize_int8(np.array([[127.0, -63.4], [10.2, 0.0]], dtype=np.float32))
assert q.dtype == np.int8 and q.shape == (2, 2), f"q must be int8 of shape (2, 2), got {q.dtype} {q.shape}"
assert float(scale) == 1.0, f"max|x| = 127 must give scale 1.0, got {scale}"
assert q.tolist() == [[127, -63], [10, 0]], f"codes must round to nearest: expected [[127, -63], [10, 0]], got {q.tolist()}"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t03_quantize_int8_per_channel", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""quantize_int8 per channel: one scale per index along axis, keepdims shape, zero channel safe"""
# columns: max|.| = 127 (scale 1), max|.| = 254 (scale 2), all zero
w = np.array([[127.0, -254.0, 0.0],
              [-20.2, 100.6, 0.0],
              [3.0, 0.0, 0.0]], dtype=np.float32)
with np.errstate(all="raise"):
    q, scale = quantize_int8(w, axis=1)
assert q.dtype == np.int8 and q.shape == (3, 3), f"q must be int8 of shape (3, 3), got {q.dtype} {q.shape}"
assert isinstance(scale, np.ndarray) and scale.shape == (1, 3), \
    f"axis=1 on a (3, 3) matrix must give scales of shape (1, 3) (one per column), got shape {np.shape(scale)}"
assert scale.dtype == np.float32, f"per-channel scales must be float32, got {scale.dtype}"
np.testing.assert_allclose(scale[0, :2], [1.0, 2.0], rtol=1e-6, err_msg="column scales must be max|column| / 127")
assert np.isfinite(scale[0, 2]) and scale[0, 2] > 0, f"the all-zero column needs a finite positive scale, got {scale[0, 2]}"
assert q.tolist() == [[127, -127, 0], [-20, 50, 0], [3, 0, 0]], \
    f"per-column codes must be [[127, -127, 0], [-20, 50, 0], [3, 0, 0]], got {q.tolist()}"

q, scale = quantize_int8(w.T, axis=0)
assert np.shape(scale) == (3, 1), f"axis=0 on a (3, 3) matrix must give scales of shape (3, 1) (one per row), got {np.shape(scale)}"
assert q.T.tolist() == [[127, -127, 0], [-20, 50, 0], [3, 0, 0]], f"per-row codes are wrong: {q.T.tolist()}"

# %% [markdown]
# ## Task 2 — Dequantize (1 point)
#
# Undo the encoding: `q * scale` as `float32`, whether `scale` is one float or a per-channel
# array (it broadcasts against `q` because `quantize_int8` kept its dimensions). The result
# is the float tensor the quantized one stands for; its distance from the original is the
# quantization error. Return `float32` even when `scale` is a Python float (which would make
# numpy compute in float64).

# %% nbgrader={"grade": false, "grade_id": "dequantize", "locked": false, "schema_version": 3, "solution": true}
def dequantize(q, scale):
    """float32 values q * scale that the int8 codes q stand for.

    q      int8 array
    scale  float, or an array that broadcasts against q (per-channel scales from quantize_int8)
    Returns float32 of shape q.shape.
    """
    ### BEGIN SOLUTION
    return q.astype(np.float32) * np.asarray(scale, dtype=np.float32)
    ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t03_dequantize_broadcast", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""dequantize returns float32 q * scale, per tensor and per channel"""
q = np.array([[127, -50], [0, 25]], dtype=np.int8)
x = dequantize(q, 0.02)
assert isinstance(x, np.ndarray) and x.dtype == np.float32, f"dequantize must return float32, got {getattr(x, 'dtype', type(x))}"
np.testing.assert_allclose(x, [[2.54, -1.0], [0.0, 0.5]], rtol=1e-6, err_msg="dequantize(q, 0.02) must be q * 0.02")

row_scales = np.array([[1.0], [10.0]], dtype=np.float32)  # one scale per row: shape (2, 1)
x = dequantize(q, row_scales)
assert x.dtype == np.float32 and x.shape == (2, 2), f"expected float32 of shape (2, 2), got {x.dtype} {x.shape}"
np.testing.assert_allclose(x, [[127.0, -50.0], [0.0, 250.0]], rtol=1e-6,
                           err_msg="a (2, 1) scale multiplies each row by its own scale")

# %% [markdown]
# ## Task 3 — Quantized matmul with int32 accumulation (3 points)
#
# With $A \approx s_A Q_A$ and $B \approx s_B Q_B$, the product is
# $A B \approx s_A s_B\,(Q_A Q_B)$: multiply the integer codes, then rescale once. On hardware
# with int8 units the integer product is where the speed-up comes from; in numpy it is also
# where things go wrong: `int8 @ int8` returns **int8** and wraps around silently. Run the cell
# below.

# %%
a8 = np.array([[100, 100]], dtype=np.int8)
b8 = np.array([[2], [2]], dtype=np.int8)
wrapped = a8 @ b8
print(f"int8 @ int8: 100*2 + 100*2 = {wrapped[0, 0]} (dtype {wrapped.dtype}); "
      f"with int32 accumulation: {(a8.astype(np.int32) @ b8.astype(np.int32))[0, 0]}")

# %% [markdown]
# 400 does not fit in int8, so it wrapped to 400 - 512 = -112. Hardware int8 units avoid
# this by accumulating in 32 bits: each product of two codes is at most $127^2 = 16129$, so
# int32 holds the sum of up to $2^{31} / 16129 \approx 133\,000$ products exactly.
#
# **Per-channel scales work only along M and N.** A scale per row of A (shape `(M, 1)`) or per
# column of B (shape `(1, N)`) multiplies a whole output row or column, so it can be applied
# after the integer sum. A scale per index $k$ of the summed dimension would have to multiply
# each term inside the sum, so the integer sum could not be used.
#
# **Contract** for `quantized_matmul(a_q, b_q, scale_a, scale_b)`:
# - `a_q` `(M, K)` and `b_q` `(K, N)` must be `int8`; otherwise raise `TypeError` naming the
#   dtypes. Mismatched K raises `ValueError` naming the shapes.
# - `scale_a` is a float (or any size-1 array) or has shape `(M, 1)`; `scale_b` is a float
#   (or size 1) or has shape `(1, N)`. Any other shape raises `ValueError` naming it.
# - Accumulate the integer products exactly in int32, then rescale; return `float32` `(M, N)`.

# %% nbgrader={"grade": false, "grade_id": "quantized_matmul", "locked": false, "schema_version": 3, "solution": true}
def quantized_matmul(a_q, b_q, scale_a, scale_b):
    """(M, K) int8 @ (K, N) int8 -> (M, N) float32: exact int32 sums, then rescaled.

    scale_a  float, or (M, 1): one scale per row of A
    scale_b  float, or (1, N): one scale per column of B
    Returns float32 (a_q @ b_q) * scale_a * scale_b.
    """
    ### BEGIN SOLUTION
    if a_q.dtype != np.int8 or b_q.dtype != np.int8:
        raise TypeError(f"a_q and b_q must be int8, got {a_q.dtype} and {b_q.dtype}")
    if a_q.ndim != 2 or b_q.ndim != 2 or a_q.shape[1] != b_q.shape[0]:
        raise ValueError(f"need (M, K) @ (K, N), got {a_q.shape} @ {b_q.shape}")
    (m, _), (_, n) = a_q.shape, b_q.shape
    for name, scale, allowed in (("scale_a", scale_a, (m, 1)), ("scale_b", scale_b, (1, n))):
        if np.size(scale) != 1 and np.shape(scale) != allowed:
            raise ValueError(f"{name} must be a float or shaped {allowed}, got shape {np.shape(scale)}")
    # |code| <= 127, so int32 holds the exact sum of up to 2**31 / 127**2 (~133,000) products
    acc = a_q.astype(np.int32) @ b_q.astype(np.int32)
    rescale = np.asarray(scale_a, dtype=np.float64) * np.asarray(scale_b, dtype=np.float64)
    return (acc * rescale).astype(np.float32)
    ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t03_quantized_matmul_int32_accumulation", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""quantized_matmul sums int8 products exactly (int32, no wrap-around) and returns float32"""
out = quantized_matmul(np.array([[100, 100]], dtype=np.int8), np.array([[2], [2]], dtype=np.int8), 1.0, 1.0)
assert isinstance(out, np.ndarray) and out.dtype == np.float32, f"result must be float32, got {getattr(out, 'dtype', type(out))}"
assert out.shape == (1, 1), f"(1, 2) @ (2, 1) must give shape (1, 1), got {out.shape}"
assert out[0, 0] == 400.0, f"100*2 + 100*2 must be 400, got {out[0, 0]} (an int8 accumulator wraps to -112)"

# 4 * 127 * 127 = 64516 does not fit in 16 bits either
out = quantized_matmul(np.full((2, 4), 127, dtype=np.int8), np.full((4, 3), -127, dtype=np.int8), 1.0, 1.0)
np.testing.assert_array_equal(out, np.full((2, 3), -64516.0, dtype=np.float32),
                              err_msg="4 * 127 * (-127) must be -64516: the accumulator needs 32 bits")

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t03_quantized_matmul_scales", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""quantized_matmul rescales by per-tensor and per-channel scales after the integer sum"""
a_q = np.array([[1, 2], [3, 4]], dtype=np.int8)
b_q = np.array([[5, 6], [7, 8]], dtype=np.int8)  # integer product [[19, 22], [43, 50]]
out = quantized_matmul(a_q, b_q, 0.5, 0.25)
assert out.dtype == np.float32, f"result must be float32, got {out.dtype}"
np.testing.assert_allclose(out, [[2.375, 2.75], [5.375, 6.25]], rtol=1e-6,
                           err_msg="per-tensor scales 0.5 and 0.25 must multiply [[19, 22], [43, 50]] by 0.125")
out = quantized_matmul(a_q, b_q, np.array([[1.0], [2.0]], dtype=np.float32), np.array([[1.0, 10.0]], dtype=np.float32))
np.testing.assert_allclose(out, [[19.0, 220.0], [86.0, 1000.0]], rtol=1e-6,
                           err_msg="row scales (2, 1) and column scales (1, 2) must scale output rows and columns")

# %% [markdown]
# ### How big is the rounding error?
# Quantize a weight matrix, dequantize it, and look at the element errors in units of the
# scale: they should fill $[-\tfrac12, \tfrac12]$ evenly. Then multiply quantized inputs by
# quantized weights with your `quantized_matmul`: each output sums $K$ such errors,
# weighted by the values; independent rounding errors partly cancel, so the output errors
# pile up around zero in a bell shape instead of adding up to $K$ times the worst case.

# %% tags=["raises-exception"]
import matplotlib.pyplot as plt


def plot_error_histograms(panels, bins=60):
    """One histogram per panel, side by side; panels maps a title to (errors, x-axis label)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(10.0, 3.6))
    for ax, (title, (errors, xlabel)) in zip(np.atleast_1d(axes), panels.items()):
        ax.hist(errors.ravel(), bins=bins, color="tab:blue")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("elements (count)")
    fig.tight_layout()
    return fig, axes


rng = np.random.default_rng(0)
weights = rng.standard_normal((256, 128)).astype(np.float32) * 0.05
inputs = rng.standard_normal((64, 256)).astype(np.float32)
with skip_unless_done("Tasks 1, 2 and 3"):
    w_q, w_scale = quantize_int8(weights, axis=1)
    x_q, x_scale = quantize_int8(inputs)
    weight_error_steps = (dequantize(w_q, w_scale) - weights) / w_scale
    exact_out = inputs.astype(np.float64) @ weights
    out_error = quantized_matmul(x_q, w_q, x_scale, w_scale) - exact_out
    print(f"weights (256, 128): max |error| {np.abs(weight_error_steps).max():.3f} steps (bound 0.5); "
          f"matmul (64, 256) @ (256, 128): output error std {out_error.std():.3g} vs output std {exact_out.std():.3g}")
    fig, axes = plot_error_histograms({
        "weight elements": (weight_error_steps, "error (quantization steps of its column)"),
        "matmul outputs": (out_error, "error (output units)"),
    })

# %% [markdown]
# ### Error of the quantized matmul over sizes
# Quantize two random matrices per tensor and per channel (A per row, B per column), multiply
# with `quantized_matmul`, and compare with the float32 product. Per-tensor scales follow the
# largest element of the whole matrix, which grows slowly with its size; per-channel scales
# follow each row's or column's own largest element.

# %% tags=["raises-exception"]
def relative_error(approx, exact):
    """Frobenius norm of approx - exact over that of exact (0.01 means 1 %)."""
    return float(np.linalg.norm(approx - exact) / np.linalg.norm(exact))


rng = np.random.default_rng(1)
sizes = benchmarking.benchmark_size([16, 32, 64, 128, 256, 512], [16, 32, 64])
errors = {"per tensor": [], "per channel": []}
with skip_unless_done("Tasks 1 and 3"):
    for n in sizes:
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        exact_ab = a @ b
        a_q, scale_a = quantize_int8(a)
        b_q, scale_b = quantize_int8(b)
        errors["per tensor"].append(relative_error(quantized_matmul(a_q, b_q, scale_a, scale_b), exact_ab))
        a_q, scale_a = quantize_int8(a, axis=0)
        b_q, scale_b = quantize_int8(b, axis=1)
        errors["per channel"].append(relative_error(quantized_matmul(a_q, b_q, scale_a, scale_b), exact_ab))
    print("relative error of quantized_matmul vs float32, N = " + ", ".join(map(str, sizes)) + ": "
          + "; ".join(f"{kind} " + " ".join(f"{e:.2%}" for e in errs) for kind, errs in errors.items()))
    fig, ax = plotting.plot_lines(sizes, {k: np.array(v) * 100 for k, v in errors.items()},
                                  xlabel="N (matrices N x N)", ylabel="relative error (%)",
                                  title="int8 matmul error vs float32", logy=False)
    ax.set_xticks(sizes, labels=[str(n) for n in sizes])
    ax.minorticks_off()

# %% [markdown]
# ### One large channel: per tensor vs per channel
# Real weight matrices often have a few output channels with much larger weights than the
# rest. The cell below builds a `(256, 64)` weight matrix whose column 0 is 100x larger than
# the others and measures the output error of each column under both kinds of scale.

# %% tags=["raises-exception"]
rng = np.random.default_rng(2)
weights = rng.standard_normal((256, 64)).astype(np.float32) * 0.05
weights[:, 0] *= 100.0  # one large-magnitude output channel
inputs = rng.standard_normal((512, 256)).astype(np.float32)
exact_out = inputs @ weights
column_errors = {}
with skip_unless_done("Tasks 1 and 3"):
    x_q, x_scale = quantize_int8(inputs)
    for kind, axis in [("per tensor", None), ("per channel", 1)]:
        w_q, w_scale = quantize_int8(weights, axis=axis)
        out = quantized_matmul(x_q, w_q, x_scale, w_scale)
        column_errors[kind] = np.linalg.norm(out - exact_out, axis=0) / np.linalg.norm(exact_out, axis=0)
        print(f"{kind:<11}: output error of the large column {column_errors[kind][0]:.2%}, "
              f"of the 63 ordinary columns {np.median(column_errors[kind][1:]):.2%} (median); "
              f"distinct codes used in an ordinary column {len(np.unique(w_q[:, 1]))} of 255")
    fig, ax = plotting.plot_lines(np.arange(64), {k: v * 100 for k, v in column_errors.items()},
                                  xlabel="output channel (column of W)", ylabel="relative error (%)",
                                  title="W with one 100x column: error per output channel", logx=False)

# %% [markdown]
# ### Speed, honestly
# numpy hands float32 and float64 matrix products to an optimized BLAS library (cache
# blocking, SIMD, all cores). It has no such path for integers: `int32 @ int32` runs a generic
# loop. The cell below times both on the same `N x N` codes, next to this machine's float32
# GEMM rate measured at the top of the notebook.
#
# There is an exact workaround. A float32 holds every integer up to $2^{24}$ exactly, so if
# every partial sum stays below $2^{24}$, float32 BLAS on int8 values returns the exact integer
# sums. With codes up to 127 that is guaranteed while $K \cdot 127^2 < 2^{24}$, i.e.
# $K \le 1040$; typical random codes stay far below that bound even for larger $K$, but
# crafted ones do not (next cell).
#
# The first and last bars run the same float32 BLAS product; if they differ a lot, something
# else was using the cores during the measurement: rerun the cell.

# %% tags=["raises-exception"]
n = benchmarking.benchmark_size(512, 128)
rng = np.random.default_rng(3)
a_q = rng.integers(-127, 128, size=(n, n)).astype(np.int8)
b_q = rng.integers(-127, 128, size=(n, n)).astype(np.int8)
a_i32, b_i32 = a_q.astype(np.int32), b_q.astype(np.int32)
a_f32, b_f32 = a_q.astype(np.float32), b_q.astype(np.float32)
flops = 2.0 * n**3
with skip_unless_done("Task 3"):
    timings = {
        "float32 BLAS": benchmarking.time_call(np.matmul, a_f32, b_f32, repeats=15),
        "int32 matmul": benchmarking.time_call(np.matmul, a_i32, b_i32, repeats=3),
        "quantized_matmul": benchmarking.time_call(quantized_matmul, a_q, b_q, 1.0, 1.0, repeats=3),
        "int8 codes as float32, BLAS": benchmarking.time_call(
            lambda: a_q.astype(np.float32) @ b_q.astype(np.float32), repeats=15),
    }
    exact_in_float32 = np.array_equal(a_f32 @ b_f32, (a_i32 @ b_i32).astype(np.float32))
    rates = {name: benchmarking.gflops(flops, t.median_s) for name, t in timings.items()}
    int32_vs_float32 = timings["int32 matmul"].median_s / timings["float32 BLAS"].median_s
    print(f"N=K={n}: " + ", ".join(f"{name} {benchmarking.format_seconds(t.median_s)} ({rates[name]:.1f} GOP/s)"
                                  for name, t in timings.items())
          + "; int32 matmul " + (f"{int32_vs_float32:.1f}x slower" if int32_vs_float32 >= 1
                                 else f"{1 / int32_vs_float32:.1f}x faster") + " than float32 BLAS"
          + f"; float32 BLAS on these codes exact: {exact_in_float32}; measured peak {peak_gflops:.0f} GFLOP/s")
    fig, ax = plotting.plot_bars(list(rates), list(rates.values()), ylabel="GOP/s (1e9 integer or float ops/s)",
                                 title=f"N=K={n} matmul on int8 codes",
                                 reference=(peak_gflops, "float32 GEMM peak (measured)"))
    ax.set_yscale("log")

# %% [markdown]
# When is float32 accumulation no longer exact? Below, float32 BLAS sums are compared with the
# exact int32 sums for growing K: random codes, then codes all near 127 (each product adds
# about 15 000, so the sums pass $2^{24}$ beyond K of about 1100), then the same near-127 codes
# with the second half negated: the true results are small enough for float32 to hold, but
# for K = 4096 the partial sums on the way pass $2^{24}$.

# %%
rng = np.random.default_rng(4)
m = benchmarking.benchmark_size(64, 16)
k_values = benchmarking.benchmark_size([256, 512, 1024, 2048, 4096], [1024, 2048, 4096])
cases = {
    "random codes": lambda k: (rng.integers(-127, 128, (m, k)), rng.integers(-127, 128, (k, m))),
    "codes near 127": lambda k: (rng.integers(118, 128, (m, k)), rng.integers(118, 128, (k, m))),
    "near 127, 2nd half negated": lambda k: (
        rng.integers(118, 128, (m, k)) * np.where(np.arange(k) < k // 2, 1, -1),
        rng.integers(118, 128, (k, m))),
}
for case, make in cases.items():
    worst = []
    for k in k_values:
        a, b = (codes.astype(np.int8) for codes in make(k))
        exact = a.astype(np.int32) @ b.astype(np.int32)
        float_sums = a.astype(np.float32) @ b.astype(np.float32)
        worst.append(int(np.abs(float_sums.astype(np.int64) - exact).max()))
    print(f"{case:<27}: max |float32 BLAS - exact int32| for ({m}, K) @ (K, {m}), K = "
          + ", ".join(f"{k}: {w}" for k, w in zip(k_values, worst)))

# %% [markdown]
# ## Task 4 — ReLU on int8 codes (1 point)
#
# With a positive scale, $\max(s\,q, 0) = s\,\max(q, 0)$: ReLU can run on the integer codes
# directly and keeps the scale. No float round trip, no new scale, one byte per element.
# Return a **new** `int8` array (leave `q` unchanged) and the same `scale`. The tests bound
# the temporary memory: a float32 detour would allocate 4x the bytes of `q`.

# %% nbgrader={"grade": false, "grade_id": "quantized_relu", "locked": false, "schema_version": 3, "solution": true}
def quantized_relu(q, scale):
    """ReLU in the integer domain: codes max(q, 0) as a new int8 array, scale unchanged.

    q      int8 codes, any shape; scale  float or per-channel array (must be > 0)
    Returns (int8 array of q.shape, scale).
    """
    ### BEGIN SOLUTION
    return np.maximum(q, np.int8(0)), scale
    ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t03_quantized_relu_integer_domain", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""quantized_relu zeroes negative codes in int8, keeps the scale and leaves q unchanged"""
q = np.array([-127, -3, 0, 5, 127], dtype=np.int8)
out, scale = quantized_relu(q, 0.5)
assert isinstance(out, np.ndarray) and out.dtype == np.int8, f"codes must stay int8, got {getattr(out, 'dtype', type(out))}"
assert out.tolist() == [0, 0, 0, 5, 127], f"ReLU of [-127, -3, 0, 5, 127] must be [0, 0, 0, 5, 127], got {out.tolist()}"
assert scale == 0.5, f"ReLU must keep the scale 0.5, got {scale}"
assert q.tolist() == [-127, -3, 0, 5, 127], "quantized_relu must not modify its input"

channel_scales = np.array([[0.1, 0.2, 0.4]], dtype=np.float32)
out, scale = quantized_relu(np.array([[-1, 2, -3], [4, -5, 6]], dtype=np.int8), channel_scales)
assert out.dtype == np.int8 and out.tolist() == [[0, 2, 0], [4, 0, 6]], f"per-channel ReLU codes are wrong: {out.tolist()}"
assert np.shape(scale) == (1, 3) and np.array_equal(scale, channel_scales), "ReLU must return the per-channel scales unchanged"

# %% [markdown]
# ## Task 5 — A quantized linear layer (3 points)
#
# `QuantizedLinear(weight, bias)` replaces a float layer $y = x W + b$ with `weight` of shape
# `(K, N)` (inputs x outputs, as in TinyTorch's `Linear`) and `bias` of shape `(N,)` or `None`.
#
# - **Construction.** Quantize the weights per output channel (`axis=1`) and store
#   `self.q_weight` (`int8`, `(K, N)`) and `self.weight_scale` (`(1, N)`). Keep the bias in
#   float32 as `self.bias` (`N` floats, small). Do **not** keep the float weights: the point is
#   to hold a quarter of the bytes. Set `self.input_scale = None`.
# - **Forward** on float inputs `x` of shape `(batch, K)`: quantize `x` to int8 with one
#   per-tensor scale, multiply with `quantized_matmul`, add the bias; return `float32`
#   `(batch, N)`. The input scale is `self.input_scale` if set, otherwise computed from this
#   `x` (dynamic quantization).
# - **`calibrate(x)`** sets `self.input_scale` to `max|x| / 127` over calibration inputs and
#   returns `self` (static quantization: a deployed int8 engine fixes its activation scales
#   ahead of time). Inputs beyond the calibrated range then **saturate** at code $\pm127$
#   (clip them; do not let them wrap).
# - **`memory_usage()`** returns a dict with `"original_bytes"` (the float32 weights and bias),
#   `"quantized_bytes"` (the `nbytes` of `q_weight`, `weight_scale` and `bias`) and
#   `"compression_ratio"` (original over quantized).

# %% nbgrader={"grade": false, "grade_id": "QuantizedLinear", "locked": false, "schema_version": 3, "solution": true}
class QuantizedLinear:
    """y = x @ W + b with W held as int8 codes (one scale per output column), int32 math.

    weight (K, N) float and bias (N,) float or None. Stores q_weight (K, N) int8,
    weight_scale (1, N), bias (N,) float32 or None, and input_scale (None until calibrate).
    """

    def __init__(self, weight, bias=None):
        ### BEGIN SOLUTION
        weight = np.asarray(weight, dtype=np.float32)
        if weight.ndim != 2:
            raise ValueError(f"weight must be (K, N), got shape {weight.shape}")
        if bias is not None and np.shape(bias) != (weight.shape[1],):
            raise ValueError(f"bias must have shape ({weight.shape[1]},) for weight {weight.shape}, "
                             f"got {np.shape(bias)}")
        self.q_weight, self.weight_scale = quantize_int8(weight, axis=1)
        self.bias = None if bias is None else np.array(bias, dtype=np.float32)
        self.input_scale = None
        ### END SOLUTION

    def calibrate(self, x):
        """Fix the input scale to max|x| / 127 over calibration inputs x (batch, K); returns self."""
        ### BEGIN SOLUTION
        _, self.input_scale = quantize_int8(x)
        return self
        ### END SOLUTION

    def forward(self, x):
        """(batch, K) float -> (batch, N) float32 through int8 inputs and weights."""
        ### BEGIN SOLUTION
        x = np.asarray(x, dtype=np.float32)
        if self.input_scale is None:
            x_q, x_scale = quantize_int8(x)
        else:
            # static scale: inputs beyond the calibrated range saturate instead of wrapping
            x_scale = self.input_scale
            x_q = np.clip(np.round(x / x_scale), -127, 127).astype(np.int8)
        y = quantized_matmul(x_q, self.q_weight, x_scale, self.weight_scale)
        return y if self.bias is None else y + self.bias
        ### END SOLUTION

    def __call__(self, x):
        return self.forward(x)

    def memory_usage(self):
        """Bytes of the float32 layer vs this one: original_bytes, quantized_bytes, compression_ratio."""
        ### BEGIN SOLUTION
        n_params = self.q_weight.size + (0 if self.bias is None else self.bias.size)
        original_bytes = 4 * n_params
        quantized_bytes = (self.q_weight.nbytes + np.asarray(self.weight_scale).nbytes
                           + (0 if self.bias is None else self.bias.nbytes))
        return {"original_bytes": original_bytes, "quantized_bytes": quantized_bytes,
                "compression_ratio": original_bytes / quantized_bytes}
        ### END SOLUTION


# %% [markdown]
# The tests of `QuantizedLinear` compare it with what an int8 inference engine computes, written
# out in the next cell (part of the tests; read it, do not change it).

# %% nbgrader={"grade": false, "grade_id": "int8_engine_reference", "locked": true, "schema_version": 3, "solution": false}
def integer_reference(x, q_weight, weight_scale, bias, x_scale):
    """What an int8 engine computes: x rounded to codes, exact integer sums, rescaled, + bias."""
    x_q = np.clip(np.round(x / x_scale), -127, 127)
    y = (x_q.astype(np.int64) @ q_weight.astype(np.int64)) * (x_scale * np.asarray(weight_scale, dtype=np.float64))
    return y if bias is None else y + bias


def error_bound(x, x_scale, q_weight, weight_scale):
    """Worst-case |quantized - float| per output from half-step rounding of x and W."""
    x_hat = np.clip(np.round(x / x_scale), -127, 127) * x_scale
    w_hat = q_weight * np.asarray(weight_scale, dtype=np.float64)
    k = x.shape[1]
    return (np.abs(x_hat) @ (np.ones_like(w_hat) * weight_scale / 2) + (x_scale / 2) * np.abs(w_hat).sum(axis=0)
            + k * x_scale * np.asarray(weight_scale) / 4)


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t03_quantized_linear_forward", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""QuantizedLinear stores int8 weights per output channel and computes through int8 inputs"""
rng = np.random.default_rng(37)
weight = rng.standard_normal((6, 4)).astype(np.float32)
bias = rng.standard_normal(4).astype(np.float32)
layer = QuantizedLinear(weight, bias)
assert layer.q_weight.dtype == np.int8 and layer.q_weight.shape == (6, 4), \
    f"q_weight must be int8 (6, 4), got {layer.q_weight.dtype} {layer.q_weight.shape}"
assert np.shape(layer.weight_scale) == (1, 4), f"weight_scale must be one scale per output column, shape (1, 4), got {np.shape(layer.weight_scale)}"
np.testing.assert_allclose(layer.weight_scale, np.abs(weight).max(axis=0, keepdims=True) / 127, rtol=1e-6,
                           err_msg="weight_scale must be max|column| / 127")

x = rng.standard_normal((5, 6)).astype(np.float32)
y = layer(x)
assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (5, 4), \
    f"forward must return float32 (5, 4), got {getattr(y, 'dtype', type(y))} {np.shape(y)}"
x_scale = float(np.abs(x).max()) / 127
expected = integer_reference(x, layer.q_weight, layer.weight_scale, bias, x_scale)
np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max(),
                           err_msg="forward must quantize x per tensor (max|x| / 127), multiply int8 codes exactly and rescale")
bound = error_bound(x, x_scale, layer.q_weight, layer.weight_scale)
assert np.all(np.abs(y - (x @ weight + bias)) <= bound * 1.001 + 1e-6), "error vs the float layer exceeds the rounding bound"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t03_quantized_linear_storage", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""QuantizedLinear keeps only int8 weights (no float copy) and reports its bytes"""
rng = np.random.default_rng(38)
weight = rng.standard_normal((256, 64)).astype(np.float32)
bias = rng.standard_normal(64).astype(np.float32)
layer = QuantizedLinear(weight, bias)
usage = layer.memory_usage()
assert usage["original_bytes"] == 4 * (256 * 64 + 64), f"float32 weights and bias take {4 * (256 * 64 + 64)} bytes, got {usage['original_bytes']}"
stored = layer.q_weight.nbytes + np.asarray(layer.weight_scale).nbytes + layer.bias.nbytes
assert usage["quantized_bytes"] == stored, f"quantized_bytes must be the nbytes of q_weight, weight_scale and bias ({stored}), got {usage['quantized_bytes']}"
np.testing.assert_allclose(usage["compression_ratio"], usage["original_bytes"] / stored, rtol=1e-9,
                           err_msg="compression_ratio must be original_bytes / quantized_bytes")
array_bytes = sum(v.nbytes for v in vars(layer).values() if isinstance(v, np.ndarray))
assert array_bytes <= 256 * 64 + 16 * 64, (f"the layer holds {array_bytes} bytes of arrays for a (256, 64) weight: "
                                           f"keep the int8 codes, not a float copy ({4 * 256 * 64} bytes)")

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t03_quantized_linear_calibration", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""calibrate fixes the input scale; inputs beyond the calibrated range saturate at +-127"""
weight = np.array([[1.0, -2.0], [0.5, 4.0], [-1.0, 1.0]], dtype=np.float32)
bias = np.array([0.25, -0.5], dtype=np.float32)
layer = QuantizedLinear(weight, bias)
calibration = np.array([[1.0, -0.5, 0.25], [-2.0, 0.5, 1.5]], dtype=np.float32)  # max|x| = 2
assert layer.calibrate(calibration) is layer, "calibrate must return the layer itself"
assert abs(float(layer.input_scale) - 2 / 127) < 1e-7, f"input_scale must be max|x| / 127 = 2 / 127, got {layer.input_scale}"
x = np.array([[6.0, -1.1, 0.0]], dtype=np.float32)  # 6 is beyond the calibrated range: it counts as 2
y = layer(x)
x_clipped = np.array([[2.0, -1.1, 0.0]], dtype=np.float32)
expected = integer_reference(x_clipped, layer.q_weight, layer.weight_scale, bias, 2 / 127)
np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6,
                           err_msg="with a calibrated scale, inputs beyond the range must saturate at code 127")

# %% [markdown]
# ## Quantizing a small trained MLP
# A 16 -> 64 -> 4 ReLU network is trained below on synthetic data: four classes, each made of
# three Gaussian clusters in 16 dimensions, so the classes are not linearly separable. Training
# is ordinary float32 minibatch gradient descent with momentum, not part of any task. Then both
# layers are replaced by `QuantizedLinear` and the ReLU runs on int8 codes with
# `quantized_relu`. What matters is whether the quantized network still makes the same
# predictions on held-out data.

# %%
rng = np.random.default_rng(5)
n_in, n_hidden, n_classes = 16, 64, 4
cluster_centers = rng.standard_normal((3 * n_classes, n_in))


def make_data(n):
    """n points: x (n, 16) float32 around random cluster centers, labels (n,) = cluster % 4."""
    cluster = rng.integers(0, len(cluster_centers), n)
    x = (cluster_centers[cluster] + rng.standard_normal((n, n_in))).astype(np.float32)
    return x, cluster % n_classes


def train_mlp(x, labels, epochs=20, batch=100, lr=0.05, momentum=0.9):
    """Minibatch gradient descent on softmax cross-entropy; returns [w1, b1, w2, b2] float32."""
    params = [rng.standard_normal((n_in, n_hidden)) * np.sqrt(2 / n_in), np.zeros(n_hidden),
              rng.standard_normal((n_hidden, n_classes)) * np.sqrt(1 / n_hidden), np.zeros(n_classes)]
    params = [p.astype(np.float32) for p in params]
    velocity = [np.zeros_like(p) for p in params]
    one_hot = np.eye(n_classes, dtype=np.float32)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            rows = order[start:start + batch]
            w1, b1, w2, b2 = params
            hidden = np.maximum(x[rows] @ w1 + b1, 0)              # (batch, 64)
            logits = hidden @ w2 + b2                               # (batch, 4)
            prob = np.exp(logits - logits.max(axis=1, keepdims=True))
            prob /= prob.sum(axis=1, keepdims=True)
            d_logits = (prob - one_hot[labels[rows]]) / len(rows)
            d_hidden = (d_logits @ w2.T) * (hidden > 0)
            grads = [x[rows].T @ d_hidden, d_hidden.sum(0), hidden.T @ d_logits, d_logits.sum(0)]
            for p, v, g in zip(params, velocity, grads):
                v *= momentum
                v -= lr * g
                p += v
    return params


x_train, y_train = make_data(2000)
x_test, y_test = make_data(2000)
w1, b1, w2, b2 = train_mlp(x_train, y_train)


def float_mlp(x):
    """float32 logits (n, 4)."""
    return np.maximum(x @ w1 + b1, 0) @ w2 + b2


print(f"float32 MLP: train accuracy {np.mean(float_mlp(x_train).argmax(1) == y_train):.1%}, "
      f"held-out accuracy {np.mean(float_mlp(x_test).argmax(1) == y_test):.1%}")

# %% [markdown]
# Two int8 versions: **dynamic**, where each layer picks its input scale from the batch it
# sees, and **static**, where the input scales are calibrated once on the training inputs (the
# second layer on the first layer's ReLU outputs) and held-out inputs beyond that range
# saturate. Between the layers the hidden activations are quantized to int8, go through
# `quantized_relu`, and are dequantized to feed the next `QuantizedLinear` (an int8 engine would
# pass the codes on directly).

# %% tags=["raises-exception"]
def int8_mlp(x, first, second):
    """Logits (n, 4) of the MLP with both layers quantized and ReLU on int8 codes."""
    h_q, h_scale = quantize_int8(first(x))
    h_q, h_scale = quantized_relu(h_q, h_scale)
    return second(dequantize(h_q, h_scale))


with skip_unless_done("Tasks 1, 2, 4 and 5"):
    layer_1, layer_2 = QuantizedLinear(w1, b1), QuantizedLinear(w2, b2)
    float_pred = float_mlp(x_test).argmax(1)
    dynamic_pred = int8_mlp(x_test, layer_1, layer_2).argmax(1)
    static_1 = QuantizedLinear(w1, b1).calibrate(x_train)
    static_2 = QuantizedLinear(w2, b2).calibrate(np.maximum(static_1(x_train), 0))
    static_pred = int8_mlp(x_test, static_1, static_2).argmax(1)
    print(f"held-out accuracy: float32 {np.mean(float_pred == y_test):.1%}, "
          f"int8 dynamic {np.mean(dynamic_pred == y_test):.1%}, int8 static {np.mean(static_pred == y_test):.1%}; "
          f"predictions equal to float32: dynamic {np.mean(dynamic_pred == float_pred):.1%}, "
          f"static {np.mean(static_pred == float_pred):.1%} of {len(x_test)}")

    usage = [layer.memory_usage() for layer in (layer_1, layer_2)]
    original = sum(u["original_bytes"] for u in usage)
    quantized = sum(u["quantized_bytes"] for u in usage)
    int8_codes = layer_1.q_weight.nbytes + layer_2.q_weight.nbytes
    print(f"MLP parameters: float32 {original} bytes, int8 {quantized} bytes ({int8_codes} of int8 weight codes, "
          f"the rest float32 scales and bias): {original / quantized:.2f}x smaller")
    wide = QuantizedLinear(rng.standard_normal((4096, 256)).astype(np.float32), np.zeros(256, dtype=np.float32))
    wide_usage = wide.memory_usage()
    print(f"a (4096, 256) layer: float32 {wide_usage['original_bytes'] / 1e6:.2f} MB, "
          f"int8 {wide_usage['quantized_bytes'] / 1e6:.2f} MB: {wide_usage['compression_ratio']:.2f}x smaller")

# %% [markdown]
# Per-channel scales and a float32 bias cost a few bytes per output channel, next to one byte
# per weight: in the small MLP, whose layers have only 16 and 64 inputs per output, they are
# a large share and the saving is well below 4x; in the wide layer, with 4096 inputs per
# output, the saving is close to 4x (both lines above).

# %% [markdown]
# ## Questions (written answers, graded by hand)
#
# **Q1 (2 points).** In the speed measurement above, how did numpy's `int32` matmul compare
# with its `float32` matmul on the same codes, and why? On what kind of hardware does int8
# arithmetic make a matmul faster, and how could `quantized_matmul` get BLAS speed in numpy
# while staying exact for any K? Use the numbers your notebook printed.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q03_integer_speed", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# numpy sends float32/float64 products to BLAS, which blocks for the caches, uses SIMD
# fused multiply-adds and all cores; integer matmul has no BLAS routine and runs numpy's generic
# loop, so it gets a small fraction of the measured float32 GEMM rate (the printed ratio is the
# evidence). Int8 only pays off where the hardware has int8 dot-product instructions or units
# (e.g. x86 VNNI, Arm SDOT/I8MM, GPU tensor cores) reached through a library that uses them,
# which do several int8 multiply-adds per float32 one; and for memory-bound layers (small batch)
# where moving a quarter of the bytes matters more than the arithmetic (the copy measurement
# printed how much faster int8 moved the same values). For exact BLAS speed in numpy: hold the
# codes in float32 and use float32 BLAS on chunks of K of at most 1040 (so every partial sum
# stays below 2**24 and is exact), and add the chunk results in int32/int64 or float64; or use
# float64 BLAS, exact up to 2**53.

# %% [markdown]
# **Q2 (2 points).** In the experiment with one 100x output channel, how did per-tensor and
# per-channel scales compare on the ordinary columns, and why? Why can a weight matrix have one
# scale per *output* column for free in `quantized_matmul`, while one scale per *input* row
# (along K) would break the integer matmul?

# %% [markdown] nbgrader={"grade": true, "grade_id": "q03_per_channel", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# Per tensor, the scale is set by the large column (100x larger), so the ordinary columns fall
# on only a handful of codes (the printed count of distinct codes) and their output error is
# tens of percent; per channel, each column gets its own scale, uses the full range, and its
# error drops to the same small level as the large column's. A scale per output column j
# multiplies every term of output j's sum, so it factors out: y_j = s_x s_j sum_k q_x[k] q_w[k, j],
# one rescale after the exact integer sum. A scale per input row k differs between the terms of
# one sum, so each product would have to be rescaled before adding, which means float arithmetic
# inside the sum and no int32 accumulation.

# %% [markdown]
# ## What you measured
# - int8 codes take a quarter of the bytes of float32 weights; the copy measurement printed
#   how much time that saves on this machine when memory traffic is the limit.
# - Rounding costs at most half a step per element; in a matmul the errors partly cancel, and
#   per-channel scales keep one large channel from ruining the others (the per-column errors
#   printed above).
# - int8 products must be summed in 32 bits: numpy's own `int8 @ int8` wraps silently.
# - numpy has no BLAS routine for integer matmul: the speed cell printed how its int32 matmul
#   compares with float32 BLAS here. Where it is slower, int8 saves memory in numpy, not time.
#   float32 BLAS on int8 codes is exact only while partial sums stay below $2^{24}$.
