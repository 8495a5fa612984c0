"""FilterletSparseConv gives element-sparse convs the per-weight CSR format (unstructured_csr).

A conv pruned weight by weight has low filterlet sparsity but high element sparsity: the pass
considers it although its filterlet sparsity is under the threshold, packs the non-zero weights
(values, int16 columns, int32 row pointers) as constants of a conv2d_unstructured call that keeps
the dense conv's requantization constants, and records the format, the exact bytes and why.
"""

import json

import numpy as np
import pytest
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from dtmm_tvm.costmodel.format_choice import UNSTRUCTURED_MARGIN, UNSTRUCTURED_MIN_SPARSITY, decide_conv_format
from dtmm_tvm.quant.conv import Conv2DParams
from dtmm_tvm.sparsity import analyze_filterlets, pack_filterlets_as
from relay_passes import FilterletSparseConv, LowerQDQToInteger


def _weights(element_sparsity, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, size=(3, 3, 32, 6)).astype(np.int8)  # HWIO (Cin 32)
    w[w == 0] = 1
    w[rng.random(w.shape) < element_sparsity] = 0
    return w


def _module(w_hwio):
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 6, 6, 32), "int8")) -> R.Tensor((1, 6, 6, 6), "int8"):
            with R.dataflow():
                xf = R.dequantize(x, R.const(0.05, "float32"), R.const(-3, "int32"), out_dtype="float32", axis=0)
                wf = R.dequantize(R.const(w_hwio), R.const(np.full(6, 0.01, "float32")), R.const(0, "int32"),
                                  out_dtype="float32", axis=3)
                y = R.nn.conv2d(xf, wf, padding=[1, 1, 1, 1], data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
                q = R.quantize(y, R.const(0.1, "float32"), R.const(-128, "int32"), out_dtype="int8", axis=0)
                R.output(q)
            return q

    return LowerQDQToInteger()(Before)


def test_element_sparse_conv_gets_the_per_weight_format():
    w = _weights(0.9)
    w_ohwi = np.ascontiguousarray(w.transpose(3, 0, 1, 2))
    stats = analyze_filterlets(w_ohwi)
    assert stats.filterlet_sparsity <= 0.1  # filterlet pruning would find nothing here
    lowered = _module(w)
    after = FilterletSparseConv(optimize="size")(lowered)
    dense_call = lowered["main"].body.blocks[0].bindings[-1].value
    call = after["main"].body.blocks[0].bindings[-1].value
    assert call.args[0].name_hint == "conv2d_unstructured_0"
    func = after[call.args[0]]
    assert str(func.attrs["dtmm.op"]) == "conv2d_unstructured"
    packed = pack_filterlets_as(w_ohwi, "unstructured_csr")
    fields = call.args[1].fields
    assert len(fields) == 7
    for got, want in zip(fields[1:4], (packed.values, packed.col_idx, packed.row_ptr)):
        np.testing.assert_array_equal(got.value.numpy(), want)
        assert got.value.numpy().dtype == want.dtype
    for dense_arg, arg in zip(dense_call.args[1].fields[2:], fields[4:]):  # bias, mult, shift
        tvm.ir.assert_structural_equal(dense_arg, arg)
    layer = json.loads(str(func.attrs["dtmm.layer"]))
    nnz = int(np.count_nonzero(w))
    assert layer["format"] == "unstructured_csr" and layer["nonzero_weights"] == nnz
    assert layer["stored_weight_bytes"] == packed.nbytes == 3 * nnz + 4 * 7
    assert layer["index_bytes"] == 2 * nnz + 4 * 7
    assert layer["format_bytes"]["unstructured_csr"] == packed.nbytes and layer["format_bytes"]["dense"] == w.size
    assert layer["element_sparsity"] == pytest.approx(1 - nnz / w.size, abs=1e-6)
    assert layer["kept_macs"] == 36 * nnz
    assert layer["format_choice"]["chosen"] == "unstructured_csr"
    assert "conv2d_0" not in [gv.name_hint for gv in after.get_global_vars()]


def test_below_the_element_gate_stays_untouched_and_formats_can_exclude_it():
    w = _weights(UNSTRUCTURED_MIN_SPARSITY - 0.1, seed=1)
    lowered = _module(w)
    tvm.ir.assert_structural_equal(FilterletSparseConv()(lowered), lowered)
    # without the per-weight format among the allowed ones a 90% element-sparse conv (10%
    # filterlet sparsity or less) is not considered at all
    sparse = _module(_weights(0.9))
    filterlet_only = ("filterlet_csr", "filterlet_u8", "filterlet_bitmask")
    tvm.ir.assert_structural_equal(FilterletSparseConv(formats=filterlet_only)(sparse), sparse)


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m55"])
def test_speed_decision_predicts_and_explains_every_candidate(core):
    params = Conv2DParams((1, 16, 16, 32), (32, 3, 3, 32), padding=(1, 1, 1, 1))
    rng = np.random.default_rng(4)
    w = rng.integers(1, 127, size=(32, 3, 3, 32)).astype(np.int8)
    w[rng.random(w.shape) < 0.95] = 0
    d = decide_conv_format(w, params, f"dtmm/{core}")
    assert set(d.predicted) == set(d.bytes) >= {"dense", "unstructured_csr"}
    best_other = min(v for f, v in d.predicted.items() if f != "unstructured_csr")
    # chosen exactly when predicted 25% faster than every other candidate
    assert (d.format == "unstructured_csr") == (d.predicted["unstructured_csr"] < (1 - UNSTRUCTURED_MARGIN) * best_other), \
        d.reason
    if core == "cortex-m4":  # M4's dense kernel is far slower here (bench/results/unstructured: 630 k vs 1,544 k)
        assert d.format == "unstructured_csr", d.reason
    # at 60% the per-weight format is predicted slower than dense: dense, and the reason says why
    w60 = rng.integers(1, 127, size=(32, 3, 3, 32)).astype(np.int8)
    w60[rng.random(w60.shape) < 0.6] = 0
    d60 = decide_conv_format(w60, params, f"dtmm/{core}")
    assert d60.format == "dense" and "unstructured_csr" in d60.predicted
