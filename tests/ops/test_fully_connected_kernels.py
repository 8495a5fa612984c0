"""The fully connected TIR kernel, built for the host (llvm), against TFLM and numpy."""


import numpy as np
import pytest

from dtmm_tvm.frontend.tflite_reader import read_tflite

from .kernel_helpers import FIXTURES, build, fixtures_of, run
from dtmm_tvm.ops.fully_connected import fully_connected_int8
from dtmm_tvm.quant import conv as qc
from dtmm_tvm.reference.tflm import run_tflm

FC_MODELS = fixtures_of("FULLY_CONNECTED")


@pytest.mark.parametrize("name", FC_MODELS)
def test_kernel_matches_tflm_on_fixtures(name):
    graph = read_tflite(FIXTURES / name)
    layer = qc.conv_layer_from_tflite(graph, graph.operators[0])
    params = layer.params
    rng = np.random.default_rng(3)
    inputs = rng.integers(-128, 128, size=(6, *graph.tensor(graph.inputs[0]).shape), dtype=np.int8)
    expected = run_tflm(graph.raw, inputs)
    kernel = build(fully_connected_int8(params))
    for x, want in zip(inputs, expected):
        got = run(kernel, x.reshape(params.input_shape), layer.weight, layer.bias, layer.multiplier,
                  layer.shift, np.zeros(params.output_shape, np.int8))
        np.testing.assert_array_equal(got.reshape(want.shape), want)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("weight_zero_point", [0, 3])
def test_kernel_matches_reference_on_random_layers(per_channel, weight_zero_point):
    rng = np.random.default_rng(10 + per_channel + weight_zero_point)
    n, k, o = 3, int(rng.integers(5, 40)), int(rng.integers(2, 12))
    params = qc.FullyConnectedParams((n, k), (o, k), int(rng.integers(-128, 128)), int(rng.integers(-128, 128)),
                                     -100, 110, weight_zero_point)
    x = rng.integers(-128, 128, size=(n, k)).astype(np.int8)
    w = rng.integers(-127, 128, size=(o, k)).astype(np.int8)
    bias = rng.integers(-5000, 5000, size=o).astype(np.int32)
    scales = rng.uniform(1e-3, 0.2, size=o if per_channel else 1).astype(np.float32)
    mult, shift = qc.conv_output_multipliers(np.float32(0.02), scales, np.float32(0.07))
    mult, shift = np.broadcast_to(mult, (o,)), np.broadcast_to(shift, (o,))  # the kernel takes [O]
    func = fully_connected_int8(params)
    assert func.attrs["dtmm.op"] == "fully_connected" and "float" not in func.script()
    kernel = build(func)
    got = run(kernel, x, w, bias, mult, shift, np.zeros((n, o), np.int8))
    np.testing.assert_array_equal(got, qc.fully_connected(x, w, bias, mult, shift, params))
    # No bias in the model = zeros to the kernel.
    got = run(kernel, x, w, np.zeros(o, np.int32), mult, shift, np.zeros((n, o), np.int8))
    np.testing.assert_array_equal(got, qc.fully_connected(x, w, None, mult, shift, params))
