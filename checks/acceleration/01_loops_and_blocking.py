"""Hidden cases of 01_loops_and_blocking: one check per test cell, named by its grade_id.

Each check runs in the check process after the given and student cells (``autograder/check``),
calls the student's functions (``ns``) on inputs drawn from ``rng`` and returns observations
(``observe``), compared outside with the reference solution's. Case names are what a student
reads when a case fails: they name the kind of case, never its inputs. How the matmuls read their
inputs is evidence the grader records itself: the inputs are ``served`` and ``evidence`` asks the
grader what it handed out (element reads, tiles, matmul-like calls).
"""
import numpy as np
from observe import close, evidence, raised, raises_naming, same, served


def _shape(rng, low=1, high=9):
    return tuple(int(v) for v in rng.integers(low, high, size=3))


def _pair(rng, m, k, n, dtype):
    return rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)


def _product(function, rng, case, shape, dtype, **kwargs):
    """Observations of ``function(a, b, **kwargs)`` on random inputs: values, dtype, inputs unchanged."""
    a, b = _pair(rng, *shape, dtype)
    a_before, b_before = a.copy(), b.copy()
    c = function(a, b, **kwargs)
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    return {f"{case}: values": close(c, rtol=tolerance, atol=tolerance),
            f"{case}: inputs unchanged": same(bool((a == a_before).all() and (b == b_before).all()))}


def _exact_products(function, rng, **kwargs):
    observed = {}
    ints = rng.integers(-5, 6, size=(int(rng.integers(2, 8)), int(rng.integers(2, 8))))
    for dtype in (np.int64, np.int32):
        x = ints.astype(dtype)
        observed[f"{np.dtype(dtype).name} product is exact and stays {np.dtype(dtype).name}"] = \
            same(function(x, x.T.copy(), **kwargs))
    mixed = function(rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((4, 2)), **kwargs)
    observed["float32 times float64 gives float64"] = same(
        str(np.asarray(mixed).dtype) if isinstance(mixed, np.ndarray) else None)
    observed["inner dimension 0"] = same(function(np.ones((2, 0)), np.ones((0, 3)), **kwargs))
    return observed


def _shape_errors(function, shapes, **kwargs):
    observed = {}
    for number, (a_shape, b_shape) in enumerate(shapes, 1):
        observed[f"incompatible shapes {number}: ValueError naming both"] = same(raises_naming(
            lambda a, b: function(a, b, **kwargs), (np.ones(a_shape), np.ones(b_shape)), ValueError,
            [str(a_shape), str(b_shape)]))
    return observed


BAD_SHAPES = [((2, 3), (4, 5)), ((3,), (3, 2)), ((2, 3), (2, 3)), ((2, 2, 2), (2, 2)), ((4, 3), (3,)),
              ((1, 5), (4, 1)), ((), (1, 1))]


def t01_naive_matches_matmul(ns, rng):
    naive = ns["matmul_naive"]
    observed = {}
    for number, (shape, dtype) in enumerate([(_shape(rng), np.float64), (_shape(rng), np.float32),
                                             ((1, 1, 1), np.float64), ((1, int(rng.integers(2, 9)), 1), np.float64),
                                             ((7, 1, 4), np.float64)], 1):
        observed.update(_product(naive, rng, f"{np.dtype(dtype).name} product {number}", shape, dtype))
    observed.update(_exact_products(naive, rng))
    return observed


def t01_naive_rejects_bad_shapes(ns, rng):
    return _shape_errors(ns["matmul_naive"], BAD_SHAPES)


def t01_naive_reads_every_element(ns, rng):
    observed = {}
    for number, (m, k, n) in enumerate([_shape(rng), _shape(rng), (1, int(rng.integers(2, 9)), int(rng.integers(2, 9)))],
                                       1):
        a0, b0 = _pair(rng, m, k, n, np.float64)
        a, b = served(a0), served(b0)
        c = ns["matmul_naive"](a, b)
        observed[f"product {number}: values"] = close(np.asarray(c, dtype=np.float64), rtol=1e-10, atol=1e-12)
        for x, name in ((a, "A"), (b, "B")):
            observed[f"product {number}: reads of each element of {name}"] = evidence(x, "element_reads")
            observed[f"product {number}: matmul-like calls on {name}"] = evidence(x, "matmul_calls")
    return observed


def t01_blocked_matches_matmul(ns, rng):
    blocked = ns["matmul_blocked"]
    observed = {}
    cases = [((int(rng.integers(40, 80)), int(rng.integers(20, 50)), int(rng.integers(9, 50))), int(rng.integers(5, 17)),
              np.float64, "ragged float64 product"), ((64, 64, 64), 32, np.float32, "float32 product, whole tiles"),
             ((1, 129, 2), 16, np.float64, "thin product"), (_shape(rng), 1, np.float64, "block_size 1"),
             ((5, 3, 7), 64, np.float64, "block larger than the matrices")]
    for shape, block_size, dtype, case in cases:
        observed.update(_product(blocked, rng, case, shape, dtype, block_size=block_size))
    x = rng.standard_normal((130, 70))
    observed["default block_size"] = close(blocked(x, x.T), rtol=1e-10, atol=1e-12)
    observed.update(_exact_products(blocked, rng, block_size=3))
    return observed


