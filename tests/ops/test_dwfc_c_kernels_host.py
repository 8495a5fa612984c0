"""The portable C path of the depthwise / fully connected micro-kernels, compiled for the host.

``dtmm_tvm/kernels/dtmm_depthwise_conv_s8.c`` and ``dtmm_fully_connected_s8.c`` are built with
the host C compiler (no __ARM_FEATURE_* macros: the portable path) into a shared library and
called through ctypes with the folded bias of :func:`fold_bias`, against the numpy references
(which are tested against TFLM) for every schedule knob. The Cortex-M paths (DSP, MVE) run on
QEMU in ``tests/ops/test_dwfc_c_kernels_qemu.py``.
"""

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from dtmm_tvm.kernels import KERNEL_DIR
from dtmm_tvm.ops import depthwise_conv2d as dwop
from dtmm_tvm.ops import fully_connected as fcop
from dtmm_tvm.quant import conv as qc
from dtmm_tvm.quant.fixed_point import multiply_by_quantized_multiplier

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no host C compiler")

SHIM = r"""
#include "dtmm_kernels_dwfc.h"
void requantize_array(const int32_t* acc, const int32_t* mult, const int32_t* shift, int32_t* out, int32_t n) {
    for (int32_t i = 0; i < n; i++) out[i] = dtmm_dwfc_requantize(acc[i], mult[i], shift[i]);
}
"""

