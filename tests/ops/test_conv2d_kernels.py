"""The dense and filterlet conv TIR kernels, built for the host (llvm), against TFLM and numpy."""

import re

import numpy as np
import pytest
import tvm

from dtmm_tvm.frontend.tflite_reader import read_tflite

from .kernel_helpers import FIXTURES, build, fixtures_of, run
from dtmm_tvm.ops.conv2d import conv2d_int8
from dtmm_tvm.ops.conv2d_filterlet import conv2d_filterlet_float32, conv2d_filterlet_int8
from dtmm_tvm.quant import conv as qc
from dtmm_tvm.reference.tflm import run_tflm
from dtmm_tvm.sparsity.storage import pack_filterlets

CONV_MODELS = fixtures_of("CONV_2D")


def random_layer(rng, params, filterlet_sparsity=0.3, zero_filters=()):
    """Random int8 weights with pruned filterlets, bias, per-channel multipliers."""
    cout, kh, kw, cin = params.weight_shape
    w = rng.integers(-127, 128, size=params.weight_shape).astype(np.int8)
    w[w == 0] = 1  # only pruning makes whole zero filterlets
    w[rng.random((cout, kh, kw)) < filterlet_sparsity] = 0
    w[list(zero_filters)] = 0
    bias = rng.integers(-20000, 20000, size=cout).astype(np.int32)
    # Effective scales from ~1e-5 to ~2: right shifts and (small) left shifts.
    weight_scales = np.exp(rng.uniform(np.log(1e-4), np.log(0.05), size=cout)).astype(np.float32)
    mult, shift = qc.conv_output_multipliers(np.float32(0.02), weight_scales, np.float32(rng.uniform(0.0005, 0.5)))
    return w, bias, mult, shift


def random_params(rng, kernel, strides, padding, dilation=(1, 1), act=(-128, 127)):
    cin = int(rng.integers(1, 9))
    cout = int(rng.integers(1, 9))
    h = int(rng.integers(kernel[0] * dilation[0], kernel[0] * dilation[0] + 6))
    w = int(rng.integers(kernel[1] * dilation[1], kernel[1] * dilation[1] + 6))
    return qc.Conv2DParams(
        (int(rng.integers(1, 3)), h, w, cin), (cout, *kernel, cin), strides, padding, dilation,
        int(rng.integers(-128, 128)), int(rng.integers(-128, 128)), *act,
    )


CASES = [
    ((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), (-128, 127)),
    ((3, 3), (2, 2), (0, 0, 1, 1), (1, 1), (-20, 127)),
    ((5, 5), (1, 2), (2, 1, 2, 3), (1, 1), (-128, 60)),
    ((10, 4), (2, 2), (4, 1, 4, 1), (1, 1), (-128, 127)),
    ((1, 1), (1, 1), (0, 0, 0, 0), (1, 1), (-5, 100)),
    ((3, 2), (1, 1), (0, 0, 0, 0), (2, 1), (-128, 127)),
    ((3, 3), (2, 1), (1, 0, 2, 2), (2, 2), (0, 127)),
]


@pytest.mark.parametrize("name", CONV_MODELS)
def test_kernels_match_tflm_on_fixtures(name):
    graph = read_tflite(FIXTURES / name)
    layer = qc.conv_layer_from_tflite(graph, graph.operators[0])
    params = layer.params
    rng = np.random.default_rng(1)
    inputs = rng.integers(-128, 128, size=(4, *params.input_shape), dtype=np.int8)
    expected = run_tflm(graph.raw, inputs)
    dense = build(conv2d_int8(params))
    packed = pack_filterlets(layer.weight)
    sparse = build(conv2d_filterlet_int8(params, packed.kept_filterlets))
    for x, want in zip(inputs, expected):
        out = np.zeros(params.output_shape, np.int8)
        got = run(dense, x, layer.weight, layer.bias, layer.multiplier, layer.shift, out)
        np.testing.assert_array_equal(got, want)
        got = run(sparse, x, packed.values, packed.col_idx, packed.row_ptr, layer.bias, layer.multiplier,
                  layer.shift, out)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_dense_kernel_matches_reference_on_random_layers(case):
    kernel, strides, padding, dilation, act = CASES[case]
    rng = np.random.default_rng(100 + case)
    params = random_params(rng, kernel, strides, padding, dilation, act)
    w, bias, mult, shift = random_layer(rng, params)
    x = rng.integers(-128, 128, size=params.input_shape).astype(np.int8)
    got = run(build(conv2d_int8(params)), x, w, bias, mult, shift, np.zeros(params.output_shape, np.int8))
    np.testing.assert_array_equal(got, qc.conv2d(x, w, bias, mult, shift, params))


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("case", [0, 2, 3, 6])
def test_filterlet_kernel_matches_reference(case, sparsity):
    kernel, strides, padding, dilation, act = CASES[case]
    rng = np.random.default_rng(200 + case)
    params = random_params(rng, kernel, strides, padding, dilation, act)
    cout = params.weight_shape[0]
    # Whole zero filters (first and, if any, last) on top of the filterlet pruning.
    w, bias, mult, shift = random_layer(rng, params, sparsity, zero_filters={0, cout - 1} if cout > 2 else ())
    packed = pack_filterlets(w)
    assert packed.kept_filterlets == int((w.reshape(cout, -1, w.shape[3]) != 0).any(axis=2).sum())
    x = rng.integers(-128, 128, size=params.input_shape).astype(np.int8)
    kernel_fn = build(conv2d_filterlet_int8(params, packed.kept_filterlets))
    got = run(kernel_fn, x, packed.values, packed.col_idx, packed.row_ptr, bias, mult, shift,
              np.zeros(params.output_shape, np.int8))
    np.testing.assert_array_equal(got, qc.conv2d(x, w, bias, mult, shift, params))