def t01_blocked_uses_tiles(ns, rng):
    observed = {}
    cases = [((20, 12, 28), 4), ((19, 10, 23), 6), ((13, 7, 11), 5), ((5, 3, 7), 64), ((3, 2, 4), 1), ((30, 9, 2), 9),
             ((int(rng.integers(10, 30)), int(rng.integers(10, 30)), int(rng.integers(10, 30))), int(rng.integers(4, 12)))]
    for number, ((m, k, n), block_size) in enumerate(cases, 1):
        a0, b0 = _pair(rng, m, k, n, np.float64)
        a, b = served(a0), served(b0)
        c = ns["matmul_blocked"](a, b, block_size=block_size)
        observed[f"tiling {number}: values"] = close(np.asarray(c, dtype=np.float64), rtol=1e-10, atol=1e-12)
        observed[f"tiling {number}: tiles of A"] = evidence(a, "tiles")
        observed[f"tiling {number}: tiles of B"] = evidence(b, "tiles")
    return observed


def t01_blocked_rejects_bad_arguments(ns, rng):
    blocked = ns["matmul_blocked"]
    observed = {}
    for block_size in (0, -1, -64):
        observed[f"block_size {block_size}: ValueError naming block_size"] = same(raises_naming(
            lambda a, b, bs=block_size: blocked(a, b, block_size=bs), (np.ones((4, 4)), np.ones((4, 4))),
            ValueError, ["block_size"]))
    observed.update(_shape_errors(blocked, [((2, 3), (4, 5)), ((3,), (3, 2)), ((2, 2, 2), (2, 2)),
                                            ((5, 1), (2, 5))], block_size=2))
    return observed


def t01_footprint_bytes(ns, rng):
    footprint = ns["cache_footprint"]
    observed = {}
    for number, (block_size, itemsize) in enumerate(zip(rng.integers(1, 700, size=12),
                                                        rng.choice([1, 2, 4, 8, 16], size=12)), 1):
        result = footprint(int(block_size), itemsize=int(itemsize))
        observed[f"tiling {number}: tile and working-set bytes"] = same([result["tile_bytes"],
                                                                         result["working_set_bytes"]])
    observed["default itemsize"] = same(footprint(16)["tile_bytes"])
    for label, bad in (("block_size 0", dict(block_size=0)), ("negative block_size", dict(block_size=-3)),
                       ("itemsize 0", dict(block_size=8, itemsize=0))):
        observed[f"{label} is rejected"] = same(raised(footprint, **bad))
    observed["ValueError names block_size"] = same(raises_naming(footprint, (0,), ValueError, ["block_size"]))
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
    for number, (block_size, kwargs) in enumerate(cases, 1):
        result = footprint(block_size, **kwargs)
        observed[f"cache sizes {number}: fits in L1, fits in L2"] = same([bool(result["fits_l1"]),
                                                                          bool(result["fits_l2"])])
    return observed


def _fast_path(function, rng, label, shapes, dtype):
    """Values, dtype and what ``function`` asked the grader for, on served inputs."""
    observed = {}
    for number, (m, k, n) in enumerate(shapes, 1):
        if dtype == np.int64:
            a0, b0 = rng.integers(-4, 5, size=(m, k)), rng.integers(-4, 5, size=(k, n))
        else:
            a0, b0 = _pair(rng, m, k, n, dtype)
        a, b = served(a0), served(b0)
        c = function(a, b)
        case = f"{label} {np.dtype(dtype).name} product {number}"
        observed[f"{case}: values"] = close(np.asarray(c) if isinstance(c, np.ndarray) else c, rtol=1e-5, atol=1e-6)
        observed[f"{case}: dtype"] = same(str(c.dtype) if isinstance(c, np.ndarray) else None)
        for x, name in ((a, "A"), (b, "B")):
            observed[f"{case}: single elements and tiles read of {name}"] = evidence(x, "untouched")
            observed[f"{case}: matmul-like calls on {name}"] = evidence(x, "matmul_calls")
    return observed


def t01_backend_dispatches_to_blas(ns, rng):
    dispatch = ns["OptimizedBackend"]().dispatch
    observed = {}
    for dtype in (np.float32, np.float64, np.int64):
        observed.update(_fast_path(lambda a, b: dispatch("matmul", a, b), rng, "dispatch",
                                   [_shape(rng), (1, int(rng.integers(2, 9)), 3)], dtype))
    observed.update(_shape_errors(lambda a, b: dispatch("matmul", a, b), [((2, 3), (4, 2)), ((3,), (3, 2))]))
    return observed


def t01_backend_rejects_unknown_op(ns, rng):
    dispatch = ns["OptimizedBackend"]().dispatch
    observed = {}
    for number, op in enumerate(("conv2d", "", "dispatch", "__init__", "softmax", f"op{int(rng.integers(100, 999))}"), 1):
        observed[f"unknown op {number}: ValueError naming it and the known ops"] = same(raises_naming(
            dispatch, (op, np.ones((2, 2)), np.ones((2, 2))), ValueError, [op, "matmul"]))
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
        observed = _fast_path(ns["matmul"], rng, "matmul", [_shape(rng), (1, 5, 7)], np.float32)
        observed["shape error goes through the backend"] = same(raises_naming(
            ns["matmul"], (np.ones((3, 2)), np.ones((3, 2))), ValueError, ["(3, 2)"]))
    finally:
        backend_class.dispatch = original
    observed["operations dispatched"] = same(dispatched)
    return observed
