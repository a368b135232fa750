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
# # 04 — Mixed precision training with dynamic loss scaling, in real float16
#
# A float16 number takes 2 bytes instead of float32's 4, so every tensor that moves through
# memory moves half the bytes, and GPUs multiply float16 matrices on tensor cores that are
# many times faster than their float32 units (datasheet figures below). The catch is range:
# float16 cannot hold anything smaller than about $6 \times 10^{-8}$, and gradients often are.
# They silently become zero and the network stops learning.
#
# Mixed precision training (Micikevicius et al., "Mixed Precision Training", ICLR 2018) keeps
# the speed and fixes the range with two ideas: keep a **float32 master copy** of the weights
# and apply the updates there, and **scale the loss** before the backward pass so that the
# gradients land inside float16's range, then divide the scale out again in float32. A
# **dynamic** loss scaler finds a good scale by itself: it backs off and skips the step when a
# gradient overflows, and grows again after a run of clean steps.
#
# Everything here happens for real in numpy: the forward and backward passes run on float16
# arrays (matrix products sum in float32 as a GPU tensor core does), and the master weights
# are float32 arrays.
#
# **What you will build:**
#
# | task | what | points |
# | --- | --- | --- |
# | 1 | `DynamicLossScaler`: `scale_loss`, `unscale_`, `update` | 4 |
# | 2 | `MixedPrecisionTrainer(model, optimizer, scaler).train_step((x, labels))` | 6 |
# | 3 | `training_memory_bytes(n_params, n_activations, mode)`: the memory bill of training | 2 |
# | | two written answers (graded by hand) | 4 |
#
# Then you train the same network three times, in float32, in float16 without scaling and in
# float16 with your scaler, and watch the gradients vanish and come back. Finally, honestly,
# the speed: numpy has no fast float16 arithmetic on a CPU, and you will see what that costs.
#
# **How it is graded.** Each task is followed by test cells. The visible tests are the ones
# you see; after you submit, the grader runs hidden cases of each test cell that check the same
# rules on other inputs. The tests check how you compute, not only the result: the scaler is
# driven through scripted sequences of overflowing and clean steps, the model records the dtype
# of every array it sees in the forward and backward pass, overflows are injected into the
# gradients, and the weight updates are compared with the ones the float16 path must produce.
# No test reads a clock.
#
# **How to run the visible tests.** Kernel > Restart Kernel and Run All Cells... A test cell
# that prints nothing has passed; a failing one stops with an `AssertionError` that says what
# is wrong. Until you implement a task, the cells that use it stop with `NotImplementedError`
# (that is expected, and the run goes on), and the experiments that need it print one line
# naming the task to finish first. Timings and plots are for you and are never graded; every
# number they print is this machine's, measured by the cell that prints it.

# %%
import numbers
import time

import numpy as np

import benchmarking
import plotting

# %% [markdown]
# ## This machine's limits
# The speed measurements at the end are compared with what this machine can do: its float32
# matrix-multiply rate (numpy's BLAS) and its memory bandwidth, both measured now.

# %%
peak_gflops = benchmarking.measure_peak_gflops(n=benchmarking.benchmark_size(1024, 256))
bandwidth_gbs = benchmarking.measure_copy_bandwidth_gbs(
    nbytes=benchmarking.benchmark_size(256 * 2**20, 32 * 2**20))
print(f"this machine: float32 GEMM {peak_gflops:.0f} GFLOP/s, copy bandwidth {bandwidth_gbs:.1f} GB/s")

# %% [markdown]
# ## float16's range
# A float16 has 1 sign bit, 5 exponent bits and 10 fraction bits (float32: 8 and 23). The
# exponent bits set the range, the fraction bits the precision:
#
# - The largest finite value is 65504; anything larger rounds to `inf` (**overflow**).
# - Normal numbers go down to $2^{-14} \approx 6.1 \times 10^{-5}$ with about 3 significant
#   decimal digits (machine epsilon $2^{-10} \approx 10^{-3}$).
# - Below that, *subnormal* numbers fill the gap down to $2^{-24} \approx 6.0 \times 10^{-8}$,
#   with fewer and fewer significant bits: a value near $10^{-7}$ keeps only one or two bits.
# - Anything below half of $2^{-24}$ rounds to 0 (**underflow**, or *flush to zero*).
#
# float32 reaches down to $1.2 \times 10^{-38}$, so gradients never underflow there. The cell
# reads the limits from `np.finfo` and casts some gradient-sized values to float16, plainly
# and after multiplying by $2^{16}$ (and dividing back in float32), which is loss scaling in
# one line.

# %%
half = np.finfo(np.float16)
print(f"float16: largest {float(half.max):g}, smallest normal {float(half.smallest_normal):.3g}, "
      f"smallest subnormal {float(half.smallest_subnormal):.3g}, machine epsilon {float(half.eps):.3g}")
demo_scale = 2.0**16
magnitudes = np.array([1.0, 1e-2, 1e-4, 1e-5, 1e-6, 1e-7, 3e-8, 1e-9, 1e-11], dtype=np.float32)
with np.errstate(over="ignore"):
    plain = magnitudes.astype(np.float16).astype(np.float32)
    scaled = (magnitudes * np.float32(demo_scale)).astype(np.float16).astype(np.float32) / np.float32(demo_scale)


def cast_outcome(value, stored):
    """How a value fared when stored in float16: overflow, flushed to zero, or its relative error."""
    if not np.isfinite(stored):
        return "overflow to inf"
    if stored == 0:
        return "flushed to zero"
    return f"error {abs(stored - value) / value:.2%}"


for value, p, s in zip(magnitudes, plain, scaled):
    print(f"gradient {value:8.0e}: float16 {cast_outcome(value, p):<16}  scaled by 2^16 {cast_outcome(value, s)}")

# %% [markdown]
# Read the table from the bottom: small gradients that float16 flushes to zero survive once
# multiplied by $2^{16}$, and the $10^{-6}$ to $10^{-7}$ ones that float16 keeps with a large
# error come back almost exact. At the top, a gradient of 1.0 times $2^{16}$ overflows: too
# large a scale destroys the large gradients. No single fixed scale suits every network and
# every phase of training, which is why the scale is adjusted while training runs.
#
# A second, quieter problem is the weight update itself. A step of $10^{-4}$ on a weight of
# 1.0 is below half of float16's spacing near 1.0 ($2^{-10}$), so in float16 the update is
# simply lost:

# %%
weight, update = 1.0, 1e-4
print(f"weight {weight} + update {update}: in float16 {float(np.float16(weight) + np.float16(update))!r}, "
      f"in float32 {float(np.float32(weight) + np.float32(update))!r}")

# %% [markdown]
# This is why the weights the optimizer updates, the *master weights*, stay in float32, and
# only a float16 copy of them is used for the forward and backward passes.
#
# ## The model, the loss and the optimizer (given)
# The cell below is given and locked: your work is the precision logic, not backprop. It holds:
#
# - `tensor_core_matmul(a, b)`: float16 `(M, K) @ (K, N)` to float16 `(M, N)`, each product
#   summed in float32 and rounded once at the end, which is what a GPU tensor core does with
#   float16 inputs. numpy's own float16 matmul gives the same numbers but runs many times
#   slower (measured at the end).
# - `MLP`: a two-layer perceptron `x -> ReLU(x W1 + b1) -> logits = h W2 + b2`.
#   `model.params` holds the **float32 master weights** `W1, b1, W2, b2`. `model.forward(x,
#   params)` computes in the dtype of the `params` you pass (all of them and `x` must share one
#   dtype) and records every dtype it meets in `model.dtypes_seen`; `model.loss(logits,
#   labels)` returns a `Loss`. The tests use `model.dtypes_seen` to check that your float16
#   path runs in float16, and `model.inject_nonfinite = (name, value)` to plant an `inf` or
#   `nan` in the next backward pass.
# - `Loss`: a scalar that knows its gradients. `float(loss)` is its value;
#   `loss.backward()` returns a dict of gradients `{"W1": ..., "b1": ..., "W2": ..., "b2": ...}`
#   in the forward pass's dtype; `(s * loss).backward()` returns the gradients of `s * loss`,
#   as in an autograd framework. The cross-entropy and softmax are computed in float32 (as
#   mixed precision frameworks do), then the gradient enters the float16 backward pass.
#   `model.loss_weight` multiplies the cross-entropy; small values make small gradients.
# - `SGD(lr, momentum)`: `optimizer.step(params, grads)` updates `params` in place
#   (`v = momentum v + g; w -= lr v`) and counts the updates in `optimizer.steps`.
# - `float32_train_step(model, optimizer, batch)`: one ordinary float32 step, the baseline.
# - `make_classification_data(n, ...)`: synthetic data, `n` points around 10 class centres.

