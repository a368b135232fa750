"""Hidden cases of 04_mixed_precision: one check per test cell, named by its grade_id.

Each check runs in the check process after the given and student cells (``autograder/check``),
calls the student's ``DynamicLossScaler``, ``MixedPrecisionTrainer`` and ``training_memory_bytes``
(``ns``) on inputs drawn from ``rng`` and returns observations (``observe``), compared outside
with the reference solution's. Case names are what a student reads when a case fails: they name
the kind of case, never its inputs. The given ``MLP``, ``SGD``, ``float32_train_step`` and the
test helpers (``float16_pass_report``, ``expected_step``, ``train_small``, ``measured_bytes``) are
the notebook's own given cells, restored if student code replaced them. The dtypes the model
records (``model.dtypes_seen``) are in-process evidence student code could write, so every check
of the float16 path also sends the values that path must produce (losses, master weights,
optimizer state), compared outside.
"""
import numbers

import numpy as np
from observe import close, raised, same

PARAM_NAMES = ("W1", "b1", "W2", "b2")
RESULT_KEYS = ("loss", "loss_scale", "overflow", "gradients_valid")


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


def _flat(arrays):
    """The arrays named PARAM_NAMES, as one float64 vector (for a ``close`` observation)."""
    return np.concatenate([np.asarray(arrays[name], dtype=np.float64).ravel() for name in PARAM_NAMES])


# -- Task 1: DynamicLossScaler ---------------------------------------------------------------
def _unscale_observations(scaler_class, grads, init_scale, where, **kwargs):
    """Return value, dtypes, values and keys after ``unscale_``, and that the scale is unchanged."""
    scaler = scaler_class(init_scale=init_scale, **kwargs)
    scale_before = _number(scaler.scale)
    target = {name: g.copy() for name, g in grads.items()}
    finite = scaler.unscale_(target)
    observed = {f"{where}: returns a bool": same(_is_bool(finite)),
                f"{where}: all finite": same(bool(finite) if _is_bool(finite) else None),
                f"{where}: keys": same(sorted(str(k) for k in target)),
                f"{where}: scale unchanged": same(_number(scaler.scale) == scale_before)}
    for number, name in enumerate(grads, 1):
        value = target.get(name)
        ok = isinstance(value, np.ndarray)
        observed[f"{where}: gradient {number} dtype"] = same(str(value.dtype) if ok else None)
        observed[f"{where}: gradient {number} values"] = close(value if ok else None, rtol=1e-6, atol=0.0)
    return observed


