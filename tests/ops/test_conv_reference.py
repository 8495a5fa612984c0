"""The numpy conv / depthwise / fully connected references against TFLM, bit for bit.

Fixtures are single-op int8 TFLite models made by ``tests/fixtures/ops/make_conv_ops.py``.
"""

from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.errors import UnsupportedOpError
from dtmm_tvm.frontend.tflite_reader import read_tflite
from dtmm_tvm.quant import conv as qc
from dtmm_tvm.quant.fixed_point import quantize_multiplier
from dtmm_tvm.reference.tflm import run_tflm

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ops"
MODELS = sorted(p.name for p in FIXTURES.glob("conv_*.tflite"))
REFERENCES = {
    "CONV_2D": qc.conv2d,
    "DEPTHWISE_CONV_2D": qc.depthwise_conv2d,
    "FULLY_CONNECTED": qc.fully_connected,
}


def load_layer(name):
    graph = read_tflite(FIXTURES / name)
    (op,) = graph.operators
    return graph, qc.conv_layer_from_tflite(graph, op)


def random_inputs(graph, count=6, seed=0):
    shape = graph.tensor(graph.inputs[0]).shape
    rng = np.random.default_rng(seed)
    inputs = rng.integers(-128, 128, size=(count, *shape), dtype=np.int8)
    inputs[0] = -128  # the extremes too: exercises the clamps
    inputs[1] = 127
    return inputs


def test_fixture_set_is_complete():
    assert len(MODELS) >= 12, MODELS
    ops = {read_tflite(FIXTURES / m).operators[0].opcode for m in MODELS}
    assert ops == set(REFERENCES)


@pytest.mark.parametrize("name", MODELS)
def test_reference_matches_tflm(name):
    graph, layer = load_layer(name)
    inputs = random_inputs(graph)
    expected = run_tflm(graph.raw, inputs)
    reference = REFERENCES[layer.op]
    bias = layer.bias if layer.has_bias else None
    got = np.stack([reference(x, layer.weight, bias, layer.multiplier, layer.shift, layer.params) for x in inputs])
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)


def test_fixtures_cover_the_interesting_cases():
    layers = {name: load_layer(name)[1] for name in MODELS}
    convs = [l for l in layers.values() if l.op == "CONV_2D"]
    # Some filterlets (and one whole filter) were zeroed before quantization and stayed zero.
    assert any((l.weight.reshape(l.weight.shape[0], -1, l.weight.shape[3]) == 0).all(axis=2).any() for l in convs)
    assert any((l.weight == 0).reshape(l.weight.shape[0], -1).all(axis=1).any() for l in convs)
    # Asymmetric SAME padding (10x4 stride 2) and a depth multiplier of 2.
    assert layers["conv_10x4_s2_same_none.tflite"].params.padding == (4, 1, 4, 1)
    assert layers["conv_dw_3x3_s1_m2_relu.tflite"].params.depth_multiplier == 2
    assert not layers["conv_fc_nobias.tflite"].has_bias
    assert layers["conv_fc_per_tensor_relu6.tflite"].params.input_shape == (1, 24)


def test_conv_output_multipliers_follow_tflite():
    input_scale, output_scale = np.float32(0.0235), np.float32(0.0711)
    weight_scales = np.array([0.0031, 0.5, 1e-9, 0.0], dtype=np.float32)
    mult, shift = qc.conv_output_multipliers(input_scale, weight_scales, output_scale)
    for m, s, ws in zip(mult, shift, weight_scales):
        # double(float) products, as PopulateConvolutionQuantizationParams computes them.
        assert (m, s) == quantize_multiplier(float(input_scale) * float(ws) / float(output_scale))
    assert mult.dtype == np.int32 and shift.dtype == np.int32
    assert (mult[3], shift[3]) == (0, 0)
    # Per-tensor (fully connected) is the same formula with one scale.
    one = qc.conv_output_multipliers(input_scale, np.float32(0.0031), output_scale)
    assert (one[0][0], one[1][0]) == (mult[0], shift[0])


def test_activation_range():
    assert qc.activation_range("NONE", 0.1, 3) == (-128, 127)
    assert qc.activation_range("RELU", 0.1, -20) == (-20, 127)
    assert qc.activation_range("RELU6", 0.02, -128) == (-128, 127)  # 6/0.02 = 300 clamps
    assert qc.activation_range("RELU6", 0.05, -100) == (-100, 20)
    assert qc.activation_range("RELU_N1_TO_1", 0.01, 0) == (-100, 100)
    with pytest.raises(UnsupportedOpError):
        qc.activation_range("TANH", 0.1, 0)


@pytest.mark.parametrize(
    "size, kernel, stride, mode, expected",
    [
        ((8, 8), (3, 3), (1, 1), "SAME", (1, 1, 1, 1)),
        ((9, 9), (3, 3), (2, 2), "SAME", (1, 1, 1, 1)),
        ((8, 8), (3, 3), (2, 2), "SAME", (0, 0, 1, 1)),  # the odd pixel goes after
        ((20, 12), (10, 4), (2, 2), "SAME", (4, 1, 4, 1)),
        ((7, 6), (3, 3), (1, 1), "VALID", (0, 0, 0, 0)),
    ],
)
def test_same_padding(size, kernel, stride, mode, expected):
    assert qc.same_padding(size, kernel, stride, mode=mode) == expected


def test_params_validation_and_shapes():
    p = qc.Conv2DParams((1, 9, 9, 3), (6, 3, 3, 3), (2, 2), (1, 1, 1, 1))
    assert p.output_shape == (1, 5, 5, 6)
    assert p.kernel_size == (3, 3) and p.macs == 5 * 5 * 6 * 27
    d = qc.Conv2DParams((1, 6, 6, 3), (1, 3, 3, 6), depth_multiplier=2, depthwise=True)
    assert d.output_shape == (1, 4, 4, 6)
    assert hash(p) != hash(d)
    with pytest.raises(ValueError):
        qc.Conv2DParams((1, 6, 6, 3), (4, 3, 3, 2))
    with pytest.raises(ValueError):
        qc.Conv2DParams((1, 6, 6, 3), (1, 3, 3, 3), depth_multiplier=2, depthwise=True)
    fc = qc.FullyConnectedParams((2, 9), (4, 9))
    assert fc.output_shape == (2, 4)
    with pytest.raises(ValueError):
        qc.FullyConnectedParams((2, 9), (4, 8))
