"""Outside checks for 04_mixed_precision: one probe per test cell, named by its grade_id.

Each probe runs in the student's process (``autograder/verify_driver.py``), after the given and
student cells and never after a test cell. It calls the student's ``DynamicLossScaler``,
``MixedPrecisionTrainer`` and ``training_memory_bytes`` on inputs drawn from ``rng``, which the
grader seeds, and returns observations (``probekit``). The grader compares them with the
reference solution's observations outside that process. The given ``MLP``, ``SGD`` and
``float32_train_step`` are the notebook's own (restored if student code replaced them); what the
test cells define themselves (the twin-model update, the measured bytes, the small training
runs) is rebuilt here.
"""
import numbers

import numpy as np
from observe import close, raised, same

PARAM_NAMES = ("W1", "b1", "W2", "b2")
RESULT_KEYS = ("loss", "loss_scale", "overflow", "gradients_valid")
DTYPES_RECORDED = ("x", "W1", "b1", "W2", "b2", "hidden", "logits", "grad_logits", "grad_hidden",
                   "grad_W1", "grad_b1", "grad_W2", "grad_b2")
MEMORY_KEYS = ("weights", "master_weights", "gradients", "adam_state", "activations", "total")


def _number(value):
    """A Python float for a real number (int, float, NumPy scalar or 0-d array); else the value as is,
    which then fails to match unless it is plain data equal to the reference's."""
    if isinstance(value, (numbers.Real, np.number)) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iuf":
        return float(value)
    return value


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def _power_of_two(rng, low, high):
    return 2.0 ** int(rng.integers(low, high + 1))


def _copy(arrays):
    return {name: np.array(array, copy=True) for name, array in arrays.items()}


# -- Task 1: DynamicLossScaler ---------------------------------------------------------------
def _unscale_observations(scaler_class, grads, init_scale, where, **kwargs):
    """Return value, dtypes, values and keys after ``unscale_``, and that the scale is unchanged."""
    scaler = scaler_class(init_scale=init_scale, **kwargs)
    scale_before = _number(scaler.scale)
    target = {name: g.copy() for name, g in grads.items()}
    finite = scaler.unscale_(target)
    observed = {f"{where} returns a bool": same(_is_bool(finite)),
                f"{where} all finite": same(bool(finite) if _is_bool(finite) else None),
                f"{where} keys": same(sorted(str(k) for k in target)),
                f"{where} scale unchanged": same(_number(scaler.scale) == scale_before)}
    for name in grads:
        value = target.get(name)
        ok = isinstance(value, np.ndarray)
        observed[f"{where} {name} dtype"] = same(str(value.dtype) if ok else None)
        observed[f"{where} {name} values"] = close(value if ok else None, rtol=1e-6, atol=0.0)
    return observed