# %% nbgrader={"grade": false, "grade_id": "given_model_and_optimizer", "locked": true, "schema_version": 3, "solution": false}
FLOAT16, FLOAT32 = np.dtype(np.float16), np.dtype(np.float32)


def tensor_core_matmul(a, b):
    """float16 (M, K) @ float16 (K, N) -> float16 (M, N), products summed in float32.

    Products of two float16 values are exact in float32; the sum is rounded to float16 once,
    becoming inf where it lies beyond float16's range, as on a GPU tensor core.
    """
    if a.dtype != FLOAT16 or b.dtype != FLOAT16:
        raise TypeError(f"tensor_core_matmul takes float16 operands, got {a.dtype} and {b.dtype}")
    with np.errstate(all="ignore"):  # overflow to inf is the behaviour being modelled
        return round_to_float16(np.matmul(a.astype(np.float32), b.astype(np.float32)))


def round_to_float16(a):
    """float32 array -> float16, rounded to nearest: the same result as a.astype(np.float16).

    Values that round to zero (|a| <= 2**-25) are zeroed before the cast, because numpy's
    conversion is many times slower on them than on ordinary values.
    """
    rounds_to_zero = np.abs(a) <= np.float32(2.0**-25)
    with np.errstate(all="ignore"):
        return np.where(rounds_to_zero, a * np.float32(0), a).astype(np.float16)


def matmul(a, b):
    """a @ b in the operands' common dtype: float16 on the emulated tensor core, float32 by BLAS."""
    if a.dtype != b.dtype:
        raise TypeError(f"matmul of {a.dtype} {a.shape} and {b.dtype} {b.shape}: "
                        f"cast both operands to the same dtype")
    return tensor_core_matmul(a, b) if a.dtype == FLOAT16 else np.matmul(a, b)


class Loss:
    """A scalar loss that knows its gradients: (s * loss).backward() gives those of s * loss."""

    def __init__(self, value, backward_fn, factor=1.0):
        self.value = float(value)
        self.factor = float(factor)
        self._backward_fn = backward_fn

    def __mul__(self, factor):
        if not isinstance(factor, numbers.Real):
            return NotImplemented
        return Loss(self.value * float(factor), self._backward_fn, self.factor * float(factor))

    __rmul__ = __mul__

    def __float__(self):
        return self.value

    def __repr__(self):
        return f"Loss({self.value!r}, factor={self.factor!r})"

    def backward(self):
        """Gradients of (factor x loss) w.r.t. every weight, in the forward pass's dtype."""
        return self._backward_fn(self.factor)


class MLP:
    """x (B, n_in) -> h = ReLU(x W1 + b1) (B, n_hidden) -> logits = h W2 + b2 (B, n_out).

    params: float32 master weights W1 (n_in, n_hidden), b1, W2 (n_hidden, n_out), b2.
    forward/backward run in the dtype of the params passed to forward and record every
    dtype they see in dtypes_seen; saved_for_backward holds (x, hidden, params) of the last
    forward; last_grads keeps a copy of the last backward's gradients.
    """

    def __init__(self, n_in=784, n_hidden=256, n_out=10, loss_weight=1.0, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": (rng.standard_normal((n_in, n_hidden)) * np.sqrt(2.0 / n_in)).astype(np.float32),
            "b1": np.zeros(n_hidden, dtype=np.float32),
            "W2": (rng.standard_normal((n_hidden, n_out)) * np.sqrt(1.0 / n_hidden)).astype(np.float32),
            "b2": np.zeros(n_out, dtype=np.float32),
        }
        self.loss_weight = float(loss_weight)
        self.dtypes_seen = {}
        self.last_grads = {}
        self.inject_nonfinite = None  # (param name, value): planted in the next backward, then cleared
        self.saved_for_backward = None

    def forward(self, x, params):
        """Logits (B, n_out) in x's dtype, which every entry of params must share."""
        wrong = {name: str(w.dtype) for name, w in params.items() if w.dtype != x.dtype}
        if wrong:
            raise TypeError(f"x is {x.dtype} but these weights are not: {wrong}; "
                            f"pass weights of the same dtype as x")
        with np.errstate(all="ignore"):
            hidden = np.maximum(matmul(x, params["W1"]) + params["b1"], 0)
            logits = matmul(hidden, params["W2"]) + params["b2"]
        self.saved_for_backward = (x, hidden, params)
        self.dtypes_seen = {"x": x.dtype, **{name: w.dtype for name, w in params.items()},
                            "hidden": hidden.dtype, "logits": logits.dtype}
        return logits

    def loss(self, logits, labels):
        """loss_weight x mean cross-entropy of logits (B, n_out) against integer labels (B,)."""
        rows = np.arange(len(labels))
        with np.errstate(all="ignore"):
            z = logits.astype(np.float32)  # softmax and log in float32, as mixed precision does
            z = z - z.max(axis=1, keepdims=True)
            log_prob = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            cross_entropy = -float(log_prob[rows, labels].mean())
            prob = np.exp(log_prob)

        def backward(factor):
            grad = prob.copy()
            grad[rows, labels] -= 1.0
            with np.errstate(all="ignore"):  # a too-large factor overflows to inf in float16
                grad = grad * np.float32(factor * self.loss_weight / len(labels))
            grad = round_to_float16(grad) if logits.dtype == FLOAT16 else grad.astype(logits.dtype)
            return self.backward(grad)

        return Loss(self.loss_weight * cross_entropy, backward)

    def backward(self, grad_logits):
        """Gradients {W1, b1, W2, b2} from d(objective)/d(logits) (B, n_out), in its dtype."""
        x, hidden, params = self.saved_for_backward
        with np.errstate(all="ignore"):
            grads = {"W2": matmul(hidden.T, grad_logits),
                     "b2": grad_logits.sum(axis=0, dtype=np.float32).astype(grad_logits.dtype)}
            grad_hidden = np.where(hidden > 0, matmul(grad_logits, params["W2"].T), 0).astype(grad_logits.dtype)
            grads["W1"] = matmul(x.T, grad_hidden)
            grads["b1"] = grad_hidden.sum(axis=0, dtype=np.float32).astype(grad_logits.dtype)
        if self.inject_nonfinite is not None:
            name, value = self.inject_nonfinite
            grads[name].flat[0] = value
            self.inject_nonfinite = None
        self.dtypes_seen.update({"grad_logits": grad_logits.dtype, "grad_hidden": grad_hidden.dtype,
                                 **{f"grad_{name}": g.dtype for name, g in grads.items()}})
        self.last_grads = {name: g.copy() for name, g in grads.items()}
        return grads


class SGD:
    """Momentum SGD, in place: v = momentum * v + g; w -= lr * v. steps counts the updates."""

    def __init__(self, lr, momentum=0.9):
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.velocity = {}
        self.steps = 0

    def step(self, params, grads):
        for name, grad in grads.items():
            velocity = self.velocity.setdefault(name, np.zeros(params[name].shape, dtype=np.float32))
            velocity *= self.momentum
            velocity += grad
            params[name] -= self.lr * velocity
        self.steps += 1


def float32_train_step(model, optimizer, batch):
    """One float32 training step on batch = (x, labels); returns the loss as a float."""
    x, labels = batch
    loss = model.loss(model.forward(np.asarray(x, dtype=np.float32), model.params), labels)
    optimizer.step(model.params, loss.backward())
    return float(loss)


