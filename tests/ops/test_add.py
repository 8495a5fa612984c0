"""ADD: numpy reference == TFLM on single-op fixtures; TIR kernel == numpy reference."""

from pathlib import Path

import numpy as np
import pytest
import tvm

from dtmm_tvm.reference import run_tflm
from dtmm_tvm.frontend.tflite_reader import read_tflite
from dtmm_tvm.ops.add import add_int8 as build_add
from dtmm_tvm.quant.add import add_int8, add_params
from dtmm_tvm.quant.fixed_point import activation_range

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ops"
MODELS = ["misc_add", "misc_add_relu", "misc_add_bcast_relu6"]


def _q(tensor):
    return float(tensor.scale[0]), int(tensor.zero_point[0])


def _load(name):
    graph = read_tflite(FIXTURES / f"{name}.tflite")
    (op,) = graph.operators
    t1, t2, out = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensor(op.outputs[0])
    act = activation_range(op.options["FusedActivationFunction"], *_q(out))
    return graph, t1, t2, out, add_params(*_q(t1), *_q(t2), *_q(out), *act)


def _inputs(rng, shape, count):
    x = rng.integers(-128, 128, size=(count, *shape), dtype=np.int8)
    x[0], x[1] = -128, 127  # the extremes
    return x


def _compile(func):
    return tvm.compile(tvm.IRModule({"main": func}), target="llvm")


@pytest.mark.parametrize("name", MODELS)
def test_reference_matches_tflm(name):
    graph, t1, t2, _, params = _load(name)
    rng = np.random.default_rng(7)
    x1, x2 = _inputs(rng, t1.shape, 150), _inputs(rng, t2.shape, 150)
    x2[2] = 127
    x1[3] = -128
    np.testing.assert_array_equal(add_int8(x1, x2, params), run_tflm(graph.raw, [x1, x2]))


@pytest.mark.parametrize("name", MODELS)
def test_kernel_matches_reference_on_fixtures(name):
    _, t1, t2, out, params = _load(name)
    func = build_add(t1.shape, t2.shape, params)
    assert func.attrs["dtmm.op"] == "add"
    lib = _compile(func)
    rng = np.random.default_rng(11)
    for a, b in zip(_inputs(rng, t1.shape, 40), _inputs(rng, t2.shape, 40)):
        result = tvm.runtime.tensor(np.zeros(out.shape, np.int8))
        lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b), result)
        np.testing.assert_array_equal(result.numpy(), add_int8(a, b, params))


@pytest.mark.parametrize(
    "seed, shape1, shape2",
    [(0, (2, 3, 5), (2, 3, 5)), (1, (1, 4, 4, 3), (3,)), (2, (1, 1, 1, 6), (1, 5, 2, 6)), (3, (4, 1), (1, 7))],
)
def test_kernel_matches_reference_random_params(seed, shape1, shape2):
    rng = np.random.default_rng(seed)
    s1, s2, so = 10 ** rng.uniform(-3, -0.5, size=3)
    z1, z2, zo = (int(v) for v in rng.integers(-128, 128, size=3))
    activation = ["NONE", "RELU", "RELU6"][seed % 3]
    params = add_params(s1, z1, s2, z2, so, zo, *activation_range(activation, so, zo))
    out_shape = np.broadcast_shapes(shape1, shape2)
    lib = _compile(build_add(shape1, shape2, params))
    for a, b in zip(_inputs(rng, shape1, 20), _inputs(rng, shape2, 20)):
        result = tvm.runtime.tensor(np.zeros(out_shape, np.int8))
        lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b), result)
        np.testing.assert_array_equal(result.numpy(), add_int8(a, b, params))


def test_kernel_builds_for_c():
    _, t1, t2, _, params = _load("misc_add_bcast_relu6")
    tvm.compile(tvm.IRModule({"main": build_add(t1.shape, t2.shape, params)}), target="c")
