"""LowerQDQToInteger: Before/Expected structural tests in TVM's style."""

import json

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from dtmm_tvm.errors import UnsupportedOpError
from dtmm_tvm.ops.add import add_int8
from dtmm_tvm.ops.conv2d import conv2d_int8
from dtmm_tvm.quant.add import add_params
from dtmm_tvm.quant.conv import Conv2DParams, conv_output_multipliers
from relay_passes import CheckIntegerOnly, LowerQDQToInteger

RNG = np.random.default_rng(7)
W_HWIO = RNG.integers(-127, 128, size=(3, 3, 4, 8)).astype(np.int8)
W_SCALES = (RNG.random(8).astype(np.float32) * 0.02 + 0.001).astype(np.float32)
BIAS = RNG.integers(-500, 500, size=8).astype(np.int32)
BIAS_SCALES = (np.float32(0.05) * W_SCALES).astype(np.float32)


def _strip_dtmm_attrs(mod):
    """The layer/params JSON attributes are checked on their own; compare the IR without them."""
    mod = tvm.IRModule(dict(mod.functions_items()))
    for gvar, func in list(mod.functions_items()):
        if isinstance(func, tvm.tirx.PrimFunc):
            attrs = {k: v for k, v in func.attrs.items() if not k.startswith("dtmm.")}
            mod[gvar] = func.without_attr("dtmm.layer").without_attr("dtmm.params") if hasattr(func, "without_attr") else func.with_attrs(attrs)
    return mod


def _conv_before():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 8, 8, 4), "int8")) -> R.Tensor((1, 4, 4, 8), "int8"):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(-3, "int32"), out_dtype="float32", axis=0)
                wf = R.dequantize(R.const(W_HWIO), R.const(W_SCALES), R.const(0, "int32"), out_dtype="float32", axis=3)
                y = R.nn.conv2d(xf, wf, strides=[2, 2], padding=[0, 0, 1, 1], data_layout="NHWC",
                                kernel_layout="HWIO", out_layout="NHWC")
                b = R.dequantize(R.const(BIAS), R.const(BIAS_SCALES), R.const(0, "int32"), out_dtype="float32", axis=0)
                z = R.add(y, b)
                q = R.quantize(z, R.const(0.1, "float32"), R.const(-128, "int32"), out_dtype="int8", axis=0)
                r = R.clip(q, R.prim_value(T.float64(-128.0)), R.prim_value(T.float64(127.0)))
                R.output(r)
            return r

    return Before


def _conv_expected():
    params = Conv2DParams(
        input_shape=(1, 8, 8, 4), weight_shape=(8, 3, 3, 4), strides=(2, 2), padding=(0, 0, 1, 1),
        dilation=(1, 1), input_zero_point=-3, output_zero_point=-128, act_min=-128, act_max=127,
    )
    mult, shift = conv_output_multipliers(np.float32(0.05), W_SCALES, np.float32(0.1))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 8, 4), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            gvar = bb.add_func(conv2d_int8(params), "conv2d_0")
            out = bb.emit_output(relax.call_tir(
                gvar,
                [x, relax.const(np.ascontiguousarray(W_HWIO.transpose(3, 0, 1, 2))), relax.const(BIAS),
                 relax.const(mult), relax.const(shift)],
                relax.TensorType((1, 4, 4, 8), "int8"),
            ))
        bb.emit_func_output(out)
    return bb.get()


def test_conv_chain_becomes_one_integer_kernel():
    after = LowerQDQToInteger()(_conv_before())
    tvm.ir.assert_structural_equal(_strip_dtmm_attrs(after), _strip_dtmm_attrs(_conv_expected()), map_free_vars=True)


def test_conv_layer_metadata():
    after = LowerQDQToInteger()(_conv_before())
    layer = json.loads(str(after["conv2d_0"].attrs["dtmm.layer"]))
    assert layer["op"] == "conv2d" and layer["format"] == "dense"
    assert layer["kernel"] == [3, 3] and layer["strides"] == [2, 2]
    assert layer["macs"] == 1 * 4 * 4 * 8 * 3 * 3 * 4
    assert layer["dense_weight_bytes"] == W_HWIO.size


def test_requantization_is_fixed_point():
    mult, shift = conv_output_multipliers(np.float32(0.05), W_SCALES, np.float32(0.1))
    after = LowerQDQToInteger()(_conv_before())
    call = after["main"].body.blocks[0].bindings[-1].value
    np.testing.assert_array_equal(call.args[1].fields[3].value.numpy(), mult)
    np.testing.assert_array_equal(call.args[1].fields[4].value.numpy(), shift)
    assert mult.dtype == np.int32 and (mult >= 2**30).all()  # Q31 multipliers in [0.5, 1)


def test_add_chain():
    @I.ir_module
    class Before:
        @R.function
        def main(a: R.Tensor((1, 4, 4, 8), "int8"), b: R.Tensor((1, 4, 4, 8), "int8")) -> R.Tensor((1, 4, 4, 8), "int8"):
            with R.dataflow():
                af = R.dequantize(a, R.const(0.02, "float32"), R.const(5, "int32"), out_dtype="float32", axis=0)
                bf = R.dequantize(b, R.const(0.03, "float32"), R.const(-7, "int32"), out_dtype="float32", axis=0)
                s = R.add(af, bf)
                q = R.quantize(s, R.const(0.04, "float32"), R.const(-1, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    params = add_params(np.float32(0.02), 5, np.float32(0.03), -7, np.float32(0.04), -1, -128, 127)
    bb = relax.BlockBuilder()
    a = relax.Var("a", relax.TensorType((1, 4, 4, 8), "int8"))
    b = relax.Var("b", relax.TensorType((1, 4, 4, 8), "int8"))
    with bb.function("main", [a, b]):
        with bb.dataflow():
            gvar = bb.add_func(add_int8((1, 4, 4, 8), (1, 4, 4, 8), params), "add_0")
            out = bb.emit_output(relax.call_tir(gvar, [a, b], relax.TensorType((1, 4, 4, 8), "int8")))
        bb.emit_func_output(out)
    after = LowerQDQToInteger()(Before)
    tvm.ir.assert_structural_equal(_strip_dtmm_attrs(after), _strip_dtmm_attrs(bb.get()), map_free_vars=True)


def test_float_model_is_untouched():
    @I.ir_module
    class Float:
        @R.function
        def main(x: R.Tensor((1, 8, 8, 4), "float32")) -> R.Tensor((1, 8, 8, 8), "float32"):
            with R.dataflow():
                y = R.nn.conv2d(x, R.const(W_HWIO.astype("float32")), padding=[1, 1, 1, 1], data_layout="NHWC",
                                kernel_layout="HWIO", out_layout="NHWC")
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(LowerQDQToInteger()(Float), Float)


def test_leftover_float_in_int8_model_is_refused():
    @I.ir_module
    class Unlowerable:
        @R.function
        def main(x: R.Tensor((1, 8), "int8")) -> R.Tensor((1, 8), "int8"):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(0, "int32"), out_dtype="float32", axis=0)
                t = R.exp(xf)
                q = R.quantize(t, R.const(0.01, "float32"), R.const(0, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    lowered = LowerQDQToInteger()(Unlowerable)
    with pytest.raises(UnsupportedOpError, match=r"relax\.exp.*no integer lowering"):
        CheckIntegerOnly()(lowered)