def t04_scaler_scale_and_unscale(ns, rng):
    scaler_class = ns["DynamicLossScaler"]
    observed = {}

    scale = _power_of_two(rng, 1, 20)
    scaler = scaler_class(init_scale=scale)
    observed["starts at init_scale"] = close(_number(scaler.scale), rtol=0.0)
    observed["scale_loss of 0.5"] = close(_number(scaler.scale_loss(0.5)), rtol=0.0)
    for number, value in enumerate([float(rng.uniform(-10, 10)), float(rng.integers(1, 100))], 1):
        # rtol 1e-6: a scale kept as a NumPy float32 rounds the product, and the contract allows it
        observed[f"scale_loss of number {number}"] = close(_number(scaler.scale_loss(value)), rtol=1e-6)
    observed["scale_loss of a NumPy float32"] = close(
        _number(scaler_class(init_scale=2.0**16).scale_loss(np.float32(2.0))), rtol=0.0)

    # finite float16 gradients, a power-of-two and an arbitrary scale
    for where, s in [("finite, power-of-two S", scale), ("finite, any S", float(np.round(rng.uniform(1.5, 5000.0), 3)))]:
        size = float(rng.uniform(1.0, 4096.0))  # scaled gradients well inside float16's range
        grads = {"W": (rng.standard_normal((int(rng.integers(1, 6)), int(rng.integers(1, 6)))) * size)
                 .astype(np.float16),
                 "b": (rng.standard_normal(int(rng.integers(1, 6))) * size).astype(np.float16)}
        grads["W"].flat[0] = 0.0
        observed.update(_unscale_observations(scaler_class, grads, s, where, max_scale=2.0**30))

    # the true gradient lies far below float16's smallest subnormal
    tiny_scale = _power_of_two(rng, 24, 29)
    grads = {"W": np.array([1.0, -3.0, 0.5, float(rng.integers(1, 9))], dtype=np.float16)}
    observed.update(_unscale_observations(scaler_class, grads, tiny_scale, "true gradient below float16's range",
                                          max_scale=2.0**30))

    # inf, -inf and nan in one entry (first, middle or last): False, and every entry unscaled
    for bad_name, bad in [("inf", np.inf), ("-inf", -np.inf), ("nan", np.nan)]:
        for position, where in enumerate(("first", "middle", "last")):
            grads = {name: (rng.standard_normal(int(rng.integers(1, 5))) * 64).astype(np.float16)
                     for name in ("a", "m", "z")}
            grads["a"] = np.ones((3, 4), dtype=np.float16) * np.float16(rng.integers(1, 9))
            target = ("a", "m", "z")[position]
            grads[target].flat[int(rng.integers(0, grads[target].size))] = bad
            observed.update(_unscale_observations(scaler_class, grads, _power_of_two(rng, 1, 12),
                                                  f"{bad_name} in the {where} gradient"))

    # float32 gradients, shapes kept
    grads = {"a": np.array([[3.0, 6.0]], dtype=np.float32),
             "c": rng.standard_normal((int(rng.integers(1, 4)), 1, int(rng.integers(1, 4)))).astype(np.float32)}
    observed.update(_unscale_observations(scaler_class, grads, 3.0, "float32 gradients"))

    # scale_loss on a real Loss: its backward gives S times the gradients
    mlp = ns["MLP"]
    n_in, n_hidden, n_out, batch = (int(v) for v in rng.integers(2, 8, size=4))
    model = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, seed=int(rng.integers(0, 1000)))
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    loss = model.loss(model.forward(x, model.params), rng.integers(0, n_out, size=batch))
    plain = loss.backward()
    factor = _power_of_two(rng, 1, 10)
    scaled_loss = scaler_class(init_scale=factor).scale_loss(loss)
    observed["float of the scaled Loss"] = close(_number(float(scaled_loss)), rtol=1e-12)
    observed["scaled Loss is S x loss"] = same(bool(np.isclose(float(scaled_loss), factor * float(loss),
                                                               rtol=1e-12, atol=0)))
    scaled_grads = scaled_loss.backward()
    for name in PARAM_NAMES:
        grad = scaled_grads.get(name) if isinstance(scaled_grads, dict) else None
        observed[f"backward of the scaled Loss, {name}"] = same(
            isinstance(grad, np.ndarray) and grad.shape == plain[name].shape
            and bool(np.allclose(grad, factor * plain[name], rtol=1e-6, atol=0)))
        observed[f"backward of the scaled Loss, {name} values"] = close(grad, rtol=1e-6, atol=0.0)
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
    observed["other factors, growth after every clean step"] = same(_drive(
        scaler_class(init_scale=64.0, growth_factor=4.0, backoff_factor=0.25, growth_interval=1, max_scale=2.0**20),
        [False, False, True, False, True, True, False]))
    observed["overflow just before the interval ends"] = same(_drive(
        scaler_class(init_scale=1.0e3, growth_interval=5, max_scale=1.0e6), [False] * 4 + [True] + [False] * 5))

    for number in range(1, 5):
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
    observed["defaults: growth at the growth_interval, then an overflow"] = same(scales[1998:])
    observed["defaults: no growth before the growth_interval"] = same(len(set(scales[:1999])) == 1)
    return observed


