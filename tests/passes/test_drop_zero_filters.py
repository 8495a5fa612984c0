"""DropZeroFilters: Before/Expected structural tests."""

import json

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from dtmm_tvm.ops.conv2d import conv2d_int8
from dtmm_tvm.quant.conv import Conv2DParams, conv_output_multipliers
from relay_passes import DropZeroFilters, LowerQDQToInteger

from .structural import strip_layer_attrs

RNG = np.random.default_rng(3)
W1 = RNG.integers(-100, 100, size=(3, 3, 4, 6)).astype(np.int8)  # HWIO
W1[:, :, :, 2] = 0  # filter 2 is all zero
W1[:, :, :, 5] = 0  # filter 5 too
B1 = RNG.integers(10, 50, size=6).astype(np.int32)
B1[2] = -40  # ReLU clamps this filter's constant output to the zero point: removable anywhere
B1[5] = 400  # a positive constant: removable only for an unpadded consumer
W2 = RNG.integers(-100, 100, size=(1, 1, 6, 5)).astype(np.int8)
S1 = np.full(6, 0.01, np.float32)
S2 = np.full(5, 0.02, np.float32)


def _before(pad2):
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 4), "int8")):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(0, "int32"), out_dtype="float32", axis=0)
                w1 = R.dequantize(R.const(W1), R.const(S1), R.const(0, "int32"), out_dtype="float32", axis=3)
                y1 = R.nn.conv2d(xf, w1, padding=[1, 1, 1, 1], data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                b1 = R.dequantize(R.const(B1), R.const(S1 * np.float32(0.05)), R.const(0, "int32"), out_dtype="float32", axis=0)
                q1 = R.quantize(R.add(y1, b1), R.const(0.1, "float32"), R.const(-128, "int32"), out_dtype="int8", axis=0)
                r1 = R.clip(q1, R.prim_value(T.float64(-128.0)), R.prim_value(T.float64(127.0)))
                f1 = R.dequantize(r1, R.const(0.1, "float32"), R.const(-128, "int32"), out_dtype="float32", axis=0)
                w2 = R.dequantize(R.const(W2), R.const(S2), R.const(0, "int32"), out_dtype="float32", axis=3)
                y2 = R.nn.conv2d(f1, w2, padding=pad2, data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                q2 = R.quantize(y2, R.const(0.2, "float32"), R.const(3, "int32"), out_dtype="int8", axis=0)
                R.output(q2)
            return q2

    return LowerQDQToInteger()(Before)


def _shapes(mod):
    return {gv.name_hint: json.loads(str(f.attrs["dtmm.params"]))["weight_shape"]
            for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}


def test_unpadded_consumer_drops_both_filters_and_folds_the_constant():
    before = _before([0, 0, 0, 0])
    after = DropZeroFilters()(before)
    shapes = _shapes(after)
    assert shapes["conv2d_0"] == [4, 3, 3, 4] and shapes["conv2d_1"] == [5, 1, 1, 4]
    keep = [0, 1, 3, 4]
    mult1, shift1 = conv_output_multipliers(np.float32(0.05), S1, np.float32(0.1))
    mult2, shift2 = conv_output_multipliers(np.float32(0.1), S2, np.float32(0.2))
    from dtmm_tvm.quant.fixed_point import requantize

    constant5 = int(requantize(np.int64(400), mult1[5], shift1[5], -128, -128, 127))
    w2_ohwi = W2.transpose(3, 0, 1, 2)
    bias2 = ((constant5 + 128) * w2_ohwi[:, 0, 0, 5].astype(np.int64)).astype(np.int32)
    p1 = Conv2DParams((1, 6, 6, 4), (4, 3, 3, 4), padding=(1, 1, 1, 1), output_zero_point=-128)
    p2 = Conv2DParams((1, 6, 6, 4), (5, 1, 1, 4), input_zero_point=-128, output_zero_point=3)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 6, 6, 4), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            g1 = bb.add_func(conv2d_int8(p1), "conv2d_0")
            v1 = bb.emit(relax.call_tir(g1, [x, relax.const(np.ascontiguousarray(W1.transpose(3, 0, 1, 2)[keep])),
                                             relax.const(B1[keep]), relax.const(mult1[keep]), relax.const(shift1[keep])],
                                        relax.TensorType((1, 6, 6, 4), "int8")))
            g2 = bb.add_func(conv2d_int8(p2), "conv2d_1")
            v2 = bb.emit_output(relax.call_tir(
                g2, [v1, relax.const(np.ascontiguousarray(w2_ohwi[:, :, :, keep])), relax.const(bias2),
                     relax.const(mult2), relax.const(shift2)], relax.TensorType((1, 6, 6, 5), "int8")))
        bb.emit_func_output(v2)
    expected = bb.get()

    layer = json.loads(str(after["conv2d_0"].attrs["dtmm.layer"]))
    assert layer["dropped_filters"] == 2 and layer["output_shape"] == [1, 6, 6, 4]
    tvm.ir.assert_structural_equal(strip_layer_attrs(after), strip_layer_attrs(expected), map_free_vars=True)


def test_padded_consumer_keeps_a_filter_whose_constant_is_not_the_zero_point():
    after = DropZeroFilters()(_before([1, 1, 1, 1]))
    shapes = _shapes(after)
    # Filter 2 (constant = zero point) goes; filter 5 (constant != zero point) would change the
    # padded border pixels, so it stays.
    assert shapes["conv2d_0"] == [5, 3, 3, 4] and shapes["conv2d_1"] == [5, 1, 1, 5]


def test_a_producer_also_read_by_a_concat_keeps_its_filters():
    """A conv whose output is also concatenated (an int8 CONCATENATION takes its inputs in a tuple)
    must keep every filter: the concat reads all channels."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 4), "int8")):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(0, "int32"), out_dtype="float32", axis=0)
                w1 = R.dequantize(R.const(W1), R.const(S1), R.const(0, "int32"), out_dtype="float32", axis=3)
                y1 = R.nn.conv2d(xf, w1, padding=[1, 1, 1, 1], data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                b1 = R.dequantize(R.const(B1), R.const(S1 * np.float32(0.05)), R.const(0, "int32"), out_dtype="float32", axis=0)
                q1 = R.quantize(R.add(y1, b1), R.const(0.1, "float32"), R.const(-128, "int32"), out_dtype="int8", axis=0)
                f1 = R.dequantize(q1, R.const(0.1, "float32"), R.const(-128, "int32"), out_dtype="float32", axis=0)
                w2 = R.dequantize(R.const(W2), R.const(S2), R.const(0, "int32"), out_dtype="float32", axis=3)
                y2 = R.nn.conv2d(f1, w2, data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                q2 = R.quantize(y2, R.const(0.1, "float32"), R.const(-128, "int32"), out_dtype="int8", axis=0)
                f2 = R.dequantize(q2, R.const(0.1, "float32"), R.const(-128, "int32"), out_dtype="float32", axis=0)
                cat = R.concat((f1, f2), axis=3)
                q3 = R.quantize(cat, R.const(0.1, "float32"), R.const(-128, "int32"), out_dtype="int8", axis=0)
                R.output(q3)
            return q3

    lowered = LowerQDQToInteger()(Before)
    after = DropZeroFilters()(lowered)
    shapes = _shapes(after)
    assert shapes["conv2d_0"] == [6, 3, 3, 4] and shapes["conv2d_1"] == [5, 1, 1, 6]
    tvm.ir.assert_structural_equal(after, lowered)


def test_an_aligned_channel_count_stays_aligned():
    # 8 filters, 2 all-zero: dropping them would leave the consumer Cin = 6, not a multiple of the
    # SIMD chunk (4 on DSP / portable), which costs a partial chunk per tap: nothing is dropped.
    w1 = RNG.integers(-100, 100, size=(3, 3, 4, 8)).astype(np.int8)
    w1[:, :, :, 1] = 0
    w1[:, :, :, 6] = 0
    b1 = np.full(8, -40, np.int32)
    w2 = RNG.integers(-100, 100, size=(1, 1, 8, 5)).astype(np.int8)
    s1 = np.full(8, 0.01, np.float32)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 4), "int8")):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(0, "int32"), out_dtype="float32", axis=0)
                w = R.dequantize(R.const(w1), R.const(s1), R.const(0, "int32"), out_dtype="float32", axis=3)
                y1 = R.nn.conv2d(xf, w, padding=[1, 1, 1, 1], data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                b = R.dequantize(R.const(b1), R.const(s1 * np.float32(0.05)), R.const(0, "int32"), out_dtype="float32", axis=0)
                q1 = R.quantize(R.add(y1, b), R.const(0.1, "float32"), R.const(-128, "int32"), out_dtype="int8", axis=0)
                f1 = R.dequantize(q1, R.const(0.1, "float32"), R.const(-128, "int32"), out_dtype="float32", axis=0)
                v = R.dequantize(R.const(w2), R.const(S2), R.const(0, "int32"), out_dtype="float32", axis=3)
                y2 = R.nn.conv2d(f1, v, padding=[0, 0, 0, 0], data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                q2 = R.quantize(y2, R.const(0.2, "float32"), R.const(3, "int32"), out_dtype="int8", axis=0)
                R.output(q2)
            return q2

    lowered = LowerQDQToInteger()(Before)
    assert _shapes(DropZeroFilters()(lowered))["conv2d_1"] == [5, 1, 1, 8]
