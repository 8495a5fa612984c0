"""Elementwise int8 activations and requantization: numpy reference == TFLM on every int8 value.

The references are what the lookup-table kernel's tables are computed from, so an exhaustive
check over the 256 int8 inputs proves the compiled op bit-exact with TFLM for that layer.
"""

from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.frontend.tflite_reader import read_tflite
from dtmm_tvm.quant import activations as act
from dtmm_tvm.quant.hard_swish import hard_swish_int8, hard_swish_params
from dtmm_tvm.quant.logistic import logistic_int8, sigmoid_params, tanh_int8
from dtmm_tvm.reference import run_tflm

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ops"


def _all_int8_inputs(shape):
    """Every int8 value at least once, in inferences of ``shape``."""
    size = int(np.prod(shape))
    count = -(-256 // size)
    values = np.resize(np.arange(-128, 128, dtype=np.int8), count * size)
    return values.reshape((count, *shape))


def _q(tensor):
    return float(tensor.scale[0]), int(tensor.zero_point[0])


def _reference(name, graph, op):
    (si, zi), (so, zo) = _q(graph.tensor(op.inputs[0])), _q(graph.tensor(op.outputs[0]))
    if name == "relu":
        return lambda x: act.requantize_int8(x, act.relu_params(si, zi, so, zo))
    if name == "relu6":
        return lambda x: act.relu6_int8(x, *act.relu6_bounds(si, zi))
    if name == "leaky_relu":
        return lambda x: act.leaky_relu_int8(x, act.leaky_relu_params(si, zi, so, zo, 0.2))
    if name == "logistic":
        return lambda x: logistic_int8(x, sigmoid_params(si, zi))
    if name == "tanh":
        return lambda x: tanh_int8(x, sigmoid_params(si, zi))
    if name == "hard_swish":
        return lambda x: hard_swish_int8(x, hard_swish_params(si, zi, so, zo))
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["relu", "relu6", "leaky_relu", "logistic", "tanh", "hard_swish"])
def test_reference_matches_tflm_on_every_int8_value(name):
    graph = read_tflite(FIXTURES / f"more_{name}.tflite")
    (op,) = graph.operators
    x = _all_int8_inputs(graph.tensor(graph.inputs[0]).shape)
    np.testing.assert_array_equal(_reference(name, graph, op)(x), run_tflm(graph.raw, x))


@pytest.mark.parametrize("scale, zp", [(0.02, 3), (0.1, -128), (0.0039, 127), (0.5, -7), (0.007, 0)])
def test_logistic_tanh_saturate_and_are_monotonic(scale, zp):
    x = np.arange(-128, 128, dtype=np.int8)
    for fn in (logistic_int8, tanh_int8):
        y = fn(x, sigmoid_params(scale, zp)).astype(int)
        assert np.all(np.diff(y) >= 0)


def test_quantize_float_rounds_half_away_from_zero():
    x = np.array([0.5, -0.5, 1.5, -1.5, 0.49999997, 1e9, -1e9], np.float32)
    np.testing.assert_array_equal(act.quantize_float32(x, 1.0, 0), [1, -1, 2, -2, 0, 127, -128])


def test_validation_refuses_what_tflm_refuses():
    """CONCATENATION of differently quantized int8 inputs and a LOGISTIC whose output is not
    (1/256, -128): TFLM's Prepare fails on both, so the compile stops there, naming the op."""
    from dtmm_tvm.errors import UnsupportedOpError
    from dtmm_tvm.frontend.validate import validate_tflite

    def patched(name, edit):
        graph = read_tflite(FIXTURES / f"{name}.tflite")
        edit(graph)
        return graph

    def rescale_first_input(graph):
        graph.tensor(graph.operators[0].inputs[0]).scale = np.array([0.5], np.float32)

    def shift_output(graph):
        graph.tensor(graph.operators[0].outputs[0]).zero_point = np.array([0], np.int64)

    with pytest.raises(UnsupportedOpError, match=r"operator 0 CONCATENATION .* requires equal quantization"):
        validate_tflite(patched("more_concat", rescale_first_input))
    with pytest.raises(UnsupportedOpError, match=r"operator 0 LOGISTIC .* requires scale 0.00390625 and zero point -128"):
        validate_tflite(patched("more_logistic", shift_output))
