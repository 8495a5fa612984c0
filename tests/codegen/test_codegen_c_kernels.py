"""The micro-kernel hook: PrimFunc attribute "dtmm.c_kernels" -> header include + shipped C files."""

import pytest
from tvm import relax
from tvm.script import tirx as T

from dtmm_tvm.codegen import build_aot, build_c_kernels
from dtmm_tvm.errors import ModelError
from dtmm_tvm.kernels import ATTR, HEADER, c_kernel_names, kernel_source, with_c_kernels

from codegen_helpers import compile_host_library, run_library


def _elem_bytes_func():
    @T.prim_func
    def elem(x: T.Buffer((4,), "int8"), out: T.Buffer((4,), "int32")):
        for i in range(4):
            out[i] = T.call_extern("int32", "dtmm_conv_s8_elem_bytes") + T.Cast("int32", x[i])

    return elem


def test_attribute_adds_include_and_drops_tvm_declarations():
    func = with_c_kernels(_elem_bytes_func(), ["dtmm_conv_im2col_s8"])
    assert c_kernel_names(func) == ["dtmm_conv_im2col_s8"]
    assert c_kernel_names(with_c_kernels(func, ["dtmm_conv_im2col_s8"])) == ["dtmm_conv_im2col_s8"]
    src = build_c_kernels({"elem": func})
    assert src.c_kernels == ["dtmm_conv_im2col_s8"]
    assert f'#include "{HEADER}"' in src.code
    # TVM's own (untyped) extern declaration is replaced by the header's prototype.
    assert "int32_t dtmm_conv_s8_elem_bytes(" not in src.code
    plain = build_c_kernels({"elem": _elem_bytes_func()})
    assert plain.c_kernels == [] and HEADER not in plain.code


def test_unknown_kernel_name_is_rejected():
    with pytest.raises(ModelError, match="unknown C micro-kernel"):
        with_c_kernels(_elem_bytes_func(), ["no_such_kernel"])
    with pytest.raises(ModelError, match="unknown C micro-kernel"):
        build_c_kernels({"f": _elem_bytes_func().with_attr(ATTR, ["../evil"])})


def test_archive_ships_kernels_and_runs_on_host(tmp_path):
    import numpy as np

    func = with_c_kernels(_elem_bytes_func(), ["dtmm_conv_im2col_s8"])
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4,), "int8"))
    with bb.function("main", [x]):
        gv = bb.add_func(func, "elem")
        out = bb.emit(relax.call_tir(gv, (x,), relax.TensorType((4,), "int32")))
        bb.emit_func_output(out)
    aot = build_aot(bb.get())
    assert aot.files[f"codegen/host/include/{HEADER}"].startswith("/*")
    assert aot.files["codegen/host/src/dtmm_conv_im2col_s8.c"] == kernel_source("dtmm_conv_im2col_s8")
    lib = compile_host_library(aot, tmp_path)
    (got,) = run_library(lib, aot, [np.arange(4, dtype=np.int8)])
    np.testing.assert_array_equal(got, np.arange(4) + 2)  # portable build: q15 rows, 2 bytes
