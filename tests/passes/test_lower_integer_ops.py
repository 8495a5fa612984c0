"""LowerQDQToInteger on the ops of relay_passes/_integer_ops.py: Before/Expected structural tests
for the raw-int8 lowerings and the shape of the lookup-table lowering."""

import numpy as np
import pytest
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from dtmm_tvm.errors import UnsupportedOpError
from dtmm_tvm.quant.activations import INT8_VALUES, relu6_bounds, relu6_int8
from relay_passes import CheckIntegerOnly, LowerQDQToInteger


def test_maximum_and_concat_run_on_raw_int8():
    @I.ir_module
    class Before:
        @R.function
        def main(a: R.Tensor((1, 4), "int8"), b: R.Tensor((1, 4), "int8")) -> R.Tensor((1, 8), "int8"):
            with R.dataflow():
                fa = R.dequantize(a, R.const(0.1, "float32"), R.const(3, "int32"), out_dtype="float32", axis=0)
                fb = R.dequantize(b, R.const(0.1, "float32"), R.const(3, "int32"), out_dtype="float32", axis=0)
                m = R.maximum(fa, fb)
                qm = R.quantize(m, R.const(0.1, "float32"), R.const(3, "int32"), out_dtype="int8", axis=0)
                fm = R.dequantize(qm, R.const(0.1, "float32"), R.const(3, "int32"), out_dtype="float32", axis=0)
                c = R.concat((fm, fa), axis=1)
                q = R.quantize(c, R.const(0.1, "float32"), R.const(3, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    @I.ir_module
    class Expected:
        @R.function
        def main(a: R.Tensor((1, 4), "int8"), b: R.Tensor((1, 4), "int8")) -> R.Tensor((1, 8), "int8"):
            with R.dataflow():
                qm = R.maximum(a, b)
                q = R.concat((qm, a), axis=1)
                R.output(q)
            return q

    tvm.ir.assert_structural_equal(LowerQDQToInteger()(Before), Expected)


def test_standalone_relu6_is_a_lookup_table_of_tflm_values():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 6), "int8")) -> R.Tensor((1, 6), "int8"):
            with R.dataflow():
                f = R.dequantize(x, R.const(0.05, "float32"), R.const(-10, "int32"), out_dtype="float32", axis=0)
                r = R.clip(f, R.prim_value(0.0), R.prim_value(6.0))
                q = R.quantize(r, R.const(0.05, "float32"), R.const(-10, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    lowered = CheckIntegerOnly()(LowerQDQToInteger()(Before))
    (call,) = [v for v in tvm.relax.analysis.get_var2val(lowered["main"]).values()
               if isinstance(v, tvm.relax.Call) and v.op.name == "relax.call_tir"]
    assert str(lowered[call.args[0]].attrs["dtmm.op"]) == "relu6"
    table = call.args[1].fields[1].value.numpy()
    np.testing.assert_array_equal(table, relu6_int8(INT8_VALUES, *relu6_bounds(0.05, -10)))


def test_concat_of_differently_quantized_inputs_is_refused():
    @I.ir_module
    class Before:
        @R.function
        def main(a: R.Tensor((1, 4), "int8"), b: R.Tensor((1, 4), "int8")) -> R.Tensor((1, 8), "int8"):
            with R.dataflow():
                fa = R.dequantize(a, R.const(0.1, "float32"), R.const(3, "int32"), out_dtype="float32", axis=0)
                fb = R.dequantize(b, R.const(0.2, "float32"), R.const(3, "int32"), out_dtype="float32", axis=0)
                c = R.concat((fa, fb), axis=1)
                q = R.quantize(c, R.const(0.1, "float32"), R.const(3, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    with pytest.raises(UnsupportedOpError, match="CONCATENATION .* TFLM requires equal quantization"):
        LowerQDQToInteger()(Before)