def t04_scaler_scale_and_unscale(ns, rng):
    scaler_class = ns["DynamicLossScaler"]
    observed = {}

    scale = _power_of_two(rng, 1, 20)
    scaler = scaler_class(init_scale=scale)
    observed["starts at init_scale"] = close(_number(scaler.scale), rtol=0.0)
    observed["scale_loss(0.5)"] = close(_number(scaler.scale_loss(0.5)), rtol=0.0)
    for number, value in enumerate([float(rng.uniform(-10, 10)), float(rng.integers(1, 100))]):
        # rtol 1e-6: a scale kept as a NumPy float32 rounds the product, and the contract allows it
        observed[f"scale_loss(number {number})"] = close(_number(scaler.scale_loss(value)), rtol=1e-6)
    observed["scale_loss(np.float32(2)) at 2**16"] = close(
        _number(scaler_class(init_scale=2.0**16).scale_loss(np.float32(2.0))), rtol=0.0)

    # finite float16 gradients, a power-of-two and an arbitrary scale
    for where, s in [("pow2", scale), ("any", float(np.round(rng.uniform(1.5, 5000.0), 3)))]:
        size = float(rng.uniform(1.0, 4096.0))  # scaled gradients well inside float16's range
        grads = {"W": (rng.standard_normal((int(rng.integers(1, 6)), int(rng.integers(1, 6)))) * size)
                 .astype(np.float16),
                 "b": (rng.standard_normal(int(rng.integers(1, 6))) * size).astype(np.float16)}
        grads["W"].flat[0] = 0.0
        observed.update(_unscale_observations(scaler_class, grads, s, f"finite S={where}", max_scale=2.0**30))

    # the true gradient lies far below float16's smallest subnormal
    tiny_scale = _power_of_two(rng, 24, 29)
    grads = {"W": np.array([1.0, -3.0, 0.5, float(rng.integers(1, 9))], dtype=np.float16)}
    observed.update(_unscale_observations(scaler_class, grads, tiny_scale, "tiny", max_scale=2.0**30))

    # inf, -inf and nan in one entry (first, middle or last): False, and every entry unscaled
    for bad_name, bad in [("inf", np.inf), ("-inf", -np.inf), ("nan", np.nan)]:
        for position in range(3):
            grads = {name: (rng.standard_normal(int(rng.integers(1, 5))) * 64).astype(np.float16)
                     for name in ("a", "m", "z")}
            grads["a"] = np.ones((3, 4), dtype=np.float16) * np.float16(rng.integers(1, 9))
            target = ("a", "m", "z")[position]
            grads[target].flat[int(rng.integers(0, grads[target].size))] = bad
            observed.update(_unscale_observations(scaler_class, grads, _power_of_two(rng, 1, 12),
                                                  f"{bad_name} in {target}"))

    # float32 gradients, shapes kept
    grads = {"a": np.array([[3.0, 6.0]], dtype=np.float32),
             "c": rng.standard_normal((int(rng.integers(1, 4)), 1, int(rng.integers(1, 4)))).astype(np.float32)}
    observed.update(_unscale_observations(scaler_class, grads, 3.0, "float32 S=3"))

    # scale_loss on a real Loss: its backward gives S times the gradients
    mlp = ns["MLP"]
    n_in, n_hidden, n_out, batch = (int(v) for v in rng.integers(2, 8, size=4))
    model = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, seed=int(rng.integers(0, 1000)))
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    loss = model.loss(model.forward(x, model.params), rng.integers(0, n_out, size=batch))
    plain = loss.backward()
    factor = _power_of_two(rng, 1, 10)
    scaled_loss = scaler_class(init_scale=factor).scale_loss(loss)
    observed["float(scaled Loss)"] = close(_number(float(scaled_loss)), rtol=1e-12)
    observed["scaled Loss is factor x loss"] = same(bool(np.isclose(float(scaled_loss), factor * float(loss),
                                                                    rtol=1e-12, atol=0)))
    scaled_grads = scaled_loss.backward()
    for name in PARAM_NAMES:
        grad = scaled_grads.get(name) if isinstance(scaled_grads, dict) else None
        observed[f"backward of scaled Loss {name}"] = same(
            isinstance(grad, np.ndarray) and grad.shape == plain[name].shape
            and bool(np.allclose(grad, factor * plain[name], rtol=1e-6, atol=0)))
    return observed


def _drive(scaler, script):
    """Scales after each ``update`` of ``script`` (overflow flags), as floats.

    The tests' scripts are compared exactly (the tests use ==); random ones within rtol 1e-5, so
    that a scale kept in another float type passes while a missed or extra growth or backoff (a
    factor of at least 1.25) does not."""
    scales = []
    for found_inf in script:
        scaler.update(found_inf)
        scales.append(_number(scaler.scale))
    return scales