BAD_SETTINGS = [  # (kind of case, settings DynamicLossScaler must reject)
    ("growth_factor 1", dict(growth_factor=1.0)),
    ("backoff_factor above 1", dict(backoff_factor=1.5)),
    ("growth_interval 0", dict(growth_interval=0)),
    ("backoff_factor 0", dict(backoff_factor=0.0)),
    ("min_scale 0", dict(min_scale=0.0, init_scale=1.0)),
    ("init_scale above max_scale", dict(init_scale=2.0**30, max_scale=2.0**24)),
    ("init_scale below min_scale", dict(init_scale=0.5, min_scale=1.0)),
    ("growth_factor below 1", dict(growth_factor=0.5)),
    ("backoff_factor 1", dict(backoff_factor=1.0)),
    ("negative min_scale", dict(min_scale=-1.0, init_scale=1.0)),
    ("negative scales", dict(init_scale=-4.0, min_scale=-8.0)),
]
GOOD_SETTINGS = [
    ("min_scale = init_scale = max_scale", dict(init_scale=1.0, min_scale=1.0, max_scale=1.0)),
    ("growth_interval 1", dict(growth_interval=1)),
    ("init_scale = max_scale", dict(init_scale=2.0**45, max_scale=2.0**45)),
    ("factors just around 1", dict(backoff_factor=0.999, growth_factor=1.001)),
]


def t04_scaler_bounds(ns, rng):
    scaler_class = ns["DynamicLossScaler"]
    observed = {
        "backoff to min_scale 4": same(_drive(scaler_class(init_scale=16.0, min_scale=4.0), [True] * 4)),
        "growth to max_scale 64": same(_drive(scaler_class(init_scale=16.0, growth_interval=1, max_scale=64.0),
                                              [False] * 4)),
        "backoff clamped between two halvings": same(_drive(scaler_class(init_scale=10.0, min_scale=3.0),
                                                            [True] * 3 + [False])),
        "growth clamped between two doublings, then an overflow": same(_drive(
            scaler_class(init_scale=30.0, growth_interval=2, max_scale=100.0), [False] * 6 + [True])),
    }
    for number in range(1, 4):
        init = float(rng.integers(100, 10000))
        min_scale = float(np.round(init / rng.uniform(2.5, 40.0), 2))
        max_scale = float(np.round(init * rng.uniform(2.5, 40.0), 2))
        interval = int(rng.integers(1, 4))
        script = [bool(v) for v in rng.random(40) < 0.3] + [True] * 12 + [False] * (12 * interval) + [True]
        scaler = scaler_class(init_scale=init, growth_interval=interval, min_scale=min_scale, max_scale=max_scale)
        observed[f"random bounded script {number}"] = close(_drive(scaler, script), rtol=1e-5, atol=0.0)

    bad_settings = BAD_SETTINGS + [
        ("random init_scale above max_scale", dict(init_scale=float(rng.uniform(2.0, 100.0)), max_scale=1.5)),
        ("random init_scale below min_scale", dict(init_scale=float(rng.uniform(0.1, 0.9)), min_scale=1.0))]
    for kind, settings in bad_settings:
        observed[f"rejects {kind}"] = same(raised(scaler_class, **settings))
    for kind, settings in GOOD_SETTINGS:
        observed[f"accepts {kind}"] = same(raised(scaler_class, **settings))
    return observed


# -- Task 2: MixedPrecisionTrainer -------------------------------------------------------------
def _result_observations(result, where):
    """What the tests require of train_step's result: a dict, its keys and their types."""
    is_dict = isinstance(result, dict)
    result = result if is_dict else {}
    observed = {f"{where}: result is a dict": same(is_dict),
                f"{where}: keys present": same([key in result for key in RESULT_KEYS]),
                f"{where}: loss is a float": same(isinstance(result.get("loss"), float)),
                f"{where}: loss_scale is a float": same(isinstance(result.get("loss_scale"), float)),
                f"{where}: flags are bools": same([_is_bool(result.get(key)) for key in ("overflow", "gradients_valid")]),
                f"{where}: overflow": same(bool(result.get("overflow")) if _is_bool(result.get("overflow")) else None),
                f"{where}: gradients_valid": same(bool(result.get("gradients_valid"))
                                                  if _is_bool(result.get("gradients_valid")) else None),
                f"{where}: loss_scale": close(_number(result.get("loss_scale")), rtol=0.0)}
    return observed


def _loss(result):
    return _number(result.get("loss")) if isinstance(result, dict) else None


def _float16_pass_observations(ns, model, where):
    """What the model recorded of the last step (in-process evidence) and that the masters stay float32."""
    missing, not_half = ns["float16_pass_report"](model)
    return {f"{where}: complete float16 pass": same(list(missing)),
            f"{where}: arrays not float16": same(dict(not_half)),
            f"{where}: master dtypes": same({name: str(w.dtype) for name, w in model.params.items()})}


