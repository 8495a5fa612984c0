"""FilterletSparseConv: Before/Expected structural tests, and its use in a user's pipeline."""

import json

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from dtmm_tvm.ops.conv2d_filterlet import conv2d_filterlet_float32
from dtmm_tvm.quant.conv import Conv2DParams
from dtmm_tvm.sparsity import pack_filterlets
from relay_passes import FilterletSparseConv, LowerQDQToInteger

from .structural import strip_layer_attrs


def _weights(sparsity, seed=0, shape=(3, 3, 8, 6)):
    rng = np.random.default_rng(seed)
    w = rng.integers(1, 100, size=shape).astype(np.int8)  # HWIO, no accidental zeros
    kh, kw, _, o = shape
    mask = rng.random((kh, kw, o)) < sparsity
    w.transpose(0, 1, 3, 2)[mask] = 0
    return w


W_HALF = _weights(0.5)
W_DENSE = _weights(0.0)


def _float_module(w):
    @I.ir_module
    class Module:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 8), "float32")) -> R.Tensor((1, 6, 6, 6), "float32"):
            with R.dataflow():
                y = R.nn.conv2d(x, R.const(w.astype("float32")), padding=[1, 1, 1, 1], data_layout="NHWC",
                                kernel_layout="HWIO", out_layout="NHWC")
                R.output(y)
            return y

    return Module


def test_float_conv_becomes_filterlet_operator():
    after = FilterletSparseConv()(_float_module(W_HALF))
    w_ohwi = np.ascontiguousarray(W_HALF.astype("float32").transpose(3, 0, 1, 2))
    packed = pack_filterlets(w_ohwi)
    params = Conv2DParams((1, 6, 6, 8), (6, 3, 3, 8), padding=(1, 1, 1, 1))
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 6, 6, 8), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            # Each rewritten layer gets its own symbol (two would otherwise collide at build).
            func = conv2d_filterlet_float32(params, packed.kept_filterlets)
            gvar = bb.add_func(func.with_attr("global_symbol", "conv2d_filterlet_f32_0"), "conv2d_filterlet_f32_0")
            out = bb.emit_output(relax.call_tir(
                gvar, [x, relax.const(packed.values.astype(np.float32)), relax.const(packed.col_idx),
                       relax.const(packed.row_ptr)], relax.TensorType((1, 6, 6, 6), "float32")))
        bb.emit_func_output(out)
    layer = json.loads(str(after["conv2d_filterlet_f32_0"].attrs["dtmm.layer"]))
    assert layer["format"] == "filterlet_csr"
    assert layer["kept_filterlets"] == packed.kept_filterlets
    assert layer["stored_weight_bytes"] == packed.values.size * 4 + packed.index_bytes
    tvm.ir.assert_structural_equal(strip_layer_attrs(after), bb.get(), map_free_vars=True)


def test_dense_conv_below_threshold_is_untouched():
    before = _float_module(W_DENSE)
    tvm.ir.assert_structural_equal(FilterletSparseConv()(before), before)
    # ... and a threshold above the layer's sparsity keeps a sparse conv dense too.
    half = _float_module(W_HALF)
    tvm.ir.assert_structural_equal(FilterletSparseConv(threshold=0.95)(half), half)


