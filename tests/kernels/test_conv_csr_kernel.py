"""The unstructured (CSR over single weights) conv kernel is bit-exact.

Portable C path: the generated kernel C + ``dtmm_conv_csr_s8.c`` built with host gcc, called
through ctypes, against the numpy reference (itself tested against TFLM) on the conv cases of
test_conv_microkernels.py (strides, 1x1, 5x5, 10x4, dilation, asymmetric padding, Cin 1..20) at
80% element sparsity, one dense and one all-zero layer; every layer has a whole zero filter. The plain TIR
path (no C target) is checked on a smaller subset. DSP / MVE paths: tests/passes/test_unstructured_format.py
and tests/test_unstructured_baseline.py run a compiled model on QEMU M4 and M55 against TFLM.
"""

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tvm

from dtmm_tvm.codegen import primfunc_to_c
from dtmm_tvm.kernels import header_files, kernel_source
from dtmm_tvm.ops.conv2d_unstructured import conv2d_unstructured_int8, scratch_bytes
from dtmm_tvm.quant import conv as qc
from dtmm_tvm.sparsity.storage import pack_filterlets_as

from test_conv_microkernels import CASES, _layer

C_TARGET = tvm.target.Target({"kind": "c"})


def _element_sparse(rng, case, sparsity):
    params, x, w, bias, mult, shift = _layer(rng, CASES[case], 0.0)
    w[rng.random(w.shape) < sparsity] = 0
    w[0] = 0  # a whole zero filter: bias and requantization only
    return params, x, w, bias, mult, shift


def _host_call(func, tmp_path: Path, arrays: list, out_shape) -> np.ndarray:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("host gcc not installed")
    code, kernel = primfunc_to_c(func, "conv")
    (tmp_path / "kernel.c").write_text(code)
    for name, text in header_files().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "dtmm_conv_csr_s8.c").write_text(kernel_source("dtmm_conv_csr_s8"))
    lib = tmp_path / "libconv.so"
    proc = subprocess.run([gcc, "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                           "-I", str(tmp_path), str(tmp_path / "kernel.c"), str(tmp_path / "dtmm_conv_csr_s8.c"),
                           "-o", str(lib)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = np.zeros(out_shape, np.int8)
    bufs = [np.ascontiguousarray(a) for a in arrays] + [out]
    bufs += [np.zeros(s.bytes + 16, np.uint8) for s in kernel.scratch]
    assert len(bufs) == len(kernel.param_dtypes)
    fn = getattr(ctypes.CDLL(str(lib)), kernel.symbol)
    fn.restype = None
    fn(*[ctypes.c_void_p(b.ctypes.data) for b in bufs])
    return out


@pytest.mark.parametrize("case, sparsity", [(case, 0.8) for case in range(len(CASES))] + [(0, 0.0), (2, 1.0)])
def test_portable_csr_matches_reference(tmp_path, case, sparsity):
    rng = np.random.default_rng(900 + case)
    params, x, w, bias, mult, shift = _element_sparse(rng, case, sparsity)
    packed = pack_filterlets_as(w, "unstructured_csr")
    np.testing.assert_array_equal(packed.unpack(), w)
    func = conv2d_unstructured_int8(params, packed.nonzero_weights, target=C_TARGET)
    assert list(func.attrs["dtmm.c_kernels"]) == ["dtmm_conv_csr_s8"]
    got = _host_call(func, tmp_path, [x, packed.values, packed.col_idx, packed.row_ptr, bias, mult, shift],
                     params.output_shape)
    np.testing.assert_array_equal(got, qc.conv2d(x, w, bias, mult, shift, params))


@pytest.mark.parametrize("case", [0, 2, 5])
def test_plain_tir_csr_matches_reference(case):
    rng = np.random.default_rng(950 + case)
    params, x, w, bias, mult, shift = _element_sparse(rng, case, 0.85)
    packed = pack_filterlets_as(w, "unstructured_csr")
    func = conv2d_unstructured_int8(params, packed.nonzero_weights, target=None)
    assert "dtmm.c_kernels" not in func.attrs
    kernel = tvm.compile(tvm.IRModule({"main": func}), target="llvm")["main"]
    args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in
            (x, packed.values, packed.col_idx, packed.row_ptr, bias, mult, shift, np.zeros(params.output_shape, np.int8))]
    kernel(*args)
    np.testing.assert_array_equal(args[-1].numpy(), qc.conv2d(x, w, bias, mult, shift, params))


def test_packing_bytes_and_limits():
    from dtmm_tvm.errors import FormatError

    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, size=(6, 3, 3, 16)).astype(np.int8)
    w[rng.random(w.shape) < 0.9] = 0
    packed = pack_filterlets_as(w, "unstructured_csr")
    nnz = int(np.count_nonzero(w))
    assert packed.nonzero_weights == nnz
    assert packed.nbytes == nnz + 2 * nnz + 4 * 7  # values + int16 columns + int32 row pointers
    assert packed.kept_filterlets == int(np.any(w != 0, axis=3).sum())
    assert packed.row_ptr.dtype == np.int32 and packed.col_idx.dtype == np.int16
    with pytest.raises(FormatError, match="int16 index of unstructured_csr"):
        pack_filterlets_as(np.ones((1, 3, 3, 3641), np.int8), "unstructured_csr", layer="big")
    params = qc.Conv2DParams((1, 5, 5, 16), (6, 3, 3, 16), padding=(1, 1, 1, 1))
    assert scratch_bytes(params, "dsp") == 4 * 6 + 4 * 144 + 4 * 144
    assert scratch_bytes(params, "mve") == 4 * 6 + 4 * 144 + 8 * 144
