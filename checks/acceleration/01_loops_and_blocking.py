"""Outside checks for 01_loops_and_blocking: one probe per test cell, named by its grade_id.

Each probe runs in the student's process (``autograder/verify_driver.py``), after the given and
student cells and never after a test cell. It calls the student's functions (``ns``) on inputs
drawn from ``rng``, which the grader seeds, and returns observations (``probekit``). The grader
compares them with the reference solution's observations outside that process. The given
``CountingArray`` and ``assert_tiled`` are the notebook's own, restored if student code replaced
them.
"""
import numpy as np
from observe import close, raised, raises_naming, same


def _shape(rng, low=1, high=9):
    return tuple(int(v) for v in rng.integers(low, high, size=3))


def _pair(rng, m, k, n, dtype):
    return rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)


def _products(function, rng, cases, **kwargs):
    """Observations of ``function(a, b, **kwargs)`` on random inputs: values, dtype, inputs unchanged."""
    observed = {}
    for number, ((m, k, n), dtype) in enumerate(cases):
        a, b = _pair(rng, m, k, n, dtype)
        a_before, b_before = a.copy(), b.copy()
        c = function(a, b, **kwargs)
        tolerance = 1e-4 if dtype == np.float32 else 1e-10
        observed[f"{m}x{k}x{n} {np.dtype(dtype).name}"] = close(c, rtol=tolerance, atol=tolerance)
        observed[f"{m}x{k}x{n} inputs unchanged"] = same(bool((a == a_before).all() and (b == b_before).all()))
    return observed


def _exact_products(function, rng, **kwargs):
    observed = {}
    ints = rng.integers(-5, 6, size=(int(rng.integers(2, 8)), int(rng.integers(2, 8))))
    for dtype in (np.int64, np.int32):
        x = ints.astype(dtype)
        observed[f"{np.dtype(dtype).name} product"] = same(function(x, x.T.copy(), **kwargs))
    mixed = function(rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((4, 2)), **kwargs)
    observed["float32 @ float64 dtype"] = same(str(np.asarray(mixed).dtype) if isinstance(mixed, np.ndarray) else None)
    observed["K=0"] = same(function(np.ones((2, 0)), np.ones((0, 3)), **kwargs))
    return observed


def _shape_errors(function, shapes, **kwargs):
    observed = {}
    for a_shape, b_shape in shapes:
        observed[f"ValueError naming {a_shape} and {b_shape}"] = same(raises_naming(
            lambda a, b: function(a, b, **kwargs), (np.ones(a_shape), np.ones(b_shape)), ValueError,
            [str(a_shape), str(b_shape)]))
    return observed


BAD_SHAPES = [((2, 3), (4, 5)), ((3,), (3, 2)), ((2, 3), (2, 3)), ((2, 2, 2), (2, 2)), ((4, 3), (3,)),
              ((1, 5), (4, 1)), ((), (1, 1))]


def t01_naive_matches_matmul(ns, rng):
    cases = [(_shape(rng), np.float64), (_shape(rng), np.float32), ((1, 1, 1), np.float64),
             ((1, int(rng.integers(2, 9)), 1), np.float64), ((7, 1, 4), np.float64)]
    observed = _products(ns["matmul_naive"], rng, cases)
    observed.update(_exact_products(ns["matmul_naive"], rng))
    return observed


def t01_naive_rejects_bad_shapes(ns, rng):
    return _shape_errors(ns["matmul_naive"], BAD_SHAPES)


def t01_naive_reads_every_element(ns, rng):
    counting = ns["CountingArray"]
    observed = {}
    for m, k, n in [_shape(rng), _shape(rng), (1, int(rng.integers(2, 9)), int(rng.integers(2, 9)))]:
        a0, b0 = _pair(rng, m, k, n, np.float64)
        a, b = counting.wrap(a0), counting.wrap(b0)
        c = ns["matmul_naive"](a, b)
        observed[f"{m}x{k}x{n} values"] = close(np.asarray(c, dtype=np.float64), rtol=1e-10, atol=1e-12)
        for x, name in ((a, "a"), (b, "b")):
            observed[f"{m}x{k}x{n} reads of {name}"] = same(x.log.element_reads.copy())
            observed[f"{m}x{k}x{n} matmul calls on {name}"] = same(len(x.log.matmul_calls))
    return observed