def t04_trainer_float16_path(ns, rng):
    mlp, sgd, scaler_class, trainer_class = ns["MLP"], ns["SGD"], ns["DynamicLossScaler"], ns["MixedPrecisionTrainer"]
    observed = {}
    for number in range(1, 3):
        n_in, n_hidden, n_out, batch = (int(rng.integers(3, 25)), int(rng.integers(3, 20)), int(rng.integers(2, 8)),
                                        int(rng.integers(2, 12)))
        loss_weight, model_seed = float(rng.choice([0.5, 1.0, 2.0])), int(rng.integers(0, 1000))
        model = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, loss_weight=loss_weight, seed=model_seed)
        scale = _power_of_two(rng, 3, 10)
        trainer = trainer_class(model, sgd(lr=0.1, momentum=0.0), scaler_class(init_scale=scale, growth_interval=1000))
        x, labels = rng.standard_normal((batch, n_in)).astype(np.float32), rng.integers(0, n_out, size=batch)
        where = f"random step {number}"
        result = trainer.train_step((x, labels))
        observed.update(_result_observations(result, where))
        observed.update(_float16_pass_observations(ns, model, where))
        twin = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, loss_weight=loss_weight, seed=model_seed)
        expected_loss = float(twin.loss(twin.forward(x, twin.params), labels))
        loss = _loss(result)
        observed[f"{where}: unscaled loss"] = same(isinstance(loss, float) and bool(abs(loss - expected_loss)
                                                                                   < 1e-2 * expected_loss))
        # the values only the float16 path gives: its loss and the update of the float32 masters
        observed[f"{where}: loss of the float16 forward pass"] = close(loss, rtol=1e-6)
        observed[f"{where}: master weights after the step"] = close(_flat(model.params), rtol=1e-6, atol=1e-7)

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
    observed.update(_float16_pass_observations(ns, model, "float64 input"))
    losses = [_loss(first), _loss(second)]
    observed["float64 input: loss goes down"] = same(all(isinstance(v, float) for v in losses)
                                                     and bool(losses[1] < losses[0]))
    observed["float64 input: losses of the float16 forward passes"] = close(losses, rtol=1e-6)
    observed["float64 input: master weights after two steps"] = close(_flat(model.params), rtol=1e-6, atol=1e-7)
    return observed


def _allclose(actual, expected, rtol, atol):
    return (isinstance(actual, np.ndarray) and actual.shape == expected.shape
            and bool(np.allclose(actual, expected, rtol=rtol, atol=atol)))


def t04_trainer_update_math(ns, rng):
    mlp, sgd, scaler_class, trainer_class = ns["MLP"], ns["SGD"], ns["DynamicLossScaler"], ns["MixedPrecisionTrainer"]
    expected_step = ns["expected_step"]
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
        expected_step(twin, twin_optimizer, x, labels, scale)
        observed[f"{where}: optimizer steps"] = same(optimizer.steps)
        observed[f"{where}: master dtypes"] = same({name: str(w.dtype) for name, w in model.params.items()})
        for name in PARAM_NAMES:
            observed[f"{where}: {name} matches the float16 path"] = same(
                _allclose(model.params[name], twin.params[name], rtol=1e-6, atol=0))
        observed[f"{where}: master weights"] = close(_flat(model.params), rtol=1e-6, atol=0.0)
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
        expected_step(twin, twin_optimizer, x[part], labels[part], scale)
    observed["momentum: optimizer steps"] = same(optimizer.steps)
    for name in PARAM_NAMES:
        observed[f"momentum: {name} matches"] = same(_allclose(model.params[name], twin.params[name], 1e-5, 1e-7))
        observed[f"momentum: velocity of {name} matches"] = same(
            _allclose(optimizer.velocity.get(name), twin_optimizer.velocity[name], 1e-5, 1e-12))
    observed["momentum: master weights"] = close(_flat(model.params), rtol=1e-5, atol=1e-7)
    observed["momentum: velocity"] = close(_flat(optimizer.velocity), rtol=1e-5, atol=1e-12)
    return observed


