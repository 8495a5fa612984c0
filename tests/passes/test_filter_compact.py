"""FilterletSparseConv's filter-compacted format (``"filter_compact"``): a conv with all-zero
filters that DropZeroFilters cannot remove (its output is read by something other than convs:
here the model output) runs the dense kernels over its kept filters only. Before/Expected
structural test, and the speed decision: taken where predicted faster, never where not."""

import json

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from dtmm_tvm.costmodel.format_choice import decide_conv_format
from dtmm_tvm.ops.conv2d_compact import conv2d_compact_int8
from dtmm_tvm.quant.conv import Conv2DParams, conv_output_multipliers
from dtmm_tvm.sparsity.compact import COMPACT, pack_compact
from dtmm_tvm.target import resolve_target
from relay_passes import DropZeroFilters, FilterletSparseConv, LowerQDQToInteger

from .structural import strip_layer_attrs

RNG = np.random.default_rng(11)
KEEP = [2, 9, 13]
W = np.zeros((1, 1, 8, 16), np.int8)  # HWIO: 1x1, 8 -> 16, filters 2, 9, 13 kept
W[..., KEEP] = RNG.integers(-100, 100, size=(1, 1, 8, len(KEEP)))
W[0, 0, 0, KEEP] = 7
B = RNG.integers(-300, 300, size=16).astype(np.int32)
S = np.full(16, 0.01, np.float32)


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor((1, 5, 5, 8), "int8")):
        with R.dataflow():
            xf = R.dequantize(x, R.const(0.05, "float32"), R.const(-3, "int32"), out_dtype="float32", axis=0)
            w = R.dequantize(R.const(W), R.const(S), R.const(0, "int32"), out_dtype="float32", axis=3)
            y = R.nn.conv2d(xf, w, data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
            b = R.dequantize(R.const(B), R.const(S * np.float32(0.05)), R.const(0, "int32"), out_dtype="float32",
                             axis=0)
            q = R.quantize(R.add(y, b), R.const(0.1, "float32"), R.const(4, "int32"), out_dtype="int8", axis=0)
            R.output(q)
        return q


def test_a_filter_pruned_conv_read_by_the_output_becomes_the_compact_conv():
    with resolve_target("dtmm/cortex-m4"):
        lowered = DropZeroFilters()(LowerQDQToInteger()(Before))   # the output reads it: nothing dropped
        after = FilterletSparseConv(formats=(COMPACT,))(lowered)
        params = Conv2DParams((1, 5, 5, 8), (16, 1, 1, 8), input_zero_point=-3, output_zero_point=4)
        mult, shift = conv_output_multipliers(np.float32(0.05), S, np.float32(0.1))
        packed = pack_compact(W.transpose(3, 0, 1, 2), B, mult, shift, 4, -128, 127)
        bb = relax.BlockBuilder()
        x = relax.Var("x", relax.TensorType((1, 5, 5, 8), "int8"))
        with bb.function("main", [x]):
            with bb.dataflow():
                g = bb.add_func(conv2d_compact_int8(params, 3), "conv2d_compact_0")
                out = bb.emit_output(relax.call_tir(g, [x] + [relax.const(a) for a in (
                    packed.weight, packed.channels, packed.fill, packed.bias, packed.mult, packed.shift)],
                    relax.TensorType((1, 5, 5, 16), "int8")))
            bb.emit_func_output(out)
        expected = bb.get()
    layer = json.loads(str(after["conv2d_compact_0"].attrs["dtmm.layer"]))
    assert layer["format"] == COMPACT and layer["kept_filters"] == 3
    assert layer["stored_weight_bytes"] == 3 * 8 + 3 * 2 + 16 and layer["kept_macs"] == 25 * 3 * 8
    assert packed.channels.tolist() == KEEP
    tvm.ir.assert_structural_equal(strip_layer_attrs(after), strip_layer_attrs(expected), map_free_vars=True)


def test_not_offered_without_a_c_target():
    lowered = LowerQDQToInteger()(Before)
    after = FilterletSparseConv()(lowered)  # no target: a TIR-only build has no micro-kernels
    assert all(json.loads(str(f.attrs["dtmm.layer"])).get("format") != COMPACT
               for _, f in after.functions_items() if isinstance(f, tvm.tirx.PrimFunc) and "dtmm.layer" in f.attrs)


def _pw(cout_kept, cout=64, cin=64, hw=(25, 5), seed=0):
    rng = np.random.default_rng(seed)
    w = np.zeros((cout, 1, 1, cin), np.int8)
    keep = rng.choice(cout, size=cout_kept, replace=False)
    w[keep] = rng.integers(1, 127, size=(cout_kept, 1, 1, cin))
    params = Conv2DParams((1, *hw, cin), (cout, 1, 1, cin))
    return w, params


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m55"])
def test_speed_takes_it_where_predicted_faster_and_never_where_not(core):
    # DS-CNN's 1x1 64 -> 64 at 91% of its filters dropped: the compact conv beats every filterlet format
    w, params = _pw(6)
    d = decide_conv_format(w, params, f"dtmm/{core}")
    assert d.format == COMPACT and d.predicted[COMPACT] < min(v for f, v in d.predicted.items() if f != COMPACT)
    # one filter of 64 dropped: the expansion costs more than the filter saves; dense stays
    w, params = _pw(63)
    d = decide_conv_format(w, params, f"dtmm/{core}")
    assert d.format == "dense" and d.predicted[COMPACT] > d.predicted["dense"] * 0.95