def make_classification_data(n, n_in=784, n_classes=10, separation=0.15, seed=0):
    """n points x (n, n_in) float32 around n_classes random centres, and labels (n,) int64."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, n_in)).astype(np.float32)
    labels = rng.integers(0, n_classes, size=n)
    x = separation * centres[labels] + rng.standard_normal((n, n_in)).astype(np.float32)
    return x, labels


# %% [markdown]
# ## Task 1 — Dynamic loss scaler (4 points)
#
# Multiply the loss by a scale $S$ before the backward pass. By the chain rule every gradient
# is multiplied by $S$ too, which lifts the small ones out of the flush-to-zero zone. After the
# backward pass, convert the gradients to float32 and divide by $S$ (**unscale**): float32 has
# the range to hold the true, tiny values, and the optimizer sees the correct gradient.
#
# If $S$ is too large, some scaled gradient exceeds 65504 and becomes `inf` (or `nan`, from
# `inf - inf` or `0 * inf` further down the backward pass). That step's gradients are garbage:
# skip the update and halve $S$. If no overflow happens for `growth_interval` steps in a row,
# try doubling $S$. The scale then hovers just below the largest value that does not overflow,
# so the gradients use the top of float16's range and as few as possible underflow. An
# occasional skipped step is the price, and it is cheap.
#
# **Contract.** `DynamicLossScaler(init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5,
# growth_interval=2000, min_scale=1.0, max_scale=2.0**24)`:
# - The attribute `scale` holds the current $S$ as a float, starting at `init_scale`.
# - Raise `ValueError`, naming the offending value, unless `growth_factor > 1`,
#   `0 < backoff_factor < 1`, `growth_interval >= 1`, and `0 < min_scale <= init_scale <= max_scale`.
# - `scale_loss(loss)` returns `loss * S`; `loss` may be a number or a `Loss`.
# - `unscale_(grads)` takes the dict of gradients a backward pass returned (float16 or
#   float32 arrays) and replaces every entry, in the same dict, by the float32 array
#   `g / S`. Convert to float32 **before** dividing: $g / S$ may lie far below float16's
#   smallest subnormal. Return `True` if every element of every gradient is finite, `False`
#   if any is `inf`, `-inf` or `nan`; unscale every entry either way. It does not change $S$.
# - `update(found_inf)`, called once per step after `unscale_`: on an overflow, set
#   $S \leftarrow \max(S \cdot \text{backoff\_factor}, \text{min\_scale})$ and restart the
#   count of clean steps; otherwise count the clean step, and when the count reaches
#   `growth_interval`, set $S \leftarrow \min(S \cdot \text{growth\_factor}, \text{max\_scale})$
#   and restart the count. With `growth_interval=3`, clean, clean, clean grows at the third
#   step; clean, clean, overflow, clean, clean does not grow at all.
#
# Hints: `np.isfinite(g).all()`; one integer attribute counts the clean steps.

# %% nbgrader={"grade": false, "grade_id": "DynamicLossScaler", "locked": false, "schema_version": 3, "solution": true}
class DynamicLossScaler:
    """Loss scale S for float16 training: back off on overflow, grow after clean steps."""

    def __init__(self, init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
                 min_scale=1.0, max_scale=2.0**24):
        ### BEGIN SOLUTION
        if not growth_factor > 1:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor}")
        if not 0 < backoff_factor < 1:
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor}")
        if not growth_interval >= 1:
            raise ValueError(f"growth_interval must be >= 1 step, got {growth_interval}")
        if not 0 < min_scale <= init_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= init_scale <= max_scale, got min_scale={min_scale}, "
                             f"init_scale={init_scale}, max_scale={max_scale}")
        self.scale = float(init_scale)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.clean_steps = 0  # overflow-free steps in a row, counted toward the next growth
        ### END SOLUTION

    def scale_loss(self, loss):
        """loss * S, for a number or a Loss."""
        ### BEGIN SOLUTION
        return loss * self.scale
        ### END SOLUTION

    def unscale_(self, grads):
        """Replace each grads[name] by float32 grads[name] / S; True if all elements are finite."""
        ### BEGIN SOLUTION
        all_finite = True
        for name, grad in grads.items():
            unscaled = grad.astype(np.float32) / self.scale
            grads[name] = unscaled
            all_finite = all_finite and bool(np.isfinite(unscaled).all())
        return all_finite
        ### END SOLUTION

    def update(self, found_inf):
        """After each step: back off on overflow, grow after growth_interval clean steps."""
        ### BEGIN SOLUTION
        if found_inf:
            self.scale = max(self.scale * self.backoff_factor, self.min_scale)
            self.clean_steps = 0
        else:
            self.clean_steps += 1
            if self.clean_steps == self.growth_interval:
                self.scale = min(self.scale * self.growth_factor, self.max_scale)
                self.clean_steps = 0
        ### END SOLUTION


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t04_scaler_scale_and_unscale", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""scale_loss multiplies by S; unscale_ divides in float32, in place, and reports non-finite gradients"""
scaler = DynamicLossScaler(init_scale=1024.0)
assert scaler.scale == 1024.0, f"scale must start at init_scale 1024.0, got {scaler.scale}"
assert scaler.scale_loss(0.5) == 512.0, f"scale_loss(0.5) with S=1024 must be 512.0, got {scaler.scale_loss(0.5)}"

grads = {"W": np.array([[1024.0, -2048.0], [0.0, 3072.0]], dtype=np.float16),
         "b": np.array([512.0], dtype=np.float16)}
finite = scaler.unscale_(grads)
assert isinstance(finite, (bool, np.bool_)) and finite, f"finite gradients: unscale_ must return True, got {finite!r}"
for name, expected in [("W", [[1.0, -2.0], [0.0, 3.0]]), ("b", [0.5])]:
    assert grads[name].dtype == np.float32, f"grads[{name!r}] must be replaced by a float32 array, got {grads[name].dtype}"
    np.testing.assert_array_equal(grads[name], expected, err_msg=f"grads[{name!r}] / 1024 is wrong")

grads = {"W": np.array([1.0, np.inf], dtype=np.float16), "b": np.array([2048.0], dtype=np.float16)}
finite = scaler.unscale_(grads)
assert isinstance(finite, (bool, np.bool_)) and not finite, f"a gradient holds inf: unscale_ must return False, got {finite!r}"
assert grads["b"].dtype == np.float32 and grads["b"][0] == 2.0, \
    f"every gradient must be unscaled, also when another one holds inf: grads['b'] is {grads['b']!r}"
assert scaler.scale == 1024.0, f"unscale_ must not change the scale (update does), got {scaler.scale}"

