"""LowerQDQToInteger reads weight layouts from the exact chain of layout ops, never from shapes.

A square weight (FC with as many outputs as inputs, a 1x1 conv with Cin == Cout, a depthwise
kernel with KH == KW == C*M) looks the same in either layout; each test builds such a weight, feeds
it through a layout chain, and checks the kernel gets TFLite's layout ([O, K], OHWI, [1, KH, KW,
C*M]) with the scales in output-channel order.
"""

import numpy as np
import pytest
import tvm
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from dtmm_tvm.errors import UnsupportedOpError
from dtmm_tvm.quant.conv import conv_output_multipliers
from relay_passes import LowerQDQToInteger

RNG = np.random.default_rng(11)
W_OK = RNG.integers(-127, 128, size=(4, 4)).astype(np.int8)  # TFLite FC weights [O, K], square
W_SCALES = np.array([0.01, 0.02, 0.04, 0.08], np.float32)
BIAS = RNG.integers(-300, 300, size=4).astype(np.int32)
BIAS_SCALES = (np.float32(0.05) * W_SCALES).astype(np.float32)


def _kernel_call(mod):
    """(weight, multipliers) the first lowered call_tir receives."""
    call = [b.value for b in mod["main"].body.blocks[0].bindings if "call_tir" in str(getattr(b.value, "op", ""))][0]
    fields = call.args[1].fields
    return fields[1].value.numpy(), fields[3].value.numpy()