def t04_scaler_growth_and_backoff(ns, rng):
    scaler_class = ns["DynamicLossScaler"]
    observed = {}
    fixed = [False, False, False, False, False, True, False, False, False, True, True, False, False, False]
    observed["visible script"] = same(_drive(scaler_class(init_scale=8.0, growth_factor=2.0, backoff_factor=0.5,
                                                          growth_interval=3), fixed))
    observed["growth 4, backoff 0.25, interval 1"] = same(_drive(
        scaler_class(init_scale=64.0, growth_factor=4.0, backoff_factor=0.25, growth_interval=1, max_scale=2.0**20),
        [False, False, True, False, True, True, False]))
    observed["overflow just before the interval ends"] = same(_drive(
        scaler_class(init_scale=1.0e3, growth_interval=5, max_scale=1.0e6), [False] * 4 + [True] + [False] * 5))

    for number in range(4):
        interval = int(rng.integers(1, 6))
        growth = float(rng.choice([2.0, 3.0, 4.0]))
        backoff = float(rng.choice([0.5, 0.25, 0.125]))
        init = float(rng.integers(1, 64)) * 2.0**10
        script = [bool(v) for v in rng.random(int(rng.integers(30, 60))) < rng.uniform(0.1, 0.4)]
        # then clean runs one longer than, as long as, and one shorter than the interval
        script += [False] * (interval + 1) + [True] + [False] * interval + [True] + [False] * (interval - 1) + [True]
        scaler = scaler_class(init_scale=init, growth_factor=growth, backoff_factor=backoff, growth_interval=interval,
                              min_scale=1e-30, max_scale=1e30)
        observed[f"random script {number}"] = close(_drive(scaler, script), rtol=1e-5, atol=0.0)

    # the defaults: 2**16, grow after 2000 clean steps, halve on overflow
    scaler = scaler_class()
    observed["default init_scale"] = same(_number(scaler.scale))
    scales = _drive(scaler, [False] * 2000 + [True])
    observed["default: after 1999, 2000 clean steps, then an overflow"] = same(scales[1998:])
    observed["default: no growth before"] = same(len(set(scales[:1999])) == 1)
    return observed


def t04_scaler_bounds(ns, rng):
    scaler_class = ns["DynamicLossScaler"]
    observed = {
        "backoff to min_scale 4": same(_drive(scaler_class(init_scale=16.0, min_scale=4.0), [True] * 4)),
        "growth to max_scale 64": same(_drive(scaler_class(init_scale=16.0, growth_interval=1, max_scale=64.0),
                                              [False] * 4)),
        "backoff to min_scale 3": same(_drive(scaler_class(init_scale=10.0, min_scale=3.0), [True] * 3 + [False])),
        "growth to max_scale 100": same(_drive(scaler_class(init_scale=30.0, growth_interval=2, max_scale=100.0),
                                               [False] * 6 + [True])),
    }
    for number in range(3):
        init = float(rng.integers(100, 10000))
        min_scale = float(np.round(init / rng.uniform(2.5, 40.0), 2))
        max_scale = float(np.round(init * rng.uniform(2.5, 40.0), 2))
        interval = int(rng.integers(1, 4))
        script = [bool(v) for v in rng.random(40) < 0.3] + [True] * 12 + [False] * (12 * interval) + [True]
        scaler = scaler_class(init_scale=init, growth_interval=interval, min_scale=min_scale, max_scale=max_scale)
        observed[f"random bounded script {number}"] = close(_drive(scaler, script), rtol=1e-5, atol=0.0)

    bad_settings = [dict(growth_factor=1.0), dict(backoff_factor=1.5), dict(growth_interval=0), dict(backoff_factor=0.0),
                    dict(min_scale=0.0, init_scale=1.0), dict(init_scale=2.0**30, max_scale=2.0**24),
                    dict(init_scale=0.5, min_scale=1.0), dict(growth_factor=0.5), dict(backoff_factor=1.0),
                    dict(min_scale=-1.0, init_scale=1.0), dict(init_scale=-4.0, min_scale=-8.0),
                    dict(init_scale=float(rng.uniform(2.0, 100.0)), max_scale=1.5),
                    dict(init_scale=float(rng.uniform(0.1, 0.9)), min_scale=1.0)]
    for settings in bad_settings:
        observed[f"rejects {settings}"] = same(raised(scaler_class, **settings))
    for settings in [dict(init_scale=1.0, min_scale=1.0, max_scale=1.0), dict(growth_interval=1),
                     dict(init_scale=2.0**45, max_scale=2.0**45), dict(backoff_factor=0.999, growth_factor=1.001)]:
        observed[f"accepts {settings}"] = same(raised(scaler_class, **settings))
    return observed


