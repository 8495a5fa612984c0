"""ONNX models through the passes: filterlet-sparse float convs (OIHW behind ConvertLayout) and
LowerONNXQDQToInteger on QDQ int8 models (structure, layouts, requantization mode, refusals)."""

import json
from pathlib import Path

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from dtmm_tvm.errors import UnsupportedOpError
from dtmm_tvm.ops.conv2d_filterlet import conv2d_filterlet_float32
from dtmm_tvm.quant.conv import Conv2DParams
from dtmm_tvm.quant.onnx import REQUANT_F32_TAG
from dtmm_tvm.sparsity import pack_filterlets
from relay_passes import FilterletSparseConv, LowerONNXQDQToInteger
from relay_passes._match import is_op

ROOT = Path(__file__).resolve().parents[2]
FILTERLET = ROOT / "tests" / "fixtures" / "fashion_filterlet"  # every conv 60-85% filterlet-sparse
FIXTURES = ROOT / "tests" / "fixtures" / "models"


def _oihw_square(sparsity: float, seed: int = 1) -> np.ndarray:
    """OIHW 3x3 weights with Cin == Cout (a square [O, I] per tap) and pruned filterlets."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.1, 1.0, size=(8, 8, 3, 3)).astype(np.float32) * rng.choice([-1, 1], size=(8, 8, 3, 3))
    w[rng.random((8, 3, 3)).repeat(8).reshape(8, 3, 3, 8).transpose(0, 3, 1, 2) < sparsity] = 0
    return w.astype(np.float32)


W_OIHW = _oihw_square(0.6)


def _strip(mod):
    for gv, f in list(mod.functions_items()):
        if isinstance(f, tvm.tirx.PrimFunc):
            mod[gv] = f.without_attr("dtmm.layer")
    return mod


def test_onnx_float_conv_behind_convert_layout_is_rewritten():
    """ConvertLayout leaves ``permute_dims(OIHW const, [0, 2, 3, 1])``: its axes, not the (square)
    shape, give the OHWI filterlets."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 8), "float32")) -> R.Tensor((1, 6, 6, 8), "float32"):
            with R.dataflow():
                w = R.permute_dims(R.const(W_OIHW), axes=[0, 2, 3, 1])
                y = R.nn.conv2d(x, w, padding=[1, 1, 1, 1], data_layout="NHWC", kernel_layout="OHWI",
                                out_layout="NHWC")
                R.output(y)
            return y

    after = FilterletSparseConv()(Before)
    packed = pack_filterlets(np.ascontiguousarray(W_OIHW.transpose(0, 2, 3, 1)))
    params = Conv2DParams((1, 6, 6, 8), (8, 3, 3, 8), padding=(1, 1, 1, 1))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 6, 6, 8), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            func = conv2d_filterlet_float32(params, packed.kept_filterlets)
            gvar = bb.add_func(func.with_attr("global_symbol", "conv2d_filterlet_f32_0"), "conv2d_filterlet_f32_0")
            out = bb.emit_output(relax.call_tir(
                gvar, [x, relax.const(packed.values.astype(np.float32)), relax.const(packed.col_idx),
                       relax.const(packed.row_ptr)], relax.TensorType((1, 6, 6, 8), "float32")))
        bb.emit_func_output(out)
    layer = json.loads(str(after["conv2d_filterlet_f32_0"].attrs["dtmm.layer"]))
    assert layer["filterlet_sparsity"] == pytest.approx(float(np.mean(~W_OIHW.any(axis=1))), abs=1e-6)
    tvm.ir.assert_structural_equal(_strip(after), bb.get(), map_free_vars=True)


def test_onnx_float_model_is_rewritten_and_reported(tmp_path):
    from dtmm_tvm.compiler import compile_model

    sparse = compile_model(FIXTURES / "onnx_conv_float.onnx", tmp_path / "dtmm.tar", mode="dtmm")
    dense = compile_model(FIXTURES / "onnx_conv_float.onnx", tmp_path / "dense.tar", mode="dense")
    assert [layer["format"] for layer in sparse["layers"]] == ["filterlet_csr"] * 3
    assert [round(layer["filterlet_sparsity"], 2) for layer in sparse["layers"]] == [0.5, 0.75, 0.5]
    assert dense["layers"] == []
    assert sparse["constants_bytes"] < dense["constants_bytes"]


def _lowered(path):
    from dtmm_tvm.frontend.loader import load_model
    from dtmm_tvm.target import resolve_target

    with resolve_target("dtmm/cortex-m4"):
        return LowerONNXQDQToInteger()(load_model(path).mod)


def _bindings(mod):
    return [(b.var, b.value) for block in mod["main"].body.blocks for b in block.bindings]


def test_qdq_model_lowers_to_integer_kernels_in_nhwc():
    mod = _lowered(FILTERLET / "fashion_cnn_filterlet_qdq_per_channel.onnx")
    calls = [v.args[0].name_hint for _, v in _bindings(mod) if is_op(v, "relax.call_tir")]
    assert calls == ["quantize_linear_0", "conv2d_0", "conv2d_1", "conv2d_2", "max_pool2d_0", "conv2d_3",
                     "global_avg_pool_0", "fully_connected_0", "softmax_0", "dequantize_linear_0"]
    others = [v.op.name for _, v in _bindings(mod) if isinstance(v, relax.Call) and not is_op(v, "relax.call_tir")]
    # NCHW <-> NHWC only at the two ends of the NHWC chain (input image, pooled vector), on int8.
    assert others == ["relax.permute_dims", "relax.permute_dims", "relax.reshape"]
    floats = [v.args[0].name_hint for _, v in _bindings(mod) if "float" in str(v.ty.dtype)]
    assert floats == ["dequantize_linear_0"]
    for name in ("conv2d_0", "conv2d_3", "fully_connected_0"):
        assert json.loads(str(mod[name].attrs["dtmm.params"]))["requantization"] == "onnx"
    conv0 = next(v for _, v in _bindings(mod) if is_op(v, "relax.call_tir") and v.args[0].name_hint == "conv2d_0")
    assert (conv0.args[1].fields[4].value.numpy() == REQUANT_F32_TAG).all()
    assert [int(d) for d in conv0.args[1].fields[1].ty.shape] == [16, 3, 3, 1]  # OHWI