def t04_trainer_skips_overflow(ns, rng):
    mlp, sgd, scaler_class, trainer_class = ns["MLP"], ns["SGD"], ns["DynamicLossScaler"], ns["MixedPrecisionTrainer"]
    observed = {}
    batch, n_in, n_hidden, n_out = int(rng.integers(4, 12)), int(rng.integers(5, 14)), int(rng.integers(3, 10)), 3
    x, labels = rng.standard_normal((batch, n_in)).astype(np.float32), rng.integers(0, n_out, size=batch)

    # an injected non-finite gradient, then a clean step
    for where, name, value in [("inf in W2", "W2", np.inf),
                               ("random non-finite value in a random gradient", str(rng.choice(PARAM_NAMES)),
                                float(rng.choice([np.inf, -np.inf, np.nan])))]:
        model = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, seed=int(rng.integers(0, 1000)))
        optimizer = sgd(lr=0.1, momentum=0.9)
        scale = _power_of_two(rng, 6, 12)
        trainer = trainer_class(model, optimizer, scaler_class(init_scale=scale, growth_interval=1000))
        before = _copy(model.params)
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
        observed[f"{where}, next step: master weights"] = close(_flat(model.params), rtol=1e-5, atol=1e-7)

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
    observed["S too high: overflow flags"] = same(skipped)
    observed["S too high: scales"] = close(scales, rtol=0.0)
    observed["S too high: master weights after 30 steps"] = close(_flat(model.params), rtol=1e-5, atol=1e-7)

    # nan and -inf on consecutive steps after a clean one: weights and momentum untouched
    model = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, seed=int(rng.integers(0, 1000)))
    optimizer = sgd(lr=0.1, momentum=0.9)
    scale = _power_of_two(rng, 5, 8)
    trainer = trainer_class(model, optimizer, scaler_class(init_scale=scale, growth_interval=1000))
    trainer.train_step((x, labels))
    velocity = _copy(optimizer.velocity)
    before = _copy(model.params)
    plan = [(str(rng.choice(PARAM_NAMES)), value) for value in (np.nan, np.nan, -np.inf, np.inf)]
    for number, (name, value) in enumerate(plan, 1):
        model.inject_nonfinite = (name, value)
        result = trainer.train_step((x, labels))
        where = f"consecutive non-finite step {number}"
        observed.update(_result_observations(result, where))
        loss = _loss(result)
        observed[f"{where}: loss finite"] = same(isinstance(loss, float) and bool(np.isfinite(loss)))
    observed["consecutive: optimizer steps"] = same(optimizer.steps)
    observed["consecutive: weights unchanged"] = same([np.array_equal(model.params[n], before[n]) for n in before])
    observed["consecutive: velocity unchanged"] = same(
        sorted(optimizer.velocity) == sorted(velocity)
        and all(np.array_equal(optimizer.velocity[n], velocity[n]) for n in velocity))
    observed["consecutive: master weights after the clean step"] = close(_flat(model.params), rtol=1e-5, atol=1e-7)
    return observed


def t04_trainer_matches_float32(ns, rng):
    train_small, scaler_class = ns["train_small"], ns["DynamicLossScaler"]
    observed = {}
    # random data and initial weights, a shorter run than the visible test's
    data_seed, model_seed, n_steps = int(rng.integers(0, 2**31)), int(rng.integers(0, 2**31)), 24
    reference = train_small(None, data_seed, model_seed, n_steps)
    scaled = train_small(scaler_class(init_scale=2.0**16, growth_interval=10, max_scale=2.0**30), data_seed, model_seed,
                         n_steps)
    unscaled = train_small(scaler_class(init_scale=1.0, min_scale=1.0, max_scale=1.0), data_seed, model_seed, n_steps)
    too_high = train_small(scaler_class(init_scale=2.0**45, growth_interval=10, max_scale=2.0**45), data_seed,
                           model_seed, n_steps)
    observed["scaled run within 0.01 of float32"] = same(abs(scaled - reference) < 0.01)
    observed["unscaled run 0.3 above float32"] = same(unscaled - reference > 0.3)
    # the held-out losses only the float16 path reaches (the scaled run's lies within 1e-3 of float32's)
    observed["scaled run: held-out loss"] = close(_number(scaled), rtol=1e-4)
    observed["unscaled run: held-out loss"] = close(_number(unscaled), rtol=1e-4)
    observed["run from a far too high scale: held-out loss"] = close(_number(too_high), rtol=1e-4)
    return observed