# -- Task 2: MixedPrecisionTrainer -------------------------------------------------------------
def _result_observations(result, where):
    """What the tests require of train_step's result: a dict, its keys and their types."""
    is_dict = isinstance(result, dict)
    result = result if is_dict else {}
    observed = {f"{where} is a dict": same(is_dict),
                f"{where} keys present": same([key in result for key in RESULT_KEYS]),
                f"{where} loss is a float": same(isinstance(result.get("loss"), float)),
                f"{where} loss_scale is a float": same(isinstance(result.get("loss_scale"), float)),
                f"{where} flags are bools": same([_is_bool(result.get(key)) for key in ("overflow", "gradients_valid")]),
                f"{where} overflow": same(bool(result.get("overflow")) if _is_bool(result.get("overflow")) else None),
                f"{where} gradients_valid": same(bool(result.get("gradients_valid"))
                                                 if _is_bool(result.get("gradients_valid")) else None),
                f"{where} loss_scale": close(_number(result.get("loss_scale")), rtol=0.0)}
    return observed


def _float16_path(model):
    """Whether the model saw a whole float16 forward and backward pass; which arrays were not float16."""
    seen = model.dtypes_seen
    complete = all(name in seen for name in DTYPES_RECORDED)
    not_half = {str(name): str(dtype) for name, dtype in seen.items() if dtype != np.float16}
    return complete, not_half


def _masters(model):
    return {name: str(w.dtype) for name, w in model.params.items()}


def t04_trainer_float16_path(ns, rng):
    mlp, sgd, scaler_class, trainer_class = ns["MLP"], ns["SGD"], ns["DynamicLossScaler"], ns["MixedPrecisionTrainer"]
    observed = {}
    for number in range(2):
        n_in, n_hidden, n_out, batch = (int(rng.integers(3, 25)), int(rng.integers(3, 20)), int(rng.integers(2, 8)),
                                        int(rng.integers(2, 12)))
        loss_weight, model_seed = float(rng.choice([0.5, 1.0, 2.0])), int(rng.integers(0, 1000))
        model = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, loss_weight=loss_weight, seed=model_seed)
        scale = _power_of_two(rng, 3, 10)
        trainer = trainer_class(model, sgd(lr=0.1, momentum=0.0), scaler_class(init_scale=scale, growth_interval=1000))
        x, labels = rng.standard_normal((batch, n_in)).astype(np.float32), rng.integers(0, n_out, size=batch)
        where = f"{n_in}-{n_hidden}-{n_out} batch {batch} S {scale:g}"
        result = trainer.train_step((x, labels))
        observed.update(_result_observations(result, where))
        complete, not_half = _float16_path(model)
        observed[f"{where} complete float16 pass"] = same(complete)
        observed[f"{where} arrays not float16"] = same(not_half)
        observed[f"{where} master dtypes"] = same(_masters(model))
        twin = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, loss_weight=loss_weight, seed=model_seed)
        expected_loss = float(twin.loss(twin.forward(x, twin.params), labels))
        loss = result.get("loss") if isinstance(result, dict) else None
        observed[f"{where} unscaled loss"] = same(isinstance(loss, numbers.Real)
                                                  and bool(abs(loss - expected_loss) < 1e-2 * expected_loss))

    # two steps on integer-valued float64 input, growth_interval=1
    n_in, n_hidden, n_out, batch = int(rng.integers(3, 12)), int(rng.integers(3, 12)), int(rng.integers(2, 6)), 5
    model = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, loss_weight=2.0, seed=int(rng.integers(0, 1000)))
    trainer = trainer_class(model, sgd(lr=0.05), scaler_class(init_scale=2.0**10, growth_interval=1))
    x64 = rng.integers(-2, 3, size=(batch, n_in)).astype(np.float64)
    labels = rng.integers(0, n_out, size=batch)
    first = trainer.train_step((x64, labels))
    second = trainer.train_step((x64, labels))
    observed.update(_result_observations(first, "float64 input, step 1"))
    observed.update(_result_observations(second, "float64 input, step 2"))
    complete, not_half = _float16_path(model)
    observed["float64 input: complete float16 pass"] = same(complete)
    observed["float64 input: arrays not float16"] = same(not_half)
    observed["float64 input: master dtypes"] = same(_masters(model))
    losses = [r.get("loss") if isinstance(r, dict) else None for r in (first, second)]
    observed["float64 input: loss goes down"] = same(all(isinstance(v, numbers.Real) for v in losses)
                                                     and bool(losses[1] < losses[0]))
    return observed