def test_float_onnx_model_is_left_alone():
    from dtmm_tvm.frontend.loader import load_model

    mod = load_model(FIXTURES / "onnx_conv_float.onnx").mod
    tvm.ir.assert_structural_equal(LowerONNXQDQToInteger()(mod), mod)


def test_qdq_op_without_integer_lowering_is_refused(tmp_path):
    """A QDQ Clip with its bounds as inputs (opset 13) has no ONNX-semantics kernel: named, not
    floated. (QDQ Add, once the example here, is lowered as QLinearAdd now.)"""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from dtmm_tvm.frontend.loader import load_model

    def q(name, out, scale, zp):
        return [helper.make_node("QuantizeLinear", [name, f"{out}_s", f"{out}_z"], [out])], [
            helper.make_tensor(f"{out}_s", TensorProto.FLOAT, [], [scale]),
            helper.make_tensor(f"{out}_z", TensorProto.INT8, [], [zp])]

    def dq(name, out, scale, zp):
        return [helper.make_node("DequantizeLinear", [name, f"{out}_s", f"{out}_z"], [out])], [
            helper.make_tensor(f"{out}_s", TensorProto.FLOAT, [], [scale]),
            helper.make_tensor(f"{out}_z", TensorProto.INT8, [], [zp])]

    nodes, inits = [], []
    for n, i in [q("input", "xq", 0.02, 0), dq("xq", "xf", 0.02, 0), q("sum", "sq", 0.04, 0),
                 dq("sq", "output", 0.04, 0)]:
        nodes += n
        inits += i
    nodes.insert(2, helper.make_node("Clip", ["xf", "lo", "hi"], ["sum"]))
    inits += [helper.make_tensor("lo", TensorProto.FLOAT, [], [-0.5]), helper.make_tensor("hi", TensorProto.FLOAT, [], [0.5])]
    graph = helper.make_graph(nodes, "qdq_add", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "qdq_add.onnx"
    onnx.save(model, path)
    with pytest.raises(UnsupportedOpError, match=r"ONNX QDQ model: op 'relax\.\w+' .* has no integer lowering"):
        LowerONNXQDQToInteger()(load_model(path).mod)


def test_qdq_max_pool_before_expected():
    """Before/Expected: float input quantized, an NCHW QDQ MaxPool run as the int8 NHWC kernel
    between explicit permutes, the output dequantized; no float op left."""
    from dtmm_tvm.ops.pooling import max_pool2d_int8
    from dtmm_tvm.ops.qlinear import dequantize_linear, quantize_linear
    from dtmm_tvm.quant.pooling import Pool2DParams

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2, 4, 4), "float32")) -> R.Tensor((1, 2, 2, 2), "float32"):
            with R.dataflow():
                q = R.quantize(x, R.const(0.05, "float32"), R.const(3, "int8"), out_dtype="int8", axis=1)
                d = R.dequantize(q, R.const(0.05, "float32"), R.const(3, "int8"), out_dtype="float32", axis=1)
                p = R.nn.max_pool2d(d, pool_size=[2, 2], strides=[2, 2], layout="NCHW")
                q2 = R.quantize(p, R.const(0.05, "float32"), R.const(3, "int8"), out_dtype="int8", axis=1)
                y = R.dequantize(q2, R.const(0.05, "float32"), R.const(3, "int8"), out_dtype="float32", axis=1)
                R.output(y)
            return y

    scale = np.array([0.05], np.float32)
    pool = Pool2DParams(input_shape=(1, 4, 4, 2), output_shape=(1, 2, 2, 2), filter_height=2, filter_width=2,
                        stride_height=2, stride_width=2, pad_height=0, pad_width=0, act_min=-128, act_max=127)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 2, 4, 4), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            qf = bb.add_func(quantize_linear((1, 2, 4, 4), 3), "quantize_linear_0")
            pf = bb.add_func(max_pool2d_int8(pool), "max_pool2d_0")
            df = bb.add_func(dequantize_linear((1, 2, 2, 2), 3), "dequantize_linear_0")
            q = bb.emit(relax.call_tir(qf, [x, relax.const(scale)], relax.TensorType((1, 2, 4, 4), "int8")))
            nhwc = bb.emit(relax.op.permute_dims(q, [0, 2, 3, 1]))
            pooled = bb.emit(relax.call_tir(pf, [nhwc], relax.TensorType((1, 2, 2, 2), "int8")))
            nchw = bb.emit(relax.op.permute_dims(pooled, [0, 3, 1, 2]))
            y = bb.emit_output(relax.call_tir(df, [nchw, relax.const(scale)], relax.TensorType((1, 2, 2, 2), "float32")))
        bb.emit_func_output(y)
    after = LowerONNXQDQToInteger()(Before)
    tvm.ir.assert_structural_equal(_strip(after), bb.get(), map_free_vars=True)