def t01_blocked_matches_matmul(ns, rng):
    blocked = ns["matmul_blocked"]
    observed = {}
    for (m, k, n), block_size, dtype in [((int(rng.integers(40, 80)), int(rng.integers(20, 50)), int(rng.integers(9, 50))),
                                          int(rng.integers(5, 17)), np.float64),
                                         ((64, 64, 64), 32, np.float32), ((1, 129, 2), 16, np.float64),
                                         (_shape(rng), 1, np.float64), ((5, 3, 7), 64, np.float64)]:
        observed.update({f"block {block_size} {key}": value for key, value in
                         _products(blocked, rng, [((m, k, n), dtype)], block_size=block_size).items()})
    x = rng.standard_normal((130, 70))
    observed["default block_size"] = close(blocked(x, x.T), rtol=1e-10, atol=1e-12)
    observed.update(_exact_products(blocked, rng, block_size=3))
    return observed


def t01_blocked_uses_tiles(ns, rng):
    counting, assert_tiled = ns["CountingArray"], ns["assert_tiled"]
    observed = {}
    for (m, k, n), block_size in [((20, 12, 28), 4), ((19, 10, 23), 6), ((13, 7, 11), 5), ((5, 3, 7), 64),
                                  ((3, 2, 4), 1), ((30, 9, 2), 9),
                                  ((int(rng.integers(10, 40)), int(rng.integers(10, 40)), int(rng.integers(10, 40))),
                                   int(rng.integers(2, 12)))]:
        a0, b0 = _pair(rng, m, k, n, np.float64)
        a, b = counting.wrap(a0), counting.wrap(b0)
        c = ns["matmul_blocked"](a, b, block_size=block_size)
        where = f"{m}x{k}x{n} block {block_size}"
        observed[f"{where} values"] = close(np.asarray(c, dtype=np.float64), rtol=1e-10, atol=1e-12)
        observed[f"{where} tiles of a"] = same(raised(assert_tiled, a, "a", block_size))
        observed[f"{where} tiles of b"] = same(raised(assert_tiled, b, "b", block_size))
    return observed


def t01_blocked_rejects_bad_arguments(ns, rng):
    blocked = ns["matmul_blocked"]
    observed = {}
    for block_size in (0, -1, -64):
        observed[f"block_size={block_size}"] = same(raises_naming(
            lambda a, b, bs=block_size: blocked(a, b, block_size=bs), (np.ones((4, 4)), np.ones((4, 4))),
            ValueError, ["block_size"]))
    observed.update(_shape_errors(blocked, [((2, 3), (4, 5)), ((3,), (3, 2)), ((2, 2, 2), (2, 2)),
                                            ((5, 1), (2, 5))], block_size=2))
    return observed


def t01_footprint_bytes(ns, rng):
    footprint = ns["cache_footprint"]
    observed = {}
    for number, (block_size, itemsize) in enumerate(zip(rng.integers(1, 700, size=12),
                                                        rng.choice([1, 2, 4, 8, 16], size=12))):
        result = footprint(int(block_size), itemsize=int(itemsize))
        observed[f"case {number} bytes"] = same([result["tile_bytes"], result["working_set_bytes"]])
    observed["default itemsize"] = same(footprint(16)["tile_bytes"])
    for bad in (dict(block_size=0), dict(block_size=-3), dict(block_size=8, itemsize=0)):
        observed[f"rejects {bad}"] = same(raised(footprint, **bad))
    observed["block_size named"] = same(raises_naming(footprint, (0,), ValueError, ["block_size"]))
    return observed