def _expected_step(model, optimizer, x, labels, scale):
    """The update the float16 path must make, built from the given pieces on a twin model."""
    half_params = {name: w.astype(np.float16) for name, w in model.params.items()}
    loss = model.loss(model.forward(x.astype(np.float16), half_params), labels)
    grads = {name: g.astype(np.float32) / np.float32(scale) for name, g in (loss * scale).backward().items()}
    optimizer.step(model.params, grads)


def _allclose(actual, expected, rtol, atol):
    return (isinstance(actual, np.ndarray) and actual.shape == expected.shape
            and bool(np.allclose(actual, expected, rtol=rtol, atol=atol)))


def t04_trainer_update_math(ns, rng):
    mlp, sgd, scaler_class, trainer_class = ns["MLP"], ns["SGD"], ns["DynamicLossScaler"], ns["MixedPrecisionTrainer"]
    observed = {}
    batch, n_in, n_hidden, n_out = (int(rng.integers(8, 20)), int(rng.integers(6, 16)), int(rng.integers(6, 14)),
                                    int(rng.integers(3, 8)))
    x, labels = rng.standard_normal((batch, n_in)).astype(np.float32), rng.integers(0, n_out, size=batch)

    # one plain step, and one whose update lies far below float16's spacing
    for where, lr, scale in [("lr 0.5", 0.5, _power_of_two(rng, 6, 10)), ("lr 1e-5", 1e-5, _power_of_two(rng, 8, 11))]:
        seed = int(rng.integers(0, 1000))
        model, twin = (mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, seed=seed) for _ in range(2))
        optimizer, twin_optimizer = sgd(lr=lr, momentum=0.0), sgd(lr=lr, momentum=0.0)
        trainer = trainer_class(model, optimizer, scaler_class(init_scale=scale, growth_interval=1000))
        before = _copy(model.params)
        trainer.train_step((x, labels))
        _expected_step(twin, twin_optimizer, x, labels, scale)
        observed[f"{where}: optimizer steps"] = same(optimizer.steps)
        observed[f"{where}: master dtypes"] = same(_masters(model))
        for name in PARAM_NAMES:
            observed[f"{where}: {name} matches the float16 path"] = same(
                _allclose(model.params[name], twin.params[name], rtol=1e-6, atol=0))
        if lr == 0.5:
            observed[f"{where}: every weight updated"] = same(
                [not np.array_equal(model.params[name], before[name]) for name in PARAM_NAMES])
        else:
            observed[f"{where}: most of W2 changed"] = same(bool(np.mean(model.params["W2"] != before["W2"]) > 0.5))

    # momentum, two steps, a small loss weight and a large scale
    batch, n_in, n_hidden, n_out = 2 * int(rng.integers(6, 14)), int(rng.integers(5, 12)), int(rng.integers(5, 14)), 4
    x, labels = rng.standard_normal((batch, n_in)).astype(np.float32), rng.integers(0, n_out, size=batch)
    seed, half = int(rng.integers(0, 1000)), batch // 2
    model, twin = (mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, loss_weight=1e-3, seed=seed) for _ in range(2))
    optimizer, twin_optimizer = sgd(lr=200.0, momentum=0.9), sgd(lr=200.0, momentum=0.9)
    scale = _power_of_two(rng, 16, 18)
    trainer = trainer_class(model, optimizer, scaler_class(init_scale=scale, growth_interval=1000))
    for step in range(2):
        part = slice(half * step, half * step + half)
        trainer.train_step((x[part], labels[part]))
        _expected_step(twin, twin_optimizer, x[part], labels[part], scale)
    observed["momentum: optimizer steps"] = same(optimizer.steps)
    for name in PARAM_NAMES:
        observed[f"momentum: {name} matches"] = same(_allclose(model.params[name], twin.params[name], 1e-5, 1e-7))
        observed[f"momentum: velocity of {name} matches"] = same(
            _allclose(optimizer.velocity.get(name), twin_optimizer.velocity[name], 1e-5, 1e-12))
    return observed