I32P = ctypes.POINTER(ctypes.c_int32)
I8P = ctypes.POINTER(ctypes.c_int8)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dwfc")
    (tmp / "shim.c").write_text(SHIM)
    so = tmp / "libdwfc.so"
    srcs = [KERNEL_DIR / "dtmm_depthwise_conv_s8.c", KERNEL_DIR / "dtmm_fully_connected_s8.c", tmp / "shim.c"]
    subprocess.run([CC, "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                    f"-I{KERNEL_DIR}", *map(str, srcs), "-o", str(so)], check=True)
    return ctypes.CDLL(str(so))


def _p(a, ptype):
    return a.ctypes.data_as(ptype)


def test_requantize_matches_tflm_arithmetic(lib):
    rng = np.random.default_rng(0)
    n = 200_000
    acc = rng.integers(-(2**31), 2**31, size=n, dtype=np.int64).astype(np.int32)
    acc[: n // 2] >>= rng.integers(0, 31, size=n // 2).astype(np.int32)  # small magnitudes too
    edges = np.array([0, 1, -1, 2**31 - 1, -(2**31), 2**30, -(2**30), 12345, -12345], np.int32)
    acc[: edges.size] = edges
    mult = rng.integers(2**30, 2**31, size=n, dtype=np.int64).astype(np.int32)
    mult[::97] = 0
    shift = rng.integers(-31, 8, size=n).astype(np.int32)
    shift[::5] = 0
    # A positive shift in TFLM is a left shift of the int32 accumulator (wraps): keep it defined.
    acc = np.where(shift > 0, acc >> 8, acc).astype(np.int32)
    out = np.zeros(n, np.int32)
    lib.requantize_array(_p(acc, I32P), _p(mult, I32P), _p(shift, I32P), _p(out, I32P), ctypes.c_int32(n))
    np.testing.assert_array_equal(out, multiply_by_quantized_multiplier(acc, mult, shift))


def _random_dw(rng, input_shape, kernel_hw, strides, padding, dilation, multiplier, act):
    cin = input_shape[3]
    cout = cin * multiplier
    params = qc.Conv2DParams(input_shape, (1, *kernel_hw, cout), strides, padding, dilation,
                             int(rng.integers(-128, 128)), int(rng.integers(-128, 128)), *act, multiplier, True)
    x = rng.integers(-128, 128, size=params.input_shape).astype(np.int8)
    w = rng.integers(-127, 128, size=params.weight_shape).astype(np.int8)
    bias = rng.integers(-5000, 5000, size=cout).astype(np.int32)
    scales = np.exp(rng.uniform(np.log(1e-3), np.log(0.5), size=cout)).astype(np.float32)
    mult, shift = qc.conv_output_multipliers(np.float32(0.03), scales, np.float32(0.05))
    return params, x, w, bias, mult, shift


def run_dw(lib, params, x, w, bias, mult, shift, channel_block):
    n, h, wd, cin = params.input_shape
    _, oh, ow, _ = params.output_shape
    kh, kw = params.kernel_size
    nbytes = lib.dtmm_depthwise_conv_s8_get_buffer_size(cin, kh, kw)
    scratch = np.zeros((nbytes + 3) // 4, np.int32)
    out = np.zeros(params.output_shape, np.int8)
    folded = dwop.fold_bias(params, w, bias)
    args = [n, h, wd, cin, params.depth_multiplier, oh, ow, kh, kw, *params.strides, params.padding[0],
            params.padding[1], *params.dilation, params.input_zero_point, params.output_zero_point,
            params.act_min, params.act_max, channel_block]
    lib.dtmm_depthwise_conv_s8(_p(np.ascontiguousarray(x), I8P), _p(np.ascontiguousarray(w), I8P),
                               _p(folded, I32P), _p(np.ascontiguousarray(mult, np.int32), I32P),
                               _p(np.ascontiguousarray(shift, np.int32), I32P), _p(out, I8P), _p(scratch, I32P),
                               *map(ctypes.c_int32, args))
    return out


@pytest.mark.parametrize("channel_block", [1, 2, 4, 8, 16])
@pytest.mark.parametrize(
    "input_shape, kernel_hw, strides, padding, dilation, multiplier, act",
    [
        ((1, 9, 8, 13), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, (-128, 127)),
        ((2, 9, 9, 6), (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), 1, (-30, 127)),
        ((1, 7, 8, 3), (5, 3), (1, 2), (2, 1, 2, 1), (1, 1), 2, (-128, 90)),
        ((1, 8, 8, 5), (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 3, (0, 127)),
        ((1, 4, 4, 20), (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, (-128, 127)),
    ],
)
def test_depthwise_portable_matches_reference(lib, channel_block, input_shape, kernel_hw, strides, padding,
                                              dilation, multiplier, act):
    rng = np.random.default_rng(sum(input_shape) + channel_block)
    params, x, w, bias, mult, shift = _random_dw(rng, input_shape, kernel_hw, strides, padding, dilation,
                                                 multiplier, act)
    got = run_dw(lib, params, x, w, bias, mult, shift, channel_block)
    np.testing.assert_array_equal(got, qc.depthwise_conv2d(x, w, bias, mult, shift, params))


def test_depthwise_scratch_size_mirrors_c(lib):
    # The Python mirror assumes 4-byte pointers (Cortex-M); on a 64-bit host the C needs more.
    ptr = ctypes.sizeof(ctypes.c_void_p)
    for cin, kh, kw in [(1, 1, 1), (13, 3, 3), (64, 5, 5)]:
        params = qc.Conv2DParams((1, 8, 8, cin), (1, kh, kw, cin), depthwise=True, padding=(2, 2, 2, 2))
        c_bytes = lib.dtmm_depthwise_conv_s8_get_buffer_size(cin, kh, kw)
        assert c_bytes - (ptr - 4) * kh * kw <= dwop.scratch_bytes(params)


def run_fc(lib, params, x, w, bias, mult, shift, rows_per_block):
    n, k = params.input_shape
    o = params.weight_shape[0]
    out = np.zeros((n, o), np.int8)
    folded = fcop.fold_bias(params, w, bias)
    lib.dtmm_fully_connected_s8(_p(np.ascontiguousarray(x), I8P), _p(np.ascontiguousarray(w), I8P),
                                _p(folded, I32P), _p(np.ascontiguousarray(mult, np.int32), I32P),
                                _p(np.ascontiguousarray(shift, np.int32), I32P), _p(out, I8P),
                                *map(ctypes.c_int32, [n, k, o, params.output_zero_point, params.act_min,
                                                      params.act_max, rows_per_block]))
    return out


@pytest.mark.parametrize("rows_per_block", [1, 2, 4])
@pytest.mark.parametrize("n, k, o", [(1, 1, 1), (3, 37, 11), (2, 64, 8), (1, 250, 10), (1, 5, 3)])
def test_fully_connected_portable_matches_reference(lib, rows_per_block, n, k, o):
    rng = np.random.default_rng(n * 1000 + k + o + rows_per_block)
    params = qc.FullyConnectedParams((n, k), (o, k), int(rng.integers(-128, 128)), int(rng.integers(-128, 128)),
                                     -100, 110)
    x = rng.integers(-128, 128, size=(n, k)).astype(np.int8)
    w = rng.integers(-127, 128, size=(o, k)).astype(np.int8)
    bias = rng.integers(-5000, 5000, size=o).astype(np.int32)
    scales = rng.uniform(1e-3, 0.2, size=o).astype(np.float32)
    mult, shift = qc.conv_output_multipliers(np.float32(0.02), scales, np.float32(0.07))
    got = run_fc(lib, params, x, w, bias, mult, shift, rows_per_block)
    np.testing.assert_array_equal(got, qc.fully_connected(x, w, bias, mult, shift, params))
    assert lib.dtmm_fully_connected_s8_get_buffer_size(k) == fcop.scratch_bytes(params) == 0
