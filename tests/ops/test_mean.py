"""MEAN over H, W: numpy reference == TFLM (equal and different scales); TIR kernel == reference."""

from pathlib import Path

import numpy as np
import pytest
import tvm

from dtmm_tvm.frontend.tflite_reader import read_tflite
from dtmm_tvm.ops.mean import mean_int8 as build_mean
from dtmm_tvm.quant.mean import mean_int8, mean_params
from dtmm_tvm.reference.tflm import run_tflm

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ops"
MODELS = ["misc_mean_keep", "misc_mean_nokeep", "misc_mean_equal"]


def _load(name):
    graph = read_tflite(FIXTURES / f"{name}.tflite")
    (op,) = graph.operators
    x, axes, out = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1]), graph.tensor(op.outputs[0])
    assert sorted(int(a) for a in axes.data) == [1, 2]
    params = mean_params(
        x.shape, op.options["KeepDims"], float(x.scale[0]), int(x.zero_point[0]), float(out.scale[0]), int(out.zero_point[0])
    )
    assert params.output_shape == tuple(out.shape)
    return graph, x, params


def _inputs(rng, shape, count):
    x = rng.integers(-128, 128, size=(count, *shape), dtype=np.int8)
    x[0], x[1] = -128, 127
    # Narrow-range samples so the means are spread over the whole output range, not only near 0.
    x[2:count // 2] = np.clip(x[2:count // 2] // 8 + rng.integers(-100, 100, size=(count // 2 - 2, 1, 1, 1, 1)), -128, 127)
    return x


@pytest.mark.parametrize("name", MODELS)
def test_reference_matches_tflm(name):
    graph, x, params = _load(name)
    inputs = _inputs(np.random.default_rng(2), x.shape, 300)
    expected = run_tflm(graph.raw, inputs)
    actual = np.stack([mean_int8(v, params) for v in inputs])
    np.testing.assert_array_equal(actual, expected)


def _check_kernel(params, inputs):
    func = build_mean(params)
    lib = tvm.compile(tvm.IRModule({"main": func}), target="llvm")
    for v in inputs:
        result = tvm.runtime.tensor(np.zeros(params.output_shape, np.int8))
        lib["main"](tvm.runtime.tensor(v), result)
        np.testing.assert_array_equal(result.numpy(), mean_int8(v, params))
    return func


@pytest.mark.parametrize("name", MODELS)
def test_kernel_matches_reference_on_fixtures(name):
    _, x, params = _load(name)
    assert _check_kernel(params, _inputs(np.random.default_rng(4), x.shape, 30)).attrs["dtmm.op"] == "mean"


@pytest.mark.parametrize("seed", range(4))
def test_kernel_matches_reference_random_params(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 6)))
    s_in, s_out = 10 ** rng.uniform(-3, -1, size=2)
    if seed == 0:
        s_out = s_in  # the equal-quantization case
    params = mean_params(shape, bool(seed % 2), s_in, int(rng.integers(-128, 128)), s_out, int(rng.integers(-128, 128)))
    _check_kernel(params, _inputs(rng, shape, 20))


def test_kernel_builds_for_c():
    _, _, params = _load("misc_mean_nokeep")
    tvm.compile(tvm.IRModule({"main": build_mean(params)}), target="c")