def t04_trainer_skips_overflow(ns, rng):
    mlp, sgd, scaler_class, trainer_class = ns["MLP"], ns["SGD"], ns["DynamicLossScaler"], ns["MixedPrecisionTrainer"]
    observed = {}
    batch, n_in, n_hidden, n_out = int(rng.integers(4, 12)), int(rng.integers(5, 14)), int(rng.integers(3, 10)), 3
    x, labels = rng.standard_normal((batch, n_in)).astype(np.float32), rng.integers(0, n_out, size=batch)

    # an injected non-finite gradient, then a clean step
    for number in range(2):
        model = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, seed=int(rng.integers(0, 1000)))
        optimizer = sgd(lr=0.1, momentum=0.9)
        scale = _power_of_two(rng, 6, 12)
        trainer = trainer_class(model, optimizer, scaler_class(init_scale=scale, growth_interval=1000))
        before = _copy(model.params)
        name = ("W2", str(rng.choice(PARAM_NAMES)))[number]
        value = (np.inf, float(rng.choice([np.inf, -np.inf, np.nan])))[number]
        where = f"{value} in {name} at S {scale:g}"
        model.inject_nonfinite = (name, value)
        result = trainer.train_step((x, labels))
        observed.update(_result_observations(result, where))
        observed[f"{where}: weights changed"] = same([not np.array_equal(model.params[n], before[n])
                                                      for n in PARAM_NAMES])
        observed[f"{where}: optimizer steps"] = same(optimizer.steps)
        result = trainer.train_step((x, labels))
        observed.update(_result_observations(result, f"{where}, next step"))
        observed[f"{where}, next step: optimizer steps"] = same(optimizer.steps)
        observed[f"{where}, next step: weights changed"] = same([not np.array_equal(model.params[n], before[n])
                                                                 for n in PARAM_NAMES])
        observed[f"{where}, next step: master weights"] = close(
            np.concatenate([np.asarray(model.params[n], dtype=np.float64).ravel() for n in PARAM_NAMES]),
            rtol=1e-5, atol=1e-7)

    # a real overflow: the scale backs off from far too high until the steps are clean
    start = int(rng.integers(36, 41))
    model = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, seed=int(rng.integers(0, 1000)))
    optimizer = sgd(lr=0.1, momentum=0.9)
    trainer = trainer_class(model, optimizer, scaler_class(init_scale=2.0**start, max_scale=2.0**start))
    results = [trainer.train_step((x, labels)) for _ in range(30)]
    skipped = [bool(r.get("overflow")) if isinstance(r, dict) else None for r in results]
    scales = [_number(r.get("loss_scale")) if isinstance(r, dict) else None for r in results]
    first_clean = skipped.index(False) if False in skipped else None
    observed["S too high: first step overflows"] = same(skipped[0])
    observed["S too high: a clean step comes"] = same(first_clean is not None)
    if first_clean is not None:
        observed["S too high: no overflow after the first clean step"] = same(not any(skipped[first_clean:]))
        observed["S too high: halving while overflowing"] = same(
            scales[:first_clean] == [2.0**(start - 1 - i) for i in range(first_clean)])
        observed["S too high: updates applied = clean steps"] = same(optimizer.steps == 30 - first_clean)

    # nan and -inf on consecutive steps after a clean one: weights and momentum untouched
    model = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, seed=int(rng.integers(0, 1000)))
    optimizer = sgd(lr=0.1, momentum=0.9)
    scale = _power_of_two(rng, 5, 8)
    trainer = trainer_class(model, optimizer, scaler_class(init_scale=scale, growth_interval=1000))
    trainer.train_step((x, labels))
    velocity = _copy(optimizer.velocity)
    before = _copy(model.params)
    plan = [(str(rng.choice(PARAM_NAMES)), value) for value in (np.nan, np.nan, -np.inf, np.inf)]
    for number, (name, value) in enumerate(plan):
        model.inject_nonfinite = (name, value)
        result = trainer.train_step((x, labels))
        where = f"consecutive {number} ({value} in {name})"
        observed.update(_result_observations(result, where))
        loss = result.get("loss") if isinstance(result, dict) else None
        observed[f"{where}: loss finite"] = same(isinstance(loss, numbers.Real) and bool(np.isfinite(loss)))
    observed["consecutive: optimizer steps"] = same(optimizer.steps)
    observed["consecutive: weights unchanged"] = same([np.array_equal(model.params[n], before[n]) for n in before])
    observed["consecutive: velocity unchanged"] = same(
        sorted(optimizer.velocity) == sorted(velocity)
        and all(np.array_equal(optimizer.velocity[n], velocity[n]) for n in velocity))
    return observed