# scale_loss on a real Loss: the backward pass of S * loss gives S times the gradients
model = MLP(n_in=6, n_hidden=5, n_out=3, seed=1)
x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
loss = model.loss(model.forward(x, model.params), np.array([0, 1, 2, 1]))
plain_grads = loss.backward()
scaled_loss = DynamicLossScaler(init_scale=8.0).scale_loss(loss)
np.testing.assert_allclose(float(scaled_loss), 8.0 * float(loss), rtol=1e-12, err_msg="scale_loss(loss) must equal 8 * loss")
for name, grad in scaled_loss.backward().items():
    np.testing.assert_allclose(grad, 8.0 * plain_grads[name], rtol=1e-6, err_msg=f"backward of the scaled loss: {name}")

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t04_scaler_growth_and_backoff", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""update: grow exactly after growth_interval clean steps, halve on overflow, restart the count after either"""
scaler = DynamicLossScaler(init_scale=8.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
script = [  # (overflow?, scale expected after update)
    (False, 8.0), (False, 8.0), (False, 16.0),   # third clean step in a row: grow
    (False, 16.0), (False, 16.0), (True, 8.0),   # overflow: halve, restart the count
    (False, 8.0), (False, 8.0), (False, 16.0),   # so growth waits three more clean steps
    (True, 8.0), (True, 4.0),                    # consecutive overflows keep halving
    (False, 4.0), (False, 4.0), (False, 8.0),
]
for step, (found_inf, expected) in enumerate(script):
    scaler.update(found_inf)
    assert scaler.scale == expected, (
        f"growth_interval=3, after step {step} of the script (overflows {[f for f, _ in script[:step + 1]]}) "
        f"the scale must be {expected}, got {scaler.scale}")

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t04_scaler_bounds", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""the scale stays within [min_scale, max_scale]; invalid settings raise ValueError"""
scaler = DynamicLossScaler(init_scale=16.0, min_scale=4.0)
for expected in (8.0, 4.0, 4.0, 4.0):
    scaler.update(True)
    assert scaler.scale == expected, f"repeated overflows from 16 with min_scale=4: expected {expected}, got {scaler.scale}"

scaler = DynamicLossScaler(init_scale=16.0, growth_interval=1, max_scale=64.0)
for expected in (32.0, 64.0, 64.0, 64.0):
    scaler.update(False)
    assert scaler.scale == expected, f"growth from 16 with max_scale=64: expected {expected}, got {scaler.scale}"

for bad in [dict(growth_factor=1.0), dict(backoff_factor=1.5)]:
    try:
        DynamicLossScaler(**bad)
    except ValueError:
        pass
    else:
        raise AssertionError(f"DynamicLossScaler({bad}) must raise ValueError")

# %% [markdown]
# ## Task 2 — The mixed precision training step (6 points)
#
# `MixedPrecisionTrainer(model, optimizer, scaler)` trains `model` (an `MLP`) with
# `optimizer` (an `SGD`) and your scaler. `train_step((x, labels))` does one step:
#
# 1. Make a float16 working copy of the float32 master weights `model.params`
#    (a new dict; leave `model.params` as it is).
# 2. Run the forward pass in float16: `logits = model.forward(x16, half_params)` with `x`
#    cast to float16, then `loss = model.loss(logits, labels)`.
# 3. Backward pass on the **scaled** loss: `grads = scaler.scale_loss(loss).backward()`,
#    float16 gradients of $S \cdot \text{loss}$.
# 4. `scaler.unscale_(grads)`: now float32 gradients of the loss, and whether all are finite.
# 5. If they are finite, `optimizer.step(model.params, grads)` updates the float32 master
#    weights; otherwise skip the update (the weights and the optimizer's state stay untouched).
# 6. `scaler.update(...)` with whether this step overflowed.
# 7. Return `{"loss": ..., "loss_scale": ..., "overflow": ..., "gradients_valid": ...}`:
#    the loss as a Python float, **not** scaled; the scale after this step's update (the one
#    the next step uses); whether the gradients overflowed; whether the update was applied.
#
# Keep `model.params` float32 from start to end: the next step's float16 copy is made from
# them again. The tests check the dtypes the model saw, the exact weight update the float16
# path must produce, that an injected `inf` or `nan` leaves the weights and the optimizer
# untouched, and that the trainer matches float32 training where unscaled float16 does not.

# %% nbgrader={"grade": false, "grade_id": "MixedPrecisionTrainer", "locked": false, "schema_version": 3, "solution": true}
class MixedPrecisionTrainer:
    """float16 forward and backward on a copy of float32 master weights, with loss scaling."""

    def __init__(self, model, optimizer, scaler):
        ### BEGIN SOLUTION
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        ### END SOLUTION

    def train_step(self, batch):
        """One step on batch = (x (B, n_in), labels (B,)); returns loss, loss_scale, overflow, gradients_valid."""
        ### BEGIN SOLUTION
        x, labels = batch
        half_params = {name: w.astype(np.float16) for name, w in self.model.params.items()}
        logits = self.model.forward(np.asarray(x).astype(np.float16), half_params)
        loss = self.model.loss(logits, labels)
        grads = self.scaler.scale_loss(loss).backward()
        finite = self.scaler.unscale_(grads)
        if finite:
            self.optimizer.step(self.model.params, grads)
        self.scaler.update(not finite)
        return {"loss": float(loss), "loss_scale": float(self.scaler.scale),
                "overflow": not finite, "gradients_valid": bool(finite)}
        ### END SOLUTION


# %% [markdown]
# The test cells of this task use the given helpers below (the grader's hidden cases use them
# too): `float16_pass_report(model)` reads what the model recorded of the last step,
# `expected_step(...)` makes on a twin model the update the float16 path must make, and
# `train_small(...)` trains a small MLP in float32, or in float16 with your trainer.

# %% nbgrader={"grade": false, "grade_id": "given_trainer_test_helpers", "locked": true, "schema_version": 3, "solution": false}
STEP_ARRAYS = ("x", "W1", "b1", "W2", "b2", "hidden", "logits",  # what MLP records of one step
               "grad_logits", "grad_hidden", "grad_W1", "grad_b1", "grad_W2", "grad_b2")
SMALL_BATCH, SMALL_HELD_OUT, SMALL_LOSS_WEIGHT = 32, 512, 1e-6


def float16_pass_report(model):
    """(arrays of STEP_ARRAYS that model.dtypes_seen lacks, {name: dtype} of those it saw not in float16)."""
    seen = model.dtypes_seen
    missing = [name for name in STEP_ARRAYS if name not in seen]
    not_half = {str(name): str(dtype) for name, dtype in seen.items() if dtype != FLOAT16}
    return missing, not_half


def expected_step(model, optimizer, x, labels, scale):
    """The update the float16 path must make, built from the given pieces on a twin model."""
    half_params = {name: w.astype(np.float16) for name, w in model.params.items()}
    loss = model.loss(model.forward(x.astype(np.float16), half_params), labels)
    grads = {name: g.astype(np.float32) / np.float32(scale) for name, g in (loss * scale).backward().items()}
    optimizer.step(model.params, grads)


def train_small(scaler, data_seed, model_seed, n_steps=40):
    """Held-out cross-entropy after n_steps of momentum SGD on a 64-32-10 MLP with loss weight 1e-6.

    scaler=None trains in float32 (float32_train_step), else with MixedPrecisionTrainer and scaler.
    Batches of 32 points of make_classification_data(seed=data_seed); the cross-entropy (divided
    by the loss weight) of the float32 master weights is taken on 512 points never trained on.
    """
    x, labels = make_classification_data(n_steps * SMALL_BATCH + SMALL_HELD_OUT, n_in=64, separation=0.5,
                                         seed=data_seed)
    model = MLP(n_in=64, n_hidden=32, n_out=10, loss_weight=SMALL_LOSS_WEIGHT, seed=model_seed)
    optimizer = SGD(lr=0.05 / SMALL_LOSS_WEIGHT, momentum=0.9)
    trainer = None if scaler is None else MixedPrecisionTrainer(model, optimizer, scaler)
    for step in range(n_steps):
        batch = slice(SMALL_BATCH * step, SMALL_BATCH * (step + 1))
        if trainer is None:
            float32_train_step(model, optimizer, (x[batch], labels[batch]))
        else:
            trainer.train_step((x[batch], labels[batch]))
    held_out_x, held_out_labels = x[-SMALL_HELD_OUT:], labels[-SMALL_HELD_OUT:]
    return float(model.loss(model.forward(held_out_x, model.params), held_out_labels)) / model.loss_weight


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t04_trainer_float16_path", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""train_step runs forward and backward in float16, keeps float32 masters, returns the four results"""
rng = np.random.default_rng(40)
model = MLP(n_in=20, n_hidden=16, n_out=5, loss_weight=0.5, seed=3)
optimizer = SGD(lr=0.1, momentum=0.0)
trainer = MixedPrecisionTrainer(model, optimizer, DynamicLossScaler(init_scale=256.0, growth_interval=1000))
x, labels = rng.standard_normal((8, 20)).astype(np.float32), rng.integers(0, 5, size=8)
result = trainer.train_step((x, labels))

assert isinstance(result, dict), f"train_step must return a dict, got {type(result).__name__}"
missing = {"loss", "loss_scale", "overflow", "gradients_valid"} - set(result)
assert not missing, f"train_step's result misses keys {sorted(missing)}"
assert isinstance(result["loss"], float), f"result['loss'] must be a Python float, got {type(result['loss']).__name__}"
assert isinstance(result["loss_scale"], float), f"result['loss_scale'] must be a float, got {type(result['loss_scale']).__name__}"
for key in ("overflow", "gradients_valid"):
    assert isinstance(result[key], (bool, np.bool_)), f"result[{key!r}] must be a bool, got {type(result[key]).__name__}"
assert not result["overflow"] and result["gradients_valid"], f"a clean step must report no overflow and a valid update: {result}"
assert result["loss_scale"] == 256.0, f"no growth after one clean step (interval 1000): loss_scale must be 256.0, got {result['loss_scale']}"

missing, not_half = float16_pass_report(model)
assert not missing, f"the model saw no complete forward and backward pass: it did not record {missing}"
assert not not_half, f"the forward and backward pass must run in float16, but these arrays were not: {not_half}"
wrong_master = {k: str(w.dtype) for k, w in model.params.items() if w.dtype != np.float32}
assert not wrong_master, f"model.params (the master weights) must stay float32, got {wrong_master}"

# the reported loss is the loss itself, not the scaled one
reference = MLP(n_in=20, n_hidden=16, n_out=5, loss_weight=0.5, seed=3)
expected_loss = float(reference.loss(reference.forward(x, reference.params), labels))
assert abs(result["loss"] - expected_loss) < 1e-2 * expected_loss, \
    f"result['loss'] must be the unscaled loss, about {expected_loss:.4f}, got {result['loss']}"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t04_trainer_update_math", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""the update applied to the float32 masters is exactly -lr x (float16 gradient of S x loss) / S"""
rng = np.random.default_rng(42)
x, labels = rng.standard_normal((16, 12)).astype(np.float32), rng.integers(0, 6, size=16)
model, twin = MLP(n_in=12, n_hidden=10, n_out=6, seed=5), MLP(n_in=12, n_hidden=10, n_out=6, seed=5)
optimizer, twin_optimizer = SGD(lr=0.5, momentum=0.0), SGD(lr=0.5, momentum=0.0)
trainer = MixedPrecisionTrainer(model, optimizer, DynamicLossScaler(init_scale=512.0, growth_interval=1000))
before = {name: w.copy() for name, w in model.params.items()}
trainer.train_step((x, labels))
expected_step(twin, twin_optimizer, x, labels, 512.0)
assert optimizer.steps == 1, f"one clean step must apply exactly one optimizer update, got {optimizer.steps}"
for name in model.params:
    assert model.params[name].dtype == np.float32, f"master weight {name} must stay float32, got {model.params[name].dtype}"
    np.testing.assert_allclose(model.params[name], twin.params[name], rtol=1e-6, atol=0,
                               err_msg=f"master weight {name} after one step (lr 0.5, S 512) differs from "
                                       f"w - lr * float32(float16 grad of S*loss) / S")
    assert not np.array_equal(model.params[name], before[name]), f"master weight {name} was not updated"

# an update far below float16's spacing must still reach the float32 masters
model, twin = MLP(n_in=12, n_hidden=10, n_out=6, seed=6), MLP(n_in=12, n_hidden=10, n_out=6, seed=6)
optimizer, twin_optimizer = SGD(lr=1e-5, momentum=0.0), SGD(lr=1e-5, momentum=0.0)
trainer = MixedPrecisionTrainer(model, optimizer, DynamicLossScaler(init_scale=1024.0, growth_interval=1000))
before = model.params["W2"].copy()
trainer.train_step((x, labels))
expected_step(twin, twin_optimizer, x, labels, 1024.0)
changed = np.mean(model.params["W2"] != before)
assert changed > 0.5, (f"with lr 1e-5 the update is ~1e-5 of each weight, below float16's spacing but not "
                       f"float32's: it must change the float32 masters, but only {changed:.0%} of W2 changed")
np.testing.assert_allclose(model.params["W2"], twin.params["W2"], rtol=1e-6, atol=0,
                           err_msg="tiny update of W2 does not match the float32 master update")

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t04_trainer_skips_overflow", "locked": true, "points": 2, "schema_version": 3, "solution": false}
"""an inf in the gradients skips the update and backs off the scale; a clean step then updates"""
rng = np.random.default_rng(44)
x, labels = rng.standard_normal((8, 10)).astype(np.float32), rng.integers(0, 3, size=8)
model = MLP(n_in=10, n_hidden=6, n_out=3, seed=10)
optimizer = SGD(lr=0.1, momentum=0.9)
trainer = MixedPrecisionTrainer(model, optimizer, DynamicLossScaler(init_scale=1024.0, growth_interval=1000))
before = {name: w.copy() for name, w in model.params.items()}
model.inject_nonfinite = ("W2", np.inf)
result = trainer.train_step((x, labels))
assert result["overflow"] and not result["gradients_valid"], \
    f"an inf in the W2 gradient must give overflow=True, gradients_valid=False, got {result}"
changed = [name for name in before if not np.array_equal(model.params[name], before[name])]
assert not changed, f"an overflow step must not update any weight, but {changed} changed"
assert optimizer.steps == 0, f"an overflow step must not call the optimizer, it ran {optimizer.steps} update(s)"
assert result["loss_scale"] == 512.0, f"the overflow must halve the scale 1024 -> 512, got loss_scale {result['loss_scale']}"

result = trainer.train_step((x, labels))
assert not result["overflow"] and result["gradients_valid"], f"the next, clean step must be applied, got {result}"
assert optimizer.steps == 1, f"the clean step must update once, got {optimizer.steps} update(s)"
assert all(not np.array_equal(model.params[name], before[name]) for name in before), "the clean step must update every weight"

# a real overflow: S = 2**40 pushes the scaled gradients past 65504 until the scaler backs off
model = MLP(n_in=10, n_hidden=6, n_out=3, seed=11)
optimizer = SGD(lr=0.1, momentum=0.9)
trainer = MixedPrecisionTrainer(model, optimizer, DynamicLossScaler(init_scale=2.0**40, max_scale=2.0**40))
results = [trainer.train_step((x, labels)) for _ in range(30)]
skipped = [r["overflow"] for r in results]
assert skipped[0], "S = 2**40 must overflow float16 on the first step"
first_clean = skipped.index(False) if False in skipped else None
assert first_clean is not None, f"the scale must back off until a step is clean, 30 steps all overflowed; scales {[r['loss_scale'] for r in results]}"
assert not any(skipped[first_clean:]), f"once the scale fits, these steps must not overflow again: {skipped}"
assert [r["loss_scale"] for r in results[:first_clean]] == [2.0**(39 - i) for i in range(first_clean)], \
    f"each overflow must halve the scale: got {[r['loss_scale'] for r in results[:first_clean]]}"
assert optimizer.steps == 30 - first_clean, \
    f"{first_clean} steps overflowed, so {30 - first_clean} updates must be applied, got {optimizer.steps}"

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t04_trainer_matches_float32", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""with tiny gradients, the scaled float16 run ends within 0.01 of float32's loss; unscaled float16 does not"""
reference = train_small(None, data_seed=45, model_seed=13)
scaled = train_small(DynamicLossScaler(init_scale=2.0**16, growth_interval=10, max_scale=2.0**30), data_seed=45,
                     model_seed=13)
unscaled = train_small(DynamicLossScaler(init_scale=1.0, min_scale=1.0, max_scale=1.0), data_seed=45, model_seed=13)
assert abs(scaled - reference) < 0.01, \
    f"dynamic loss scaling must end within 0.01 of float32's held-out cross-entropy {reference:.4f}, got {scaled:.4f}"
assert unscaled - reference > 0.3, \
    (f"without scaling (S = 1) float16 gradients underflow, so training must end far above float32's "
     f"{reference:.4f}, got {unscaled:.4f}: is the backward pass really run on the float16 loss?")

# %% [markdown]
# ## Three training runs
# The 784-256-10 MLP of the given cell is trained three times, from the same initial weights on
# the same batches of synthetic data (fresh points at every step, batch 64, momentum SGD):
#
# 1. **float32**: `float32_train_step`, the baseline;
# 2. **float16, no scaling**: your trainer with the scale pinned at $S = 1$
#    (`min_scale = max_scale = 1`), so the float16 gradients are the raw ones;
# 3. **float16, dynamic scaling**: your trainer with `DynamicLossScaler(init_scale=2**16,
#    growth_interval=10, max_scale=2**40)`. `growth_interval` is 10 rather than 2000 so that
#    the scale has time to climb within a short run.
#
# The loss weight is $10^{-6}$, so every gradient is a millionth of the usual size, and the
# learning rate is multiplied by $10^{6}$ to compensate: in exact arithmetic the three runs
# would be the same run, so every difference between them comes from float16. Gradients this
# small are not only an artefact of the example: Micikevicius et al. (2018) show for an SSD
# object detector trained in float32 that many activation gradients fall below float16's
# smallest subnormal and would become zero.
#
# At every fifth step the cell also counts the gradient elements that **underflow**: nonzero
# in a float32 backward pass at the same weights, but exactly zero in the float16 backward
# pass of the trainer's step (`model.last_grads`). The held-out cross-entropy of the final
# float32 master weights is computed in float32 on 1024 points that were never trained on.
# Each training step is timed too (the counting probe is not), and the median is printed.

# %% tags=["raises-exception"]
N_STEPS = benchmarking.benchmark_size(120, 12)
BATCH = 64
LOSS_WEIGHT = 1e-6
LEARNING_RATE = 0.01 / LOSS_WEIGHT  # the same run as loss weight 1 with lr 0.01, in exact arithmetic
PROBE_EVERY = 5
x_data, labels_data = make_classification_data(N_STEPS * BATCH + 1024, seed=1)
x_test, labels_test = x_data[-1024:], labels_data[-1024:]


def underflow_fractions(grads_float32, grads_float16):
    """Fraction of elements nonzero in float32 but zero in float16: (all weights, W1 only)."""
    nonzero = {name: g != 0 for name, g in grads_float32.items()}
    lost = {name: nonzero[name] & (grads_float16[name] == 0) for name in nonzero}
    total = sum(m.sum() for m in lost.values()) / max(1, sum(m.sum() for m in nonzero.values()))
    return float(total), float(lost["W1"].sum() / max(1, nonzero["W1"].sum()))


def run_training(make_scaler, n_steps=N_STEPS):
    """Train a fresh MLP for n_steps: in float32 if make_scaler is None, else with your trainer."""
    model = MLP(loss_weight=LOSS_WEIGHT, seed=0)
    optimizer = SGD(lr=LEARNING_RATE, momentum=0.9)
    trainer = None if make_scaler is None else MixedPrecisionTrainer(model, optimizer, make_scaler())
    record = {"cross_entropy": [], "scale": [], "skipped": [], "probe_steps": [], "underflow": [], "underflow_W1": [],
              "step_s": []}
    for step in range(n_steps):
        batch = (x_data[step * BATCH:(step + 1) * BATCH], labels_data[step * BATCH:(step + 1) * BATCH])
        if trainer is None:
            start = time.perf_counter()
            loss = float32_train_step(model, optimizer, batch)
            record["step_s"].append(time.perf_counter() - start)
            record["cross_entropy"].append(loss / LOSS_WEIGHT)
            continue
        probe = step % PROBE_EVERY == 0
        if probe:  # float32 gradients at the weights this step starts from (not timed)
            grads_float32 = model.loss(model.forward(batch[0], model.params), batch[1]).backward()
        record["scale"].append(trainer.scaler.scale)
        start = time.perf_counter()
        result = trainer.train_step(batch)
        record["step_s"].append(time.perf_counter() - start)
        record["cross_entropy"].append(result["loss"] / LOSS_WEIGHT)
        if result["overflow"]:
            record["skipped"].append(step)
        if probe:
            total, first_layer = underflow_fractions(grads_float32, model.last_grads)
            record["probe_steps"].append(step)
            record["underflow"].append(total)
            record["underflow_W1"].append(first_layer)
    record["held_out"] = float(model.loss(model.forward(x_test, model.params), labels_test)) / LOSS_WEIGHT
    return record


RUNS = {
    "float32": None,
    "float16, no scaling": lambda: DynamicLossScaler(init_scale=1.0, min_scale=1.0, max_scale=1.0),
    "float16, dynamic scaling": lambda: DynamicLossScaler(init_scale=2.0**16, growth_interval=10, max_scale=2.0**40),
}
runs = None  # the three records, once all three runs have finished
try:
    runs = {name: run_training(make_scaler) for name, make_scaler in RUNS.items()}
except NotImplementedError:
    print("the three training runs need your scaler and trainer: finish Tasks 1 and 2 first")
if runs is not None:
    dynamic, unscaled = runs["float16, dynamic scaling"], runs["float16, no scaling"]
    step_ms = {name: 1e3 * float(np.median(run["step_s"])) for name, run in runs.items()}
    print(f"{N_STEPS} steps, batch {BATCH}, loss weight {LOSS_WEIGHT:g}: held-out cross-entropy at the end "
          + ", ".join(f"{name} {run['held_out']:.4f}" for name, run in runs.items())
          + f" (dynamic - float32 = {dynamic['held_out'] - runs['float32']['held_out']:+.1e})")
    print(f"step 0: first-layer gradient elements flushed to zero: no scaling {unscaled['underflow_W1'][0]:.1%}, "
          f"dynamic scaling (S = 2^16) {dynamic['underflow_W1'][0]:.1%}; all weights: {unscaled['underflow'][0]:.1%} "
          f"and {dynamic['underflow'][0]:.1%}")
    print(f"dynamic scaling: S = 2^{np.log2(dynamic['scale'][0]):.0f} at the start, "
          f"2^{np.log2(dynamic['scale'][-1]):.0f} at the last step; {len(dynamic['skipped'])} of {N_STEPS} steps "
          f"skipped on overflow")
    print("time per training step (median): " + ", ".join(f"{name} {ms:.2f} ms" for name, ms in step_ms.items())
          + f"; the float16 step with dynamic scaling takes {step_ms['float16, dynamic scaling'] / step_ms['float32']:.2g}x "
          f"the time of the float32 step")

# %% [markdown]
# The same dynamic scaler started far too high, at $S = 2^{45}$, for the first steps of the
# same run: every scaled gradient overflows at first, so the scaler halves $S$ and skips the
# update until the gradients fit.

# %% tags=["raises-exception"]
too_high = None
if runs is None:
    print("skipped: the training runs above did not finish (Tasks 1 and 2)")
else:
    too_high = run_training(lambda: DynamicLossScaler(init_scale=2.0**45, growth_interval=10, max_scale=2.0**45),
                            n_steps=min(N_STEPS, 40))
    n_run, n_skipped = len(too_high["scale"]), len(too_high["skipped"])
    first_clean = next((step for step in range(n_run) if step not in too_high["skipped"]), None)
    if first_clean is None:
        print(f"started at S = 2^45: all {n_run} steps overflowed and were skipped")
    else:
        print(f"started at S = 2^45: the first {first_clean} steps overflowed and were skipped, the first clean step "
              f"ran at S = 2^{np.log2(too_high['scale'][first_clean]):.0f}; {n_skipped - first_clean} more "
              f"overflow(s) in the next {n_run - first_clean} steps as S grew again")

# %% tags=["raises-exception"]
if runs is None:
    print("no plot: the training runs above did not finish (Tasks 1 and 2)")
else:
    steps = np.arange(N_STEPS)
    fig, ax = plotting.plot_lines(steps, {name: run["cross_entropy"] for name, run in runs.items()},
                                  xlabel="training step", ylabel="training cross-entropy (nats, batch of 64)",
                                  title=f"Same run, three precisions (loss weight {LOSS_WEIGHT:g})", logx=False)
    for line in ax.get_lines():
        line.set_markersize(2)
    ax.get_lines()[0].set(linewidth=6, alpha=0.35)  # float32, drawn wide: the dynamic run lies on top of it
    legend = ax.legend()

# %% tags=["raises-exception"]
if runs is None:
    print("no plot: the training runs above did not finish (Tasks 1 and 2)")
else:
    fig, ax = plotting.plot_lines(dynamic["probe_steps"],
                                  {name: np.array(runs[name]["underflow"]) * 100
                                   for name in ("float16, no scaling", "float16, dynamic scaling")},
                                  xlabel="training step", ylabel="gradient elements flushed to zero (%)",
                                  title="Underflow: nonzero in float32, zero in the float16 backward pass",
                                  logx=False, logy=False)

# %% tags=["raises-exception"]
if too_high is None:
    print("no plot: the training runs above did not finish (Tasks 1 and 2)")
else:
    fig, ax = plotting.plot_lines(np.arange(N_STEPS), {"dynamic scaling, from 2^16": dynamic["scale"]},
                                  xlabel="training step", ylabel="loss scale S (multiplier)",
                                  title="Dynamic loss scale", logx=False)
    ax.plot(np.arange(len(too_high["scale"])), too_high["scale"], marker="o", markersize=2,
            label="dynamic scaling, from 2^45")
    ax.get_lines()[0].set_markersize(2)
    skipped = [(s, run["scale"][s]) for run in (dynamic, too_high) for s in run["skipped"]]
    if skipped:
        ax.plot(*zip(*skipped), linestyle="none", marker="x", markersize=8, color="tab:red",
                label="overflow: step skipped")
    ax.axhline(float(np.finfo(np.float16).max), color="gray", linestyle=":", label="65504, float16's largest value")
    legend = ax.legend(fontsize="small")

# %% [markdown]
# What to look for in the printed lines and the plots (your numbers are this machine's run):
#
# - Without scaling, the gradient of the loss with respect to the logits is already below
#   float16's smallest subnormal when it enters the backward pass, so it flushes to zero and
#   every gradient behind it is zero too: the weights never move and the loss stays where it
#   started, however long you train. With a slightly larger loss weight some gradients would
#   survive as coarse subnormals; the cast table above shows how coarse.
# - With dynamic scaling the underflow fraction stays near zero and the loss curve lies on top
#   of float32's (the wide pale band); the printed held-out difference says how close.
# - The scale climbs by doubling every 10 clean steps, far above 65504: the scale multiplies
#   gradients of $10^{-7}$ and less. Started too high, the scaler skips the overflowing steps
#   (red crosses) and halves $S$ at each until the gradients fit. Ten clean steps later it
#   doubles again, and if that is one doubling too many the step overflows and $S$ halves
#   once more (the printed count of later overflows). That is how, over a long run, the scale
#   saw-tooths just below the largest safe value, with an occasional skipped step.
# - Compare the printed time per step of the three runs: the float16 path does more work here
#   than float32, not less. The section "Speed, honestly" below measures why.

# %% [markdown]
# ## Task 3 — The memory bill of training (2 points)
#
# Besides the forward pass's activations, training with Adam holds per parameter: the weights
# the forward and backward passes read, a gradient, and Adam's two float32 moment estimates
# (8 bytes). Mixed precision reads float16 weights but adds the float32 master copy:
#
# | component (bytes) | `"fp32"` | `"mixed"` |
# | --- | --- | --- |
# | `weights` read by forward and backward | $4N$ | $2N$ (float16 copy) |
# | `master_weights` | $0$ | $4N$ |
# | `gradients` | $4N$ | $2N$ (float16, as the backward pass writes them) |
# | `adam_state` | $8N$ | $8N$ |
# | `activations` saved for the backward pass | $4A$ | $2A$ |
#
# $N$ is the number of parameters and $A$ the number of activation values saved for the
# backward pass. This is the accounting of ZeRO (Rajbhandari et al., "ZeRO: Memory
# Optimizations Toward Training Trillion Parameter Models", SC 2020), which counts 16 bytes per
# parameter for mixed precision Adam. (Our numpy trainer also briefly holds float32 copies of
# the gradients when it unscales them; fused GPU optimizers unscale inside the update kernel.)
#
# **Contract.** `training_memory_bytes(n_params, n_activations, mode)` returns a dict of Python
# ints with the keys `"weights"`, `"master_weights"`, `"gradients"`, `"adam_state"`,
# `"activations"` and `"total"` (the sum of the other five). `mode` is `"fp32"` or `"mixed"`;
# raise `ValueError` naming any other mode, and for a negative count.

# %% nbgrader={"grade": false, "grade_id": "training_memory_bytes", "locked": false, "schema_version": 3, "solution": true}
def training_memory_bytes(n_params, n_activations, mode):
    """Bytes held while training with Adam, by component, for mode 'fp32' or 'mixed'."""
    ### BEGIN SOLUTION
    if mode not in ("fp32", "mixed"):
        raise ValueError(f"mode must be 'fp32' or 'mixed', got {mode!r}")
    if n_params < 0 or n_activations < 0:
        raise ValueError(f"counts must be >= 0, got n_params={n_params}, n_activations={n_activations}")
    n, a = int(n_params), int(n_activations)
    working_bytes = 2 if mode == "mixed" else 4  # float16 copies in mixed precision
    breakdown = {
        "weights": working_bytes * n,
        "master_weights": 4 * n if mode == "mixed" else 0,
        "gradients": working_bytes * n,
        "adam_state": 8 * n,
        "activations": working_bytes * a,
    }
    breakdown["total"] = sum(breakdown.values())
    return breakdown
    ### END SOLUTION


# %% [markdown]
# The second test cell below (and the grader's hidden cases) measures real arrays with this
# given helper: the bytes one training step of the given `MLP` holds, in float16 or float32.

# %% nbgrader={"grade": false, "grade_id": "given_memory_test_helper", "locked": true, "schema_version": 3, "solution": false}
def measured_bytes(model, x, labels, dtype):
    """(A, nbytes of the weights read, the gradients and the saved activations x, hidden, logits) of one step in dtype."""
    params = model.params if dtype == np.float32 else {k: w.astype(dtype) for k, w in model.params.items()}
    logits = model.forward(x.astype(dtype), params)
    x_saved, hidden, _ = model.saved_for_backward
    grads = model.loss(logits, labels).backward()
    n_activations = x_saved.size + hidden.size + logits.size
    return n_activations, {"weights": sum(w.nbytes for w in params.values()),
                           "gradients": sum(g.nbytes for g in grads.values()),
                           "activations": x_saved.nbytes + hidden.nbytes + logits.nbytes}


# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t04_memory_formula", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""training_memory_bytes follows the table: per-component bytes, their total, and mode checking"""
KEYS = {"weights", "master_weights", "gradients", "adam_state", "activations", "total"}
fp32 = training_memory_bytes(1000, 500, "fp32")
assert isinstance(fp32, dict) and set(fp32) == KEYS, f"the result must be a dict with keys {sorted(KEYS)}, got {fp32!r}"
assert fp32 == {"weights": 4000, "master_weights": 0, "gradients": 4000, "adam_state": 8000,
                "activations": 2000, "total": 18000}, f"fp32 with N=1000, A=500: got {fp32}"
mixed = training_memory_bytes(1000, 500, "mixed")
assert mixed == {"weights": 2000, "master_weights": 4000, "gradients": 2000, "adam_state": 8000,
                 "activations": 1000, "total": 17000}, f"mixed with N=1000, A=500: got {mixed}"
try:
    training_memory_bytes(1000, 500, "fp16")
except ValueError:
    pass
else:
    raise AssertionError("mode 'fp16' is not a mode: training_memory_bytes must raise ValueError")

# %% tags=["raises-exception"] nbgrader={"grade": true, "grade_id": "t04_memory_matches_arrays", "locked": true, "points": 1, "schema_version": 3, "solution": false}
"""the formula matches the bytes of the real arrays of a float16 and a float32 training step"""
rng = np.random.default_rng(47)
model = MLP(n_in=30, n_hidden=20, n_out=7, seed=14)
x, labels = rng.standard_normal((12, 30)).astype(np.float32), rng.integers(0, 7, size=12)
n_params = sum(w.size for w in model.params.values())
master_bytes = sum(w.nbytes for w in model.params.values())
for mode, dtype in [("mixed", np.float16), ("fp32", np.float32)]:
    n_activations, measured = measured_bytes(model, x, labels, dtype)
    predicted = training_memory_bytes(n_params, n_activations, mode)
    for key, value in measured.items():
        assert predicted[key] == value, (f"{mode}: {key} of a 30-20-7 MLP at batch 12 (N={n_params}, A={n_activations}) "
                                         f"hold {value} bytes in {np.dtype(dtype).name}, formula says {predicted[key]}")
    expected_master = master_bytes if mode == "mixed" else 0
    assert predicted["master_weights"] == expected_master, \
        f"{mode}: master weights are the float32 params ({expected_master} bytes here), formula says {predicted['master_weights']}"
    assert predicted["adam_state"] == 2 * master_bytes, \
        f"{mode}: Adam's two float32 moments take {2 * master_bytes} bytes here, formula says {predicted['adam_state']}"

# %% [markdown]
# The bill for the MLP above, were it trained with Adam, and for a hypothetical large model.
# Look at which components change between the two modes and which do not.

# %% tags=["raises-exception"]
mlp_params = sum(w.size for w in MLP().params.values())
mlp_activations = 64 * (784 + 256 + 10)  # x, hidden and logits saved per step at batch 64
try:
    for label, n_params, n_activations in [("784-256-10 MLP, batch 64", mlp_params, mlp_activations),
                                           ("1e9 parameters, 2e10 activation values", 10**9, 2 * 10**10)]:
        bills = {mode: training_memory_bytes(n_params, n_activations, mode) for mode in ("fp32", "mixed")}
        print(f"{label}: fp32 {bills['fp32']['total'] / 1e9:.4g} GB, mixed {bills['mixed']['total'] / 1e9:.4g} GB "
              f"({1 - bills['mixed']['total'] / bills['fp32']['total']:.0%} less); weights + master + gradients + "
              "Adam " + " vs ".join(f"{(bills[m]['total'] - bills[m]['activations']) / n_params:.0f}"
                                    for m in ("fp32", "mixed")) + " bytes per parameter")
except NotImplementedError:
    print("the memory bills need training_memory_bytes: finish Task 3 first")

# %% [markdown]
# With Adam, mixed precision saves **nothing** on the per-parameter state: 16 bytes per
# parameter either way, because the float32 master copy costs what the float16 weights and
# gradients save. The memory it saves is activation memory, which dominates when batches are
# large or sequences long, and lets the same GPU hold a larger batch.
#
# ## Speed, honestly
# Mixed precision exists for speed, and numpy on a CPU cannot show it. The cell below times
# one `N x N` matrix product three ways: numpy's float32 product (BLAS), numpy's float16
# product, and `tensor_core_matmul` (float16 in and out, float32 sums: casts around a float32
# BLAS call), next to this machine's float32 GEMM rate measured at the top.

# %%
n = benchmarking.benchmark_size(384, 128)
rng = np.random.default_rng(6)
a_f32 = rng.standard_normal((n, n)).astype(np.float32)
b_f32 = rng.standard_normal((n, n)).astype(np.float32)
a_f16, b_f16 = a_f32.astype(np.float16), b_f32.astype(np.float16)
timings = {
    "float32 BLAS": benchmarking.time_call(np.matmul, a_f32, b_f32),
    "float16 numpy": benchmarking.time_call(np.matmul, a_f16, b_f16, repeats=3, warmup=0),
    "float16, emulated tensor core": benchmarking.time_call(tensor_core_matmul, a_f16, b_f16),
}
rates = {name: benchmarking.gflops(2.0 * n**3, t.median_s) for name, t in timings.items()}
print(f"N={n}: " + ", ".join(f"{name} {t} ({rates[name]:.3g} GFLOP/s)" for name, t in timings.items())
      + f"; numpy float16 takes {timings['float16 numpy'].median_s / timings['float32 BLAS'].median_s:.0f}x and the "
      f"emulated tensor core {timings['float16, emulated tensor core'].median_s / timings['float32 BLAS'].median_s:.2g}x "
      f"the time of float32 BLAS; measured peak {peak_gflops:.0f} GFLOP/s")
fig, ax = plotting.plot_bars(list(rates), list(rates.values()), ylabel="GFLOP/s", title=f"N={n} matrix product",
                             reference=(peak_gflops, "float32 GEMM peak (measured)"))

# %% [markdown]
# numpy does not send float16 products to BLAS (BLAS libraries have no float16 GEMM); it runs a
# generic loop that converts the operands element by element, whatever float16 support the CPU
# has. The emulated tensor core hands the sums to float32 BLAS, doing what a GPU does in
# hardware (widen to float32, sum in float32, round once), but on a CPU the widening and
# rounding are extra passes over memory that plain float32 does not make: the printed ratio
# says what they cost here. The float16 training steps above pay for such casts, of the weights, activations and
# gradients, at every step: compare their printed time per step with the float32 step's.
#
# The one effect of float16 that any hardware shows is the memory traffic. A copy does no
# arithmetic; copying the same number of values in float16 moves half the bytes:

# %%
n_values = benchmarking.benchmark_size(32 * 2**20, 8 * 2**20)
t_f32, t_f16 = (benchmarking.time_copy(n_values, dtype) for dtype in (np.float32, np.float16))
bytes_f32, bytes_f16 = 4 * n_values, 2 * n_values
print(f"copy {n_values / 1e6:.1f}M values: float32 {bytes_f32 / 1e6:.0f} MB in {t_f32}, float16 "
      f"{bytes_f16 / 1e6:.0f} MB in {t_f16}: the float16 copy takes {t_f16.median_s / t_f32.median_s:.2f}x the "
      f"time of the float32 one (copy bandwidth {bandwidth_gbs:.1f} GB/s)")

# %% [markdown]
# **Where the speed comes from on a GPU.** Two sources, in this order of size:
#
# 1. *Tensor cores.* The NVIDIA A100 datasheet lists 19.5 TFLOPS for float32 arithmetic and
#    312 TFLOPS for float16 on tensor cores, 16x more (NVIDIA A100 Tensor Core GPU datasheet,
#    nvidia.com, document nvidia-a100-datasheet-us-nvidia-1758950-r4; dense, without the 2x
#    sparsity figures). Large matrix products, which dominate a training step, run at
#    that rate only when their inputs are float16 (or bfloat16).
# 2. *Half the bytes.* Element-wise kernels (activations, normalization, the optimizer step)
#    are memory-bound: their time is bytes moved divided by bandwidth, so float16 tensors halve
#    it (0.5x the time), the effect the copy above measures on this machine. Half the
#    activation memory also lets a larger batch fit.
#
# Neither is free to reach: the float32 master weights, the float32 optimizer step and the
# loss-scaling checks stay, so a step whose time is dominated by the optimizer, by small
# kernels' launch overhead, or by data loading speeds up much less than 16x.

# %% [markdown]
# ## Questions (written answers, graded by hand)
#
# **Q1 (2 points).** bfloat16 keeps float32's 8 exponent bits and has only 7 fraction bits.
# Would the unscaled run above have learned in bfloat16 instead of float16? Would you still
# need loss scaling, and would you still need float32 master weights? Argue from the float16
# facts and the weight-update example at the top of this notebook.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q04_bfloat16", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# The unscaled float16 run failed because of range: its gradients (about 1e-8 and below,
# starting with the gradient of the logits) fall under float16's smallest subnormal (6e-8)
# and flush to zero. bfloat16 has
# float32's exponent range (down to about 1e-38), so those gradients survive, only rounded
# to 2-3 significant digits; the unscaled run would have learned, close to float32. Loss
# scaling is therefore not needed with bfloat16 (frameworks skip it), and there is no
# overflow to manage either. Master weights are still needed, even more than with float16:
# bfloat16's spacing near 1.0 is 2^-7 (about 0.008), so an update of 1e-4, or anything below
# about 0.4 % of a weight, is lost entirely when added in bfloat16, as the 1e-4 update was
# in float16. The weights must be accumulated in float32 (or with stochastic rounding or
# compensated sums).

# %% [markdown]
# **Q2 (2 points).** Compare the time per training step your notebook printed for the float32
# run and the float16 runs. Using the numbers it printed (there and under "Speed, honestly"),
# explain the difference. Then say where mixed precision gets its speed on a GPU, and describe
# one training step that would not get noticeably faster from mixed precision even on a GPU
# with tensor cores, and why.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q04_speed_where", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# In my run the float16 steps took several times as long as the float32 step (the printed
# times per step). numpy's own float16 matmul was far slower than float32 BLAS (the printed
# ratio): numpy has no BLAS path for float16 and converts every element in a generic loop.
# The emulated tensor core reaches BLAS rates only by converting to float32, multiplying
# there and rounding back, so every float16 step pays the float32 work plus the casts, and
# the extra float16 copies of weights and gradients. On a GPU the speed comes from tensor
# cores (A100 datasheet: 312 TFLOPS float16 vs 19.5 TFLOPS float32) for the large matrix
# products, and from moving half the bytes in memory-bound kernels (the float16 copy here
# took about half the float32 copy's time, the printed ratio), plus room for larger
# batches. A step that would barely speed up: a small model or small batch whose
# time is dominated by kernel launch overhead and the float32 optimizer update (both not
# accelerated by tensor cores), or a pipeline limited by data loading; by Amdahl's law
# speeding up the matmuls 16x cannot cut such a step much.

# %% [markdown]
# ## What you measured
# - float16 holds nothing below about $6 \times 10^{-8}$: with a loss weight of $10^{-6}$ the
#   unscaled float16 backward pass flushed the gradients to zero, and that run did not learn
#   (the printed held-out losses).
# - Loss scaling moved the gradients back into range; the dynamic scaler found the scale by
#   itself, skipped the steps that overflowed, and the run matched float32 to the printed
#   difference.
# - The float32 master weights keep updates that float16 would round away.
# - With Adam, mixed precision needs the same 16 bytes per parameter as float32; it saves on
#   activations.
# - On this CPU numpy's float16 arithmetic is slow (its matmul's printed ratio to float32
#   BLAS), and the float16 training step pays for casts (its printed time per step); float16
#   still halves the bytes a copy moves, and the printed copy times show what that saves
#   here. The large speedups of mixed precision come from GPU tensor cores, quoted here from
#   NVIDIA's A100 datasheet, not measured.