def _fc_import_chain():
    """What TVM's TFLite importer writes: dequantize(permute_dims(W[O, K]), axis=1)."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4), "int8")) -> R.Tensor((1, 4), "int8"):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(3, "int32"), out_dtype="float32", axis=0)
                wt = R.permute_dims(R.const(W_OK), axes=[1, 0])
                wf = R.dequantize(wt, R.const(W_SCALES), R.const(0, "int32"), out_dtype="float32", axis=1)
                y = R.matmul(xf, wf)
                b = R.dequantize(R.const(BIAS), R.const(BIAS_SCALES), R.const(0, "int32"), out_dtype="float32", axis=0)
                q = R.quantize(R.add(y, b), R.const(0.1, "float32"), R.const(-5, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    return Before


def _fc_outer_chain():
    """The same product written with the transpose after the dequantize (scales on axis 0)."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4), "int8")) -> R.Tensor((1, 4), "int8"):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(3, "int32"), out_dtype="float32", axis=0)
                wf = R.dequantize(R.const(W_OK), R.const(W_SCALES), R.const(0, "int32"), out_dtype="float32", axis=0)
                y = R.matmul(xf, R.permute_dims(wf, axes=[1, 0]))
                b = R.dequantize(R.const(BIAS), R.const(BIAS_SCALES), R.const(0, "int32"), out_dtype="float32", axis=0)
                q = R.quantize(R.add(y, b), R.const(0.1, "float32"), R.const(-5, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    return Before


def _fc_no_transpose():
    """A [K, O] constant used as is (no layout op): the kernel must get its transpose."""
    w_ko = np.ascontiguousarray(W_OK.T)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4), "int8")) -> R.Tensor((1, 4), "int8"):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(3, "int32"), out_dtype="float32", axis=0)
                wf = R.dequantize(R.const(w_ko), R.const(W_SCALES), R.const(0, "int32"), out_dtype="float32", axis=1)
                y = R.matmul(xf, wf)
                b = R.dequantize(R.const(BIAS), R.const(BIAS_SCALES), R.const(0, "int32"), out_dtype="float32", axis=0)
                q = R.quantize(R.add(y, b), R.const(0.1, "float32"), R.const(-5, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    return Before


@pytest.mark.parametrize("before", [_fc_import_chain, _fc_outer_chain, _fc_no_transpose])
def test_square_fc_gets_tflite_layout_and_channel_scales(before):
    weight, mult = _kernel_call(LowerQDQToInteger()(before()))
    np.testing.assert_array_equal(weight, W_OK)
    expected_mult, _ = conv_output_multipliers(np.float32(0.05), W_SCALES, np.float32(0.1))
    np.testing.assert_array_equal(mult, expected_mult)


W_DW = RNG.integers(-127, 128, size=(1, 2, 2, 2)).astype(np.int8)  # TFLite [1, KH, KW, C*M]
DW_SCALES = np.array([0.01, 0.03], np.float32)


def test_one_channel_depthwise_multiplier_follows_the_reshape_and_kernel_layout():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 3, 1), "int8")) -> R.Tensor((1, 2, 2, 2), "int8"):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(1, "int32"), out_dtype="float32", axis=0)
                wf = R.dequantize(R.const(W_DW), R.const(DW_SCALES), R.const(0, "int32"), out_dtype="float32", axis=3)
                wk = R.reshape(wf, R.shape([2, 2, 2, 1]))
                y = R.nn.conv2d(xf, wk, groups=1, data_layout="NHWC", kernel_layout="HWOI", out_layout="NHWC")
                q = R.quantize(y, R.const(0.1, "float32"), R.const(0, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    # groups=1 with one input channel: a plain conv whose OHWI weight is W_DW's transpose.
    weight, mult = _kernel_call(LowerQDQToInteger()(Before))
    np.testing.assert_array_equal(weight, W_DW.transpose(3, 1, 2, 0))
    expected_mult, _ = conv_output_multipliers(np.float32(0.05), DW_SCALES, np.float32(0.1))
    np.testing.assert_array_equal(mult, expected_mult)


def test_depthwise_weight_back_in_tflite_layout():
    w = RNG.integers(-127, 128, size=(1, 3, 3, 6)).astype(np.int8)  # C=3, M=2
    scales = (RNG.random(6).astype(np.float32) * 0.02 + 0.001).astype(np.float32)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 5, 5, 3), "int8")) -> R.Tensor((1, 3, 3, 6), "int8"):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(1, "int32"), out_dtype="float32", axis=0)
                wf = R.dequantize(R.const(w), R.const(scales), R.const(0, "int32"), out_dtype="float32", axis=3)
                wk = R.reshape(wf, R.shape([3, 3, 6, 1]))
                y = R.nn.conv2d(xf, wk, groups=3, data_layout="NHWC", kernel_layout="HWOI", out_layout="NHWC")
                q = R.quantize(y, R.const(0.1, "float32"), R.const(0, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    lowered = LowerQDQToInteger()(Before)
    call = lowered["main"].body.blocks[0].bindings[-1].value
    np.testing.assert_array_equal(call.args[1].fields[1].value.numpy(), w)
    assert "depthwise_conv2d_0" in [g.name_hint for g in lowered.get_global_vars()]


def test_square_1x1_conv_with_permuted_constant():
    """Cin == Cout 1x1 conv whose OHWI constant reaches an HWIO conv through permute_dims."""
    w_ohwi = RNG.integers(-127, 128, size=(4, 1, 1, 4)).astype(np.int8)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 3, 4), "int8")) -> R.Tensor((1, 3, 3, 4), "int8"):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(1, "int32"), out_dtype="float32", axis=0)
                wf = R.dequantize(R.const(w_ohwi), R.const(W_SCALES), R.const(0, "int32"), out_dtype="float32", axis=0)
                wk = R.permute_dims(wf, axes=[1, 2, 3, 0])
                y = R.nn.conv2d(xf, wk, data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                q = R.quantize(y, R.const(0.1, "float32"), R.const(0, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    weight, mult = _kernel_call(LowerQDQToInteger()(Before))
    np.testing.assert_array_equal(weight, w_ohwi)
    expected_mult, _ = conv_output_multipliers(np.float32(0.05), W_SCALES, np.float32(0.1))
    np.testing.assert_array_equal(mult, expected_mult)


def test_scales_that_are_not_per_output_channel_are_refused():
    """Per-channel scales on the input axis of an FC: no integer kernel computes that; refuse."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4), "int8")) -> R.Tensor((1, 4), "int8"):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(3, "int32"), out_dtype="float32", axis=0)
                wt = R.permute_dims(R.const(W_OK), axes=[1, 0])
                wf = R.dequantize(wt, R.const(W_SCALES), R.const(0, "int32"), out_dtype="float32", axis=0)
                y = R.matmul(xf, wf)
                q = R.quantize(y, R.const(0.1, "float32"), R.const(-5, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    with pytest.raises(UnsupportedOpError, match=r"not per output channel.*permute_dims\[1, 0\]"):
        LowerQDQToInteger()(Before)