def _train_small(ns, data, model_seed, scaler, steps=60, batch=32, loss_weight=1e-6):
    """Held-out cross-entropy after 60 SGD steps of a 64-32-10 MLP; scaler=None trains in float32."""
    x, labels = data
    model = ns["MLP"](n_in=64, n_hidden=32, n_out=10, loss_weight=loss_weight, seed=model_seed)
    optimizer = ns["SGD"](lr=0.05 / loss_weight, momentum=0.9)
    trainer = None if scaler is None else ns["MixedPrecisionTrainer"](model, optimizer, scaler)
    for step in range(steps):
        part = (x[batch * step:batch * step + batch], labels[batch * step:batch * step + batch])
        if trainer is None:
            ns["float32_train_step"](model, optimizer, part)
        else:
            trainer.train_step(part)
    held_x, held_labels = x[-512:], labels[-512:]
    return float(model.loss(model.forward(held_x, model.params), held_labels)) / model.loss_weight


def t04_trainer_matches_float32(ns, rng):
    make_data, scaler_class = ns["make_classification_data"], ns["DynamicLossScaler"]
    observed = {}
    # random data and initial weights: scaled float16 matches float32, unscaled float16 does not learn
    data = make_data(60 * 32 + 512, n_in=64, separation=0.5, seed=int(rng.integers(0, 2**31)))
    model_seed = int(rng.integers(0, 2**31))
    reference = _train_small(ns, data, model_seed, None)
    scaled = _train_small(ns, data, model_seed, scaler_class(init_scale=2.0**16, growth_interval=10, max_scale=2.0**30))
    unscaled = _train_small(ns, data, model_seed, scaler_class(init_scale=1.0, min_scale=1.0, max_scale=1.0))
    observed["random data: scaled within 0.01 of float32"] = same(abs(scaled - reference) < 0.01)
    observed["random data: unscaled 0.3 above float32"] = same(unscaled - reference > 0.3)
    # the hidden test's data set: a scale far too high backs off and still trains
    data = make_data(60 * 32 + 512, n_in=64, separation=0.5, seed=46)
    # (fixed: on some data sets the run from 2**45 ends a little more than 0.05 above float32)
    reference = _train_small(ns, data, 13, None)
    too_high = _train_small(ns, data, 13, scaler_class(init_scale=2.0**45, growth_interval=10, max_scale=2.0**45))
    observed["seed 46: from 2**45 within 0.05 of float32"] = same(too_high - reference < 0.05)
    return observed