# -- Task 3: training_memory_bytes -------------------------------------------------------------
def _bill(function, *args):
    """The result as a plain dict (Python ints stay ints; anything else fails to match)."""
    result = function(*args)
    return dict(result) if isinstance(result, dict) else result


MEMORY_COUNTS = [("visible counts", 1000, 500), ("no activations", 123_457, 0), ("no parameters", 0, 10**9),
                 ("counts beyond 32 bits", 7_000_000_000, 3_000_000_001), ("one of each", 1, 1), ("nothing", 0, 0)]
BAD_MODES = [("fp16", "fp16"), ("another precision's name", "bf16"), ("upper-case mode", "FP32"),
             ("capitalised mode", "Mixed"), ("empty mode", ""), ("mode with a trailing space", "fp32 ")]


def t04_memory_formula(ns, rng):
    memory = ns["training_memory_bytes"]
    observed = {}
    counts = MEMORY_COUNTS + [("random small counts", int(rng.integers(0, 10**6)), int(rng.integers(0, 10**6))),
                              ("random large counts", int(rng.integers(10**9, 10**11)), int(rng.integers(10**9, 10**12)))]
    for kind, n, a in counts:
        for mode in ("fp32", "mixed"):
            bill = _bill(memory, n, a, mode)
            observed[f"{mode}, {kind}"] = same(bill)
            observed[f"{mode}, {kind}: Python ints"] = same(
                isinstance(bill, dict) and all(type(v) is int for v in bill.values()))
    for kind, mode in BAD_MODES + [("unknown mode", f"mode{int(rng.integers(0, 100))}")]:
        observed[f"rejects {kind}"] = same(raised(memory, 1000, 500, mode))
    for kind, n, a, mode in [("negative N, fp32", -1, 10, "fp32"), ("negative A, mixed", 10, -5, "mixed"),
                             ("random negative N, mixed", -int(rng.integers(1, 10**6)), 0, "mixed"),
                             ("random negative A, fp32", 0, -int(rng.integers(1, 10**6)), "fp32")]:
        observed[f"rejects {kind}"] = same(raised(memory, n, a, mode))
    return observed


def t04_memory_matches_arrays(ns, rng):
    memory, mlp, measured_bytes = ns["training_memory_bytes"], ns["MLP"], ns["measured_bytes"]
    observed = {}
    sizes = [("visible MLP", (30, 20, 7, 12)), ("wide hidden layer", (17, 33, 3, 5)),
             ("random MLP", (int(rng.integers(2, 60)), int(rng.integers(2, 60)), int(rng.integers(2, 12)),
                             int(rng.integers(1, 40))))]
    for kind, (n_in, n_hidden, n_out, batch) in sizes:
        model = mlp(n_in=n_in, n_hidden=n_hidden, n_out=n_out, seed=int(rng.integers(0, 1000)))
        x, labels = rng.standard_normal((batch, n_in)).astype(np.float32), rng.integers(0, n_out, size=batch)
        n_params = int(sum(w.size for w in model.params.values()))
        master_bytes = int(sum(w.nbytes for w in model.params.values()))
        for mode, dtype in [("mixed", np.float16), ("fp32", np.float32)]:
            n_activations, measured = measured_bytes(model, x, labels, dtype)
            predicted = _bill(memory, n_params, int(n_activations), mode)
            where = f"{mode}, {kind}"
            get = predicted.get if isinstance(predicted, dict) else (lambda key: None)
            observed[f"{where}: matches the arrays"] = same({key: bool(get(key) == value)
                                                             for key, value in measured.items()})
            observed[f"{where}: master weights"] = same(bool(get("master_weights") == (master_bytes if mode == "mixed"
                                                                                        else 0)))
            observed[f"{where}: adam state"] = same(bool(get("adam_state") == 2 * master_bytes))
            observed[f"{where}: bill"] = same(predicted)
    return observed