def test_integer_conv_keeps_its_requantization_and_packs_the_weights():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 8), "int8")) -> R.Tensor((1, 6, 6, 6), "int8"):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(-3, "int32"), out_dtype="float32", axis=0)
                wf = R.dequantize(R.const(W_HALF), R.const(np.full(6, 0.01, "float32")), R.const(0, "int32"),
                                  out_dtype="float32", axis=3)
                y = R.nn.conv2d(xf, wf, padding=[1, 1, 1, 1], data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                q = R.quantize(y, R.const(0.1, "float32"), R.const(-128, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    lowered = LowerQDQToInteger()(Before)
    after = FilterletSparseConv(formats=("filterlet_csr",))(lowered)
    dense_call = lowered["main"].body.blocks[0].bindings[-1].value
    sparse_call = after["main"].body.blocks[0].bindings[-1].value
    assert sparse_call.args[0].name_hint == "conv2d_filterlet_0"
    packed = pack_filterlets(np.ascontiguousarray(W_HALF.transpose(3, 0, 1, 2)))
    fields = sparse_call.args[1].fields
    np.testing.assert_array_equal(fields[1].value.numpy(), packed.values)
    np.testing.assert_array_equal(fields[2].value.numpy(), packed.col_idx)
    np.testing.assert_array_equal(fields[3].value.numpy(), packed.row_ptr)
    for dense_arg, sparse_arg in zip(dense_call.args[1].fields[2:], fields[4:]):  # bias, mult, shift
        tvm.ir.assert_structural_equal(dense_arg, sparse_arg)
    assert "conv2d_0" not in [gv.name_hint for gv in after.get_global_vars()]  # no dead dense kernel left


def test_integer_conv_gets_the_cheapest_format_and_records_it():
    from dtmm_tvm.sparsity import FORMATS, pack_filterlets_as

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 8), "int8")) -> R.Tensor((1, 6, 6, 6), "int8"):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(-3, "int32"), out_dtype="float32", axis=0)
                wf = R.dequantize(R.const(W_HALF), R.const(np.full(6, 0.01, "float32")), R.const(0, "int32"),
                                  out_dtype="float32", axis=3)
                y = R.nn.conv2d(xf, wf, padding=[1, 1, 1, 1], data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                q = R.quantize(y, R.const(0.1, "float32"), R.const(-128, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    w_ohwi = np.ascontiguousarray(W_HALF.transpose(3, 0, 1, 2))
    sizes = {f: pack_filterlets_as(w_ohwi, f).nbytes for f in FORMATS}
    lowered = LowerQDQToInteger()(Before)
    for formats, want in ((None, min(sizes, key=sizes.get)), (("filterlet_u8",), "filterlet_u8"),
                          (("filterlet_csr", "filterlet_u8"), "filterlet_u8")):
        after = FilterletSparseConv(formats=formats)(lowered)
        call = after["main"].body.blocks[0].bindings[-1].value
        layer = json.loads(str(after[call.args[0]].attrs["dtmm.layer"]))
        assert layer["format"] == want
        assert layer["stored_weight_bytes"] == sizes[want]
        assert layer["format_bytes"]["filterlet_bitmask"] == sizes["filterlet_bitmask"]
        packed = pack_filterlets_as(w_ohwi, want)
        fields = call.args[1].fields
        assert len(fields) == 2 + len(packed.index_arrays) + 3
        for got, arr in zip(fields[2:], packed.index_arrays):
            np.testing.assert_array_equal(got.value.numpy(), arr)
    with pytest.raises(ValueError, match="formats"):
        FilterletSparseConv(formats=("filterlet_coo",))


def test_insertable_into_a_user_pipeline_and_registered_by_name():
    import dtmm_tvm.pipeline  # noqa: F401  (registers the "dtmm" pipeline)

    user_pipeline = tvm.transform.Sequential([FilterletSparseConv(0.2), relax.transform.LegalizeOps()])
    lowered = user_pipeline(_float_module(W_HALF))
    assert any(gv.name_hint.startswith("conv2d_filterlet") for gv in lowered.get_global_vars())
    named = relax.get_pipeline("dtmm")
    assert isinstance(named, tvm.transform.Pass)


def test_threshold_is_validated():
    with pytest.raises(ValueError, match="threshold"):
        FilterletSparseConv(threshold=1.5)


def test_tvm_compile_with_the_pass_in_relax_pipeline_gives_identical_floats():
    """The pass drops into tvm.compile(relax_pipeline=...) ahead of TVM's default pipeline; skipping
    pruned filterlets leaves float results bit-identical to TVM's own dense conv."""
    mod = _float_module(W_HALF)
    x = np.random.default_rng(0).standard_normal((1, 6, 6, 8)).astype("float32")
    pipeline = tvm.transform.Sequential([FilterletSparseConv(), relax.get_pipeline("default")])
    sparse = relax.VirtualMachine(tvm.compile(mod, target="llvm", relax_pipeline=pipeline), tvm.cpu())
    dense = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    got = sparse["main"](tvm.runtime.tensor(x)).numpy()
    want = dense["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_array_equal(got, want)
