"""AVERAGE_POOL_2D / MAX_POOL_2D: numpy reference == TFLM; TIR kernel == numpy reference."""

from pathlib import Path

import numpy as np
import pytest
import tvm

from dtmm_tvm.frontend.tflite_reader import read_tflite
from dtmm_tvm.ops.pooling import pool2d_int8
from dtmm_tvm.quant.pooling import avg_pool2d_int8, max_pool2d_int8, pool2d_params
from dtmm_tvm.reference.tflm import run_tflm

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ops"
MODELS = [
    "misc_avgpool_same_s2",
    "misc_avgpool_same_s2_relu6",
    "misc_avgpool_valid",
    "misc_maxpool_same_s2_relu",
    "misc_maxpool_valid",
]
REFERENCE = {"avg": avg_pool2d_int8, "max": max_pool2d_int8}


def _load(name):
    graph = read_tflite(FIXTURES / f"{name}.tflite")
    (op,) = graph.operators
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    o = op.options
    params = pool2d_params(
        x.shape,
        (o["FilterHeight"], o["FilterWidth"]),
        (o["StrideH"], o["StrideW"]),
        o["Padding"],
        float(out.scale[0]),
        int(out.zero_point[0]),
        o["FusedActivationFunction"],
    )
    kind = "avg" if op.opcode == "AVERAGE_POOL_2D" else "max"
    return graph, x, params, kind


def _inputs(rng, shape, count):
    x = rng.integers(-128, 128, size=(count, *shape), dtype=np.int8)
    x[0], x[1] = -128, 127
    return x


@pytest.mark.parametrize("name", MODELS)
def test_reference_matches_tflm(name):
    graph, x, params, kind = _load(name)
    inputs = _inputs(np.random.default_rng(3), x.shape, 200)
    expected = run_tflm(graph.raw, inputs)
    actual = np.stack([REFERENCE[kind](v, params) for v in inputs])
    assert actual.shape == expected.shape == (200, *params.output_shape)
    np.testing.assert_array_equal(actual, expected)


def _check_kernel(kind, params, inputs):
    func = pool2d_int8(kind, params)
    lib = tvm.compile(tvm.IRModule({"main": func}), target="llvm")
    for v in inputs:
        result = tvm.runtime.tensor(np.zeros(params.output_shape, np.int8))
        lib["main"](tvm.runtime.tensor(v), result)
        np.testing.assert_array_equal(result.numpy(), REFERENCE[kind](v, params))
    return func


@pytest.mark.parametrize("name", MODELS)
def test_kernel_matches_reference_on_fixtures(name):
    _, x, params, kind = _load(name)
    func = _check_kernel(kind, params, _inputs(np.random.default_rng(5), x.shape, 30))
    assert func.attrs["dtmm.op"] == ("average_pool2d" if kind == "avg" else "max_pool2d")


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize(
    "shape, window, strides, padding",
    [((2, 7, 6, 3), (2, 3), (2, 1), "SAME"), ((1, 10, 10, 2), (4, 4), (3, 3), "SAME"), ((1, 6, 9, 5), (6, 2), (1, 3), "VALID")],
)
def test_kernel_matches_reference_random_geometry(kind, shape, window, strides, padding):
    rng = np.random.default_rng(sum(shape))
    scale, zp = float(10 ** rng.uniform(-3, -1)), int(rng.integers(-128, 128))
    activation = ["NONE", "RELU", "RELU6"][int(rng.integers(0, 3))]
    params = pool2d_params(shape, window, strides, padding, scale, zp, activation)
    _check_kernel(kind, params, _inputs(rng, shape, 10))


def test_kernel_builds_for_c():
    _, _, params, kind = _load("misc_avgpool_same_s2_relu6")
    tvm.compile(tvm.IRModule({"main": pool2d_int8(kind, params)}), target="c")