@pytest.mark.parametrize("sparsity", [0.0, 0.6, 1.0])
def test_float_filterlet_kernel_sums_like_dense(sparsity):
    rng = np.random.default_rng(7)
    params = qc.Conv2DParams((2, 9, 7, 6), (5, 3, 3, 6), (2, 1), (1, 1, 1, 1))
    w = rng.normal(size=params.weight_shape).astype(np.float32)
    w[rng.random((5, 3, 3)) < sparsity] = 0.0
    w[2] = 0.0
    packed = pack_filterlets(w)
    x = rng.normal(size=params.input_shape).astype(np.float32)
    got = run(build(conv2d_filterlet_float32(params, packed.kept_filterlets)), x, packed.values,
              packed.col_idx, packed.row_ptr, np.zeros(params.output_shape, np.float32))
    # Same (kh, kw, ci) summation order as the dense reference: equal bit for bit.
    np.testing.assert_array_equal(got, qc.conv2d_float32(x, w, params))


def test_filterlet_tir_loops_over_row_ptr():
    params = qc.Conv2DParams((1, 8, 8, 4), (6, 3, 3, 4), (1, 1), (1, 1, 1, 1))
    for func in (conv2d_filterlet_int8(params, 20), conv2d_filterlet_float32(params, 20)):
        text = func.script()
        # The inner loop's bounds are read from row_ptr at run time, not a constant trip count.
        loops = [line for line in text.splitlines() if line.strip().startswith("for ")]
        assert any(re.search(r"range\(.*row_ptr\[o\].*row_ptr\[o \+ 1\]", line) for line in loops), text
        assert "col_idx[j]" in text
        assert func.attrs["op_pattern"] == 8
    assert conv2d_filterlet_int8(params, 20).attrs["dtmm.op"] == "conv2d_filterlet"
    assert conv2d_int8(params).attrs["dtmm.op"] == "conv2d"


def test_int8_kernels_are_integer_only_and_build_for_c():
    params = qc.Conv2DParams((1, 6, 5, 3), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), input_zero_point=-7)
    for func in (conv2d_int8(params), conv2d_filterlet_int8(params, 9)):
        assert "float" not in func.script()
        source = tvm.tirx.build(tvm.IRModule({"main": func}), target="c").inspect_source()
        body = source[source.index("acc"):]
        assert "float" not in body and "double" not in body


def test_valid_conv_has_no_bounds_check():
    params = qc.Conv2DParams((1, 7, 6, 5), (4, 3, 3, 5))
    assert "if " not in conv2d_int8(params).script()
    padded = qc.Conv2DParams((1, 7, 6, 5), (4, 3, 3, 5), padding=(1, 1, 1, 1))
    assert "if " in conv2d_int8(padded).script()


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("case, fmt", [(c, f) for c in (0, 2, 3, 6) for f in ("filterlet_u8", "filterlet_bitmask")
                                       if f == "filterlet_u8" or CASES[c][0][0] * CASES[c][0][1] <= 25])
def test_byte_and_bitmask_formats_match_reference(case, sparsity, fmt):
    from dtmm_tvm.sparsity import pack_filterlets_as

    kernel, strides, padding, dilation, act = CASES[case]
    rng = np.random.default_rng(300 + case)
    params = random_params(rng, kernel, strides, padding, dilation, act)
    w, bias, mult, shift = random_layer(rng, params, sparsity, zero_filters={0})
    packed = pack_filterlets_as(w, fmt)
    x = rng.integers(-128, 128, size=params.input_shape).astype(np.int8)
    kernel_fn = build(conv2d_filterlet_int8(params, packed.kept_filterlets, fmt=fmt))
    got = run(kernel_fn, x, packed.values, *packed.index_arrays, bias, mult, shift,
              np.zeros(params.output_shape, np.int8))
    np.testing.assert_array_equal(got, qc.conv2d(x, w, bias, mult, shift, params))
