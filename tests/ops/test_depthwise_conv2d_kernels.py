"""The depthwise conv TIR kernel, built for the host (llvm), against TFLM and numpy."""


import numpy as np
import pytest

from dtmm_tvm.frontend.tflite_reader import read_tflite

from .kernel_helpers import FIXTURES, build, fixtures_of, run
from dtmm_tvm.ops.depthwise_conv2d import depthwise_conv2d_int8
from dtmm_tvm.quant import conv as qc
from dtmm_tvm.reference.tflm import run_tflm

DW_MODELS = fixtures_of("DEPTHWISE_CONV_2D")


@pytest.mark.parametrize("name", DW_MODELS)
def test_kernel_matches_tflm_on_fixtures(name):
    graph = read_tflite(FIXTURES / name)
    layer = qc.conv_layer_from_tflite(graph, graph.operators[0])
    params = layer.params
    rng = np.random.default_rng(2)
    inputs = rng.integers(-128, 128, size=(4, *params.input_shape), dtype=np.int8)
    expected = run_tflm(graph.raw, inputs)
    kernel = build(depthwise_conv2d_int8(params))
    for x, want in zip(inputs, expected):
        got = run(kernel, x, layer.weight, layer.bias, layer.multiplier, layer.shift,
                  np.zeros(params.output_shape, np.int8))
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "kernel_hw, strides, padding, dilation, multiplier, act",
    [
        ((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, (-128, 127)),
        ((3, 3), (2, 2), (0, 0, 1, 1), (1, 1), 1, (-30, 127)),
        ((5, 3), (1, 2), (2, 1, 2, 1), (1, 1), 2, (-128, 90)),
        ((3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 3, (0, 127)),
    ],
)
def test_kernel_matches_reference_on_random_layers(kernel_hw, strides, padding, dilation, multiplier, act):
    rng = np.random.default_rng(sum(kernel_hw) + multiplier)
    cin = int(rng.integers(1, 7))
    cout = cin * multiplier
    params = qc.Conv2DParams(
        (2, int(rng.integers(6, 11)), int(rng.integers(6, 11)), cin), (1, *kernel_hw, cout), strides, padding,
        dilation, int(rng.integers(-128, 128)), int(rng.integers(-128, 128)), *act, multiplier, True,
    )
    x = rng.integers(-128, 128, size=params.input_shape).astype(np.int8)
    w = rng.integers(-127, 128, size=params.weight_shape).astype(np.int8)
    bias = rng.integers(-5000, 5000, size=cout).astype(np.int32)
    weight_scales = np.exp(rng.uniform(np.log(1e-3), np.log(0.5), size=cout)).astype(np.float32)
    mult, shift = qc.conv_output_multipliers(np.float32(0.03), weight_scales, np.float32(0.05))
    func = depthwise_conv2d_int8(params)
    assert func.attrs["dtmm.op"] == "depthwise_conv2d" and "float" not in func.script()
    got = run(build(func), x, w, bias, mult, shift, np.zeros(params.output_shape, np.int8))
    np.testing.assert_array_equal(got, qc.depthwise_conv2d(x, w, bias, mult, shift, params))


def test_rejects_regular_conv_params():
    with pytest.raises(ValueError):
        depthwise_conv2d_int8(qc.Conv2DParams((1, 5, 5, 3), (4, 3, 3, 3)))