def t01_footprint_fits(ns, rng):
    footprint = ns["cache_footprint"]
    observed = {}
    cases = [(32, {}), (64, {}), (512, {}), (16, dict(itemsize=8, l1_bytes=6144)),
             (16, dict(itemsize=8, l1_bytes=6143, l2_bytes=6143)), (64, dict(l1_bytes=48 * 1024)),
             (64, dict(l1_bytes=48 * 1024 - 1)), (256, dict(l2_bytes=768 * 1024)),
             (256, dict(l2_bytes=768 * 1024 - 1)), (8, dict(itemsize=1, l1_bytes=100, l2_bytes=192))]
    for _ in range(6):
        block_size = int(rng.integers(1, 400))
        exact = 3 * block_size * block_size * 4
        cases.append((block_size, dict(l1_bytes=exact - int(rng.integers(0, 2)), l2_bytes=exact)))
    for number, (block_size, kwargs) in enumerate(cases):
        result = footprint(block_size, **kwargs)
        observed[f"case {number}"] = same([bool(result["fits_l1"]), bool(result["fits_l2"])])
    return observed


def _matmul_path(ns, function, rng, shapes, dtype):
    """Values, dtype and what ``function`` read of instrumented inputs."""
    counting = ns["CountingArray"]
    observed = {}
    for m, k, n in shapes:
        if dtype == np.int64:
            a0, b0 = rng.integers(-4, 5, size=(m, k)), rng.integers(-4, 5, size=(k, n))
        else:
            a0, b0 = _pair(rng, m, k, n, dtype)
        a, b = counting.wrap(a0), counting.wrap(b0)
        c = function(a, b)
        where = f"{m}x{k}x{n} {np.dtype(dtype).name}"
        observed[f"{where} values"] = close(np.asarray(c) if isinstance(c, np.ndarray) else c, rtol=1e-5, atol=1e-6)
        observed[f"{where} dtype"] = same(str(c.dtype) if isinstance(c, np.ndarray) else None)
        for x, name in ((a, "a"), (b, "b")):
            observed[f"{where} reads of {name}"] = same([int(x.log.element_reads.sum()), len(x.log.slices)])
            observed[f"{where} matmul calls on {name}"] = same([list(shapes) for _, shapes in x.log.matmul_calls])
    return observed


def t01_backend_dispatches_to_blas(ns, rng):
    backend = ns["OptimizedBackend"]()
    dispatch = backend.dispatch
    observed = {}
    for dtype in (np.float32, np.float64, np.int64):
        observed.update(_matmul_path(ns, lambda a, b: dispatch("matmul", a, b), rng,
                                     [_shape(rng), (1, int(rng.integers(2, 9)), 3)], dtype))
    observed.update(_shape_errors(lambda a, b: dispatch("matmul", a, b), [((2, 3), (4, 2)), ((3,), (3, 2))]))
    return observed


def t01_backend_rejects_unknown_op(ns, rng):
    dispatch = ns["OptimizedBackend"]().dispatch
    observed = {}
    for op in ("conv2d", "", "dispatch", "__init__", "softmax", f"op{int(rng.integers(100, 999))}"):
        observed[f"op {op!r}"] = same(raises_naming(dispatch, (op, np.ones((2, 2)), np.ones((2, 2))),
                                                    ValueError, [op, "matmul"]))
    return observed


def t01_matmul_uses_backend(ns, rng):
    backend_class = ns["OptimizedBackend"]
    original = backend_class.dispatch
    dispatched = []

    def recording_dispatch(self, op, *args, **kwargs):
        dispatched.append(op)
        return original(self, op, *args, **kwargs)

    backend_class.dispatch = recording_dispatch
    try:
        observed = _matmul_path(ns, ns["matmul"], rng, [_shape(rng), (1, 5, 7)], np.float32)
        observed["shape error"] = same(raises_naming(ns["matmul"], (np.ones((3, 2)), np.ones((3, 2))),
                                                     ValueError, ["(3, 2)"]))
    finally:
        backend_class.dispatch = original
    observed["dispatched"] = same(dispatched)
    return observed
