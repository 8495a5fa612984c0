"""SOFTMAX int8 -> int8: numpy reference == TFLM (gemmlowp path); TIR kernel == reference."""

from pathlib import Path

import numpy as np
import pytest
import tvm

from dtmm_tvm.frontend.tflite_reader import read_tflite
from dtmm_tvm.ops.softmax import softmax_int8 as build_softmax
from dtmm_tvm.quant.softmax import softmax_int8, softmax_params
from dtmm_tvm.reference.tflm import run_tflm

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ops"
MODELS = ["misc_softmax", "misc_softmax_beta"]


def _load(name):
    graph = read_tflite(FIXTURES / f"{name}.tflite")
    (op,) = graph.operators
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    params = softmax_params(op.options["Beta"], float(x.scale[0]), float(out.scale[0]), int(out.zero_point[0]))
    return graph, x, params


def _inputs(rng, shape, count):
    """Uniform noise, realistic logits (one or two clear winners over a spread), and extremes."""
    x = rng.integers(-128, 128, size=(count, *shape), dtype=np.int8)
    logits = rng.normal(-20, 25, size=(count // 2, *shape))
    winners = rng.integers(0, shape[-1], size=(count // 2, *shape[:-1], 2))
    np.put_along_axis(logits, winners, rng.uniform(40, 127, size=winners.shape), axis=-1)
    x[count // 2 : count // 2 * 2] = np.clip(np.rint(logits), -128, 127).astype(np.int8)
    x[0], x[1], x[2] = -128, 127, 0  # all equal: uniform distribution
    x[3] = -128
    x[3, ..., 0] = 127  # one-hot
    return x


@pytest.mark.parametrize("name", MODELS)
def test_reference_matches_tflm(name):
    graph, x, params = _load(name)
    inputs = _inputs(np.random.default_rng(1), x.shape, 400)
    np.testing.assert_array_equal(softmax_int8(inputs, params), run_tflm(graph.raw, inputs))


def _check_kernel(shape, params, inputs):
    func = build_softmax(shape, params)
    lib = tvm.compile(tvm.IRModule({"main": func}), target="llvm")
    for v in inputs:
        result = tvm.runtime.tensor(np.zeros(shape, np.int8))
        lib["main"](tvm.runtime.tensor(v), result)
        np.testing.assert_array_equal(result.numpy(), softmax_int8(v, params))
    return func


@pytest.mark.parametrize("name", MODELS)
def test_kernel_matches_reference_on_fixtures(name):
    _, x, params = _load(name)
    func = _check_kernel(x.shape, params, _inputs(np.random.default_rng(9), x.shape, 200))
    assert func.attrs["dtmm.op"] == "softmax"


@pytest.mark.parametrize("seed, beta, shape", [(0, 1.0, (2, 7)), (1, 2.0, (3, 33)), (2, 0.25, (1, 2, 1, 100)), (3, 1.0, (1, 511))])
def test_kernel_matches_reference_random_params(seed, beta, shape):
    rng = np.random.default_rng(seed)
    params = softmax_params(beta, float(10 ** rng.uniform(-2.5, 0)))
    _check_kernel(shape, params, _inputs(rng, shape, 20))


def test_builder_rejects_rows_tflm_cannot_handle():
    with pytest.raises(ValueError):
        build_softmax((1, 512), softmax_params(1.0, 0.1))


def test_kernel_builds_for_c():
    _, x, params = _load("misc_softmax")
    tvm.compile(tvm.IRModule({"main": build_softmax(x.shape, params)}), target="c")