# -- Task 3: training_memory_bytes -------------------------------------------------------------
def _bill(function, *args):
    """The result as a plain dict (Python ints stay ints; anything else fails to match)."""
    result = function(*args)
    return dict(result) if isinstance(result, dict) else result


def t04_memory_formula(ns, rng):
    memory = ns["training_memory_bytes"]
    observed = {}
    counts = [(1000, 500), (123_457, 0), (0, 10**9), (7_000_000_000, 3_000_000_001), (1, 1), (0, 0),
              (int(rng.integers(0, 10**6)), int(rng.integers(0, 10**6))),
              (int(rng.integers(10**9, 10**11)), int(rng.integers(10**9, 10**12)))]
    for n, a in counts:
        for mode in ("fp32", "mixed"):
            bill = _bill(memory, n, a, mode)
            observed[f"{mode} N={n} A={a}"] = same(bill)
            observed[f"{mode} N={n} A={a} Python ints"] = same(
                isinstance(bill, dict) and all(type(v) is int for v in bill.values()))
    modes = ["fp16", "bf16", "FP32", "Mixed", "", "fp32 ", f"mode{int(rng.integers(0, 100))}"]
    for mode in modes:
        observed[f"rejects mode {mode!r}"] = same(raised(memory, 1000, 500, mode))
    for n, a, mode in [(-1, 10, "fp32"), (10, -5, "mixed"), (-int(rng.integers(1, 10**6)), 0, "mixed"),
                       (0, -int(rng.integers(1, 10**6)), "fp32")]:
        observed[f"rejects N={n} A={a} {mode}"] = same(raised(memory, n, a, mode))
    return observed


def _measured_bytes(model, x, labels, dtype):
    """nbytes of the weights read, gradients, saved activations (x, hidden, logits) of one step in dtype."""
    params = model.params if dtype == np.float32 else {k: w.astype(dtype) for k, w in model.params.items()}
    logits = model.forward(x.astype(dtype), params)
    x_saved, hidden, _ = model.saved_for_backward
    grads = model.loss(logits, labels).backward()
    n_activations = x_saved.size + hidden.size + logits.size
    return n_activations, {"weights": sum(w.nbytes for w in params.values()),
                           "gradients": sum(g.nbytes for g in grads.values()),
                           "activations": x_saved.nbytes + hidden.nbytes + logits.nbytes}


def t04_memory_matches_arrays(ns, rng):
    memory, mlp = ns["training_memory_bytes"], ns["MLP"]
    observed = {}
    sizes = [(30, 20, 7, 12), (17, 33, 3, 5),
             (int(rng.integers(2, 60)), int(rng.integers(2, 60)), int(rng.integers(2, 12)), int(rng.integers(1, 40)))]
    for n_in, n_hidden, n_out, batch in sizes:
        model = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, seed=int(rng.integers(0, 1000)))
        x, labels = rng.standard_normal((batch, n_in)).astype(np.float32), rng.integers(0, n_out, size=batch)
        n_params = int(sum(w.size for w in model.params.values()))
        master_bytes = int(sum(w.nbytes for w in model.params.values()))
        for mode, dtype in [("mixed", np.float16), ("fp32", np.float32)]:
            n_activations, measured = _measured_bytes(model, x, labels, dtype)
            predicted = _bill(memory, n_params, int(n_activations), mode)
            where = f"{mode} {n_in}-{n_hidden}-{n_out} batch {batch}"
            get = predicted.get if isinstance(predicted, dict) else (lambda key: None)
            observed[f"{where} matches the arrays"] = same({key: bool(get(key) == value) for key, value in measured.items()})
            observed[f"{where} master weights"] = same(bool(get("master_weights") == (master_bytes if mode == "mixed" else 0)))
            observed[f"{where} adam state"] = same(bool(get("adam_state") == 2 * master_bytes))
    return observed
